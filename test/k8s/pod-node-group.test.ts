// Pod mode with --node-group (PGRAFT_NODE_GROUP), end to end without
// Kubernetes: 3 PostgreSQL servers sharing one superuser password (the chart's
// Secret) and 3 sidecars started in parallel with a StatefulSet's environment
// become one node group by themselves (pod 0 creates it, pods 1 and 2 join);
// rows replicate; a 4th pod added by a scale-up joins Raft and the group, and
// gets the schema and the rows.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { freePorts } from "../support/ports.js";
import { makeTestDir, removeTestDir, startTestPostgres, type TestPostgres } from "../support/postgres.js";
import { waitFor } from "../support/wait.js";
import { consecutivePorts, http, PodProcess } from "./pods.js";

const PODS = 4;
const CLUSTER_ID = "k8s-group";
const PASSWORD = `pw-${Math.random().toString(36).slice(2)}`;

describe("pods with a node group: formed by themselves, joined by a scaled-up pod", { timeout: 300_000 }, () => {
  let dir = "";
  const servers: TestPostgres[] = [];
  const pods: PodProcess[] = [];
  let base = 0;
  const httpPorts: number[] = [];
  const tails = (): string => pods.map((p) => `----- pod pgraft-${p.id - 1} (${p.state})\n${p.tail(30)}`).join("\n");

  const spawnPod = async (i: number): Promise<void> => {
    const [sqlPort, proxyPort, proxyReadOnlyPort] = await freePorts(3);
    const s = servers[i]!.server;
    const env: Record<string, string> = {
      POD_NAME: `pgraft-${i}`,
      POD_NAMESPACE: "default",
      PGRAFT_CLUSTER_ID: CLUSTER_ID,
      PGRAFT_PEER_TEMPLATE: `127.0.0.1:{i+${base}}`,
      PGRAFT_INITIAL_REPLICAS: "3",
      PGRAFT_NODE_GROUP: "app",
      PGRAFT_DATA_DIR: join(dir, `pod${i}`, "pgraft"),
      PGRAFT_PLAINTEXT: "true",
      PGRAFT_LISTEN: `127.0.0.1:${base + i}`,
      PGRAFT_HTTP_LISTEN: `127.0.0.1:${httpPorts[i]}`,
      PGRAFT_SQL_LISTEN: `127.0.0.1:${sqlPort}`,
      // The chart's 0.0.0.0:6432 / 6433, on a port of each pod's own on one host.
      PGRAFT_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
      PGRAFT_PROXY_READ_ONLY_LISTEN: `127.0.0.1:${proxyReadOnlyPort}`,
      PGRAFT_POSTGRES_DSN: `host=127.0.0.1 port=${s.port} user=${s.superuser} dbname=postgres`,
      PGPASSWORD: PASSWORD,
    };
    const p = new PodProcess(i + 1, base + i, httpPorts[i]!, env.PGRAFT_DATA_DIR!, join(dir, `pod${i}.log`), [], { clusterId: CLUSTER_ID, heartbeat: "", election: "", env });
    pods[i] = p;
    proxyPorts[i] = proxyPort!;
    p.spawn();
  };
  /** Each pod's read-write proxy port (the -rw Service's target). */
  const proxyPorts: number[] = [];

  /** The data nodes pod 0's sidecar reports ACTIVE in group app (pgraft_data_node_state). */
  const activeNodes = async (): Promise<string[]> => {
    const text = (await http(httpPorts[0]!, "/metrics")).text;
    return [...text.matchAll(/^pgraft_data_node_state\{node="([^"]+)",group="app",state="ACTIVE"\} 1$/gm)].map((m) => m[1]!).sort();
  };

  const query = async (i: number, sql: string): Promise<pg.QueryResult<{ v?: string }>> => {
    const c = new pg.Client(servers[i]!.server.clientConfig());
    await c.connect();
    try {
      return await c.query<{ v?: string }>(sql);
    } finally {
      await c.end();
    }
  };

  before(async () => {
    dir = makeTestDir("pgk8g-");
    const started = await Promise.allSettled(Array.from({ length: PODS }, () => startTestPostgres({ password: PASSWORD })));
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

  test("3 pods started at once form the group app: every node ACTIVE, rows replicate", async () => {
    await Promise.all([0, 1, 2].map((i) => spawnPod(i)));
    await waitFor("pgraft-0..2 ACTIVE in group app", async () => (await activeNodes()).join(",") === "pgraft-0,pgraft-1,pgraft-2", {
      timeoutMs: 150_000,
      intervalMs: 500,
      context: tails,
    });
    assert.match(pods[0]!.tail(400), /node group app: creating the group with node pgraft-0 as its first member/);
    assert.match(pods[2]!.tail(400), /node group app: node pgraft-2 joining through pgraft-/);
    // DDL is not replicated: create the table on every node, then write on one.
    for (const i of [0, 1, 2]) await query(i, "CREATE TABLE items (id int PRIMARY KEY, v text)");
    await query(0, "INSERT INTO items VALUES (1, 'from pod 0')");
    for (const i of [1, 2]) {
      await waitFor(`the row on pod ${i}`, async () => (await query(i, "SELECT v FROM items WHERE id = 1")).rows[0]?.v === "from pod 0", { timeoutMs: 30_000, intervalMs: 250, context: tails });
    }
    // As through the -rw Service: any pod's read-write proxy reaches the group's write leader (pgraft-0, the group's first node).
    for (const i of [1, 2]) {
      const viaProxy = async (): Promise<boolean | undefined> => {
        const c = new pg.Client({ host: "127.0.0.1", port: proxyPorts[i]!, user: servers[i]!.server.superuser, password: PASSWORD, database: "postgres", connectionTimeoutMillis: 10_000 });
        c.on("error", () => undefined);
        try {
          await c.connect();
          return (await c.query<{ w: boolean }>("SELECT pgraft_is_write_leader() AS w")).rows[0]!.w;
        } catch {
          return undefined;
        } finally {
          await c.end().catch(() => undefined);
        }
      };
      await waitFor(`pod ${i}'s read-write proxy to reach the write leader`, async () => (await viaProxy()) === true, { timeoutMs: 30_000, intervalMs: 500, context: tails });
    }
  });

  test("scale-up: pod 3 joins Raft and the group, with the schema and the rows", async () => {
    await spawnPod(3);
    await waitFor("pgraft-3 ACTIVE in group app", async () => (await activeNodes()).includes("pgraft-3"), { timeoutMs: 120_000, intervalMs: 500, context: tails });
    assert.deepEqual((await query(3, "SELECT v FROM items WHERE id = 1")).rows, [{ v: "from pod 0" }]);
    await query(3, "INSERT INTO items VALUES (2, 'from pod 3')");
    await waitFor("pod 3's row on pod 0", async () => (await query(0, "SELECT v FROM items WHERE id = 2")).rows[0]?.v === "from pod 3", { timeoutMs: 30_000, intervalMs: 250, context: tails });
  });
});
