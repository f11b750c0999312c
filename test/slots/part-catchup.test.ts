// A part's catch-up through a third node (src/slots/catchup.ts) and the group
// slot's hold-back that makes it possible (provider.ts): c stops receiving
// from a while a writes and b applies; a dies; c then gets exactly a's
// transactions it lacked from b's WAL — once each, with a's end LSNs (its
// progress for a ends where b's does) and a's commit timestamps — and b's
// group slot never moved past them while c lacked them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Pgoutput } from "pg-logical-replication";
import { TransactionAssembler } from "../../src/slots/decoder.js";
import { catchUpFrom, catchupSlotName, isPgraftSlot, originName } from "../../src/slots/index.js";
import { lsn, onAll, peersOf, startNodes, startPlanes, tableHash, teardown, testLogger, waitCaughtUp, waitFor, DB, type TestNode } from "./support.js";

describe("relay mode of the transaction assembler", () => {
  const rel: Pgoutput.MessageRelation = {
    tag: "relation",
    relationOid: 1,
    schema: "public",
    name: "t",
    replicaIdentity: "default",
    keyColumns: ["id"],
    columns: [{ name: "id", flags: 1, typeOid: 23, typeMod: -1, typeSchema: null, typeName: null, parser: (x: unknown) => x }],
  };
  const begin = (xid: number): Pgoutput.MessageBegin => ({ tag: "begin", commitLsn: "0/100", commitTime: 42n, xid });
  const commit = (end: string): Pgoutput.MessageCommit => ({ tag: "commit", flags: 0, commitLsn: "0/100", commitEndLsn: end, commitTime: 42n });

  test("keeps only the relayed origin's transactions, ending at the origin's LSN; skips local and other origins", () => {
    const a = new TransactionAssembler({ relayOrigin: "pgraft_p" });
    a.push(begin(1));
    a.push({ tag: "origin", originLsn: "0/5000", originName: "pgraft_p" });
    a.push(rel);
    a.push({ tag: "insert", relation: rel, new: { id: "1" } });
    const kept = a.push(commit("0/200"));
    assert.ok(kept?.kind === "apply");
    assert.equal(kept.tx.endLsn, 0x5000n);
    assert.equal(kept.relayEndLsn, 0x200n);
    assert.equal(kept.tx.commitTime, 42n);
    a.push(begin(2));
    a.push({ tag: "insert", relation: rel, new: { id: "2" } });
    assert.deepEqual(a.push(commit("0/300")), { kind: "skip", endLsn: 0x300n, reason: "origin", commitTime: 42n }, "a local transaction of the relaying node");
    a.push(begin(3));
    a.push({ tag: "origin", originLsn: "0/6000", originName: "pgraft_q" });
    a.push({ tag: "insert", relation: rel, new: { id: "3" } });
    assert.deepEqual(a.push(commit("0/400")), { kind: "skip", endLsn: 0x400n, reason: "origin", commitTime: 42n }, "another origin");
    a.push(begin(4));
    a.push({ tag: "origin", originLsn: null, originName: "pgraft_p" });
    a.push({ tag: "insert", relation: rel, new: { id: "4" } });
    assert.throws(() => a.push(commit("0/500")), /no origin LSN/);
  });
});

