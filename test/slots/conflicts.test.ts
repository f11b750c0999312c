// Conflicts between two nodes, made deterministic by stopping replication
// (the data planes; their slots keep everything) while both nodes write the
// same rows, then starting it again: last update wins on the commit
// timestamp, update_missing inserts, delete_missing skips, and every
// conflict is a row in pgraft.conflict_history on the node that met it.
// A tie of timestamps (which two real servers practically never produce) is
// set up directly against the applier: the higher node id wins.
import assert from "node:assert/strict";
import pg from "pg";
import { after, before, describe, test } from "node:test";
import { Applier } from "../../src/slots/applier.js";
import { readConflicts, watchedConflicts, type ConflictRow } from "../../src/slots/index.js";
import { connectClient } from "../../src/slots/connection.js";
import { microsToTimestamptz } from "../../src/slots/lsn.js";
import { originName } from "../../src/slots/naming.js";
import type { RelationDesc } from "../../src/slots/types.js";
import { DB, onAll, startNodes, startPlane, startPlanes, teardown, testLogger, waitCaughtUp, waitConverged, waitFor, waitStreaming, type TestNode } from "./support.js";

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("conflicts", () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;

  before(async () => {
    nodes = await startNodes(2);
    [a, b] = nodes as [TestNode, TestNode];
    await onAll(nodes, "CREATE TABLE c (id int PRIMARY KEY, v text); CREATE TABLE tie (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE, v text)");
    await startPlanes(nodes);
  });

  after(async () => {
    await teardown(nodes);
  });

  /** Stop replication both ways, run `writes` (on both nodes), start it again and wait until both agree. */
  async function disconnected(writes: () => Promise<void>, tables = ["c"], extra: Parameters<typeof startPlane>[2] = {}): Promise<void> {
    await waitCaughtUp(nodes);
    await Promise.all(nodes.map((n) => n.plane!.stop()));
    await writes();
    await Promise.all(nodes.map((n) => startPlane(nodes, n, extra)));
    await waitConverged(nodes, tables);
    await waitCaughtUp(nodes);
  }

  const rows = async (n: TestNode, sql = "SELECT id::text, v FROM c ORDER BY id") => (await n.client.query<{ id: string; v: string }>(sql)).rows;
  const conflicts = async (n: TestNode, id: number): Promise<ConflictRow[]> => (await readConflicts(n.client)).filter((r) => r.key === `{"id": "${id}"}`);

  test("concurrent updates of one row: the later commit wins on both nodes; the losing side's update_origin_change is logged", async () => {
    await a.client.query("INSERT INTO c VALUES (1, 'initial')");
    await waitConverged(nodes, ["c"]);
    await disconnected(async () => {
      await a.client.query("UPDATE c SET v = 'from a (earlier)' WHERE id = 1");
      await pause(5);
      await b.client.query("UPDATE c SET v = 'from b (later)' WHERE id = 1");
    });
    for (const n of nodes) assert.deepEqual(await rows(n), [{ id: "1", v: "from b (later)" }], n.name);
    // On a, b's newer update replaced a's row: an update_origin_change that PGD does not log by default.
    assert.deepEqual(await conflicts(a, 1), [], "a logs nothing by default");
    const [cb] = await conflicts(b, 1);
    assert.ok(cb, "b recorded the conflict");
    assert.equal(cb.conflict_type, "update_origin_change");
    assert.equal(cb.resolution, "keep_local");
    assert.equal(cb.local_node, "b");
    assert.equal(cb.origin_node, "a");
    assert.equal(cb.local_origin, "b");
    assert.match(cb.local_tuple ?? "", /from b \(later\)/);
    assert.match(cb.remote_tuple ?? "", /from a \(earlier\)/);
    assert.ok(cb.local_commit_ts! > cb.remote_commit_ts, `${cb.local_commit_ts} > ${cb.remote_commit_ts}`);
  });

  test("with log_origin_change on, the update that wins is logged too: both sides saw the same two versions", async () => {
    await a.client.query("INSERT INTO c VALUES (6, 'initial')");
    await waitConverged(nodes, ["c"]);
    await disconnected(
      async () => {
        await a.client.query("UPDATE c SET v = 'from a (earlier)' WHERE id = 6");
        await pause(5);
        await b.client.query("UPDATE c SET v = 'from b (later)' WHERE id = 6");
      },
      ["c"],
      { logOriginChange: () => true },
    );
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM c WHERE id = 6"), [{ id: "6", v: "from b (later)" }], n.name);
    const [ca] = await conflicts(a, 6);
    assert.ok(ca, "a recorded the conflict");
    assert.deepEqual([ca.conflict_type, ca.resolution, ca.local_origin, ca.origin_node], ["update_origin_change", "apply_remote", "a", "b"]);
    assert.match(ca.local_tuple ?? "", /from a \(earlier\)/, "the local row as it was before");
    const [cb] = await conflicts(b, 6);
    assert.deepEqual([cb?.conflict_type, cb?.resolution], ["update_origin_change", "keep_local"]);
    assert.equal(cb!.local_commit_ts, ca.remote_commit_ts);
    assert.equal(cb!.remote_commit_ts, ca.local_commit_ts);
  });

  test("the same key inserted on both: insert_exists, the later insert wins", async () => {
    await disconnected(async () => {
      await a.client.query("INSERT INTO c VALUES (2, 'a inserted first')");
      await pause(5);
      await b.client.query("INSERT INTO c VALUES (2, 'b inserted later')");
    });
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM c WHERE id = 2"), [{ id: "2", v: "b inserted later" }], n.name);
    assert.deepEqual(
      (await conflicts(a, 2)).map((r) => [r.conflict_type, r.resolution]),
      [["insert_exists", "apply_remote"]],
    );
    assert.deepEqual(
      (await conflicts(b, 2)).map((r) => [r.conflict_type, r.resolution]),
      [["insert_exists", "keep_local"]],
    );
  });

  const uConflicts = async (n: TestNode, email: string) =>
    (await readConflicts(n.client)).filter((r) => r.key === `{"email": "${email}"}`).map((r) => [r.table_name, r.conflict_type, r.resolution]);

  test("another unique column's value inserted on both under different keys: insert_exists on that index, the later insert wins", async () => {
    await disconnected(async () => {
      await a.client.query("INSERT INTO u VALUES (1, 'x@example', 'a inserted first')");
      await pause(5);
      await b.client.query("INSERT INTO u VALUES (2, 'x@example', 'b inserted later')");
    }, ["u"]);
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM u WHERE email = 'x@example'"), [{ id: "2", v: "b inserted later" }], n.name);
    assert.deepEqual(await uConflicts(a, "x@example"), [['"public"."u"', "insert_exists", "apply_remote"]]);
    assert.deepEqual(await uConflicts(b, "x@example"), [['"public"."u"', "insert_exists", "keep_local"]]);
  });

  test("an update that takes another row's unique value: update_exists; the later change wins on both nodes", async () => {
    await a.client.query("INSERT INTO u VALUES (11, 'z@example', 'will take y')");
    await waitConverged(nodes, ["u"]);
    await disconnected(async () => {
      await b.client.query("INSERT INTO u VALUES (10, 'y@example', 'b, earlier')");
      await pause(5);
      await a.client.query("UPDATE u SET email = 'y@example', v = 'a, later' WHERE id = 11");
    }, ["u"]);
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM u WHERE id IN (10, 11) ORDER BY u.id"), [{ id: "11", v: "a, later" }], n.name);
    assert.deepEqual(await uConflicts(b, "y@example"), [['"public"."u"', "update_exists", "apply_remote"]]);
    assert.deepEqual(await uConflicts(a, "y@example"), [['"public"."u"', "insert_exists", "keep_local"]]);
  });

  test("update of a row deleted elsewhere: update_missing inserts it; the older delete loses", async () => {
    await a.client.query("INSERT INTO c VALUES (3, 'to be deleted on b, updated on a')");
    await waitConverged(nodes, ["c"]);
    await disconnected(async () => {
      await b.client.query("DELETE FROM c WHERE id = 3");
      await pause(5);
      await a.client.query("UPDATE c SET v = 'updated on a after the delete' WHERE id = 3");
    });
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM c WHERE id = 3"), [{ id: "3", v: "updated on a after the delete" }], n.name);
    assert.deepEqual(
      (await conflicts(b, 3)).map((r) => [r.conflict_type, r.resolution, r.local_tuple]),
      [["update_missing", "insert_remote", null]],
    );
    assert.deepEqual(
      (await conflicts(a, 3)).map((r) => [r.conflict_type, r.resolution]),
      [["delete_recently_updated", "skip"]],
    );
  });

  test("a row deleted on both: delete_missing, skipped", async () => {
    await a.client.query("INSERT INTO c VALUES (4, 'deleted twice')");
    await waitConverged(nodes, ["c"]);
    await disconnected(async () => {
      await a.client.query("DELETE FROM c WHERE id = 4");
      await b.client.query("DELETE FROM c WHERE id = 4");
    });
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM c WHERE id = 4"), [], n.name);
    for (const n of nodes) {
      assert.deepEqual(
        (await conflicts(n, 4)).map((r) => [r.conflict_type, r.resolution]),
        [["delete_missing", "skip"]],
        n.name,
      );
    }
  });

  test("an incoming update older than the row's committed version is decided without waiting for a local transaction that holds the row", async () => {
    await a.client.query("INSERT INTO c VALUES (30, 'initial')");
    await waitConverged(nodes, ["c"]);
    await waitCaughtUp(nodes);
    await Promise.all(nodes.map((n) => n.plane!.stop()));
    await a.client.query("UPDATE c SET v = 'from a (earlier)' WHERE id = 30");
    await pause(5);
    await b.client.query("UPDATE c SET v = 'from b (later)' WHERE id = 30");
    // A local transaction on b holds the row (uncommitted) while a's older update arrives.
    const holder = new pg.Client(b.pg.server.clientConfig());
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("UPDATE c SET v = 'from b (held)' WHERE id = 30");
      await Promise.all(nodes.map((n) => startPlane(nodes, n)));
      // a's update loses to b's committed version whatever the holder does: b decides it with the lock still held.
      await waitFor(async () => (await conflicts(b, 30)).some((r) => r.conflict_type === "update_origin_change" && r.resolution === "keep_local"), 20_000, "b to log a's update as keep_local while the row is locked");
      assert.match((await conflicts(b, 30))[0]!.local_tuple ?? "", /from b \(later\)/, "decided on the committed version");
      await holder.query("COMMIT");
    } finally {
      await holder.end();
    }
    await waitConverged(nodes, ["c"]);
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM c WHERE id = 30"), [{ id: "30", v: "from b (held)" }], n.name);
  });

  test("a resolving update that waits for a local transaction holding its row is decided on the version that transaction leaves, in line", async () => {
    await onAll(nodes, "CREATE TABLE IF NOT EXISTS held (id int PRIMARY KEY, v text)");
    await a.client.query("INSERT INTO held VALUES (1, 'initial'), (2, 'initial'), (3, 'initial')");
    const peer = { name: "n6", id: 6 };
    const origin = originName(DB, "g1", peer.name);
    await a.client.query("SELECT pg_replication_origin_create($1)", [origin]);
    const rel: RelationDesc = { oid: 2, schema: "public", name: "held", replicaIdentity: "default", columns: [{ name: "id", typeOid: 23 }, { name: "v", typeOid: 25 }] };
    const ap = new Applier({ localDsn: a.dsn, localNode: { name: "a", id: 1 }, peer, originName: origin, members: () => new Map([[origin, peer]]), log: testLogger("a"), contendedMs: 120_000 });
    let lsn = (await ap.connect()) + 100n;
    const update = (id: number, v: string): Promise<void> => {
      lsn += 100n;
      const now = BigInt(Date.now()) * 1000n;
      return ap.submit({ kind: "apply", tx: { xid: 1, commitLsn: lsn - 50n, endLsn: lsn, commitTime: now, changes: [{ kind: "update", rel, old: null, new: [String(id), v] }] } });
    };
    const holder = new pg.Client(a.pg.server.clientConfig());
    await holder.connect();
    /** The incoming update of `id` waits for `holder`'s lock, then `end` ends the holder's transaction. */
    const held = async (id: number, end: "COMMIT" | "ROLLBACK"): Promise<void> => {
      await holder.query("BEGIN");
      await holder.query("UPDATE held SET v = 'held here' WHERE id = $1", [id]);
      const applied = update(id, "from n6");
      await waitFor(
        async () => (await a.client.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgraft_apply_n6' AND wait_event_type = 'Lock'")).rowCount === 1,
        20_000,
        "the applier to wait for the row's lock",
      );
      await holder.query(end);
      await applied;
    };
    try {
      // Another writer's row: the optimistic statement stops at it and the table turns resolving.
      await update(2, "from n6");
      assert.equal(ap.stats.resolvingResends, 1, "held is resolving");
      // The snapshot's version is older than the incoming update; the holder commits a newer one: the update loses to it.
      await held(1, "COMMIT");
      // The holder rolls back: the update wins against the version the snapshot saw.
      await held(3, "ROLLBACK");
    } finally {
      await holder.end();
      await ap.close();
    }
    assert.deepEqual(await rows(a, "SELECT id::text, v FROM held ORDER BY id"), [
      { id: "1", v: "held here" },
      { id: "2", v: "from n6" },
      { id: "3", v: "from n6" },
    ]);
    assert.equal(ap.stats.slowPathTransactions, 0, "decided in line");
    assert.equal(ap.stats.resolvingResends, 1, "decided by the statement that waited: no batch rolled back and sent again");
    const logged = (await readConflicts(a.client)).filter((r) => r.table_name === '"public"."held"');
    assert.deepEqual(
      logged.map((r) => [r.key, r.conflict_type, r.resolution]),
      [['{"id": "1"}', "update_origin_change", "keep_local"]],
      "only the lost update is logged (the won ones are update_origin_change conflicts PGD does not log)",
    );
    assert.match(logged[0]!.local_tuple ?? "", /held here/, "logged with the version the holder left, not the snapshot's");
    assert.equal(ap.stats.conflictsByKind.get("update_origin_change/apply_remote"), 2);
    assert.equal(ap.stats.conflictsByKind.get("update_origin_change/keep_local"), 1);
  });

  test("the conflict rate the health check watches spans the last window, not back to the last time someone asked", async () => {
    await onAll(nodes, "CREATE TABLE IF NOT EXISTS rate_t (id int PRIMARY KEY, v text)");
    // b's data plane samples its conflict total every 100 ms; its rate spans 1 s.
    await b.plane!.stop();
    await startPlane(nodes, b, { maintenanceIntervalMs: 100, conflictRateSpanMs: 1_000 });
    await waitStreaming(nodes);
    await a.client.query("INSERT INTO rate_t SELECT g, 'from a' FROM generate_series(1, 20) g");
    await waitConverged(nodes, ["rate_t"]);
    const watched = async (): Promise<number> => watchedConflicts((await b.plane!.status()).receivers.find((r) => r.peer === a.name)!.stats);
    // An update of rows another node wrote earlier is no conflict to watch: b updates a's rows, then a updates them again.
    await b.client.query("UPDATE rate_t SET v = 'from b'");
    await waitConverged(nodes, ["rate_t"]);
    await a.client.query("UPDATE rate_t SET v = 'from a again'");
    await waitConverged(nodes, ["rate_t"]);
    assert.equal(await watched(), 0, "updates of rows the other node wrote earlier");
    const before = await watched();
    await pause(1_200);
    // Both update every row and commit together, a first: a's older updates reach b, which has newer ones (keep_local).
    const [sa, sb] = [await connectClient(a.dsn, "rate-test"), await connectClient(b.dsn, "rate-test")];
    try {
      await Promise.all([sa, sb].map((s, i) => s.query(`BEGIN; UPDATE rate_t SET v = 'both, ${i ? "b" : "a"}'`)));
      await sa.query("COMMIT");
      await sb.query("COMMIT");
    } finally {
      await Promise.all([sa, sb].map((s) => s.end().catch(() => undefined)));
    }
    await waitConverged(nodes, ["rate_t"]);
    await pause(2_500); // more than the span and a tick: nothing since
    const st = await b.plane!.status();
    assert.ok((await watched()) - before >= 20, "b met a conflict per row");
    assert.equal(st.conflictsPerSecond, 0, "no conflict in the last second");
  });

  test("a table with a primary key and REPLICA IDENTITY FULL: concurrent updates are resolved in line, none on the slow path", async () => {
    await onAll(nodes, "CREATE TABLE IF NOT EXISTS full_c (id int PRIMARY KEY, v text); ALTER TABLE full_c REPLICA IDENTITY FULL");
    await a.client.query("INSERT INTO full_c VALUES (1, 'initial'), (2, 'initial')");
    await waitConverged(nodes, ["full_c"]);
    // (disconnected() starts new data planes: their counts are this exchange's alone.)
    const slow = async (): Promise<number> => (await Promise.all(nodes.map(async (n) => (await n.plane!.status()).receivers.reduce((x, r) => x + r.stats.slowPathTransactions, 0)))).reduce((x, y) => x + y, 0);
    await disconnected(
      async () => {
        await a.client.query("UPDATE full_c SET v = 'from a (earlier)'");
        await pause(5);
        await b.client.query("UPDATE full_c SET v = 'from b (later)'");
      },
      ["full_c"],
    );
    for (const n of nodes) assert.deepEqual(await rows(n, "SELECT id::text, v FROM full_c ORDER BY id"), [{ id: "1", v: "from b (later)" }, { id: "2", v: "from b (later)" }], n.name);
    assert.equal(await slow(), 0, "no transaction took the slow path");
  });

  test("rows written by the peer itself are no conflict (the fast path applies them)", async () => {
    const before = (await readConflicts(b.client)).length;
    await a.client.query("INSERT INTO c VALUES (5, 'a owns this')");
    await a.client.query("UPDATE c SET v = 'a updates it' WHERE id = 5");
    await a.client.query("DELETE FROM c WHERE id = 5");
    await waitConverged(nodes, ["c"]);
    await waitCaughtUp(nodes);
    assert.equal((await readConflicts(b.client)).length, before);
  });

  test("a tie of commit timestamps goes to the higher node id", async () => {
    // On a, a row version written "by node 3" at time T (through node 3's origin, as a's applier would have);
    // then the same update at the same T from node 2 (loses) and from node 4 (wins).
    const T = 1_900_000_000_000_000n;
    const members = new Map([
      [originName(DB, "g1", "n3"), { name: "n3", id: 3 }],
      [originName(DB, "g1", "n2"), { name: "n2", id: 2 }],
      [originName(DB, "g1", "n4"), { name: "n4", id: 4 }],
    ]);
    await a.client.query("SELECT pg_replication_origin_create($1)", [originName(DB, "g1", "n3")]);
    await a.client.query("SELECT pg_replication_origin_session_setup($1)", [originName(DB, "g1", "n3")]);
    await a.client.query("BEGIN");
    await a.client.query("SELECT pg_replication_origin_xact_setup('0/10', $1::timestamptz)", [microsToTimestamptz(T)]);
    await a.client.query("INSERT INTO tie VALUES (1, 'by n3 at T')");
    await a.client.query("COMMIT");
    await a.client.query("SELECT pg_replication_origin_session_reset()");

    const rel: RelationDesc = { oid: 1, schema: "public", name: "tie", replicaIdentity: "default", columns: [{ name: "id", typeOid: 23 }, { name: "v", typeOid: 25 }] };
    const apply = async (peer: { name: string; id: number }, v: string) => {
      const ap = new Applier({ localDsn: a.dsn, localNode: { name: "a", id: 1 }, peer, originName: originName(DB, "g1", peer.name), members: () => members, log: testLogger("a"), logOriginChange: () => true });
      const resume = await ap.connect();
      await ap.submit({ kind: "apply", tx: { xid: 1, commitLsn: resume + 100n, endLsn: resume + 200n, commitTime: T, changes: [{ kind: "update", rel, old: null, new: ["1", v] }] } });
      await ap.close();
    };
    await apply({ name: "n2", id: 2 }, "by n2 at T");
    assert.deepEqual(await rows(a, "SELECT id::text, v FROM tie"), [{ id: "1", v: "by n3 at T" }], "node 2 < node 3: local row kept");
    await apply({ name: "n4", id: 4 }, "by n4 at T");
    assert.deepEqual(await rows(a, "SELECT id::text, v FROM tie"), [{ id: "1", v: "by n4 at T" }], "node 4 > node 3: remote applied");
    const tie = (await readConflicts(a.client)).filter((r) => r.table_name === '"public"."tie"');
    assert.deepEqual(
      tie.map((r) => [r.origin_node, r.local_origin, r.conflict_type, r.resolution, r.local_commit_ts === r.remote_commit_ts]),
      [
        ["n2", "n3", "update_origin_change", "keep_local", true],
        ["n4", "n3", "update_origin_change", "apply_remote", true],
      ],
    );
  });
});
