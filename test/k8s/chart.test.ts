// charts/pgraft without a cluster: `helm lint` and `helm template` with the
// default values and every file in charts/pgraft/ci (3 and 5 replicas, TLS from
// a Secret and from cert-manager, monitoring on, a custom image); every
// rendered object validated against the Kubernetes API schemas offline
// (kubernetes-models, and the prometheus-operator and cert-manager models for
// their CRDs); the sidecar's environment as the StatefulSet gives it resolved
// by the sidecar's own config code (a node group by default, off with
// nodeGroup=""; PostgreSQL on ports.postgres everywhere); the README's values
// table against values.yaml; and values.schema.json and the templates' own
// checks (TLS, tls.maxReplicas, reserved postgres.parameters, colliding ports)
// refusing bad values with a message naming the value.
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return --
   rendered manifests are untyped YAML data: the assertions and the schema validation check their shape. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments, parseDocument } from "yaml";
import { resolveSidecarConfig, SIDECAR_OPTIONS } from "../../src/config/sidecar-config.js";
import { REPO_ROOT } from "../integration/harness.js";
import { helm } from "./helm.js";

const CHART = join(REPO_ROOT, "charts/pgraft");
const CI_VALUES = readdirSync(join(CHART, "ci")).filter((f) => f.endsWith(".yaml")).sort();
const NAMESPACE = "db";

type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: any }; spec?: any; data?: Record<string, string> } & Record<string, any>;

/** The model class validating each apiVersion/kind the chart renders (a kind missing here fails the test). */
const MODELS: Record<string, () => Promise<{ new (o: any): { validate(): void } }>> = {
  "apps/v1/StatefulSet": async () => (await import("kubernetes-models/apps/v1/StatefulSet")).StatefulSet,
  "v1/Service": async () => (await import("kubernetes-models/v1/Service")).Service,
  "v1/Secret": async () => (await import("kubernetes-models/v1/Secret")).Secret,
  "v1/ConfigMap": async () => (await import("kubernetes-models/v1/ConfigMap")).ConfigMap,
  "v1/ServiceAccount": async () => (await import("kubernetes-models/v1/ServiceAccount")).ServiceAccount,
  "policy/v1/PodDisruptionBudget": async () => (await import("kubernetes-models/policy/v1/PodDisruptionBudget")).PodDisruptionBudget,
  "networking.k8s.io/v1/NetworkPolicy": async () => (await import("kubernetes-models/networking.k8s.io/v1/NetworkPolicy")).NetworkPolicy,
  "monitoring.coreos.com/v1/PodMonitor": async () => (await import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor")).PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": async () => (await import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule")).PrometheusRule,
  "cert-manager.io/v1/Certificate": async () => (await import("@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate")).Certificate,
};

async function render(valueFiles: string[], set: string[] = []): Promise<Obj[]> {
  const args = ["template", "pg", CHART, "--namespace", NAMESPACE, ...valueFiles.flatMap((f) => ["-f", join(CHART, "ci", f)]), ...set.flatMap((s) => ["--set", s])];
  const r = await helm(args);
  assert.equal(r.code, 0, `helm ${args.join(" ")} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

async function validateAll(objs: Obj[]): Promise<void> {
  for (const o of objs) {
    const key = `${o.apiVersion}/${o.kind}`;
    const load = MODELS[key];
    assert.ok(load, `no schema model for ${key} (${o.metadata.name}): add it to MODELS`);
    const Model = await load();
    try {
      new Model(o).validate();
    } catch (e) {
      assert.fail(`${key} ${o.metadata.name} does not validate: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

const one = (objs: Obj[], kind: string, name?: string): Obj => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0]!;
};
const sidecarOf = (objs: Obj[]): any => one(objs, "StatefulSet").spec.template.spec.containers.find((c: any) => c.name === "pgraft");

/**
 * The sidecar container's environment in pod `ordinal` as the kubelet builds it: downward-API fields,
 * Secret references (a stand-in value) and $(VAR) references expanded.
 */
function podEnv(container: any, podName: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env as any[]) {
    let v: string;
    if (e.valueFrom?.fieldRef) v = e.valueFrom.fieldRef.fieldPath === "metadata.name" ? podName : NAMESPACE;
    else if (e.valueFrom?.secretKeyRef) v = "secret-value";
    else v = String(e.value).replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (m, n: string) => env[n] ?? m);
    env[e.name] = v;
  }
  return env;
}

