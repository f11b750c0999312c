// The applier against one real server, driven directly: thousands of
// transactions submitted at once go out in batches; conflicts in the middle
// of a batch and inside a transaction that spans batches are resolved in line
// (the optimistic batch that meets one stops, and the transaction goes again
// with resolving statements: nothing goes to the slow path) while everything
// around them still commits once, in order; values that need quoting arrive
// exactly.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { Applier } from "../../src/slots/applier.js";
import { readConflicts } from "../../src/slots/index.js";
import { ensureLocalObjects } from "../../src/slots/local-objects.js";
import { formatLsn, microsToTimestamptz } from "../../src/slots/lsn.js";
import { originName } from "../../src/slots/naming.js";
import type { Change, RelationDesc, RemoteTransaction } from "../../src/slots/types.js";
import { DB, startNodes, teardown, testLogger, type TestNode } from "./support.js";

const rel: RelationDesc = {
  oid: 1,
  schema: "public",
  name: "t",
  replicaIdentity: "default",
  columns: [
    { name: "id", typeOid: 23 },
    { name: "v", typeOid: 25 },
  ],
};
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Values a literal must carry exactly. */
const AWKWARD = ["it's", "back\\slash", "quote'' twice", "$1 ); DROP TABLE t; --", "ünïcødé ✓", "", "E'x'", "tab\there\nnewline"];

