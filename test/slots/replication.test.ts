// Two nodes replicating both ways (a receives from b, b from a): concurrent
// inserts, updates and deletes on both, exact values (numerics, floats,
// unicode, bytea, intervals…), an unchanged TOASTed column kept through an
// update, a table without a primary key, truncate; both end identical, every
// transaction applied exactly once, nothing echoed back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { nodeSlotName } from "../../src/slots/naming.js";
import { DB, lsn, onAll, startNodes, startPlanes, tableHash, teardown, waitCaughtUp, waitConverged, waitFor, waitStreaming, type TestNode } from "./support.js";

const SCHEMA = `
CREATE TABLE kv (id text PRIMARY KEY, n numeric, f float8, note text, ts timestamptz, j jsonb, b bytea, arr int[], iv interval, origin text);
CREATE TABLE docs (id int PRIMARY KEY, body text, counter int NOT NULL DEFAULT 0);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;  -- out of line and uncompressed: a TOASTed value for sure
CREATE TABLE nopk (a int, b text, c numeric);
CREATE TABLE trunc_me (id text PRIMARY KEY, v int);
CREATE TABLE bulk (id bigint PRIMARY KEY, v text);
`;
const TABLES = ["kv", "docs", "nopk", "trunc_me"];

/** Values that a parse into JS numbers or Dates would change. */
const EXACT = [
  { n: "0.1", f: "0.1", note: "ünïcödé 😀 中文", ts: "2024-02-29 23:59:59.999999+00", j: '{"a": [1, 2.50, "x"]}', b: "\\xdeadbeef", arr: "{1,2,NULL}", iv: "1 year 2 mons 3 days 04:05:06.789" },
  {
    n: "123456789012345678901234567890.123456789012345678901234567890",
    f: "3.141592653589793",
    note: "tab\there\nnewline 'quote' \"dq\" back\\slash",
    ts: "1999-12-31 23:59:59.000001+00",
    j: '{"big": 12345678901234567890}',
    b: "\\x00ff",
    arr: "{}",
    iv: "-1 days +00:00:00.000001",
  },
  { n: "-0.000000000000000000001", f: "1e-300", note: "", ts: "infinity", j: "null", b: "\\x", arr: "{-2147483648}", iv: "00:00:00" },
  { n: "NaN", f: "-0", note: "x".repeat(3000), ts: "-infinity", j: "[]", b: "\\x01", arr: "{1}", iv: "178000000 years" },
];

async function tx(c: pg.Client, statements: [string, unknown[]?][]): Promise<void> {
  await c.query("BEGIN");
  try {
    for (const [sql, params] of statements) await c.query(sql, params);
    await c.query("COMMIT");
  } catch (e) {
    await c.query("ROLLBACK");
    throw e;
  }
}

/** The workload of one node: returns how many transactions it committed. */
async function workload(node: TestNode, rounds: number): Promise<number> {
  const c = node.client;
  const me = node.name;
  let txns = 0;
  for (let i = 0; i < rounds; i++) {
    const v = EXACT[i % EXACT.length]!;
    const st: [string, unknown[]?][] = [
      [
        "INSERT INTO kv (id, n, f, note, ts, j, b, arr, iv, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [`${me}-${i}`, v.n, v.f, v.note, v.ts, v.j, v.b, v.arr, v.iv, me],
      ],
      ["INSERT INTO nopk (a, b, c) VALUES ($1, $2, $3)", [i, me, v.n]],
    ];
    if (i % 3 === 2) st.push(["UPDATE kv SET n = n * 3, note = note || ' updated' WHERE id = $1", [`${me}-${i - 1}`]]);
    if (i % 5 === 4) st.push(["DELETE FROM kv WHERE id = $1", [`${me}-${i - 3}`]]);
    if (i % 4 === 3) st.push(["UPDATE nopk SET c = c + 1, b = b || '*' WHERE a = $1 AND b = $2", [i - 1, me]]);
    if (i % 7 === 6) st.push(["DELETE FROM nopk WHERE a = $1 AND b = $2", [i - 2, me]]);
    if (i % 2 === 1) st.push(["UPDATE docs SET counter = counter + 1 WHERE id = $1", [node.id * 100 + (i % 3)]]);
    // A primary key that changes (the upstream then sends the old key to find the row by).
    if (i % 11 === 10) st.push(["UPDATE kv SET id = id || '-renamed' WHERE id = $1", [`${me}-${i - 6}`]]);
    await tx(c, st);
    txns++;
    // Some single-statement (autocommit) transactions too.
    if (i % 10 === 0) {
      await c.query("UPDATE kv SET f = f / 7 WHERE id = $1", [`${me}-${i}`]);
      txns++;
    }
  }
  return txns;
}