describe("charts/pgraft: lint, render, validate", { timeout: 120_000 }, () => {
  test("helm lint --strict passes with the default values and every ci/ values file", async () => {
    const runs = await Promise.all([[], ...CI_VALUES.map((f) => [f])].map((files) => helm(["lint", "--strict", CHART, ...files.flatMap((f) => ["-f", join(CHART, "ci", f)])])));
    for (const r of runs) assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(CI_VALUES.length >= 6, CI_VALUES.join(", "));
  });

  test("every object rendered with each values file validates against the Kubernetes schemas", async () => {
    for (const files of [[], ...CI_VALUES.map((f) => [f])]) {
      const objs = await render(files);
      await validateAll(objs);
      // The Services point at ports the containers name.
      const names = new Set<string>(one(objs, "StatefulSet").spec.template.spec.containers.flatMap((c: any) => c.ports.map((p: any) => p.name)));
      for (const s of objs.filter((o) => o.kind === "Service")) for (const p of s.spec.ports) assert.ok(names.has(p.targetPort), `${s.metadata.name} targets ${p.targetPort}`);
    }
  });

  test("a broken object is refused by the validation (the check can fail)", async () => {
    const objs = await render([]);
    const ss = structuredClone(one(objs, "StatefulSet"));
    ss.spec.template.spec.containers[1].ports[0].containerPort = "seven";
    await assert.rejects(validateAll([ss]), /containerPort must be integer/);
    const svc = structuredClone(one(objs, "Service", "pg-pgraft-rw"));
    svc.spec.ports[0].protocol = 7;
    await assert.rejects(validateAll([svc]), /protocol/);
  });

  test("default values: the StatefulSet, its Services, PDB, a ServiceAccount without API rights", async () => {
    const objs = await render([]);
    const ss = one(objs, "StatefulSet");
    assert.equal(ss.metadata.name, "pg-pgraft");
    assert.equal(ss.spec.replicas, 3);
    assert.equal(ss.spec.podManagementPolicy, "Parallel");
    assert.equal(ss.spec.serviceName, "pg-pgraft-headless");
    const headless = one(objs, "Service", "pg-pgraft-headless");
    assert.equal(headless.spec.clusterIP, "None");
    assert.equal(headless.spec.publishNotReadyAddresses, true);
    assert.deepEqual(one(objs, "Service", "pg-pgraft-rw").spec.ports.map((p: any) => p.targetPort), ["proxy-rw"]);
    assert.deepEqual(one(objs, "Service", "pg-pgraft-ro").spec.ports.map((p: any) => p.targetPort), ["proxy-ro"]);
    assert.equal(one(objs, "PodDisruptionBudget").spec.maxUnavailable, 1);
    assert.equal(one(objs, "ServiceAccount").automountServiceAccountToken, false);
    assert.equal(objs.filter((o) => /Role/.test(o.kind)).length, 0, "no Role or RoleBinding");
    const c = sidecarOf(objs);
    assert.equal(c.livenessProbe.httpGet.path, "/live");
    assert.equal(c.readinessProbe.httpGet.path, "/ready");
    assert.equal(c.securityContext.runAsNonRoot, true);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(c.args, ["sidecar"]);
    const e = podEnv(c, "pg-pgraft-0");
    assert.equal(e.PGRAFT_PROXY_LISTEN, "0.0.0.0:6432");
    assert.equal(e.PGRAFT_PROXY_READ_ONLY_LISTEN, "0.0.0.0:6433");
    assert.equal(e.PGRAFT_PLAINTEXT, "true");
    assert.ok(!("PGRAFT_TLS_CERT" in e));
    // A node group by default: the proxies behind -rw/-ro route to its write leader and read nodes.
    assert.equal(e.PGRAFT_NODE_GROUP, "app");
    for (const k of ["NetworkPolicy", "PodMonitor", "PrometheusRule", "Certificate", "ConfigMap"]) assert.equal(objs.filter((o) => o.kind === k).length, 0, k);
  });

  test("the sidecar's environment is a configuration the sidecar accepts: pod 1 is node 2 at its headless DNS name", async () => {
    for (const files of [[], ["tls-secret-values.yaml"], ["five-replicas-values.yaml"]]) {
      const c = sidecarOf(await render(files));
      const known = new Set([...SIDECAR_OPTIONS.map((o) => o.env), "PGRAFT_PROXY_LISTEN", "PGRAFT_PROXY_READ_ONLY_LISTEN"]);
      for (const e of c.env as any[]) if (e.name.startsWith("PGRAFT_")) assert.ok(known.has(e.name), `the chart sets ${e.name}, which no sidecar option reads`);
      const env = podEnv(c, "pg-pgraft-1");
      const cfg = resolveSidecarConfig({}, env);
      assert.equal(cfg.nodeId, 2);
      assert.equal(cfg.nodeName, "pg-pgraft-1");
      assert.deepEqual(cfg.advertise, { host: "pg-pgraft-1.pg-pgraft-headless.db.svc.cluster.local", port: 7400 });
      assert.deepEqual(cfg.listen, { host: "0.0.0.0", port: 7400 });
      assert.deepEqual(cfg.httpListen, { host: "0.0.0.0", port: 8008 });
      assert.equal(cfg.postgresAdvertise, "pg-pgraft-1.pg-pgraft-headless.db.svc.cluster.local:5432");
      const founders = files.includes("five-replicas-values.yaml") ? 5 : 3;
      assert.equal(cfg.nodeGroup, "app");
      assert.equal(cfg.initialCluster?.size, founders);
      // A pod past the founders joins through them.
      const later = resolveSidecarConfig({}, podEnv(c, `pg-pgraft-${founders}`));
      assert.equal(later.initialCluster, undefined);
      assert.equal(later.join?.length, founders);
      if (files.includes("tls-secret-values.yaml")) {
        assert.equal(cfg.tls.mode, "mtls");
        assert.ok(cfg.tls.mode === "mtls" && cfg.tls.cert === "/etc/pgraft/tls/pg-pgraft-1.crt");
      } else assert.equal(cfg.tls.mode, "plaintext");
    }
  });

  test("5 replicas, TLS from cert-manager, monitoring, a custom image", async () => {
    const five = await render(["five-replicas-values.yaml"]);
    assert.equal(one(five, "StatefulSet").spec.replicas, 5);
    assert.equal(podEnv(sidecarOf(five), "x-0").PGRAFT_INITIAL_REPLICAS, "5");

    const cm = await render(["tls-cert-manager-values.yaml"]);
    const certs = cm.filter((o) => o.kind === "Certificate");
    assert.equal(certs.length, 5);
    assert.deepEqual(certs[2]!.spec.uris, ["pgraft://pg-pgraft/node/3"]);
    assert.equal(certs[2]!.spec.commonName, "node-3");
    assert.ok(certs[2]!.spec.dnsNames.includes("pg-pgraft-2.pg-pgraft-headless.db.svc.cluster.local"));
    assert.equal(certs[2]!.spec.issuerRef.kind, "ClusterIssuer");
    const vol = one(cm, "StatefulSet").spec.template.spec.volumes.find((v: any) => v.name === "tls");
    assert.equal(vol.projected.sources.length, 5);

    const mon = await render(["monitoring-values.yaml"]);
    const rule = one(mon, "PrometheusRule");
    const alerts = rule.spec.groups.flatMap((g: any) => g.rules.map((r: any) => r.alert));
    for (const a of ["PgraftNoLeader", "PgraftQuorumLost", "PgraftMemberUnreachable", "PgraftApplyLagSeconds", "PgraftSlotRetainingWal", "PgraftConflictsRate"]) assert.ok(alerts.includes(a), a);
    for (const r of rule.spec.groups.flatMap((g: any) => g.rules)) assert.match(r.expr, /namespace="db", pod=~"pg-pgraft-\[0-9\]\+"/, r.alert);
    const dash = JSON.parse(one(mon, "ConfigMap").data!["pgraft.json"]!);
    assert.equal(dash.uid, "pgraft-overview");
    assert.equal(one(mon, "ConfigMap").metadata.labels.grafana_dashboard, "1");
    assert.equal(one(mon, "PodMonitor").spec.podMetricsEndpoints[0].port, "http");
    assert.equal(one(mon, "NetworkPolicy").spec.ingress.length, 3);

    const custom = await render(["custom-image-values.yaml"]);
    const spec = one(custom, "StatefulSet").spec.template.spec;
    assert.equal(sidecarOf(custom).image, "registry.example.com/db/pgraft:0.1.0-rc1");
    assert.equal(spec.containers.find((c: any) => c.name === "postgres").image, "registry.example.com/db/postgres:15.8-bookworm");
    assert.equal(podEnv(sidecarOf(custom), "x-0").PGRAFT_CLUSTER_ID, "prod-eu-1");
    assert.equal(custom.filter((o) => o.kind === "Secret").length, 0, "an existing Secret: none made");
    assert.equal(sidecarOf(custom).env.find((e: any) => e.name === "PGPASSWORD").valueFrom.secretKeyRef.name, "my-postgres-secret");
  });
});