describe("a part's catch-up through a third node", { timeout: 180_000 }, () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;
  let c: TestNode;
  const groupSlot = async (n: TestNode): Promise<bigint> =>
    lsn((await n.client.query<{ l: string }>("SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = 'bdr_postgres_g1'")).rows[0]!.l);
  const walLsn = async (n: TestNode): Promise<bigint> => lsn((await n.client.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l);
  const commitTimes = async (n: TestNode): Promise<Map<string, string>> =>
    new Map((await n.client.query<{ id: string; ts: string }>("SELECT id::text, pg_xact_commit_timestamp(xmin)::text AS ts FROM t")).rows.map((r) => [r.id, r.ts]));

  before(async () => {
    nodes = await startNodes(3);
    [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    await onAll(nodes, "CREATE TABLE t (id int PRIMARY KEY, v text, n int)");
    await startPlanes(nodes);
  });

  after(async () => {
    await teardown(nodes);
  });

  test("bad input: clear errors", async () => {
    const cp = c.plane!;
    await assert.rejects(cp.catchUp({ source: "b", parting: "nobody" }), /"nobody" is not a peer of node c/);
    await assert.rejects(cp.catchUp({ source: "nobody", parting: "a" }), /"nobody" is not a peer/);
    await assert.rejects(cp.catchUp({ source: "a", parting: "a" }), /is the parting node itself/);
    await assert.rejects(cp.catchUp({ source: "b", parting: "a" }), /still receives from a; stopReceiving\("a"\) first/);
    await assert.rejects(cp.stopReceiving("nobody"), /not a peer/);
    await assert.rejects(cp.resumeReceiving("nobody"), /not a peer/);
    await assert.rejects(cp.originProgress("a"), /still receives from it/);
    await assert.rejects(cp.setPeers(peersOf(nodes, c), { notReceiving: ["nobody"] }), /"nobody" is not a peer/);
    const base = { localDsn: c.dsn, db: DB, group: "g1", members: () => new Map(), log: testLogger("c") };
    const spec = (n: TestNode) => ({ name: n.name, id: n.id, dsn: n.dsn });
    await assert.rejects(catchUpFrom({ ...base, localNode: { name: "c", id: 3 }, source: spec(c), parting: { name: "a", id: 1 } }), /the source "c" is this node/);
    await assert.rejects(catchUpFrom({ ...base, localNode: { name: "c", id: 3 }, source: spec(b), parting: { name: "c", id: 3 } }), /the parting node "c" is this node/);
    assert.deepEqual((await cp.status()).notReceiving, [], "nothing changed");
  });

  test("c lacks a's last transactions, b has them, a dies: c catches up from b, exactly once, with a's LSNs and commit times", async () => {
    // Some of a's transactions that every node has (the catch-up stream holds them too: they must not be applied again).
    for (let i = 1; i <= 5; i++) await a.client.query("INSERT INTO t VALUES ($1, 'early', 0)", [i]);
    await waitFor(async () => (await tableHash(c.client, "t")).rows === 5 && (await tableHash(b.client, "t")).rows === 5, 20_000, "the early rows everywhere");
    const cStop = await c.plane!.stopReceiving("a");
    const cFrom = cStop.progress;
    assert.ok(lsn(cStop.has) >= lsn(cStop.progress));
    assert.deepEqual((await c.plane!.status()).notReceiving, ["a"]);
    assert.ok(!(await c.plane!.status()).receivers.some((r) => r.peer === "a"), "no receiver from a on c");
    assert.ok((await c.plane!.status()).slots.some((s) => s.peer === "a"), "a's node slot on c stays");

    const b0 = await walLsn(b);
    const a0 = (await a.client.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l;
    // a's transactions that c will lack: inserts, updates, a delete, a multi-row one.
    const writes: string[] = [];
    for (let i = 6; i <= 205; i++) writes.push(`INSERT INTO t VALUES (${i}, 'late ${i}', ${i})`);
    for (let i = 6; i <= 205; i += 10) writes.push(`UPDATE t SET n = n + 1000, v = v || ' updated' WHERE id = ${i}`);
    writes.push("DELETE FROM t WHERE id = 7");
    writes.push("INSERT INTO t SELECT g, 'bulk', g FROM generate_series(1000, 1999) g");
    writes.push("UPDATE t SET v = 'early, updated late' WHERE id = 2");
    for (const w of writes) await a.client.query(w);
    const last = (await a.client.query<{ x: string }>("SELECT xmin::text AS x FROM t WHERE id = 2")).rows[0]!.x;
    const aHash = await tableHash(a.client, "t");
    const aTimes = await commitTimes(a);
    await waitFor(async () => (await tableHash(b.client, "t")).hash === aHash.hash, 30_000, "b to apply a's rows");
    assert.equal((await tableHash(c.client, "t")).rows, 5, "c has none of them");
    await waitCaughtUp(nodes);

    // The hold-back: every node slot on b is past a's transactions (the old rule would move the group slot
    // there: c confirmed them, it skips what b applied from a), but c lacks them, so it stays before them.
    const bSlots = (await b.plane!.status()).slots.filter((s) => s.kind === "node");
    assert.ok(bSlots.every((s) => lsn(s.confirmedFlushLsn!) > b0), `b's node slots confirmed past ${b0}: ${JSON.stringify(bSlots.map((s) => s.confirmedFlushLsn))}`);
    assert.equal(await b.plane!.advanceGroupSlot(), undefined);
    assert.equal(await b.plane!.advanceGroupSlot(), undefined);
    assert.ok((await groupSlot(b)) <= b0, "b's group slot stays before a's transactions c lacks");
    // On a, where nobody lacks anything of a third node, the group slot does move.
    assert.ok(await a.plane!.advanceGroupSlot(), "a's group slot moves");

    // The end of a's last transaction on a, from its WAL: what b's origin for a must say.
    await a.client.query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
    const end = (
      await a.client.query<{ e: string }>(
        "SELECT end_lsn::text AS e FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_lsn()) WHERE xid = $2::xid AND record_type = 'COMMIT'",
        [a0, last],
      )
    ).rows[0]!.e;

    // a dies (sidecar and PostgreSQL, as kill -9 would).
    a.plane!.abort();
    a.plane = undefined;
    await a.pg.server.kill();
    const bProgress = (await b.plane!.stopReceiving("a")).progress;
    assert.equal(bProgress, end, "b's progress for a is the END LSN of a's last transaction on a");

    const r = await c.plane!.catchUp({ source: "b", parting: "a" });
    assert.equal(r.from, cFrom);
    assert.equal(r.to, bProgress, "c's progress for a ends where b's does");
    assert.equal(r.target, bProgress);
    assert.equal(r.complete, true);
    assert.equal(r.applied, writes.length, "each of a's transactions c lacked, once");
    assert.ok(r.alreadyHere >= 5, `a's early transactions were in the stream and not applied again (${r.alreadyHere})`);
    assert.equal(r.slot, catchupSlotName(DB, "g1", "c", "a"));
    assert.ok(isPgraftSlot(r.slot) && Buffer.byteLength(r.slot) <= 63);
    assert.equal(await c.plane!.originProgress("a"), bProgress);
    assert.deepEqual((await tableHash(c.client, "t")).hash, aHash.hash, "c holds exactly a's rows");
    assert.deepEqual((await tableHash(c.client, "t")).hash, (await tableHash(b.client, "t")).hash);
    assert.deepEqual(await commitTimes(c), aTimes, "every row carries a's commit time on c");
    const left = await b.client.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'bdr_postgres_g1_pc_%'");
    assert.equal(left.rows.length, 0, "the copied slot is gone on b");

    // Again: nothing to do, nothing applied twice.
    const again = await c.plane!.catchUp({ source: "b", parting: "a" });
    assert.equal(again.applied, 0);
    assert.equal(again.slot, null);
    assert.equal(again.to, bProgress);
    assert.equal((await tableHash(c.client, "t")).hash, aHash.hash);

    // a is parted: its slots and origins go; b's group slot moves past a's transactions now that nobody lacks them.
    const rest = [b, c];
    for (const n of rest) await n.plane!.setPeers(peersOf(rest, n));
    await c.client.query("INSERT INTO t VALUES (5000, 'after the part', 0)");
    await waitFor(async () => (await b.client.query("SELECT 1 FROM t WHERE id = 5000")).rows.length === 1, 20_000, "c's new row on b");
    await waitCaughtUp(rest);
    const moved = await b.plane!.advanceGroupSlot();
    assert.ok(moved && lsn(moved.to) > b0, `b's group slot moves past a's transactions: ${JSON.stringify(moved)}`);
    for (const n of rest) {
      const origins = await n.client.query("SELECT 1 FROM pg_replication_origin WHERE roname = $1", [originName(DB, "g1", "a")]);
      assert.equal(origins.rows.length, 0, `${n.name}: a's origin is dropped`);
      const slots = await n.client.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots ORDER BY 1");
      assert.deepEqual(
        slots.rows.map((x) => x.slot_name),
        ["bdr_postgres_g1", `bdr_postgres_g1_${n === b ? "c" : "b"}`],
        `${n.name}: a's node slot is dropped`,
      );
    }
  });
});
