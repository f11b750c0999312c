import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseHostPort } from "../../src/config/address.js";
import { ConfigError } from "../../src/config/errors.js";
import { resolveSidecarConfig, type RawConfig } from "../../src/config/sidecar-config.js";

const base: RawConfig = { nodeId: "1", clusterId: "prod-1", dataDir: "/var/lib/pgraft", plaintext: true };

function problems(flags: RawConfig, env: NodeJS.ProcessEnv = {}, yaml: Record<string, unknown> = {}): string[] {
  try {
    resolveSidecarConfig(flags, env, yaml);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.problems;
  }
  return [];
}

describe("sidecar configuration", () => {
  test("defaults follow the design card", () => {
    const c = resolveSidecarConfig(base, {});
    assert.equal(c.nodeName, "node1");
    assert.deepEqual(c.listen, { host: "127.0.0.1", port: 7400 });
    assert.deepEqual(c.advertise, c.listen);
    assert.deepEqual(c.httpListen, { host: "127.0.0.1", port: 8008 });
    assert.equal(c.heartbeatMs, 100);
    assert.equal(c.electionMs, 1000);
    assert.deepEqual(c.tls, { mode: "plaintext" });
  });

  test("flags beat env vars, env vars beat the YAML file", () => {
    const env = { PGRAFT_NODE_NAME: "from-env", PGRAFT_LISTEN: "127.0.0.1:7500" };
    const yaml = { node_name: "from-yaml", listen: "127.0.0.1:7600", http_listen: "127.0.0.1:9000" };
    const c = resolveSidecarConfig({ ...base, listen: "127.0.0.1:7700" }, env, yaml);
    assert.equal(c.nodeName, "from-env");
    assert.deepEqual(c.listen, { host: "127.0.0.1", port: 7700 });
    assert.deepEqual(c.httpListen, { host: "127.0.0.1", port: 9000 });
  });

  test("bootstrap list: parsed, must contain this node at its advertised address", () => {
    const c = resolveSidecarConfig({ ...base, initialCluster: "1=127.0.0.1:7400,2=127.0.0.1:7410" }, {});
    assert.deepEqual([...c.initialCluster!.keys()], [1, 2]);
    assert.match(problems({ ...base, initialCluster: "2=127.0.0.1:7410" }).join(), /not in the initial cluster/);
    assert.match(problems({ ...base, initialCluster: "1=127.0.0.1:7999" }).join(), /advertises 127.0.0.1:7400/);
    assert.match(problems({ ...base, initialCluster: "1=127.0.0.1:7400,1=127.0.0.1:7410" }).join(), /appears twice/);
    assert.match(problems({ ...base, initialCluster: "1=127.0.0.1:7400,2=127.0.0.1:7400" }).join(), /address 127.0.0.1:7400 appears twice/);
    assert.match(problems({ ...base, initialCluster: "one=127.0.0.1:1" }).join(), /not id=host:port/);
  });

  test("YAML lists and maps are accepted for initial_cluster and join", () => {
    const c = resolveSidecarConfig(base, {}, { initial_cluster: { 1: "127.0.0.1:7400", 2: "127.0.0.1:7410" } });
    assert.equal(c.initialCluster!.size, 2);
    const j = resolveSidecarConfig({ ...base, nodeId: "4" }, {}, { join: ["127.0.0.1:7400", "127.0.0.1:7410"] });
    assert.equal(j.join!.length, 2);
  });

  test("bad input: every problem is reported at once and names its source", () => {
    const p = problems({ nodeId: "0", clusterId: "bad id!", listen: "nohost", heartbeat: "fast" }, { PGRAFT_HTTP_LISTEN: "127.0.0.1:99999" });
    const all = p.join("\n");
    assert.match(all, /--node-id: node id must be an integer in 1..4294967295, got "0"/);
    assert.match(all, /--cluster-id: cluster id must be/);
    assert.match(all, /--data-dir is required/);
    assert.match(all, /--listen: "nohost" is not host:port/);
    assert.match(all, /\$PGRAFT_HTTP_LISTEN: .*port 99999 is outside 1..65535/);
    assert.match(all, /--heartbeat-interval: "fast" is not a duration/);
    assert.match(all, /--tls-ca, --tls-cert and --tls-key for mTLS .* or --plaintext/);
  });

  test("heartbeat must be well below the election timeout", () => {
    assert.match(problems({ ...base, heartbeat: "600ms", election: "1s" }).join(), /at least twice the heartbeat interval \(600ms\)/);
    assert.match(problems({ ...base, heartbeat: "1s", election: "1s" }).join(), /election timeout \(1000ms\)/);
  });

  test("TLS: all three files or explicit plaintext, never half", () => {
    assert.match(problems({ nodeId: "1", clusterId: "c", dataDir: "/d", tlsCa: "/ca.pem" }).join(), /needs all three/);
    assert.match(problems({ ...base, tlsCa: "a", tlsCert: "b", tlsKey: "c" }).join(), /contradicts/);
    const c = resolveSidecarConfig({ nodeId: "1", clusterId: "c", dataDir: "/d", tlsCa: "a", tlsCert: "b", tlsKey: "c" }, {});
    assert.deepEqual(c.tls, { mode: "mtls", ca: "a", cert: "b", key: "c" });
  });

  test("bootstrap and join are exclusive; wildcard advertise is refused; unknown YAML keys are refused", () => {
    assert.match(problems({ ...base, initialCluster: "1=127.0.0.1:7400", join: "127.0.0.1:7410" }).join(), /cannot be used together/);
    assert.match(problems({ ...base, listen: "0.0.0.0:7400" }).join(), /wildcard/);
    assert.match(problems(base, {}, { node_idd: 3 }).join(), /unknown key "node_idd"/);
  });

  test("durations use the cluster registry's parser; addresses", () => {
    assert.equal(resolveSidecarConfig({ ...base, heartbeat: "75ms", election: "1.5s" }, {}).electionMs, 1500);
    assert.equal(resolveSidecarConfig({ ...base, heartbeat: "90" }, {}).heartbeatMs, 90);
    assert.match(problems({ ...base, heartbeat: "-5ms" }).join(), /not a duration/);
    assert.match(problems({ ...base, election: "5x" }).join(), /not a duration/);
    assert.deepEqual(parseHostPort("[::1]:7400"), { host: "[::1]", port: 7400 });
    assert.equal(typeof parseHostPort("host:0"), "string");
    assert.equal(typeof parseHostPort(":7400"), "string");
    assert.equal(typeof parseHostPort("bad host:7400"), "string");
  });
});