describe("the chart's README lists every value of values.yaml", () => {
  test("each value path (free-form maps as one) is in the Values table", () => {
    const values = parseDocument(readFileSync(join(CHART, "values.yaml"), "utf8")).toJS() as Record<string, unknown>;
    // Maps a user fills in freely are one row each (e.g. `postgres.parameters`), not their example keys.
    const whole = new Set(["postgres.parameters", "postgres.resources", "sidecar.resources", "tls.certManager.issuerRef", "metrics.prometheusRule.thresholds", "metrics.dashboard.labels"]);
    const paths: string[] = [];
    const walk = (o: Record<string, unknown>, prefix: string): void => {
      for (const [k, v] of Object.entries(o)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !whole.has(p)) walk(v as Record<string, unknown>, p);
        else paths.push(p);
      }
    };
    walk(values, "");
    const readme = readFileSync(join(CHART, "README.md"), "utf8");
    const table = readme.slice(readme.indexOf("## Values"), readme.indexOf("\n## ", readme.indexOf("## Values") + 1));
    // First cells: `a.b.c`, or `a.b.c`, `.d` (siblings after the first; `.d.*`: a map), or `a.b.*` (every key under a.b).
    const cells = table.split("\n").filter((l) => l.startsWith("| `")).map((l) => l.split("|")[1]!);
    const listed = (p: string): boolean => {
      const parts = p.split(".");
      const last = parts.at(-1)!;
      return cells.some((c) => {
        const names = [...c.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
        if (names.includes(p)) return true;
        const first = names[0] ?? "";
        const parent = parts.slice(0, -1).join(".");
        if (first.startsWith(`${parent}.`) && first.split(".").length === parts.length && (names.includes(`.${last}`) || names.includes(`.${last}.*`))) return true;
        for (let i = 1; i < parts.length; i++) if (names.includes(`${parts.slice(0, i).join(".")}.*`)) return true;
        return false;
      });
    };
    const missing = paths.filter((p) => !listed(p));
    assert.deepEqual(missing, [], `values.yaml has values the README's table does not list: ${missing.join(", ")}`);
  });
});

