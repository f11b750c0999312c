// Membership and leadership with real sidecar processes: a node joins with
// --join and is promoted to voter, a node is removed, leadership is handed to
// a chosen node, and every node is restarted in turn (SIGTERM → hand-over →
// start) while writes keep committing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TestCluster, type PB, pb, waitFor, withLogs, type ClusterTestBody } from "./harness.js";
import { internalCall } from "../../src/daemon/internal-keys.js";

describe("membership and leadership with sidecar processes", () => {
  let cluster: TestCluster | undefined;
  const it = (name: string, fn: ClusterTestBody): void => {
    test(name, withLogs(() => cluster, fn));
  };

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, name: "membership" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  /** Members as node `via` sees them (from the leader when asked), id → role. */
  async function roles(c: TestCluster, via: number, fromLeader = false): Promise<Map<number, PB.MemberRole>> {
    const r = await c.client(via).members({ clusterId: c.clusterId, fromLeader }, { timeoutMs: 5_000 });
    return new Map(r.members.map((m) => [m.id, m.role]));
  }

  it("a node started with --join becomes a voter once caught up", async (_t, c) => {
    for (let i = 0; i < 30; i++) await c.write(`before-join/${i}`, i);
    const joined = await c.join(4);

    await waitFor(
      "node 4 to be listed as a voter by the leader",
      async () => {
        const l = await c.leader({ among: [1, 2, 3] });
        return (await roles(c, l.id)).get(4) === pb.MemberRole.VOTER;
      },
      { timeoutMs: 30_000, context: () => c.tails() },
    );
    // Every node, the new one included, applies the promotion.
    for (const id of c.live()) {
      await waitFor(`node ${id} to count node 4 among the voters`, async () => (await c.status(id)).voters.includes(4), { context: () => c.tails() });
    }
    const members = (await c.client(4).members({ clusterId: c.clusterId, fromLeader: true })).members;
    const m4 = members.find((m) => m.id === 4);
    assert.ok(m4, "node 4 is a member");
    assert.equal(m4.role, pb.MemberRole.VOTER);
    assert.equal(m4.raftAddress, joined.address);
    assert.equal(m4.name, "node4");
    assert.deepEqual(
      members.map((m) => m.id).sort(),
      [1, 2, 3, 4],
    );

    // It caught up: what was written before it existed is in its own state.
    await waitFor("node 4 to hold the writes made before it joined", async () => (await c.get(4, "before-join/29", { serializable: true })) === 29, {
      context: () => c.tails(),
    });
    assert.equal(await c.get(4, "before-join/0", { serializable: true }), 0);
    // Writes commit with four voters, through the new node too.
    assert.equal((await c.put(4, "after-join", "four voters")).succeeded, true);
    for (const id of c.live()) assert.equal(await c.get(id, "after-join"), "four voters");
    // The join bookkeeping key goes away once the node is promoted (the control loop's next proposal).
    await waitFor(
      "the promotion bookkeeping key to be deleted",
      async () => (await c.client(1).kvList({ clusterId: c.clusterId, prefix: "pgraft.internal/promote/" }, internalCall())).count === 0n,
      { context: () => c.tails() },
    );
  });

  it("RemoveMember: the node is gone from Members everywhere and writes still commit", async (_t, c) => {
    await c.ensureHealthy();
    const l = await c.leader();
    // A follower other than the newcomer; ask through yet another node (forwarded to the leader).
    const victim = [1, 2, 3].find((id) => id !== l.id)!;
    const via = c.live().find((id) => id !== l.id && id !== victim)!;
    const res = await c.client(via).removeMember({ clusterId: c.clusterId, id: victim }, { timeoutMs: 10_000 });
    assert.ok(!res.members.some((m) => m.id === victim), "the answer's membership lacks the removed node");

    await c.retire(victim);
    for (const id of c.live()) {
      await waitFor(`node ${id} to drop node ${victim} from its members`, async () => !(await roles(c, id)).has(victim), { context: () => c.tails() });
      const s = await c.status(id);
      assert.ok(!s.voters.includes(victim) && !s.learners.includes(victim), `node ${id} voters [${s.voters.join(",")}]`);
      assert.equal(s.voters.length, 3);
    }
    for (let i = 0; i < 5; i++) assert.equal((await c.write("after-remove", i)).succeeded, true);
    for (const id of c.live()) assert.equal(await c.get(id, "after-remove"), 4);
    c.assertOneLeaderPerTerm();
  });

  it("TransferLeader hands leadership to the chosen node", async (_t, c) => {
    await c.ensureHealthy();
    const l = await c.leader();
    const target = c.live().find((id) => id !== l.id)!;
    // Sent to a third node, so it is forwarded to the leader.
    const via = c.live().find((id) => id !== l.id && id !== target) ?? target;
    const res = await c.client(via).transferLeader({ clusterId: c.clusterId, targetId: target }, { timeoutMs: 10_000 });
    assert.equal(res.leaderId, target);
    const now = await c.leader();
    assert.equal(now.id, target, `node ${target} leads after the transfer`);
    assert.ok(now.term > l.term);
    assert.equal((await c.put(target, "after-transfer", true)).succeeded, true);

    // And back to the one that led before, through the new leader itself.
    await c.client(target).transferLeader({ clusterId: c.clusterId, targetId: l.id }, { timeoutMs: 10_000 });
    assert.equal((await c.leader()).id, l.id);
    c.assertOneLeaderPerTerm();
  });

  it("rolling restart: each node in turn stops (a leader hands over first) and comes back; every write succeeds", async (_t, c) => {
    await c.ensureHealthy();
    const written: [string, number][] = [];
    let n = 0;
    const write = async (): Promise<void> => {
      const key = `rolling/${n}`;
      const r = await c.write(key, n);
      assert.equal(r.succeeded, true);
      written.push([key, n]);
      n++;
    };

    await write();
    for (const id of c.ids()) {
      const before = await c.leader();
      const wasLeader = before.id === id;
      await c.stop(id);
      if (wasLeader) {
        const lines = c.node(id).logRecords().map((r) => String(r.msg));
        assert.ok(
          lines.some((m) => /^transferred leadership to \d+ before stopping$/.test(m)),
          `the stopping leader ${id} handed leadership over (log: ${lines.filter((m) => /leadership/.test(m)).join(" | ")})`,
        );
      }
      const during = await c.leader();
      assert.notEqual(during.id, id);
      await write();
      await write();
      await c.restart(id);
      await c.converge();
      await write();
    }

    await c.converge();
    for (const id of c.live()) {
      for (const [key, v] of written) assert.equal(await c.get(id, key), v, `node ${id} reads ${key}`);
    }
    assert.equal(written.length, 1 + 3 * c.ids().length);
    c.assertOneLeaderPerTerm();
  });

  it("RemoveMember of the leader itself: it hands leadership over, then the new leader removes it", async (_t, c) => {
    await c.ensureHealthy();
    const l = await c.leader();
    const res = await c.client(l.id).removeMember({ clusterId: c.clusterId, id: l.id }, { timeoutMs: 15_000 });
    assert.ok(!res.members.some((m) => m.id === l.id));
    assert.notEqual(res.header?.memberId, l.id, "the removal was done by the new leader");
    await c.retire(l.id);
    const next = await c.leader();
    assert.notEqual(next.id, l.id);
    for (const id of c.live()) {
      await waitFor(`node ${id} to drop node ${l.id}`, async () => !(await c.status(id)).voters.includes(l.id), { context: () => c.tails() });
    }
    assert.equal((await c.write("two-voters", "still writable")).succeeded, true);
    for (const id of c.live()) assert.equal(await c.get(id, "two-voters"), "still writable");
    c.assertOneLeaderPerTerm();
  });
});