describe("two nodes, both directions", () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;

  before(async () => {
    nodes = await startNodes(2);
    [a, b] = nodes as [TestNode, TestNode];
    await onAll(nodes, SCHEMA);
    // A small backlog limit: the throughput test's burst makes the receiver pause and resume its stream.
    // The maintenance tick every 300 ms (group slot, replica identity of new tables).
    await startPlanes(nodes, { maxBacklog: 200, maintenanceIntervalMs: 300 });
  });

  after(async () => {
    await teardown(nodes);
  });

  test("concurrent writes on both converge; each transaction applied once; nothing loops", async () => {
    // Big documents first (one transaction per node), then the concurrent workload updates their counters only.
    let setupTx = 0;
    for (const n of nodes) {
      const body = (i: number) => `${n.name}:${i}:` + Array.from({ length: 20_000 }, (_, k) => ((k * 7919 + i) % 97).toString(36)).join("");
      await tx(n.client, [0, 1, 2].map((i) => ["INSERT INTO docs (id, body) VALUES ($1, $2)", [n.id * 100 + i, body(i)]] as [string, unknown[]]));
      setupTx++;
    }
    const [ta, tb] = await Promise.all([workload(a, 300), workload(b, 300)]);
    await waitConverged(nodes, TABLES);
    await waitCaughtUp(nodes);

    // Exact values crossed over (rows the workload left as inserted: not updated, deleted or divided).
    for (const [k, v] of EXACT.entries()) {
      let i = k;
      while (i % 3 === 1 || i % 5 === 1 || i % 10 === 0 || i % 11 === 4) i += EXACT.length;
      const r = await b.client.query<{ n: string; f: string; note: string; ts: string; j: string; b: string; arr: string; iv: string }>(
        "SELECT n::text, f::text, note, ts::text, j::text, b::text, arr::text, iv::text FROM kv WHERE id = $1",
        [`a-${i}`],
      );
      const row = r.rows[0];
      assert.ok(row, `a-${i} on b`);
      const j = await a.client.query<{ j: string; ts: string; iv: string }>("SELECT $1::jsonb::text AS j, $2::timestamptz::text AS ts, $3::interval::text AS iv", [v.j, v.ts, v.iv]);
      assert.deepEqual(
        { n: row.n, f: row.f, note: row.note, b: row.b, arr: row.arr, j: row.j, ts: row.ts, iv: row.iv },
        { n: v.n, f: v.f, note: v.note, b: v.b, arr: v.arr, j: j.rows[0]!.j, ts: j.rows[0]!.ts, iv: j.rows[0]!.iv },
      );
    }
    // The TOASTed bodies survived the counter updates (pgoutput sent them as "unchanged").
    for (const n of nodes) {
      const r = await n.client.query<{ id: string; len: string; counter: string; md5: string }>("SELECT id::text, length(body)::text AS len, counter::text, md5(body) FROM docs ORDER BY id");
      assert.equal(r.rows.length, 6);
      for (const row of r.rows) assert.ok(Number(row.len) > 20_000, `doc ${row.id} body length ${row.len} on ${n.name}`);
      assert.ok(r.rows.some((row) => Number(row.counter) > 0));
    }
    const docsA = await tableHash(a.client, "docs");
    assert.equal(docsA.rows, 6);
    const renamed = await b.client.query<{ n: string }>("SELECT count(*)::text AS n FROM kv WHERE id LIKE 'a-%-renamed'");
    assert.ok(Number(renamed.rows[0]!.n) > 10, `${renamed.rows[0]!.n} renamed rows of a's on b`);

    // Exactly once: each node applied every transaction of the other, no conflicts, nothing redone.
    const sa = (await a.plane!.status()).receivers[0]!;
    const sb = (await b.plane!.status()).receivers[0]!;
    assert.equal(sa.stats.appliedTransactions, tb + setupTx / 2, JSON.stringify(sa));
    assert.equal(sb.stats.appliedTransactions, ta + setupTx / 2, JSON.stringify(sb));
    assert.equal(sa.stats.conflicts + sb.stats.conflicts, 0);
    // No loop, and no echo: the node slots are test_decoding's with only-local, so a's walsender drops what a applied
    // from b before decoding it. b's receiver has confirmed past all of it (waitCaughtUp) and never received one.
    for (const n of nodes) {
      const peer = n === a ? b : a;
      const slot = await n.client.query<{ plugin: string }>("SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1", [nodeSlotName(DB, "g1", peer.name)]);
      assert.equal(slot.rows[0]?.plugin, "test_decoding", `${n.name}'s node slot for ${peer.name}`);
    }
    assert.equal((await b.plane!.status()).receivers[0]!.stats.skippedEchoes, 0, "echoes b received");
    assert.equal((await a.plane!.status()).receivers[0]!.stats.skippedEchoes, 0, "echoes a received");
    const before = [sa.stats.appliedTransactions, sb.stats.appliedTransactions];
    await new Promise((r) => setTimeout(r, 1000));
    const again = [(await a.plane!.status()).receivers[0]!.stats.appliedTransactions, (await b.plane!.status()).receivers[0]!.stats.appliedTransactions];
    assert.deepEqual(again, before, "no transaction applied after convergence");
    for (const n of nodes) {
      const h = await n.client.query<{ n: string }>("SELECT count(*)::text AS n FROM pgraft.conflict_history");
      assert.equal(h.rows[0]!.n, "0");
    }
    // The table without a primary key was made REPLICA IDENTITY FULL everywhere.
    for (const n of nodes) {
      const r = await n.client.query<{ r: string }>("SELECT relreplident::text AS r FROM pg_class WHERE relname = 'nopk'");
      assert.equal(r.rows[0]!.r, "f");
    }
  });

  test("truncate replicates (and later inserts still do)", async () => {
    await a.client.query("INSERT INTO trunc_me SELECT 'a' || g, g FROM generate_series(1, 50) g");
    await b.client.query("INSERT INTO trunc_me SELECT 'b' || g, g FROM generate_series(1, 50) g");
    await waitConverged(nodes, ["trunc_me"]);
    assert.equal((await tableHash(b.client, "trunc_me")).rows, 100);
    await a.client.query("TRUNCATE trunc_me");
    await waitConverged(nodes, ["trunc_me"]);
    assert.equal((await tableHash(b.client, "trunc_me")).rows, 0);
    await b.client.query("INSERT INTO trunc_me VALUES ('after', 1)");
    await waitConverged(nodes, ["trunc_me"]);
    assert.equal((await tableHash(a.client, "trunc_me")).rows, 1);
  });

  test("a stored generated column, in a table made while streaming: computed on each node (test_decoding prints it; it is never written), no stream broken", async () => {
    const sessions = async (): Promise<number[]> => Promise.all(nodes.map(async (n) => (await n.plane!.status()).receivers[0]!.sessions));
    const before = await sessions();
    await onAll(nodes, "CREATE TABLE gen (id int PRIMARY KEY, v int, twice int GENERATED ALWAYS AS (v * 2) STORED, note text)");
    await a.client.query("INSERT INTO gen (id, v, note) VALUES (1, 10, 'x'), (2, 20, NULL)");
    await b.client.query("UPDATE gen SET v = 21 WHERE id = 2"); // may race the insert's arrival: then it is applied after
    await waitConverged(nodes, ["gen"]);
    await b.client.query("UPDATE gen SET v = 22 WHERE id = 2");
    await a.client.query("DELETE FROM gen WHERE id = 1");
    await waitConverged(nodes, ["gen"]);
    for (const n of nodes) {
      const r = await n.client.query<{ id: string; v: string; twice: string }>("SELECT id::text, v::text, twice::text FROM gen ORDER BY id");
      assert.deepEqual(r.rows, [{ id: "2", v: "22", twice: "44" }], n.name);
    }
    for (const n of nodes) assert.equal((await n.plane!.status()).receivers[0]!.lastError, null);
    assert.deepEqual(await sessions(), before, "no stream failed and started again");
  });

  test("apply throughput (reported, not asserted)", async (t) => {
    /** Until b has durably applied everything a wrote so far (polled cheaply, from b's receiver status). */
    const applied = async (): Promise<void> => {
      const target = lsn((await a.client.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l);
      await waitFor(
        async () => {
          const r = (await b.plane!.status()).receivers[0]!;
          return [r.durableLsn, r.confirmedLsn].some((x) => x !== null && lsn(x) >= target);
        },
        60_000,
        "b caught up with a",
        5,
      );
    };
    // Many small transactions, generated inside the server (COMMIT in a DO block) so the writer is not the bottleneck.
    const smallTx = 5000;
    let t0 = Date.now();
    await a.client.query(`DO $$ BEGIN FOR i IN 1..${smallTx} LOOP INSERT INTO bulk VALUES (i, 'small ' || i); COMMIT; END LOOP; END $$`);
    const written = Date.now() - t0;
    await applied();
    const small = Date.now() - t0;
    // One big transaction.
    const rows = 50_000;
    t0 = Date.now();
    await a.client.query(`INSERT INTO bulk SELECT g, repeat('x', 40) || g FROM generate_series(100000, ${100_000 + rows - 1}) g`);
    await applied();
    const big = Date.now() - t0;
    t.diagnostic(`${smallTx} one-row transactions: written in ${written} ms, durable on b after ${small} ms (${Math.round((smallTx * 1000) / small)} tx/s end to end)`);
    t.diagnostic(`one ${rows}-row transaction: durable on b after ${big} ms (${Math.round((rows * 1000) / big)} rows/s end to end)`);
    await waitConverged(nodes, ["bulk"]);
    assert.equal((await tableHash(b.client, "bulk")).rows, smallTx + rows);
  });

  test("a change that cannot be applied stops that stream (status says why) until fixed; nothing is lost", async () => {
    await a.client.query("CREATE TABLE late (id int PRIMARY KEY, v text)"); // on a only: DDL is not replicated
    await a.client.query("INSERT INTO late VALUES (1, 'waits for b'), (2, 'me too')");
    await a.client.query("INSERT INTO trunc_me VALUES ('behind the failure', 2)");
    await waitFor(
      async () => /table "public"\."late" .* does not exist here/.test((await b.plane!.status()).receivers[0]!.lastError ?? ""),
      20_000,
      "b's receiver to report the missing table",
    );
    assert.equal((await tableHash(b.client, "trunc_me")).rows, 1, "nothing after the failing transaction was applied out of order");
    // b -> a still flows meanwhile.
    await b.client.query("INSERT INTO trunc_me VALUES ('from b meanwhile', 3)");
    await waitFor(async () => (await tableHash(a.client, "trunc_me")).rows === 3, 10_000, "b's row on a");
    await b.client.query("CREATE TABLE late (id int PRIMARY KEY, v text)");
    await waitConverged(nodes, ["late", "trunc_me"]);
    await waitStreaming(nodes);
    assert.equal((await tableHash(b.client, "late")).rows, 2);
    const r = (await b.plane!.status()).receivers[0]!;
    assert.equal(r.lastError, null);
    assert.ok(r.sessions > 1, "it reconnected");
  });

  test("the maintenance tick: a new table without a primary key gets REPLICA IDENTITY FULL, the group slot follows the peer", async () => {
    const group0 = (await a.plane!.status()).slots.find((x) => x.kind === "group")!.confirmedFlushLsn!;
    await onAll(nodes, "CREATE TABLE nopk_later (a int, b text)");
    await waitFor(
      async () => {
        for (const n of nodes) {
          const r = await n.client.query<{ r: string }>("SELECT relreplident::text AS r FROM pg_class WHERE relname = 'nopk_later'");
          if (r.rows[0]!.r !== "f") return false;
        }
        return true;
      },
      10_000,
      "REPLICA IDENTITY FULL on both nodes",
    );
    await a.client.query("INSERT INTO nopk_later VALUES (1, 'x'), (2, 'y')");
    await a.client.query("UPDATE nopk_later SET b = b || '!' WHERE a = 1");
    await a.client.query("DELETE FROM nopk_later WHERE a = 2");
    await waitConverged(nodes, ["nopk_later"]);
    assert.equal((await tableHash(b.client, "nopk_later")).rows, 1);
    await waitFor(
      async () => lsn((await a.plane!.status()).slots.find((x) => x.kind === "group")!.confirmedFlushLsn!) > lsn(group0),
      10_000,
      "the group slot to advance on its own",
    );
  });

  test("the maintenance tick: a table it set to FULL goes back to DEFAULT once it has a primary key; a FULL a user set stays", async () => {
    await onAll(nodes, "CREATE TABLE key_later (a int NOT NULL, b text); CREATE TABLE user_full (a int PRIMARY KEY, b text); ALTER TABLE user_full REPLICA IDENTITY FULL");
    const identities = async (n: TestNode): Promise<Record<string, string>> =>
      Object.fromEntries((await n.client.query<{ t: string; r: string }>("SELECT relname AS t, relreplident::text AS r FROM pg_class WHERE relname IN ('key_later', 'user_full')")).rows.map((x) => [x.t, x.r]));
    const all = async (want: Record<string, string>): Promise<boolean> => {
      for (const n of nodes) {
        const have = await identities(n);
        if (Object.entries(want).some(([t, r]) => have[t] !== r)) return false;
      }
      return true;
    };
    await waitFor(() => all({ key_later: "f" }), 10_000, "key_later FULL on both nodes (no key yet)");
    // The key comes after the table, as pg_restore, pgbench -i and most migrations add it.
    await onAll(nodes, "ALTER TABLE key_later ADD PRIMARY KEY (a)");
    await waitFor(() => all({ key_later: "d" }), 10_000, "key_later back to DEFAULT on both nodes");
    for (const n of nodes) assert.equal((await identities(n)).user_full, "f", `${n.name}: the user's FULL stays`);
    await a.client.query("INSERT INTO key_later VALUES (1, 'x'); UPDATE key_later SET b = 'y' WHERE a = 1");
    await waitConverged(nodes, ["key_later"]);
  });
});