describe("values the chart's own checks settle", { timeout: 60_000 }, () => {
  test("nodeGroup=\"\" turns the node group off (no PGRAFT_NODE_GROUP; the sidecar forms none)", async () => {
    const c = sidecarOf(await render([], ["nodeGroup="]));
    const env = podEnv(c, "pg-pgraft-0");
    assert.ok(!("PGRAFT_NODE_GROUP" in env));
    assert.equal(resolveSidecarConfig({}, env).nodeGroup, undefined);
    const named = podEnv(sidecarOf(await render([], ["nodeGroup=orders"])), "pg-pgraft-0");
    assert.equal(resolveSidecarConfig({}, named).nodeGroup, "orders");
  });

  test("ports.postgres is the port PostgreSQL listens on, and the one the probes, the DSN and the Services use", async () => {
    const objs = await render([], ["ports.postgres=5433"]);
    const pg = one(objs, "StatefulSet").spec.template.spec.containers.find((c: any) => c.name === "postgres");
    const args: string[] = pg.args;
    const ports = args.filter((a, i) => args[i - 1] === "-c" && a.startsWith("port="));
    assert.deepEqual(ports, ["port=5433"]);
    assert.equal(pg.env.find((e: any) => e.name === "PGPORT").value, "5433");
    assert.equal(pg.ports[0].containerPort, 5433);
    for (const probe of [pg.readinessProbe, pg.livenessProbe]) assert.equal(probe.exec.command[probe.exec.command.indexOf("-p") + 1], "5433");
    const cfg = resolveSidecarConfig({}, podEnv(sidecarOf(objs), "pg-pgraft-1"));
    assert.match(cfg.postgresDsn!, /port=5433/);
    assert.equal(cfg.postgresAdvertise, "pg-pgraft-1.pg-pgraft-headless.db.svc.cluster.local:5433");
    assert.equal(one(objs, "Service", "pg-pgraft-headless").spec.ports.find((p: any) => p.name === "postgres").port, 5433);
    // The default: port=5432 is passed too.
    const def = one(await render([]), "StatefulSet").spec.template.spec.containers.find((c: any) => c.name === "postgres");
    assert.ok(def.args.includes("port=5432"), def.args.join(" "));
  });

  test("cert-manager with replicas up to tls.maxReplicas renders; postgres.parameters other than the chart's own render", async () => {
    const cm = await render(["tls-cert-manager-values.yaml"], ["replicas=5"]);
    assert.equal(cm.filter((o) => o.kind === "Certificate").length, 5);
    const pg = one(await render([], ["postgres.parameters.work_mem=8MB"]), "StatefulSet").spec.template.spec.containers.find((c: any) => c.name === "postgres");
    assert.ok(pg.args.includes("work_mem=8MB"));
    assert.ok(pg.args.includes("wal_writer_flush_after=0"), "the default parameters keep the WAL writer from being woken by every applied commit");
  });
});

