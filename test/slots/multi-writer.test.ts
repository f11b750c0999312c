// Every node writing, rows written on one node updated on the others: three
// nodes, each with four clients running a TPC-B-like mix at once (update a
// random account, one of a few tellers and branches — hot rows — and insert
// a history row; now and then a delete and a re-insert of an account) for a
// few seconds. Afterwards, on every node: identical tables (ordered row
// hashes); every history row inserted exactly once; every row's version (its
// origin commit time) the same everywhere, i.e. the same write won on every
// node; and pgraft.conflict_history consistent with what won — each logged
// keep_local names a local version newer than the remote one, each logged
// apply_remote an older one. With log_origin_change on, so every decision is
// in the history. Conflicts are the normal case here: the fast path must
// decide them in line, so no transaction takes the slow path unless it met a
// tie.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { Registry } from "prom-client";
import { registerDataPlaneMetrics } from "../../src/metrics/data-plane.js";
import { dataPlaneHealth, readConflicts } from "../../src/slots/index.js";
import { onAll, startNodes, startPlanes, tableHash, teardown, waitCaughtUp, waitConverged, type TestNode } from "./support.js";

const ACCOUNTS = 200;
const TELLERS = 10;
const BRANCHES = 2;
const CLIENTS_PER_NODE = 4;
const LOAD_MS = 4_000;

const SCHEMA = `
CREATE TABLE branches (bid int PRIMARY KEY, bbalance bigint NOT NULL, filler text);
CREATE TABLE tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance bigint NOT NULL, filler text);
CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance bigint NOT NULL, filler text);
CREATE TABLE history (hid text PRIMARY KEY, tid int, bid int, aid int, delta int, mtime timestamptz DEFAULT now());`;

const rand = (n: number): number => 1 + Math.floor(Math.random() * n);

/** One client's loop: TPC-B's transaction, and every 25th time a delete and re-insert of an account. Returns the history ids it committed. */
async function client(node: TestNode, no: number, until: number): Promise<string[]> {
  const c = await node.pg.server.connect();
  const committed: string[] = [];
  try {
    for (let i = 0; Date.now() < until; i++) {
      const hid = `${node.name}-${no}-${i}`;
      const aid = rand(ACCOUNTS);
      const delta = rand(10_000) - 5_000;
      await c.query("BEGIN");
      try {
        await c.query("UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2", [delta, aid]);
        await c.query("UPDATE tellers SET tbalance = tbalance + $1 WHERE tid = $2", [delta, rand(TELLERS)]);
        await c.query("UPDATE branches SET bbalance = bbalance + $1 WHERE bid = $2", [delta, rand(BRANCHES)]);
        await c.query("INSERT INTO history (hid, tid, bid, aid, delta) VALUES ($1, $2, $3, $4, $5)", [hid, rand(TELLERS), rand(BRANCHES), aid, delta]);
        if (i % 25 === 24) {
          const victim = rand(ACCOUNTS);
          await c.query("DELETE FROM accounts WHERE aid = $1", [victim]);
          await c.query("INSERT INTO accounts VALUES ($1, 1, 0, $2) ON CONFLICT (aid) DO NOTHING", [victim, `re-created on ${node.name}`]);
        }
        await c.query("COMMIT");
        committed.push(hid);
      } catch (e) {
        await c.query("ROLLBACK");
        // Local deadlocks between this node's own clients are the application's business, as on any PostgreSQL.
        if ((e as { code?: string }).code !== "40P01") throw e;
      }
    }
  } finally {
    await c.end();
  }
  return committed;
}

