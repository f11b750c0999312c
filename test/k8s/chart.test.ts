// charts/pgraft without a cluster: `helm lint` and `helm template` with the
// default values and every file in charts/pgraft/ci (3 and 5 replicas, TLS from
// a Secret and from cert-manager, monitoring on, a custom image); every
// rendered object validated against the Kubernetes API schemas offline
// (kubernetes-models, and the prometheus-operator and cert-manager models for
// their CRDs); the sidecar's environment as the StatefulSet gives it resolved
// by the sidecar's own config code; and values.schema.json refusing bad values
// with a message naming the value.
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return --
   rendered manifests are untyped YAML data: the assertions and the schema validation check their shape. */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
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
      assert.equal(cfg.nodeGroup, files.includes("five-replicas-values.yaml") ? "app" : undefined);
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
    ["TLS without a Secret or cert-manager", ["tls.enabled=true"], /tls\.existingSecret: String length must be greater than or equal to 1/],
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
