// A node that joins after the membership has changed is brought up to date by
// a leader its first snapshot does not know (issue 10 §7). Nothing is compacted
// in a young cluster, so the leader's only snapshot is the bootstrap one (index
// 1, the founders). The joiner restores it and, until it has applied the
// entries that added the leader, its catalog lacks the leader: it used to
// refuse every message from it ("node 4 is not a known member") and never
// caught up. It must take the leader's messages (the cluster and the peer are
// authenticated; Raft's term rules decide the rest), answer them, catch up and
// be promoted.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TestCluster, pb, waitFor, withLogs, type ClusterTestBody } from "./harness.js";

describe("a node joining after membership changes, with the bootstrap snapshot", () => {
  let cluster: TestCluster | undefined;
  const it = (name: string, fn: ClusterTestBody): void => {
    test(name, withLogs(() => cluster, fn));
  };

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, name: "join-old-snapshot" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  async function isVoter(c: TestCluster, id: number): Promise<boolean> {
    const l = await c.leader();
    const r = await c.client(l.id).members({ clusterId: c.clusterId, fromLeader: true }, { timeoutMs: 5_000 });
    return r.members.some((m) => m.id === id && m.role === pb.MemberRole.VOTER);
  }

  it("node 5 catches up from leader 4, which its snapshot does not know, and becomes a voter", async (_t, c) => {
    for (let i = 0; i < 10; i++) await c.write(`before/${i}`, i);
    // Membership changes: node 4 joins and is promoted, it takes the lead, founder 1 leaves.
    await c.join(4);
    await waitFor("node 4 to be a voter", () => isVoter(c, 4), { timeoutMs: 30_000, context: () => c.tails() });
    const l = await c.leader();
    if (l.id !== 4) await c.client(l.id).transferLeader({ clusterId: c.clusterId, targetId: 4 }, { timeoutMs: 10_000 });
    assert.equal((await c.leader()).id, 4, "node 4 leads");
    await c.client(4).removeMember({ clusterId: c.clusterId, id: 1 }, { timeoutMs: 10_000 });
    await c.retire(1);
    for (let i = 0; i < 10; i++) await c.write(`between/${i}`, i);
    assert.equal((await c.leader()).id, 4, "node 4 still leads");

    await c.join(5);
    await waitFor("node 5 to be promoted to voter", () => isVoter(c, 5), { timeoutMs: 30_000, context: () => c.tails() });
    await c.converge();
    assert.equal(await c.get(5, "before/0", { serializable: true }), 0);
    assert.equal(await c.get(5, "between/9", { serializable: true }), 9);

    // The scenario really happened: leader 4 sent node 5 the bootstrap snapshot (index 1,
    // founders 1-3 only), and node 5 refused nothing from it.
    const sent = c
      .node(4)
      .logRecords()
      .map((r) => String(r.msg))
      .filter((m) => /^node 4: sent snapshot at index \d+ .* to node 5$/.test(m));
    assert.ok(
      sent.some((m) => m.startsWith("node 4: sent snapshot at index 1 ")),
      `leader 4 sent node 5 the bootstrap snapshot (sent: ${sent.join(" | ") || "none"})`,
    );
    const refused = c
      .node(5)
      .logRecords()
      .map((r) => String(r.msg))
      .filter((m) => m.includes("refused Raft traffic"));
    assert.deepEqual(refused, [], "node 5 refused no Raft traffic");
  });
});
