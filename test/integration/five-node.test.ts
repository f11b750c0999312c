// Five real sidecar processes: losing two of them at once (the leader among
// them) leaves a majority that keeps committing; the two come back and catch up.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TestCluster, waitFor, withLogs, type ClusterTestBody } from "./harness.js";

describe("5-node cluster of sidecar processes", () => {
  let cluster: TestCluster | undefined;
  const it = (name: string, fn: ClusterTestBody): void => {
    test(name, withLogs(() => cluster, fn));
  };

  before(async () => {
    cluster = await TestCluster.start({ nodes: 5, name: "five" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  it("elects a leader all five follow and commits a write read back everywhere", async (_t, c) => {
    const l = await c.leader();
    assert.equal(c.live().length, 5);
    const s = await c.status(l.id);
    assert.deepEqual(s.voters, [1, 2, 3, 4, 5]);
    assert.equal((await c.put(l.id, "five", "all")).succeeded, true);
    for (const id of c.live()) assert.equal(await c.get(id, "five"), "all", `node ${id}`);
  });

  it("kill -9 of two nodes, the leader among them: still writable; back again, they catch up", async (_t, c) => {
    await c.ensureHealthy();
    const old = await c.leader();
    const second = c.live().find((id) => id !== old.id)!;
    await Promise.all([c.kill9(old.id), c.kill9(second)]);
    assert.equal(c.live().length, 3);

    const next = await c.leader();
    assert.ok(![old.id, second].includes(next.id));
    assert.ok(next.term > old.term);
    for (let i = 0; i < 20; i++) await c.write(`three-of-five/${i}`, i);
    // Through a follower of the three, too.
    const follower = c.live().find((id) => id !== next.id)!;
    assert.equal((await c.put(follower, "three-of-five/last", "via follower")).succeeded, true);

    await Promise.all([c.restart(old.id), c.restart(second)]);
    for (const id of [old.id, second]) {
      await waitFor(`restarted node ${id} to serve the latest write from its own state`, async () => (await c.get(id, "three-of-five/last", { serializable: true })) === "via follower", {
        context: () => c.tails(),
      });
      assert.equal(await c.get(id, "three-of-five/19", { serializable: true }), 19);
    }
    const l = await c.leader();
    assert.equal(c.live().length, 5);
    await c.converge();
    for (const id of c.live()) assert.equal(await c.get(id, "three-of-five/0"), 0, `node ${id}`);
    assert.ok(l.term >= next.term);
    c.assertOneLeaderPerTerm();
  });

  it("SIGTERM of the leader while a follower is down: it hands leadership to a node that is up", async (_t, c) => {
    await c.ensureHealthy();
    const l = await c.leader();
    // With no write since, the dead node's log is as long as any: only its silence tells it apart.
    const dead = c.live().find((id) => id !== l.id)!;
    await c.kill9(dead);
    await waitFor(
      `leader ${l.id} to see node ${dead} as unreachable`,
      async () => {
        const m = await c.client(l.id).members({ clusterId: c.clusterId }, { timeoutMs: 2_000 });
        return m.members.find((x) => x.id === dead)?.reachable === false;
      },
      { context: () => c.tails() },
    );
    await c.stop(l.id);
    const msgs = c.node(l.id).logRecords().map((r) => String(r.msg));
    const handed = msgs.map((m) => /^transferred leadership to (\d+) before stopping$/.exec(m)).find((m) => m);
    assert.ok(handed, `the leader handed over before stopping (its log: ${msgs.filter((m) => /leadership/.test(m)).join(" | ")})`);
    assert.notEqual(Number(handed[1]), dead, "not to the node that is down");
    const next = await c.leader();
    assert.equal(next.id, Number(handed[1]));
    assert.equal((await c.write("after-handover", "ok")).succeeded, true);
    await c.ensureHealthy();
    for (const id of c.live()) assert.equal(await c.get(id, "after-handover"), "ok");
    c.assertOneLeaderPerTerm();
  });
});
