// Pod mode: node id, founders and join targets derived from the pod name and
// the peer template, and bad input refused with a ConfigError naming the
// option (before anything starts: resolveSidecarConfig is all `pgraft sidecar`
// does before Sidecar.start).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../src/config/errors.js";
import { derivePodIdentity } from "../../src/config/pod-identity.js";
import { resolveSidecarConfig, type RawConfig } from "../../src/config/sidecar-config.js";
import { runCli } from "../integration/harness.js";

const TEMPLATE = "{name}-{i}.{service}.{namespace}.svc:7400";
const base: RawConfig = { clusterId: "prod", dataDir: "/var/lib/pgraft", plaintext: true, peerTemplate: TEMPLATE, service: "pgraft-headless", namespace: "db" };

function problems(flags: RawConfig, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    resolveSidecarConfig(flags, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.problems;
  }
  assert.fail("expected a ConfigError");
}

describe("pod identity (StatefulSet)", () => {
  test("a founder: node id = ordinal + 1, the initial cluster of the first pods, listen 0.0.0.0 on its port", () => {
    const c = resolveSidecarConfig({ ...base, initialReplicas: "3" }, { POD_NAME: "pgraft-1" });
    assert.equal(c.nodeId, 2);
    assert.equal(c.nodeName, "pgraft-1");
    assert.deepEqual(c.advertise, { host: "pgraft-1.pgraft-headless.db.svc", port: 7400 });
    assert.deepEqual(c.listen, { host: "0.0.0.0", port: 7400 });
    assert.deepEqual(
      [...c.initialCluster!].map(([id, a]) => `${id}=${a.host}:${a.port}`),
      ["1=pgraft-0.pgraft-headless.db.svc:7400", "2=pgraft-1.pgraft-headless.db.svc:7400", "3=pgraft-2.pgraft-headless.db.svc:7400"],
    );
    assert.equal(c.join, undefined);
    assert.equal(c.pod?.founder, true);
  });

  test("a pod beyond the founders (a scale-up) joins through them", () => {
    const c = resolveSidecarConfig(base, { POD_NAME: "pg-main-4" });
    assert.equal(c.nodeId, 5);
    assert.equal(c.initialCluster, undefined);
    assert.deepEqual(c.join?.map((a) => a.host), ["pg-main-0.pgraft-headless.db.svc", "pg-main-1.pgraft-headless.db.svc", "pg-main-2.pgraft-headless.db.svc"]);
    assert.equal(c.pod?.founder, false);
  });

  test("the pod name: flag over $PGRAFT_POD_NAME over $POD_NAME; $POD_NAMESPACE for {namespace}", () => {
    const env = { PGRAFT_POD_NAME: "db-2", POD_NAME: "db-1", POD_NAMESPACE: "ns1" };
    const { namespace: _, ...noNs } = base;
    assert.equal(resolveSidecarConfig({ ...noNs, podName: "db-0" }, env).nodeId, 1);
    const c = resolveSidecarConfig(noNs, env);
    assert.equal(c.nodeId, 3);
    assert.equal(c.advertise.host, "db-2.pgraft-headless.ns1.svc");
    assert.equal(resolveSidecarConfig(noNs, { POD_NAME: "db-1", POD_NAMESPACE: "ns1" }).nodeId, 2);
  });

  test("{i+N} gives each pod its own port (one host, loopback); an explicit --listen wins", () => {
    const c = resolveSidecarConfig({ clusterId: "t", dataDir: "/d", plaintext: true, peerTemplate: "127.0.0.1:{i+17400}", podName: "pgraft-2", listen: "127.0.0.1:17402" }, {});
    assert.deepEqual(c.advertise, { host: "127.0.0.1", port: 17402 });
    assert.deepEqual(c.listen, { host: "127.0.0.1", port: 17402 });
    assert.deepEqual([...c.initialCluster!.values()].map((a) => a.port), [17400, 17401, 17402]);
  });

  test("one founder is a one-node cluster; pod 1 then joins it", () => {
    const one = { ...base, initialReplicas: "1" };
    assert.deepEqual([...resolveSidecarConfig(one, { POD_NAME: "p-0" }).initialCluster!.keys()], [1]);
    assert.equal(resolveSidecarConfig(one, { POD_NAME: "p-1" }).join?.length, 1);
  });

  test("a pod name without an ordinal is refused, naming where it came from", () => {
    assert.match(problems(base, { POD_NAME: "pgraft" }).join("\n"), /\$POD_NAME: pod name "pgraft" does not end in -<ordinal>/);
    assert.match(problems({ ...base, podName: "pgraft-x" }).join("\n"), /--pod-name: pod name "pgraft-x" does not end in -<ordinal>/);
    assert.match(problems({ ...base, podName: "pgraft-01" }).join("\n"), /leading zero/);
    assert.match(problems({ ...base, podName: "pgraft-10000" }).join("\n"), /above 9999/);
  });

  test("a template without {i}, with an unknown placeholder, or with a missing {service} is refused", () => {
    assert.match(problems({ ...base, peerTemplate: "{name}.{service}:7400" }, { POD_NAME: "p-0" }).join("\n"), /--peer-template: the template "\{name\}\.\{service\}:7400" has no \{i\}/);
    assert.match(problems({ ...base, peerTemplate: "{name}-{j}:7400" }, { POD_NAME: "p-0" }).join("\n"), /unknown placeholder \{j\}/);
    const { service: _, ...noService } = base;
    assert.match(problems(noService, { POD_NAME: "p-0" }).join("\n"), /uses \{service\}, but no service is given \(--service/);
    assert.match(problems({ ...base, peerTemplate: "{name}-{i}:74{00" }, { POD_NAME: "p-0" }).join("\n"), /unbalanced braces/);
    assert.match(problems({ ...base, peerTemplate: "{name}-{i}" }, { POD_NAME: "p-0" }).join("\n"), /pod 0's address "p-0" is not host:port/);
    assert.match(problems({ ...base, peerTemplate: "h:{i+65535}" }, { POD_NAME: "p-1" }).join("\n"), /port 65536 is outside 1\.\.65535/);
  });

  test("initial replicas out of range or not a number is refused", () => {
    for (const [v, re] of [
      ["0", /--initial-replicas: initial replicas 0 is outside 1\.\.15/],
      ["16", /initial replicas 16 is outside 1\.\.15/],
      ["-1", /must be an integer in 1\.\.15, got "-1"/],
      ["three", /must be an integer in 1\.\.15, got "three"/],
    ] as const) {
      assert.match(problems({ ...base, initialReplicas: v }, { POD_NAME: "p-0" }).join("\n"), re);
    }
    assert.match(problems(base, { POD_NAME: "p-0", PGRAFT_INITIAL_REPLICAS: "99" }).join("\n"), /\$PGRAFT_INITIAL_REPLICAS: initial replicas 99/);
  });

  test("pod mode excludes --node-id, --initial-cluster, --join and --advertise; pod options need pod mode", () => {
    const p = problems({ ...base, nodeId: "1", join: "a:1", advertise: "x:1" }, { POD_NAME: "p-0" }).join("\n");
    assert.match(p, /--node-id: not with --peer-template/);
    assert.match(p, /--join: not with --peer-template/);
    assert.match(p, /--advertise: not with --peer-template/);
    assert.match(problems({ nodeId: "1", clusterId: "c", dataDir: "/d", plaintext: true, podName: "p-0" }).join("\n"), /--pod-name: only means something with --peer-template/);
  });

  test("--node-group: pod mode with a PostgreSQL only, and a valid name", () => {
    const dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
    assert.equal(resolveSidecarConfig({ ...base, nodeGroup: "app", postgresDsn: dsn }, { POD_NAME: "p-0" }).nodeGroup, "app");
    assert.match(problems({ ...base, nodeGroup: "app" }, { POD_NAME: "p-0" }).join("\n"), /--node-group: needs --postgres-dsn/);
    assert.match(problems({ ...base, nodeGroup: "App Group", postgresDsn: dsn }, { POD_NAME: "p-0" }).join("\n"), /--node-group: a node group name is 1-63 lower-case/);
    assert.match(problems({ nodeId: "1", clusterId: "c", dataDir: "/d", plaintext: true, postgresDsn: dsn }, { PGRAFT_NODE_GROUP: "app" }).join("\n"), /\$PGRAFT_NODE_GROUP: only with --peer-template/);
  });

  test("derivePodIdentity reports every problem at once", () => {
    const r = derivePodIdentity({ podName: { value: "nope", from: "$POD_NAME" }, template: { value: "{x}:1", from: "--peer-template" }, initialReplicas: { value: "0", from: "--initial-replicas" } });
    assert.ok(Array.isArray(r));
    assert.equal(r.length, 4, r.join("\n"));
  });

  test("the real CLI: a bad pod name exits 2 with the message, and starts nothing", async () => {
    const r = await runCli(["sidecar", "--cluster-id", "c", "--data-dir", "/nonexistent/never-created", "--plaintext", "--peer-template", "127.0.0.1:{i+17400}"], {
      env: { POD_NAME: "web" },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /pgraft sidecar: \$POD_NAME: pod name "web" does not end in -<ordinal>/);
    assert.equal(r.stdout, "");
  });

  test("--help lists the pod options with their env vars and YAML keys", async () => {
    const r = await runCli(["sidecar", "--help"]);
    for (const s of ["--peer-template", "$PGRAFT_PEER_TEMPLATE", "peer_template", "--pod-name", "--initial-replicas", "initial_replicas", "--service", "--namespace", "--node-group", "node_group"]) assert.ok(r.stdout.includes(s), s);
  });
});
