// Three real sidecar processes on 127.0.0.1: election, forwarded and direct
// writes, linearizable reads everywhere, kill -9 of the leader, a paused
// (SIGSTOP) leader coming back, a partitioned leader (Faults service), and a
// restart of every node from disk.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { TestCluster, errorText, type PB, pb, statusOf, waitFor, withLogs, type ClusterTestBody } from "./harness.js";

describe("3-node cluster of sidecar processes", () => {
  let cluster: TestCluster | undefined;
  const it = (name: string, fn: ClusterTestBody): void => {
    test(name, withLogs(() => cluster, fn));
  };

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, name: "three" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  it("elects one leader, writes through a follower and the leader, reads linearizably everywhere", async (_t, c) => {
    const l = await c.leader();
    const follower = c.live().find((id) => id !== l.id)!;

    const viaFollower = await c.put(follower, "greeting", { text: "hello", from: "follower" });
    assert.equal(viaFollower.succeeded, true);
    const answeredBy = viaFollower.header?.memberId;
    assert.notEqual(answeredBy, follower, "a write sent to a follower is answered by the leader it was forwarded to");
    assert.equal(viaFollower.header?.leaderId, answeredBy, "the node that answered was the leader");
    const viaLeader = await c.put(l.id, "greeting", { text: "hello again", from: "leader" });
    assert.equal(viaLeader.succeeded, true);
    assert.equal(viaLeader.kv?.version, 2n);
    assert.ok(viaLeader.kv && viaFollower.kv && viaLeader.kv.modRevision > viaFollower.kv.modRevision, "the second write has the later revision");

    for (const id of c.live()) {
      assert.deepEqual(await c.get(id, "greeting"), { text: "hello again", from: "leader" }, `linearizable read on node ${id}`);
    }
    c.assertOneLeaderPerTerm();
  });

  it("kill -9 of the leader: a new leader is elected, writes resume, the restarted node catches up", async (_t, c) => {
    await c.ensureHealthy();
    const old = await c.leader();
    await c.write("k1", 1);
    await c.kill9(old.id);

    const next = await c.leader();
    assert.notEqual(next.id, old.id);
    assert.ok(next.term > old.term, `the new leader's term ${next.term} is after the old ${old.term}`);
    for (let i = 2; i <= 5; i++) assert.equal((await c.put(next.id, "k1", i)).succeeded, true);
    const other = c.live().find((id) => id !== next.id)!;
    assert.equal((await c.put(other, "k2", "through a follower")).succeeded, true);

    await c.restart(old.id);
    await waitFor(`node ${old.id} to serve the latest k1 from its own state`, async () => (await c.get(old.id, "k1", { serializable: true })) === 5, {
      context: () => c.tails(),
    });
    assert.equal(await c.get(old.id, "k2", { serializable: true }), "through a follower");
    assert.equal(await c.get(old.id, "k1"), 5, "linearizable read on the restarted node");
    c.assertOneLeaderPerTerm();
  });

  it("SIGSTOP of the leader: the others elect a new one; after SIGCONT the old one steps down and never commits as leader", async (t, c) => {
    await c.ensureHealthy();
    const watch = c.watchTerms();
    try {
      const old = await c.leader();
      await c.write("paused", "before");
      c.pause(old.id);
      const others = c.live();
      assert.ok(!others.includes(old.id));

      const next = await c.leader({ among: others });
      assert.notEqual(next.id, old.id);
      assert.ok(next.term > old.term);
      assert.equal((await c.put(next.id, "paused", "during")).succeeded, true);

      c.resume(old.id);
      // Straight to the node that still believes it leads (its timers have not run yet).
      let answer: PB.KvPutResponse | undefined;
      let failure = "";
      try {
        answer = await c.put(old.id, "paused", "sent to the old leader");
      } catch (e) {
        failure = errorText(e);
        const code = statusOf(e);
        assert.ok(
          code === grpc.status.UNAVAILABLE || code === grpc.status.ABORTED || code === grpc.status.DEADLINE_EXCEEDED,
          `a write to the deposed leader fails only as not-leader/dropped/timeout, got ${failure}`,
        );
      }
      t.diagnostic(answer ? `the write sent to the old leader was answered by node ${answer.header?.memberId} at term ${answer.header?.raftTerm}` : `the write sent to the old leader failed: ${failure}`);
      if (answer) {
        assert.equal(answer.succeeded, true);
        assert.notEqual(answer.header?.memberId, old.id, "the write was forwarded to the new leader, not committed by the old one");
        assert.ok(answer.header!.raftTerm > BigInt(old.term), `committed at term ${answer.header!.raftTerm}, after the old leader's ${old.term}`);
      }

      await waitFor(
        `node ${old.id} to step down to follower of a later term`,
        async () => {
          const s = await c.status(old.id);
          return s.state === pb.RaftState.FOLLOWER && s.term > old.term && s.leaderId !== 0;
        },
        { context: () => c.tails() },
      );
      await c.converge();
      const seen = new Set<string>();
      for (const id of c.live()) seen.add(JSON.stringify(await c.get(id, "paused")));
      assert.equal(seen.size, 1, `every node reads the same value, got ${[...seen].join(" / ")}`);
      const value = JSON.parse([...seen][0]!) as unknown;
      if (answer) assert.equal(value, "sent to the old leader");
      else assert.ok(value === "during" || value === "sent to the old leader", `value ${JSON.stringify(value)} (the write to the old leader failed: ${failure})`);
    } finally {
      const r = await watch.stop();
      assert.deepEqual(r.conflicts, [], `Status samples showed two leaders in one term (${r.samples} samples)`);
      assert.ok(r.samples > 0);
    }
    c.assertOneLeaderPerTerm();
  });

  it("partitioned leader: the majority elects a new one, the old steps down (check-quorum), heal converges", async (_t, c) => {
    await c.ensureHealthy();
    const old = await c.leader();
    await c.write("part", "before");
    await c.partition(old.id);
    const majority = c.live().filter((id) => id !== old.id);

    const next = await c.leader({ among: majority });
    assert.notEqual(next.id, old.id);
    assert.ok(next.term > old.term);
    assert.equal((await c.put(next.id, "part", "majority")).succeeded, true);

    // Check-quorum: it hears from nobody, so it gives up leadership within a few election timeouts.
    const bound = Math.max(5_000, 10 * c.electionMs);
    await waitFor(`the partitioned node ${old.id} to step down`, async () => (await c.status(old.id)).state !== pb.RaftState.LEADER, {
      timeoutMs: bound,
      context: () => c.tails(),
    });
    const isolated = await c.status(old.id);
    assert.notEqual(isolated.state, pb.RaftState.LEADER);
    // Pre-vote: cut off, it does not inflate its term while it keeps trying.
    assert.ok(isolated.term <= next.term, `isolated node's term ${isolated.term} stays at or below the majority's ${next.term}`);

    await c.heal();
    const healed = await c.leader();
    assert.equal(healed.id, next.id, "the majority's leader keeps leading after the heal");
    await c.put(old.id, "part", "after heal");
    await c.converge();
    for (const id of c.live()) assert.equal(await c.get(id, "part", { serializable: true }), "after heal", `node ${id} converged`);
    c.assertOneLeaderPerTerm();
  });

  it("restart of every node from disk: same membership, data intact, term not backwards", async (_t, c) => {
    await c.ensureHealthy();
    for (let i = 0; i < 20; i++) await c.write(`disk/${i}`, { i });
    const before = await c.statuses(c.ids());
    const membersBefore = (await c.client(c.ids()[0]!).members({ clusterId: c.clusterId })).members.map((m) => [m.id, m.raftAddress, m.role]);
    membersBefore.sort((a, b) => Number(a[0]) - Number(b[0]));

    await Promise.all(c.ids().map((id) => c.stop(id)));
    for (const id of c.ids()) assert.equal(c.node(id).state, "stopped");
    await Promise.all(c.ids().map((id) => c.restart(id)));

    const l = await c.leader();
    const membersAfter = (await c.client(l.id).members({ clusterId: c.clusterId, fromLeader: true })).members.map((m) => [m.id, m.raftAddress, m.role]);
    membersAfter.sort((a, b) => Number(a[0]) - Number(b[0]));
    assert.deepEqual(membersAfter, membersBefore);
    assert.ok(membersAfter.every((m) => m[2] === pb.MemberRole.VOTER));
    for (const id of c.ids()) {
      const s = await c.status(id);
      const was = before.get(id);
      assert.ok(typeof was !== "string" && was !== undefined);
      assert.ok(s.term >= was.term, `node ${id}: term ${s.term} after the restart, ${was.term} before`);
      assert.deepEqual(s.voters, was.voters);
      for (let i = 0; i < 20; i++) assert.deepEqual(await c.get(id, `disk/${i}`), { i }, `node ${id} disk/${i}`);
    }
    c.assertOneLeaderPerTerm();
  });
});
