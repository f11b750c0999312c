// The apply lag in seconds (ReceiverStatus.lagSeconds, pgraft_apply_lag_seconds)
// measures how long the oldest change not applied yet has been waiting since
// it committed on the peer: after the peer was idle, the first transaction
// that waits must not read the idle time as lag (it did: the figure was "since
// the last applied transaction committed").
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { onAll, startNodes, startPlane, startPlanes, teardown, waitConverged, waitFor, type TestNode } from "./support.js";

const IDLE_MS = 3_000;

describe("apply lag in seconds", () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;

  before(async () => {
    nodes = await startNodes(2);
    [a, b] = nodes as [TestNode, TestNode];
    await onAll(nodes, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    await startPlanes(nodes);
  });

  after(async () => {
    await teardown(nodes);
  });

  const fromA = async () => (await b.plane!.status()).receivers.find((r) => r.peer === a.name)!;

  test("after the peer was idle, a waiting transaction's lag counts from its own commit, grows while it waits, and is 0 once applied", async () => {
    await a.client.query("INSERT INTO t VALUES (1, 'before the pause')");
    await waitConverged(nodes, ["t"]);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    // b's applier cannot write t while this lock is held: a's next transaction waits on b.
    const holder = new pg.Client(b.pg.server.clientConfig());
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE t IN SHARE MODE");
      const beforeCommit = Date.now();
      await a.client.query("INSERT INTO t VALUES (2, 'after the pause')");
      let first = 0;
      await waitFor(
        async () => {
          const r = await fromA();
          first = r.lagSeconds ?? 0;
          return (r.lagBytes ?? 0) > 0 && first > 0;
        },
        20_000,
        "b to see itself behind a",
      );
      const bound = (Date.now() - beforeCommit) / 1000;
      assert.ok(first <= bound, `lag ${first} s is at most the time since a's transaction began committing (${bound} s), not the ${IDLE_MS / 1000} s idle before it`);
      await new Promise((r) => setTimeout(r, 300));
      const later = (await fromA()).lagSeconds ?? 0;
      assert.ok(later > first, `the lag grows while the transaction waits (${first} -> ${later} s)`);
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      await holder.end();
    }
    await waitConverged(nodes, ["t"]);
    await waitFor(async () => (await fromA()).lagSeconds === 0, 20_000, "the lag back to 0 once applied");
  });

  test("behind with nothing received yet: the lag is at most the time since b was caught up, not a delay measured long ago", async () => {
    // A transaction that reaches b CATCHUP_MS after its commit (b's data plane was stopped meanwhile).
    const CATCHUP_MS = 10_000;
    await b.plane!.stop();
    await a.client.query("INSERT INTO t VALUES (3, 'while b was stopped')");
    await new Promise((r) => setTimeout(r, CATCHUP_MS));
    await startPlane(nodes, b);
    await waitConverged(nodes, ["t"]);
    await waitFor(async () => (await fromA()).lagBytes === 0, 20_000, "b caught up with a");
    const caughtUpSeen = Date.now();
    // An open transaction on a writes WAL that is not sent before it commits: b is behind a's position, and nothing waits on b.
    const writer = new pg.Client(a.pg.server.clientConfig());
    await writer.connect();
    try {
      await writer.query("BEGIN");
      await writer.query("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(100, 40099) g");
      let lag = 0;
      await waitFor(
        async () => {
          const r = await fromA();
          lag = r.lagSeconds ?? 0;
          return (r.lagBytes ?? 0) > 0;
        },
        20_000,
        "b to see a's WAL position ahead of it",
      );
      const bound = (Date.now() - caughtUpSeen) / 1000 + 1;
      assert.ok(lag <= bound, `lag ${lag} s is at most the time since b was seen caught up (+1 s for the sample it went by: ${bound} s), not the ${CATCHUP_MS / 1000} s the last arrival took`);
      assert.ok(bound < CATCHUP_MS / 1000, `the check tells the two apart (${bound} s)`);
    } finally {
      await writer.query("ROLLBACK").catch(() => undefined);
      await writer.end();
    }
  });
});