describe("values.schema.json refuses bad values with a clear message", { timeout: 60_000 }, () => {
  const cases: [string, string[], RegExp][] = [
    ["zero replicas", ["replicas=0"], /replicas: Must be greater than or equal to 1/],
    ["replicas not a number", ["replicas=three"], /replicas: Invalid type. Expected: integer, given: string/],
    ["too many founders", ["initialReplicas=16,replicas=20"], /initialReplicas: Must be less than or equal to 15/],
    ["more founders than pods", ["initialReplicas=5"], /initialReplicas \(5\) must not exceed replicas \(3\)/],
    ["an unknown key", ["replica=3"], /Additional property replica is not allowed/],
    ["a bad log level", ["sidecar.logLevel=loud"], /sidecar\.logLevel must be one of the following: "trace", "debug", "info", "warn", "error"/],
    ["a port out of range", ["ports.raft=70000"], /ports\.raft: Must be less than or equal to 65535/],
    ["a bad cluster id", ["clusterId=no spaces"], /clusterId: Does not match pattern/],
    ["a bad node group name", ["nodeGroup=My-Group"], /nodeGroup: Does not match pattern/],
    ["a bad duration", ["sidecar.heartbeatInterval=fast"], /sidecar\.heartbeatInterval: Does not match pattern/],
    ["TLS without a Secret or cert-manager", ["tls.enabled=true"], /tls\.enabled=true needs the peers' certificates: either set tls\.existingSecret .* or let cert-manager make them: tls\.certManager\.enabled=true and tls\.certManager\.issuerRef\.name=/],
    ["cert-manager without tls.enabled", ["tls.certManager.enabled=true,tls.certManager.issuerRef.name=ca"], /tls\.certManager\.enabled=true but tls\.enabled=false: the sidecars would talk plaintext/],
    ["a TLS Secret without tls.enabled", ["tls.existingSecret=peer-tls"], /tls\.existingSecret \(peer-tls\) is set but tls\.enabled=false/],
    ["cert-manager with more replicas than tls.maxReplicas", ["tls.enabled=true,tls.certManager.enabled=true,tls.certManager.issuerRef.name=ca,replicas=8"], /replicas \(8\) exceeds tls\.maxReplicas \(7\): .*raise tls\.maxReplicas to at least 8/],
    ["postgres.parameters overriding wal_level", ["postgres.parameters.wal_level=replica"], /postgres\.parameters may not set wal_level: the chart always sets wal_level=logical/],
    ["postgres.parameters overriding the port and track_commit_timestamp", ["postgres.parameters.port=5999,postgres.parameters.track_commit_timestamp=off"], /postgres\.parameters may not set port, track_commit_timestamp: .*change the port with ports\.postgres/],
    ["postgres.parameters overriding password_encryption", ["postgres.parameters.password_encryption=md5"], /postgres\.parameters may not set password_encryption/],
    ["the proxy on the sidecar's SQL endpoint port", ["ports.proxy=7432"], /ports\.proxy \(7432\) collides with the sidecar's SQL endpoint \(127\.0\.0\.1:7432/],
    ["PostgreSQL on the sidecar's SQL endpoint port", ["ports.postgres=7432"], /ports\.postgres \(7432\) collides/],
    ["both proxies on one port", ["ports.proxyReadOnly=6432"], /ports\.proxy and ports\.proxyReadOnly are both 6432: every port of the pod must differ/],
    ["the read-only proxy on the Raft port", ["ports.proxyReadOnly=7400"], /ports\.raft and ports\.proxyReadOnly are both 7400/],
    ["the HTTP port on PostgreSQL's", ["ports.http=5432"], /ports\.http and ports\.postgres are both 5432/],
    ["cert-manager without an issuer", ["tls.enabled=true,tls.certManager.enabled=true"], /tls\.certManager\.issuerRef\.name: String length must be greater than or equal to 1/],
    ["a bad memory quantity", ["sidecar.resources.limits.memory=lots"], /sidecar\.resources\.limits\.memory/],
  ];
  for (const [what, set, re] of cases) {
    test(what, async () => {
      const r = await helm(["template", "pg", CHART, ...set.flatMap((s) => ["--set", s])]);
      assert.notEqual(r.code, 0, `accepted: ${set.join(" ")}`);
      assert.match(r.stderr, re);
    });
  }
});
