// Helpers for the data plane's tests: N throwaway PostgreSQL servers (started
// in parallel), a DataPlane per node with every other node as its peer, and
// the convergence checks (an ordered hash of each table, compared across
// nodes).
import pg from "pg";
import { DataPlane, type DataPlaneOptions, type PeerSpec, type SlotsLogger } from "../../src/slots/index.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";
import { TEXT_TYPES } from "../../src/slots/connection.js";
import { waitFor as boundedWait } from "../support/wait.js";

export const DB = "postgres";

export interface TestNode {
  name: string;
  id: number;
  pg: TestPostgres;
  dsn: string;
  /** A session for the test's own SQL (values as text). */
  client: pg.Client;
  plane?: DataPlane;
}

/** Logs to stderr when PGRAFT_TEST_LOG=1 (debugging), else nothing. */
export function testLogger(node: string): SlotsLogger {
  const on = process.env.PGRAFT_TEST_LOG === "1";
  const out = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    if (on) process.stderr.write(`[${node}] ${level} ${msg} ${fields ? JSON.stringify(fields, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) : ""}\n`);
  };
  return { debug: out("debug"), info: out("info"), warn: out("warn"), error: out("error") };
}

/** Every value as text, as the data plane reads them. */
export const textTypes: pg.CustomTypesConfig = TEXT_TYPES;

/** `n` servers named a, b, c… with ids 1, 2, 3… */
export async function startNodes(n: number): Promise<TestNode[]> {
  const names = ["a", "b", "c", "d", "e"].slice(0, n);
  const settled = await Promise.allSettled(names.map(() => startTestPostgres()));
  const servers = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    await Promise.all(servers.map((s) => s.destroy()));
    throw failed.reason;
  }
  const nodes: TestNode[] = [];
  for (const [i, pgs] of servers.entries()) {
    const client = new pg.Client({ ...pgs.server.clientConfig(), types: textTypes });
    client.on("error", () => {});
    await client.connect();
    nodes.push({ name: names[i]!, id: i + 1, pg: pgs, dsn: pgs.server.keyValueDsn(), client });
  }
  return nodes;
}

export function peersOf(nodes: TestNode[], self: TestNode): PeerSpec[] {
  return nodes.filter((n) => n !== self).map((n) => ({ name: n.name, id: n.id, dsn: n.dsn }));
}

export type PlaneOptions = Partial<Omit<DataPlaneOptions, "localDsn" | "nodeName" | "nodeId" | "peers">>;

export function planeOptions(nodes: TestNode[], node: TestNode, extra: PlaneOptions = {}): DataPlaneOptions {
  return {
    localDsn: node.dsn,
    nodeName: node.name,
    nodeId: node.id,
    group: "g1",
    db: DB,
    peers: peersOf(nodes, node),
    log: testLogger(node.name),
    reconnectMinMs: 100,
    reconnectMaxMs: 500,
    probeIntervalMs: 200,
    maintenanceIntervalMs: 0,
    ...extra,
  };
}

export async function startPlane(nodes: TestNode[], node: TestNode, extra: PlaneOptions = {}): Promise<DataPlane> {
  node.plane = await DataPlane.start(planeOptions(nodes, node, extra));
  return node.plane;
}

/** A data plane on every node (their slots all exist once this returns), then wait until every receiver streams. */
export async function startPlanes(nodes: TestNode[], extra: PlaneOptions = {}): Promise<void> {
  await Promise.all(nodes.map((n) => startPlane(nodes, n, extra)));
  await waitStreaming(nodes);
}

export async function waitStreaming(nodes: TestNode[], timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      for (const n of nodes) {
        if (!n.plane) continue;
        const st = await n.plane.status();
        if (st.receivers.some((r) => r.state !== "streaming")) return false;
      }
      return true;
    },
    timeoutMs,
    "every receiver streaming",
  );
}

/** Poll `cond` until it holds (errors count as not yet); test/support/wait.ts's waitFor with this file's argument order. */
export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
  await boundedWait(what, cond, { timeoutMs, intervalMs: everyMs });
}

/** Run the same SQL on every node (the schema: DDL is not replicated). */
export async function onAll(nodes: TestNode[], sql: string): Promise<void> {
  for (const n of nodes) await n.client.query(sql);
}

/** An order-independent fingerprint of a table's contents: md5 over its rows' text, sorted. */
export async function tableHash(client: pg.Client, table: string): Promise<{ rows: number; hash: string }> {
  const r = await client.query<{ n: string; h: string | null }>(`SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h FROM ${table} t`);
  return { rows: Number(r.rows[0]!.n), hash: r.rows[0]!.h ?? "" };
}

/** Wait until `tables` hash the same on every node (and, when given, hold `rows` rows). */
export async function waitConverged(nodes: TestNode[], tables: string[], timeoutMs = 30_000): Promise<void> {
  let last = "";
  try {
    await waitFor(
      async () => {
        for (const t of tables) {
          const hs = await Promise.all(nodes.map((n) => tableHash(n.client, t)));
          last = `${t}: ${hs.map((h, i) => `${nodes[i]!.name}=${h.rows}/${h.hash.slice(0, 8)}`).join(" ")}`;
          if (hs.some((h) => h.hash !== hs[0]!.hash)) return false;
        }
        return true;
      },
      timeoutMs,
      "convergence",
      100,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; last: ${last}`);
  }
}

/** Wait until every receiver everywhere is idle and has applied up to its peer's current WAL position. */
export async function waitCaughtUp(nodes: TestNode[], timeoutMs = 30_000): Promise<void> {
  const targets = new Map<string, bigint>();
  for (const n of nodes) {
    const r = await n.client.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l");
    targets.set(n.name, lsn(r.rows[0]!.l));
  }
  await waitFor(
    async () => {
      for (const n of nodes) {
        if (!n.plane) continue;
        for (const r of (await n.plane.status()).receivers) {
          const target = targets.get(r.peer);
          if (target === undefined) continue;
          const pos = [r.durableLsn, r.confirmedLsn].filter((x): x is string => x !== null).map(lsn);
          if (!pos.some((p) => p >= target)) return false;
        }
      }
      return true;
    },
    timeoutMs,
    "receivers caught up",
  );
}

export function lsn(s: string): bigint {
  const [hi, lo] = s.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

/** Stop every plane, close the clients, destroy the servers: whatever state the test left them in. */
export async function teardown(nodes: TestNode[]): Promise<void> {
  for (const n of nodes) {
    if (n.plane) await n.plane.stop().catch(() => undefined);
    await n.client.end().catch(() => undefined);
  }
  await Promise.all(nodes.map((n) => n.pg.destroy()));
}
