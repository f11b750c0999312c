// The StatefulSet's pod logic end to end, without Kubernetes: 3 real
// PostgreSQL servers and 3 real `pgraft sidecar` processes started in parallel
// with the environment the chart's StatefulSet gives each pod (POD_NAME,
// POD_NAMESPACE, the peer template, the initial replica count, the DSN without
// a password and PGPASSWORD, the proxy ports a later sidecar serves), the
// headless-DNS template pointed at loopback (`127.0.0.1:{i+BASE}`: one host,
// so each "pod" gets its own port, and the listen addresses are loopback).
// They form the cluster and become ready; a 4th pod joins (scale-up); a pod
// restarts on its data dir; a founder whose volume was lost is refused until
// it is removed, then joins; a PostgreSQL restart beside a sidecar turns /ready
// off and on again while /live stays up; and every metric name the chart's
// Grafana dashboard and alert rules use is checked against a live /metrics.
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { REPO_ROOT, runCli } from "../integration/harness.js";
import { freePorts } from "../support/ports.js";
import { makeTestDir, removeTestDir, startTestPostgres, type TestPostgres } from "../support/postgres.js";
import { waitFor } from "../support/wait.js";
import { chartMetricNames } from "./chart-metrics.js";
import { consecutivePorts, http, PodProcess } from "./pods.js";

const PODS = 4;
const CLUSTER_ID = "k8s-pods";