describe("applier batches", () => {
  let nodes: TestNode[] = [];
  let n: TestNode;

  before(async () => {
    nodes = await startNodes(1);
    n = nodes[0]!;
    await ensureLocalObjects(n.client);
    await n.client.query("CREATE TABLE t (id int PRIMARY KEY, v text)");
  });

  after(async () => {
    await teardown(nodes);
  });

  test("a backlog with conflicts inside batches and inside a transaction spanning batches: each applied once, in order", async () => {
    const origin = originName(DB, "g", "up");
    // Local rows the remote inserts will collide with: written now, so the remote versions (a day old) lose.
    const collide = [700, 1500, 2990];
    await n.client.query("INSERT INTO t SELECT g, 'local' FROM unnest($1::int[]) g", [collide]);
    const old = BigInt(Date.now() - 86_400_000) * 1000n;
    const ap = new Applier({
      localDsn: n.dsn,
      localNode: { name: "here", id: 1 },
      peer: { name: "up", id: 2 },
      originName: origin,
      members: () => new Map(),
      log: testLogger("here"),
      windowTransactions: 100,
      batchBytes: 8 * 1024,
    });
    const resume = await ap.connect();
    try {
      const txs: RemoteTransaction[] = [];
      const expected = new Map<number, string>(collide.map((id) => [id, "local"]));
      let lsn = resume;
      const push = (changes: Change[]): void => {
        lsn += 1000n;
        txs.push({ xid: txs.length + 1, commitLsn: lsn - 10n, endLsn: lsn, commitTime: old + BigInt(txs.length), changes });
      };
      for (let id = 1; id <= 3000; id++) {
        if (id === 1200) {
          // One transaction of 400 inserts (far over batchBytes), one of them colliding with a local row.
          const changes: Change[] = [];
          for (let k = 1200; k < 1600; k++) {
            const v = `big ${k}`;
            changes.push({ kind: "insert", rel, new: [String(k), v] });
            if (!expected.has(k)) expected.set(k, v);
          }
          push(changes);
          id = 1599;
          continue;
        }
        const v = id % 97 === 0 ? AWKWARD[id % AWKWARD.length]! : id % 101 === 0 ? null : `v${id}`;
        const changes: Change[] = [{ kind: "insert", rel, new: [String(id), v] }];
        if (id % 250 === 0) {
          // Several statements in one transaction: an update of an earlier row, a delete of another.
          changes.push({ kind: "update", rel, old: null, new: [String(id - 1), `updated by ${id}`] }, { kind: "delete", rel, old: [String(id - 2), null] });
          expected.set(id - 1, `updated by ${id}`);
          expected.delete(id - 2);
        }
        if (!expected.has(id) || !collide.includes(id)) expected.set(id, v as string);
        push(changes);
      }
      // All at once: the applier decides the batches.
      await Promise.all(txs.map((tx) => ap.submit({ kind: "apply", tx })));
      assert.equal(ap.durableLsn, lsn, "every transaction durable");

      const progress = (await n.client.query<{ p: string }>("SELECT pg_replication_origin_progress($1, true)::text AS p", [origin])).rows[0]!.p;
      assert.equal(progress, formatLsn(lsn), "the origin's progress is the last transaction's end");
      const rows = (await n.client.query<{ id: string; v: string | null }>("SELECT id::text, v FROM t ORDER BY t.id")).rows;
      const want = [...expected].sort((x, y) => x[0] - y[0]).map(([id, v]) => ({ id: String(id), v }));
      assert.equal(rows.length, want.length);
      assert.deepEqual(rows, want);
      for (const s of AWKWARD) assert.ok(rows.some((r) => r.v === s), `value ${JSON.stringify(s)} arrived exactly`);
      assert.ok(rows.some((r) => r.v === null), "NULL arrived as NULL");

      // Exactly the three collisions were conflicts, resolved in line (a double apply would have been an insert_exists too).
      assert.equal(ap.stats.slowPathTransactions, 0);
      assert.ok(ap.stats.resolvingResends >= 1, "the first collision switched the table to resolving statements");
      assert.equal(ap.stats.conflicts, 3);
      assert.deepEqual([...ap.stats.conflictsByKind], [["insert_exists/keep_local", 3]]);
      assert.equal(ap.stats.appliedTransactions, txs.length);
      const conflicts = await readConflicts(n.client);
      assert.deepEqual(
        conflicts.map((c) => [c.key, c.conflict_type, c.resolution]),
        collide.map((id) => [`{"id": "${id}"}`, "insert_exists", "keep_local"]),
      );
      // The remote rows kept their upstream commit times (last update wins needs them).
      const ts = await n.client.query<{ same: string }>("SELECT (pg_xact_commit_timestamp(xmin) = $1::timestamptz)::text AS same FROM t WHERE id = 5", [
        microsToTimestamptz(txs[4]!.commitTime),
      ]);
      assert.equal(ts.rows[0]!.same, "true");
    } finally {
      await ap.close();
    }
  });

  test("a table stays resolving while its resolving statements keep meeting conflicts, and goes back to the optimistic ones once they stop", async () => {
    await n.client.query("CREATE TABLE IF NOT EXISTS hot (id int PRIMARY KEY, v text)");
    const hot: RelationDesc = { ...rel, oid: 11, name: "hot" };
    const contendedMs = 2_000;
    const ap = new Applier({ localDsn: n.dsn, localNode: { name: "here", id: 1 }, peer: { name: "up11", id: 11 }, originName: originName(DB, "g", "up11"), members: () => new Map(), log: testLogger("here"), contendedMs });
    let lsn = await ap.connect();
    const old = BigInt(Date.now() - 86_400_000) * 1000n;
    /** One remote transaction inserting `id`: a conflict (insert_exists, keep_local) when a newer local row has that key. */
    const insert = async (id: number): Promise<void> => {
      lsn += 100n;
      await ap.submit({ kind: "apply", tx: { xid: id, commitLsn: lsn - 10n, endLsn: lsn, commitTime: old + BigInt(id), changes: [{ kind: "insert", rel: hot, new: [String(id), "remote"] }] } });
    };
    try {
      await n.client.query("INSERT INTO hot SELECT g, 'local' FROM generate_series(1, 10) g");
      await insert(1);
      assert.equal(ap.stats.resolvingResends, 1, "the first conflict switched the table to resolving statements");
      // Conflicts every 500 ms for longer than the window: each renews it, so no optimistic batch fails again.
      const start = Date.now();
      for (let id = 2; Date.now() - start < contendedMs * 1.5; id++) {
        await new Promise((r) => setTimeout(r, 500));
        await insert(id);
      }
      assert.equal(ap.stats.resolvingResends, 1, "the table stayed resolving while it met conflicts");
      // Quiet for longer than the window: the next conflict stops an optimistic batch again.
      await new Promise((r) => setTimeout(r, contendedMs + 500));
      await insert(10);
      assert.equal(ap.stats.resolvingResends, 2, "after a quiet window the optimistic statements were tried again");
      assert.equal(ap.stats.slowPathTransactions, 0);
      assert.deepEqual((await n.client.query("SELECT count(*)::int AS n FROM hot WHERE v = 'local'")).rows, [{ n: "10" }], "every local row kept (they are newer)");
    } finally {
      await ap.close();
    }
  });

  test("an applier whose connection broke, or that was closed, is not idle: its dropped queue was not applied", async () => {
    await n.client.query("CREATE TABLE IF NOT EXISTS idle_t (id int PRIMARY KEY)");
    const irel: RelationDesc = { ...rel, oid: 9, name: "idle_t", columns: [{ name: "id", typeOid: 23 }] };
    const ap = new Applier({ localDsn: n.dsn, localNode: { name: "here", id: 1 }, peer: { name: "up9", id: 9 }, originName: originName(DB, "g", "up9"), members: () => new Map(), log: testLogger("here") });
    const lsn = await ap.connect();
    try {
      assert.equal(ap.idle, true, "connected, nothing queued");
      // The server ends the applier's session (as an immediate restart would) while a transaction waits.
      await n.client.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pgraft_apply_up9%'");
      const pending = ap.submit({ kind: "apply", tx: { xid: 1, commitLsn: lsn + 90n, endLsn: lsn + 100n, commitTime: BigInt(Date.now()) * 1000n, changes: [{ kind: "insert", rel: irel, new: ["1"] }] } });
      await assert.rejects(pending);
      assert.ok(ap.error, "the applier failed");
      assert.equal(ap.idle, false, "a failed applier is not idle (a receiver would confirm a keepalive's position past what it lost)");
    } finally {
      await ap.close();
    }
    assert.equal(ap.idle, false, "a closed applier is not idle");
  });

  test("a transaction submitted right behind a skipped one, in the same turn of the event loop, is applied (not left queued)", async () => {
    await n.client.query("CREATE TABLE s (id int PRIMARY KEY)");
    const srel: RelationDesc = { ...rel, oid: 3, name: "s", columns: [{ name: "id", typeOid: 23 }] };
    const ap = new Applier({ localDsn: n.dsn, localNode: { name: "here", id: 1 }, peer: { name: "up3", id: 4 }, originName: originName(DB, "g", "up3"), members: () => new Map(), log: testLogger("here") });
    let lsn = await ap.connect();
    const apply = (id: number): Promise<void> => {
      lsn += 100n;
      return ap.submit({ kind: "apply", tx: { xid: id, commitLsn: lsn - 1n, endLsn: lsn, commitTime: BigInt(Date.now()) * 1000n, changes: [{ kind: "insert", rel: srel, new: [String(id)] }] } });
    };
    try {
      const first = apply(1);
      const firstEnd = lsn;
      // The first has committed but is not durable yet (its flush waits a few ms), so a skip now is not resolved at
      // once, and nothing is in flight to wake the pump later.
      while (ap.committedLsn < firstEnd) await new Promise((r) => setImmediate(r));
      // What a receiver does with one network read holding a skipped transaction and then one to apply.
      lsn += 100n;
      const skipped = ap.submit({ kind: "skip", endLsn: lsn, reason: "origin", commitTime: BigInt(Date.now()) * 1000n });
      const second = apply(2);
      await ap.drain(5_000);
      await Promise.all([first, skipped, second]);
      assert.deepEqual((await n.client.query<{ id: string }>("SELECT id::text FROM s ORDER BY s.id")).rows, [{ id: "1" }, { id: "2" }]);
    } finally {
      await ap.close();
    }
  });

  test("runs of updates and deletes by key go as one statement each; a row changed here meanwhile is a conflict decided in line", async () => {
    await n.client.query("CREATE TABLE u (id int PRIMARY KEY, v text)");
    const urel: RelationDesc = { ...rel, oid: 2, name: "u" };
    const origin = originName(DB, "g", "up2");
    const ap = new Applier({ localDsn: n.dsn, localNode: { name: "here", id: 1 }, peer: { name: "up2", id: 3 }, originName: origin, members: () => new Map(), log: testLogger("here") });
    let lsn = await ap.connect();
    const old = BigInt(Date.now() - 86_400_000) * 1000n;
    const model = new Map<number, string>();
    const tx = (changes: Change[]): RemoteTransaction => {
      lsn += 1000n;
      return { xid: 1, commitLsn: lsn - 10n, endLsn: lsn, commitTime: old + lsn, changes };
    };
    const ins = (id: number, v: string): Change => (model.set(id, v), { kind: "insert", rel: urel, new: [String(id), v] });
    const upd = (id: number, v: string): Change => (model.set(id, v), { kind: "update", rel: urel, old: null, new: [String(id), v] });
    const del = (id: number): Change => (model.delete(id), { kind: "delete", rel: urel, old: [String(id), null] });
    try {
      await ap.submit({ kind: "apply", tx: tx(Array.from({ length: 1000 }, (_, i) => ins(i + 1, `v${i + 1}`))) });
      // Updates of 600 distinct rows (one of them twice, which splits the run), then 300 deletes: three statements.
      const changes = [...Array.from({ length: 600 }, (_, i) => upd(i + 1, `u${i + 1}`)), upd(7, "seven again"), upd(8, "eight again"), ...Array.from({ length: 300 }, (_, i) => del(701 + i))];
      await ap.submit({ kind: "apply", tx: tx(changes) });
      assert.equal(ap.stats.slowPathTransactions, 0, "no conflict: the fast path applied it");

      // Row 5 is changed here, now (newer than the remote versions): the run that updates it keeps row 5's
      // local value (update_origin_change, keep_local) and applies the rest, in the same statement.
      await n.client.query("UPDATE u SET v = 'changed here' WHERE id = 5");
      const second = [...Array.from({ length: 10 }, (_, i) => upd(i + 1, `w${i + 1}`)), del(600)];
      model.set(5, "changed here");
      await ap.submit({ kind: "apply", tx: tx(second) });
      assert.equal(ap.stats.slowPathTransactions, 0);
      assert.deepEqual([...ap.stats.conflictsByKind], [["update_origin_change/keep_local", 1]]);

      const rows = (await n.client.query<{ id: string; v: string }>("SELECT id::text, v FROM u ORDER BY u.id")).rows;
      assert.deepEqual(rows, [...model].sort((x, y) => x[0] - y[0]).map(([id, v]) => ({ id: String(id), v })));
      const c = (await readConflicts(n.client)).filter((r) => r.table_name === '"public"."u"');
      assert.deepEqual(c.map((r) => [r.key, r.conflict_type, r.resolution]), [['{"id": "5"}', "update_origin_change", "keep_local"]]);
    } finally {
      await ap.close();
    }
  });

  test("a statement shape whose PREPARE went out behind a failing batch is prepared again when its transaction goes again", async () => {
    await n.client.query("CREATE TABLE p0 (id int PRIMARY KEY, v text); CREATE TABLE p1 (id int PRIMARY KEY, v text); CREATE TABLE p2 (id int PRIMARY KEY, v text)");
    await n.client.query("INSERT INTO p1 VALUES (1, 'written here')");
    const [r0, r1, r2] = [10, 11, 12].map((oid, i): RelationDesc => ({ ...rel, oid, name: `p${i}` }));
    const ap = new Applier({ localDsn: n.dsn, localNode: { name: "here", id: 1 }, peer: { name: "up5", id: 5 }, originName: originName(DB, "g", "up5"), members: () => new Map(), log: testLogger("here") });
    let lsn = await ap.connect();
    const tx = (changes: Change[]): RemoteTransaction => {
      lsn += 1000n;
      return { xid: 1, commitLsn: lsn - 10n, endLsn: lsn, commitTime: BigInt(Date.now() - 60_000) * 1000n, changes };
    };
    const holder = new pg.Client(n.pg.server.clientConfig());
    await holder.connect();
    try {
      // Each table known to the session first (a table new to it is looked up between batches).
      await ap.submit({ kind: "apply", tx: tx([{ kind: "insert", rel: r0!, new: ["1", "from up5"] }, { kind: "insert", rel: r1!, new: ["2", "from up5"] }, { kind: "insert", rel: r2!, new: ["2", "from up5"] }]) });
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM p0 FOR UPDATE");
      // Batch 1 waits for the holder's lock; batch 2, behind it, meets a row written here (its optimistic update
      // fails and leaves the transaction aborted); the third transaction, the first to use p2's one-row insert,
      // waits for room, and goes out with that statement's PREPARE once batch 1 answers: both behind the failure.
      const sent: Promise<void>[] = [];
      for (const t of [
        tx([{ kind: "update", rel: r0!, old: null, new: ["1", "again from up5"] }]),
        tx([{ kind: "update", rel: r1!, old: null, new: ["1", "from up5 (older)"] }]),
        tx([{ kind: "insert", rel: r2!, new: ["1", "new"] }]),
      ]) {
        sent.push(ap.submit({ kind: "apply", tx: t }));
        await pause(50); // sent in a batch of its own while there is room
      }
      await holder.query("COMMIT");
      await Promise.all(sent);
      assert.equal(ap.stats.resolvingResends, 1, "the conflict stopped its batch");
      assert.equal(ap.stats.slowPathTransactions, 0, "the insert went again with its statement prepared anew, not to the slow path");
      assert.deepEqual((await n.client.query("SELECT id::text, v FROM p0")).rows, [{ id: "1", v: "again from up5" }]);
      assert.deepEqual((await n.client.query("SELECT id::text, v FROM p1 ORDER BY id")).rows, [{ id: "1", v: "written here" }, { id: "2", v: "from up5" }]);
      assert.deepEqual((await n.client.query("SELECT id::text, v FROM p2 ORDER BY id")).rows, [{ id: "1", v: "new" }, { id: "2", v: "from up5" }]);
    } finally {
      await holder.end();
      await ap.close();
    }
  });
});
