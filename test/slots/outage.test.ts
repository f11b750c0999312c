// The data plane beside a PostgreSQL that goes away (issue 10, sections 3
// and 4), at DataPlane level: two nodes a and b.
// - a's server stops under its data plane: status() still answers (slots
//   `unknown`, the connection down since when, the health line a warning),
//   the outage is logged once however often it is asked, and once the server
//   is back the same data plane streams, converges and advances its group slot.
// - PostgreSQL invalidates a's slot for b (max_slot_wal_keep_size) while b is
//   away: a reports it `slot_lost`, b's receiver stops with `slot_lost`, both
//   health lines are critical, and the slot is not made again.
import assert from "node:assert/strict";
import pg from "pg";
import { after, before, describe, test } from "node:test";
import { dataPlaneHealth, type SlotsLogger } from "../../src/slots/index.js";
import { onAll, startNodes, startPlane, teardown, testLogger, textTypes, waitConverged, waitFor, waitStreaming, type TestNode } from "./support.js";

/** A logger that keeps what it is told (and passes it on to the test log). */
function recording(node: string): { log: SlotsLogger; lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const inner = testLogger(node);
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (msg: string, fields?: Record<string, unknown>): void => {
      lines.push({ level, msg });
      inner[level](msg, fields);
    };
  return { log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

/** A new session for the test's own SQL on `n` (the old one died with its server). */
async function reconnect(n: TestNode): Promise<void> {
  await n.client.end().catch(() => undefined);
  const c = new pg.Client({ ...n.pg.server.clientConfig(), types: textTypes });
  c.on("error", () => {});
  await c.connect();
  n.client = c;
}

describe("a data plane whose PostgreSQL goes away", () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;
  const rec = recording("a");

  before(async () => {
    nodes = await startNodes(2);
    [a, b] = nodes as [TestNode, TestNode];
    for (const n of nodes) n.client.on("error", () => {});
    await onAll(nodes, "CREATE TABLE t (id text PRIMARY KEY, v int)");
    await startPlane(nodes, a, { log: rec.log });
    await startPlane(nodes, b);
    await waitStreaming(nodes);
  });

  after(async () => {
    await teardown(nodes);
  });

  test("its server stopped: status() answers and says so, the outage is logged once; restarted: the same data plane streams and converges", async () => {
    await a.client.query("INSERT INTO t VALUES ('a-before', 1)");
    await b.client.query("INSERT INTO t VALUES ('b-before', 1)");
    await waitConverged(nodes, ["t"]);

    await a.pg.server.stop({ mode: "fast" });
    let st = await a.plane!.status();
    for (let i = 0; i < 5; i++) st = await a.plane!.status();
    assert.deepEqual(
      st.slots.map((s) => [s.name, s.state]),
      [
        ["bdr_postgres_g1", "unknown"],
        ["bdr_postgres_g1_b", "unknown"],
      ],
    );
    assert.match(st.slots[0]!.error ?? "", /cannot be reached/);
    assert.equal(st.connection.connected, false);
    assert.ok(st.connection.downSince instanceof Date);
    assert.equal(dataPlaneHealth(st).severity, "warning");
    assert.equal(rec.lines.filter((l) => l.level === "warn" && l.msg.startsWith("data plane admin connection")).length, 1, "one warning for the outage");
    // Meanwhile b keeps writing, and its health check says a's changes are not arriving.
    await b.client.query("INSERT INTO t VALUES ('b-during', 1)");
    await waitFor(async () => dataPlaneHealth(await b.plane!.status()).severity === "warning", 20_000, "b's health to warn that a's stream is down");
    assert.match(dataPlaneHealth(await b.plane!.status()).detail, /not receiving from a \(since /);

    await a.pg.server.start();
    await reconnect(a);
    await waitFor(async () => (await a.plane!.status()).slots.every((s) => s.state !== "unknown"), 20_000, "a's slots known again");
    await waitStreaming(nodes, 30_000);
    await a.client.query("INSERT INTO t VALUES ('a-after', 1)");
    await waitConverged(nodes, ["t"]);
    st = await a.plane!.status();
    assert.equal(st.connection.connected, true);
    assert.equal(dataPlaneHealth(st).severity, "ok", dataPlaneHealth(st).detail);
    await waitFor(async () => (await a.plane!.advanceGroupSlot()) !== undefined, 20_000, "a's group slot to move again");
    assert.equal(rec.lines.filter((l) => l.level === "info" && /^data plane admin connection.*: back$/.test(l.msg)).length, 1, "its end logged once");
  });

  test("its node slot for a peer invalidated by PostgreSQL: slot_lost on both ends, not made again", async () => {
    // b goes away; a writes past max_slot_wal_keep_size and checkpoints: PostgreSQL invalidates a's slot for b.
    b.plane!.abort();
    b.plane = undefined;
    await a.client.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await a.client.query("SELECT pg_reload_conf()");
    await waitFor(
      async () => {
        await a.client.query("INSERT INTO t SELECT 'bulk-' || g || '-' || random(), g FROM generate_series(1, 200) g");
        await a.client.query("SELECT pg_switch_wal()");
        await a.client.query("CHECKPOINT");
        const r = await a.client.query<{ s: string | null }>("SELECT wal_status AS s FROM pg_replication_slots WHERE slot_name = 'bdr_postgres_g1_b'");
        return r.rows[0]?.s === "lost";
      },
      60_000,
      "a's slot for b invalidated",
      200,
    );
    const mine = (await a.plane!.status()).slots.find((s) => s.peer === "b")!;
    assert.equal(mine.state, "slot_lost");
    assert.match(mine.error ?? "", /invalidated.*resync b/);
    assert.equal(dataPlaneHealth(await a.plane!.status()).severity, "critical");
    assert.equal(rec.lines.filter((l) => l.level === "error" && l.msg === "node slot lost").length, 1);

    // b comes back: its receiver from a stops for good.
    const recB = recording("b");
    await startPlane(nodes, b, { log: recB.log });
    await waitFor(async () => (await b.plane!.status()).receivers.find((r) => r.peer === "a")?.state === "slot_lost", 30_000, "b's stream from a to be slot_lost");
    const r = (await b.plane!.status()).receivers.find((x) => x.peer === "a")!;
    assert.match(r.lastError ?? "", /bdr_postgres_g1_b on a was invalidated.*resync node b/);
    assert.equal(dataPlaneHealth(await b.plane!.status()).severity, "critical");
    assert.equal(recB.lines.filter((l) => l.level === "error" && l.msg === "replication from peer stopped: slot lost").length, 1);
    // The other direction is untouched.
    await b.client.query("INSERT INTO t VALUES ('b-later', 1)");
    await waitFor(async () => (await a.client.query("SELECT 1 FROM t WHERE id = 'b-later'")).rows.length === 1, 20_000, "b's row on a");
    // Setting the peers again does not make the slot anew.
    await a.plane!.setPeers([{ name: b.name, id: b.id, dsn: b.dsn }], { notReceiving: [] });
    assert.equal((await a.plane!.status()).slots.find((s) => s.peer === "b")!.state, "slot_lost");
    const slot = await a.client.query<{ s: string }>("SELECT wal_status AS s FROM pg_replication_slots WHERE slot_name = 'bdr_postgres_g1_b'");
    assert.deepEqual(slot.rows, [{ s: "lost" }], "the invalidated slot is left as it is");
  });
});