describe("multi-writer load on three nodes", () => {
  let nodes: TestNode[] = [];

  before(async () => {
    nodes = await startNodes(3);
    await onAll(nodes, SCHEMA);
    const a = nodes[0]!;
    // The initial rows are written on a and replicated: every later update on b and c changes another node's row.
    await startPlanes(nodes, { logOriginChange: () => true });
    await a.client.query(`INSERT INTO branches SELECT g, 0, 'b' FROM generate_series(1, ${BRANCHES}) g`);
    await a.client.query(`INSERT INTO tellers SELECT g, 1 + g % ${BRANCHES}, 0, 't' FROM generate_series(1, ${TELLERS}) g`);
    await a.client.query(`INSERT INTO accounts SELECT g, 1 + g % ${BRANCHES}, 0, 'a' FROM generate_series(1, ${ACCOUNTS}) g`);
    await waitConverged(nodes, ["branches", "tellers", "accounts"]);
  });

  after(async () => {
    await teardown(nodes);
  });

  test("identical tables, every history row once, the same version winning everywhere, the history consistent", async (t) => {
    const until = Date.now() + LOAD_MS;
    const perClient = await Promise.all(nodes.flatMap((n) => Array.from({ length: CLIENTS_PER_NODE }, (_, i) => client(n, i, until))));
    const inserted = perClient.flat().sort();
    t.diagnostic(`${inserted.length} transactions committed across ${nodes.length * CLIENTS_PER_NODE} clients`);
    assert.ok(inserted.length > 50, `the load ran (${inserted.length} transactions)`);

    const tables = ["branches", "tellers", "accounts", "history"];
    await waitConverged(nodes, tables, 60_000);
    await waitCaughtUp(nodes);
    for (const table of tables) {
      const hs = await Promise.all(nodes.map((n) => tableHash(n.client, table)));
      assert.ok(hs.every((h) => h.hash === hs[0]!.hash), `${table} identical: ${hs.map((h, i) => `${nodes[i]!.name}=${h.rows}/${h.hash.slice(0, 8)}`).join(" ")}`);
    }

    for (const n of nodes) {
      const ids = (await n.client.query<{ hid: string }>("SELECT hid FROM history ORDER BY hid")).rows.map((r) => r.hid);
      assert.deepEqual(ids, inserted, `node ${n.name}: every committed history row exactly once, none other`);
    }

    // The same version of each hot row won on every node: its origin commit time is the same everywhere.
    const versions = async (n: TestNode, table: string, key: string): Promise<string> =>
      JSON.stringify((await n.client.query(`SELECT ${key}, pg_xact_commit_timestamp(xmin)::text AS ts FROM ${table} ORDER BY ${key}`)).rows);
    for (const [table, key] of [["branches", "bid"], ["tellers", "tid"], ["accounts", "aid"]] as const) {
      const vs = await Promise.all(nodes.map((n) => versions(n, table, key)));
      assert.ok(vs.every((v) => v === vs[0]), `${table}: the same version on every node`);
    }

    let total = 0;
    let slow = 0;
    let applied = 0;
    for (const n of nodes) {
      const history = await readConflicts(n.client);
      total += history.length;
      for (const c of history) {
        assert.equal(c.local_node, n.name);
        if (c.local_commit_ts === null) continue; // update_missing / delete_missing: no local row
        const localTs = await ts(n.client, c.local_commit_ts);
        const remoteTs = await ts(n.client, c.remote_commit_ts);
        if (c.resolution === "keep_local" || c.resolution === "skip") {
          assert.ok(localTs >= remoteTs, `${n.name} ${c.table_name} ${c.key}: ${c.conflict_type} kept a local version (${c.local_commit_ts}) older than the remote (${c.remote_commit_ts})`);
        } else if (c.resolution === "apply_remote") {
          assert.ok(localTs <= remoteTs, `${n.name} ${c.table_name} ${c.key}: ${c.conflict_type} applied a remote version (${c.remote_commit_ts}) older than the local (${c.local_commit_ts})`);
        }
      }
      const st = await n.plane!.status();
      for (const r of st.receivers) {
        slow += r.stats.slowPathTransactions;
        applied += r.stats.appliedTransactions;
        const logged = history.filter((c) => c.origin_node === r.peer).length;
        assert.equal(r.stats.conflicts, logged, `${n.name} from ${r.peer}: conflicts counted = conflicts logged (everything is logged here)`);
      }
    }
    t.diagnostic(`${total} conflicts logged; ${slow} transactions took the slow path`);

    // What /metrics and the health check say about it, from node a's real data plane.
    const a = nodes[0]!;
    const registry = new Registry();
    registerDataPlaneMetrics(registry, { status: () => a.plane!.status(), dataNodes: () => [{ name: "a", group: "g1", state: "ACTIVE" }] });
    const text = await registry.metrics();
    const value = (line: string): number => {
      const m = new RegExp(`^${line.replace(/[{}"()]/g, "\\$&")} (\\S+)$`, "m").exec(text);
      assert.ok(m, `${line} in /metrics:\n${text}`);
      return Number(m[1]);
    };
    const st = await a.plane!.status();
    const history = await readConflicts(a.client);
    for (const r of st.receivers) {
      assert.equal(value(`pgraft_apply_transactions_total{peer="${r.peer}"}`), r.stats.appliedTransactions);
      assert.ok(r.stats.appliedTransactions > 0);
      assert.equal(value(`pgraft_receiver_state{peer="${r.peer}",state="streaming"}`), 1);
      assert.equal(value(`pgraft_apply_lag_seconds{peer="${r.peer}"}`), 0, "caught up");
      for (const [kind, n] of r.stats.conflictsByKind) {
        const [type, resolution] = kind.split("/");
        assert.equal(value(`pgraft_apply_conflicts_total{peer="${r.peer}",type="${type}",resolution="${resolution}"}`), n);
        assert.equal(history.filter((c) => c.origin_node === r.peer && c.conflict_type === type && c.resolution === resolution).length, n, `${kind} from ${r.peer}: counted = logged`);
      }
    }
    assert.ok(value(`pgraft_slot_retained_wal_bytes{slot="${st.groupSlot}",kind="group",peer=""}`) >= 0);
    assert.equal(value('pgraft_data_node_state{node="a",group="g1",state="ACTIVE"}'), 1);
    assert.equal(dataPlaneHealth(st).severity, "ok", dataPlaneHealth(st).detail);
    assert.ok(total > 0, "the load made conflicts (rows written on one node, updated on the others)");
    // Before conflicts were decided in line, nearly every transaction here took the slow path. Now only a tie of
    // commit timestamps, or a key a local client inserted under a statement's feet, does: a handful at most.
    assert.ok(slow <= Math.max(3, applied / 100), `conflicts are decided in line: ${slow} of ${applied} applied transactions took the slow path`);
  });
});

/** A timestamptz's µs since the epoch, as the server reads it (exact, whatever the text's precision). */
async function ts(c: pg.Client, text: string): Promise<bigint> {
  const r = await c.query<{ us: string }>("SELECT (extract(epoch FROM $1::timestamptz) * 1000000)::bigint::text AS us", [text]);
  return BigInt(r.rows[0]!.us);
}
