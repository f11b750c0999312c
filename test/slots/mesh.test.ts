// Three nodes in a full mesh: concurrent writes everywhere converge, each
// node applies only what originated on its peer (test_decoding node slots:
// the peer's walsender drops the rest; c's node slots are pgoutput, as an
// older pgraft or a server without test_decoding made them: the rest arrives
// with an origin and is skipped), the group slot follows what every peer has
// confirmed, and a node that was down shows catchup, then streaming — on its
// receivers and on its peers' slots for it (seed 004, "Node restart and down
// node recovery").
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { StateChange } from "../../src/slots/index.js";
import { nodeSlotName } from "../../src/slots/naming.js";
import { DB, lsn, onAll, startPlane, startNodes, startPlanes, tableHash, teardown, waitCaughtUp, waitConverged, waitFor, type TestNode } from "./support.js";

const THRESHOLD = 64 * 1024;

describe("three nodes, full mesh", () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;
  let c: TestNode;
  /** Transactions each node wrote in the first test. */
  const applied = new Map<string, number>();

  before(async () => {
    nodes = await startNodes(3);
    [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    await onAll(nodes, "CREATE TABLE m (id text PRIMARY KEY, node text, n int, v numeric, note text)");
    for (const peer of [a, b]) await c.client.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [nodeSlotName(DB, "g1", peer.name)]);
    await startPlanes(nodes, { catchupThresholdBytes: THRESHOLD });
  });

  after(async () => {
    await teardown(nodes);
  });

  test("concurrent writes on all three converge; each change applied once; echoes dropped at the source, or skipped from a pgoutput slot", async () => {
    const counts = await Promise.all(
      nodes.map(async (n) => {
        let txns = 0;
        for (let i = 0; i < 150; i++) {
          await n.client.query("INSERT INTO m VALUES ($1, $2, $3, $4, $5)", [`${n.name}-${i}`, n.name, i, `${i}.000000000000000000001`, `from ${n.name} ✓`]);
          txns++;
          // (an update or delete that finds no row changes nothing: no transaction to replicate)
          if (i % 3 === 2) {
            const r = await n.client.query("UPDATE m SET n = n + 1000, note = note || ' updated' WHERE id = $1", [`${n.name}-${i - 2}`]);
            txns += r.rowCount ?? 0;
          }
          if (i % 5 === 4) {
            const r = await n.client.query("DELETE FROM m WHERE id = $1", [`${n.name}-${i - 1}`]);
            txns += r.rowCount ?? 0;
          }
        }
        return txns;
      }),
    );
    await waitConverged(nodes, ["m"]);
    await waitCaughtUp(nodes);
    const rows = (await tableHash(a.client, "m")).rows;
    assert.equal(rows, 3 * (150 - 30));
    const byName = new Map(nodes.map((n, i) => [n.name, counts[i]!]));
    for (const [k, v] of byName) applied.set(k, v);
    for (const n of nodes) {
      const st = await n.plane!.status();
      assert.equal(st.receivers.length, 2);
      for (const r of st.receivers) {
        assert.equal(r.stats.appliedTransactions, byName.get(r.peer), `${n.name} applied each transaction of ${r.peer} once`);
        assert.equal(r.stats.conflicts, 0);
        if (r.peer !== c.name) assert.equal(r.stats.skippedEchoes, 0, `${n.name} received echoes from ${r.peer}'s test_decoding slot`);
      }
    }
  });

  test("from c's pgoutput slots the echoes arrive and are skipped", async () => {
    // What c applied from the third node, and our own changes back, with their origins. (They trail the data:
    // c's walsender sends c's applied transactions once they are flushed, which c's applier does a few ms later.)
    for (const n of [a, b]) {
      const third = n === a ? b : a;
      const want = applied.get(third.name)! + applied.get(n.name)!;
      await waitFor(async () => (await n.plane!.status()).receivers.find((r) => r.peer === c.name)!.stats.skippedEchoes >= want, 10_000, `${n.name} to skip ${want} echoes from c`);
    }
  });

  test("a table without a primary key whose updates reach a node before its maintenance sweep: the applier makes it REPLICA IDENTITY FULL there", async () => {
    // Maintenance is off in these tests: only the applier can set it on b and c.
    await onAll(nodes, "CREATE TABLE np (k int, v text)");
    await a.client.query("ALTER TABLE np REPLICA IDENTITY FULL");
    await a.client.query("INSERT INTO np VALUES (1, 'one'), (2, 'two'), (3, NULL)");
    await a.client.query("UPDATE np SET v = 'uno' WHERE k = 1");
    await a.client.query("DELETE FROM np WHERE k = 2");
    await waitConverged(nodes, ["np"]);
    assert.equal((await tableHash(c.client, "np")).rows, 2);
    for (const n of [b, c]) {
      const r = await n.client.query<{ r: string }>("SELECT relreplident::text AS r FROM pg_class WHERE relname = 'np'");
      assert.equal(r.rows[0]!.r, "f", `${n.name}'s np`);
      const st = await n.plane!.status();
      assert.equal(st.receivers.find((x) => x.peer === a.name)!.stats.slowPathTransactions, 0, `${n.name} applied a's changes without the slow path`);
    }
  });

  test("the group slot advances to the oldest position every peer confirmed", async () => {
    await waitCaughtUp(nodes);
    const before = (await a.plane!.status()).slots;
    const group = before.find((s) => s.kind === "group")!;
    assert.equal(group.name, "bdr_postgres_g1");
    assert.equal(group.state, "inactive");
    const minOf = (slots: typeof before) =>
      slots
        .filter((s) => s.kind === "node")
        .map((s) => lsn(s.confirmedFlushLsn!))
        .reduce((x, y) => (x < y ? x : y));
    const moved = await a.plane!.advanceGroupSlot();
    assert.ok(moved, "it moved");
    const after = (await a.plane!.status()).slots;
    assert.deepEqual(after.filter((s) => s.kind === "node").map((s) => s.name).sort(), ["bdr_postgres_g1_b", "bdr_postgres_g1_c"]);
    // The peers keep confirming (keepalives), so: at least the oldest confirmation before, at most the oldest after.
    const group2 = lsn(after.find((s) => s.kind === "group")!.confirmedFlushLsn!);
    assert.equal(lsn(moved.to), group2);
    assert.ok(group2 >= minOf(before) && group2 <= minOf(after), `${group2} within [${minOf(before)}, ${minOf(after)}]`);
    assert.ok(lsn(moved.to) > lsn(moved.from));
  });

  test("peers come and go: a new peer's slot copied from the group slot, a parted one's dropped; the operator's slots untouched", async () => {
    await a.client.query("SELECT pg_create_logical_replication_slot('operator_cdc', 'test_decoding')");
    await a.client.query("SELECT pg_create_physical_replication_slot('standby1')");
    await waitCaughtUp(nodes);
    await a.plane!.advanceGroupSlot();
    const group = (await a.plane!.status()).slots.find((s) => s.kind === "group")!;
    const peers = [b, c].map((n) => ({ name: n.name, id: n.id, dsn: n.dsn }));
    const d = { name: "d", id: 4, dsn: "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=1" };
    await a.plane!.setPeers([...peers, d], { newSlotsFromGroupSlot: true });
    const withD = (await a.plane!.status()).slots.find((s) => s.peer === "d")!;
    assert.equal(withD.name, "bdr_postgres_g1_d");
    assert.equal(withD.state, "disconnected");
    assert.equal(withD.confirmedFlushLsn, group.confirmedFlushLsn, "d starts where every member has confirmed");
    await a.plane!.setPeers(peers);
    const names = (await a.client.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots ORDER BY 1")).rows.map((r) => r.slot_name);
    assert.deepEqual(names, ["bdr_postgres_g1", "bdr_postgres_g1_b", "bdr_postgres_g1_c", "operator_cdc", "standby1"]);
    assert.deepEqual(
      (await a.plane!.status()).receivers.map((r) => [r.peer, r.state]),
      [
        ["b", "streaming"],
        ["c", "streaming"],
      ],
    );
    await a.client.query("SELECT pg_drop_replication_slot('operator_cdc'), pg_drop_replication_slot('standby1')");
  });

  test("a node that was down catches up, then streams; its peers' slots for it show the same", async () => {
    // c goes down as a crashed sidecar would.
    c.plane!.abort();
    c.plane = undefined;
    await waitFor(
      async () => {
        const slots = (await a.plane!.status()).slots;
        return slots.find((s) => s.peer === "c")?.state === "disconnected";
      },
      10_000,
      "a's slot for c disconnected",
    );
    // The others write well past the catchup threshold meanwhile.
    for (const n of [a, b]) {
      await n.client.query(`DO $$ BEGIN FOR i IN 1..40 LOOP
          INSERT INTO m SELECT '${n.name}-bulk-' || i || '-' || g, '${n.name}', g, g * 0.5, repeat('z', 200) FROM generate_series(1, 150) g; COMMIT;
        END LOOP; END $$`);
    }
    const behind = (await a.plane!.status()).slots.find((s) => s.peer === "c")!;
    assert.ok(behind.lagBytes! > THRESHOLD, `a's slot for c is ${behind.lagBytes} bytes behind`);

    // c comes back: its receivers go catchup → streaming; a's and b's slots for c too. A lock held on c's table
    // keeps the catchup long enough to be seen for sure; once released, c catches up and streams.
    const changes: StateChange[] = [];
    const providerStates: string[] = [];
    await c.client.query("BEGIN");
    await c.client.query("LOCK TABLE m IN EXCLUSIVE MODE");
    await startPlane(nodes, c, { catchupThresholdBytes: THRESHOLD, onStateChange: (e) => changes.push(e) });
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const st = (await a.plane!.status()).slots.find((x) => x.peer === "c")!.state;
        if (providerStates[providerStates.length - 1] !== st) providerStates.push(st);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await waitFor(() => providerStates.includes("catchup"), 20_000, "a's slot for c in catchup");
      await waitFor(async () => (await c.plane!.status()).receivers.every((r) => r.state === "catchup"), 20_000, "c's receivers in catchup");
      await c.client.query("COMMIT");
      await waitConverged(nodes, ["m"], 60_000);
      await waitFor(async () => (await c.plane!.status()).receivers.every((r) => r.state === "streaming"), 20_000, "c's receivers streaming");
      await waitFor(
        async () => (await Promise.all([a, b].map((n) => n.plane!.status()))).every((s) => s.slots.find((x) => x.peer === "c")!.state === "streaming"),
        20_000,
        "a's and b's slots for c streaming",
      );
      await waitFor(() => providerStates[providerStates.length - 1] === "streaming", 5_000, "the poller to see streaming");
    } finally {
      polling = false;
      await poller;
      await c.client.query("ROLLBACK").catch(() => undefined); // (no-op once committed)
    }
    for (const peer of ["a", "b"]) {
      const seq = changes.filter((e) => e.peer === peer).map((e) => e.to);
      assert.deepEqual(seq, ["catchup", "streaming"], `c's receiver from ${peer}: ${seq.join(" → ")}`);
    }
    assert.deepEqual(providerStates, ["disconnected", "catchup", "streaming"]);
    assert.equal((await tableHash(c.client, "m")).rows, 3 * 120 + 2 * 40 * 150);
  });
});