describe("pods of a StatefulSet: parallel start, ready, scale-up, restart, metrics", { timeout: 240_000 }, () => {
  let dir = "";
  const servers: TestPostgres[] = [];
  const pods: PodProcess[] = [];
  let base = 0;
  const httpPorts: number[] = [];
  const tails = (): string => pods.map((p) => `----- pod pgraft-${p.id - 1} (${p.state})\n${p.tail(25)}`).join("\n");

  /** The environment the chart's StatefulSet gives pod `i` (listen addresses on loopback for one host). */
  const podEnv = (i: number, ports: number[]): Record<string, string> => ({
    POD_NAME: `pgraft-${i}`,
    POD_NAMESPACE: "default",
    PGRAFT_CLUSTER_ID: CLUSTER_ID,
    PGRAFT_PEER_TEMPLATE: `127.0.0.1:{i+${base}}`,
    PGRAFT_INITIAL_REPLICAS: "3",
    PGRAFT_SERVICE: "pgraft-headless",
    PGRAFT_DATA_DIR: join(dir, `pod${i}`, "pgraft"),
    PGRAFT_PLAINTEXT: "true",
    PGRAFT_LISTEN: `127.0.0.1:${base + i}`,
    PGRAFT_HTTP_LISTEN: `127.0.0.1:${httpPorts[i]}`,
    PGRAFT_SQL_LISTEN: `127.0.0.1:${ports[0]}`,
    PGRAFT_POSTGRES_DSN: `host=127.0.0.1 port=${servers[i]!.server.port} user=${servers[i]!.server.superuser} dbname=postgres`,
    PGPASSWORD: servers[i]!.server.password,
    // The client proxy's ports (the chart's 0.0.0.0:6432 / 6433, on a port of each pod's own on one host).
    PGRAFT_PROXY_LISTEN: `127.0.0.1:${ports[1]}`,
    PGRAFT_PROXY_READ_ONLY_LISTEN: `127.0.0.1:${ports[2]}`,
  });

  const makePod = async (i: number): Promise<PodProcess> => {
    const ports = await freePorts(3);
    const env = podEnv(i, ports);
    const p = new PodProcess(i + 1, base + i, httpPorts[i]!, env.PGRAFT_DATA_DIR!, join(dir, `pod${i}.log`), [], { clusterId: CLUSTER_ID, heartbeat: "", election: "", env });
    pods[i] = p;
    return p;
  };

  const waitReady = (i: number, timeoutMs = 60_000): Promise<unknown> =>
    waitFor(`pod pgraft-${i} ready`, async () => (await http(httpPorts[i]!, "/ready")).code === 200, { timeoutMs, intervalMs: 200, context: tails });

  before(async () => {
    dir = makeTestDir("pgk8s-");
    const started = await Promise.allSettled(Array.from({ length: PODS }, () => startTestPostgres()));
    for (const r of started) if (r.status === "fulfilled") servers.push(r.value);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    base = await consecutivePorts(PODS);
    httpPorts.push(...(await freePorts(PODS)));
  });

  after(async () => {
    await Promise.all(
      pods.map(async (p) => {
        if (!p || p.state === "stopped") return;
        p.signal("SIGKILL");
        await p.waitExit(10_000).catch(() => undefined);
      }),
    );
    await Promise.all(servers.map((s) => s.destroy().catch(() => undefined)));
    if (dir) removeTestDir(dir);
  });

  test("3 pods started at once form the cluster, install the shim and become ready", async () => {
    const founders = await Promise.all([0, 1, 2].map((i) => makePod(i)));
    for (const p of founders) p.spawn();
    await Promise.all([0, 1, 2].map((i) => waitReady(i)));
    const leaders = new Set<unknown>();
    for (const i of [0, 1, 2]) {
      const r = await http(httpPorts[i]!, "/ready");
      assert.equal(r.body.node_id, i + 1, "node id = ordinal + 1");
      leaders.add(r.body.leader_id);
      assert.equal((await http(httpPorts[i]!, "/live")).code, 200);
    }
    assert.equal(leaders.size, 1, "one leader all pods agree on");
    // The shim is installed in every pod's PostgreSQL, and the members carry the pod names.
    const c = new pg.Client(servers[0]!.server.clientConfig());
    await c.connect();
    try {
      const rows = await waitFor(
        "the shim answers on pod 0",
        async () => (await c.query<{ node_id: number; name: string }>("SELECT node_id, node_name AS name FROM pgraft_get_nodes() ORDER BY node_id")).rows,
        { timeoutMs: 30_000, context: tails },
      );
      assert.deepEqual(rows.map((r) => [Number(r.node_id), r.name]), [[1, "pgraft-0"], [2, "pgraft-1"], [3, "pgraft-2"]]);
    } finally {
      await c.end();
    }
    assert.match(pods[1]!.tail(400), /pod pgraft-1: node 2 at 127\.0\.0\.1:\d+, a founder of 1=/);
  });

  test("scale-up: pod 3 joins through the founders, becomes ready and a voter", async () => {
    const p = await makePod(3);
    p.spawn();
    await waitReady(3);
    assert.match(p.tail(400), /pod pgraft-3: node 4 at .* joins through/);
    assert.match(p.tail(400), /joined the cluster as a learner/);
    await waitFor(
      "4 voters",
      async () => /^pgraft_raft_voters 4$/m.test((await http(httpPorts[0]!, "/metrics")).text),
      { timeoutMs: 30_000, intervalMs: 250, context: tails },
    );
  });

  test("a pod restarts on its data dir (no bootstrap, no join) and is ready again", async () => {
    const old = pods[2]!;
    old.signal("SIGKILL");
    await old.waitExit(10_000);
    const p = await makePod(2);
    p.spawn();
    await waitReady(2);
    assert.match(p.tail(400), /its data dir holds Raft state: restarting on it/);
  });

  test("a founder whose volume was lost is refused until it is removed, then joins as a new member", async () => {
    const old = pods[2]!;
    old.signal("SIGKILL");
    await old.waitExit(10_000);
    rmSync(join(dir, "pod2", "pgraft"), { recursive: true, force: true });
    const refused = await makePod(2);
    refused.spawn();
    const exit = await refused.waitExit(30_000).catch((e: unknown) => assert.fail(`${String(e)}\n${tails()}`));
    assert.equal(exit.code, 1, refused.tail(20));
    assert.match(refused.tail(20), /node 3 is a member of the running cluster and ran before .* remove the node first \(pgraft remove-node 3/);
    const rm = await runCli(["remove-node", "3"], { env: { PGRAFT_CLUSTER_ID: CLUSTER_ID, PGRAFT_PLAINTEXT: "1", PGRAFT_ENDPOINT: `127.0.0.1:${base}` } });
    assert.equal(rm.code, 0, rm.stdout + rm.stderr);
    const p = await makePod(2);
    p.spawn();
    await waitReady(2);
    assert.match(p.tail(60), /joining the running cluster: the running cluster does not list node 3/);
    await waitFor("4 voters again", async () => /^pgraft_raft_voters 4$/m.test((await http(httpPorts[0]!, "/metrics")).text), { timeoutMs: 30_000, intervalMs: 250, context: tails });
  });

  test("PostgreSQL restarting beside a sidecar: /ready 503 waiting for it, /live 200, then ready again", async () => {
    const s = servers[1]!.server;
    await s.stop({ mode: "fast" });
    try {
      const r = await waitFor(
        "pod 1 unready",
        async () => {
          const x = await http(httpPorts[1]!, "/ready");
          return x.code === 503 ? x : undefined;
        },
        { timeoutMs: 20_000, context: tails },
      );
      assert.deepEqual(r.body.waiting_for, ["PostgreSQL"]);
      assert.equal((await http(httpPorts[1]!, "/live")).code, 200);
    } finally {
      await s.start();
    }
    await waitReady(1);
  });

  test("every metric the chart's dashboard and alert rules use is exported by /metrics", async (t) => {
    const text = (await http(httpPorts[0]!, "/metrics")).text;
    const exported = new Set<string>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const [name, type] = [m[1]!, m[2]!];
      exported.add(name);
      if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(name + s);
      if (type === "summary") for (const s of ["_sum", "_count"]) exported.add(name + s);
    }
    const used = chartMetricNames(join(REPO_ROOT, "charts/pgraft"));
    assert.ok(used.size >= 10, `the chart uses only ${used.size} metrics: ${[...used].join(", ")}`);
    const missing = [...used].filter((n) => !exported.has(n));
    assert.deepEqual(missing, [], `metrics the chart uses but /metrics does not export: ${missing.join(", ")}`);
    // The sidecars' memory and CPU so far (the chart's requests and limits are set from such figures).
    for (let i = 0; i < PODS; i++) {
      const m = (await http(httpPorts[i]!, "/metrics")).text;
      const rss = Number(/^process_resident_memory_bytes (\S+)$/m.exec(m)?.[1]);
      const cpu = Number(/^process_cpu_seconds_total (\S+)$/m.exec(m)?.[1]);
      t.diagnostic(`pod pgraft-${i}: resident ${(rss / 2 ** 20).toFixed(0)} MiB, CPU ${cpu.toFixed(1)} s since start`);
    }
    // And the chart reads what the dashboard file and the rules say (a sanity check of the extraction).
    assert.ok(readFileSync(join(REPO_ROOT, "charts/pgraft/dashboards/pgraft.json"), "utf8").includes("pgraft_raft_term"));
  });
});
