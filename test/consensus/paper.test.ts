// Scenarios from the Raft paper (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm"), run on the real core through the
// interaction harness with pre-vote and check-quorum off (plain Raft).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MemoryStorage } from "../../src/consensus/storage.js";
import { EntryType, MessageType, Role, type Entry, type HardState, type Message, type NodeId } from "../../src/consensus/types.js";
import { defaultNodeOptions, Harness, type NodeOptions } from "./interaction/harness.js";

const plain = (extra: Partial<NodeOptions> = {}): NodeOptions => ({ ...defaultNodeOptions(), preVote: false, checkQuorum: false, ...extra });

/** A log whose entry i+1 has term terms[i]. */
function entries(terms: readonly number[]): Entry[] {
  return terms.map((term, i) => ({ term, index: i + 1, type: EntryType.Normal, data: new TextEncoder().encode(`t${term}i${i + 1}`) }));
}

/** A storage holding `terms` from index 1, the hard state, and the membership `voters`. */
function storageWith(terms: readonly number[], hs: HardState, voters: NodeId[]): MemoryStorage {
  const s = new MemoryStorage();
  s.applySnapshot({ meta: { index: 0, term: 0, conf: { voters, learners: [] } }, data: new Uint8Array() });
  s.append(entries(terms));
  s.setHardState(hs);
  return s;
}

/** The durable log of a node as "term" per index (index 1 first). */
function termsOf(h: Harness, id: NodeId): number[] {
  const st = h.node(id).storage;
  if (st.lastIndex() < st.firstIndex()) return [];
  return st.entries(st.firstIndex(), st.lastIndex() + 1, Number.MAX_SAFE_INTEGER).map((e) => e.term);
}

const role = (h: Harness, id: NodeId): Role => h.node(id).raw.status().role;

function quiet(h: Harness, ids?: NodeId[]): void {
  h.stabilize(ids ?? h.ids(), false);
}

// --------------------------------------------------------------------- Figure 7

describe("Figure 7: a new leader forces the followers' logs to match its own", () => {
  const LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const FOLLOWERS: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  // At most this many rejected probes: the term hint skips whole terms.
  const MAX_REJECTIONS: Record<string, number> = { a: 1, b: 1, c: 0, d: 0, e: 1, f: 1 };

  for (const [name, followerLog] of Object.entries(FOLLOWERS)) {
    test(`follower (${name})`, () => {
      const h = new Harness();
      // Node 1 has the leader's log; node 3 has it too and provides the second vote
      // (follower (d) is more up to date than the leader and refuses its vote).
      const voters = [1, 2, 3];
      h.addNode(1, storageWith(LEADER, { term: 7, vote: 0, commit: 0 }, voters), plain());
      h.addNode(2, storageWith(followerLog, { term: 7, vote: 0, commit: 0 }, voters), plain());
      h.addNode(3, storageWith(LEADER, { term: 7, vote: 0, commit: 0 }, voters), plain());
      let rejections = 0;
      let appsTo2 = 0;
      h.observer = (m: Message) => {
        if (m.from === 2 && m.type === MessageType.AppResp && m.reject) rejections++;
        if (m.to === 2 && m.type === MessageType.App) appsTo2++;
      };
      h.node(1).raw.campaign();
      quiet(h);
      const st = h.node(1).raw.status();
      assert.equal(st.role, Role.Leader);
      assert.equal(st.term, 8);
      const want = [...LEADER, 8];
      assert.deepEqual(termsOf(h, 1), want);
      assert.deepEqual(termsOf(h, 2), want, `follower (${name}) log after repair`);
      // Every entry, not just the terms: the data of the leader's entries.
      const st2 = h.node(2).storage;
      const st1 = h.node(1).storage;
      assert.deepEqual(st2.entries(1, 12, Number.MAX_SAFE_INTEGER), st1.entries(1, 12, Number.MAX_SAFE_INTEGER));
      assert.equal(h.node(2).raw.status().commit, 11, "the follower learns the new commit index");
      assert.ok(rejections <= MAX_REJECTIONS[name]!, `follower (${name}): ${rejections} rejected probes`);
      assert.ok(appsTo2 >= 1);
      // Entries of the follower that conflicted are gone from what it applied too.
      assert.deepEqual(
        h.node(2).sm.map((e) => e.data),
        want.map((t, i) => `t${t}i${i + 1}`).slice(0, 10),
        "applied entries are the leader's (the empty term-8 entry is not in the state machine)",
      );
    });
  }
});

// --------------------------------------------------------------------- Figure 8

describe("Figure 8: a leader commits only entries of its own term by counting replicas", () => {
  // Figure 8 (c): S1 [1, 2] and S2 [1, 2] hold the term-2 entry from (a); S5
  // [1, 3] was leader in term 3 (b); S3, S4 [1]. Everyone has seen term 3.
  function figure8(): Harness {
    const h = new Harness();
    const opts = plain({ maxSizePerMsg: 1 }); // one entry per App: replication is step by step
    const voters = [1, 2, 3, 4, 5];
    h.addNode(1, storageWith([1, 2], { term: 3, vote: 0, commit: 1 }, voters), opts);
    h.addNode(2, storageWith([1, 2], { term: 3, vote: 5, commit: 1 }, voters), opts);
    h.addNode(3, storageWith([1], { term: 3, vote: 5, commit: 1 }, voters), opts);
    h.addNode(4, storageWith([1], { term: 3, vote: 5, commit: 1 }, voters), opts);
    h.addNode(5, storageWith([1, 3], { term: 3, vote: 5, commit: 1 }, voters), opts);
    return h;
  }

  /** S1 is elected in term 4 (S5, with a term-3 entry, refuses it; S2-S4 vote for it). */
  function electS1(h: Harness): void {
    h.node(1).raw.campaign();
    h.processReady(1, false);
    h.deliverTo([2, 3, 4, 5], false);
    for (const id of [2, 3, 4, 5]) h.processReady(id, false);
    const votes = h.queue.filter((m) => m.type === MessageType.VoteResp);
    assert.deepEqual(
      votes.map((m) => [m.from, m.reject]),
      [
        [2, false],
        [3, false],
        [4, false],
        [5, true],
      ],
      "S5's log (last term 3) is more up to date than S1's (last term 2)",
    );
    h.deliverTo([1], false);
    assert.equal(role(h, 1), Role.Leader);
    assert.equal(h.node(1).raw.status().term, 4);
  }

  /**
   * Let S1 replicate to `to`, except that an App carrying the term-4 entry to a
   * node that already holds index 2 (and would store it) is lost.
   */
  function replicateTerm2Only(h: Harness, to: NodeId[]): void {
    for (let round = 0; round < 10; round++) {
      h.processReady(1, false);
      for (const id of to) h.processReady(id, false);
      const lost = (m: Message) =>
        m.from === 1 && m.type === MessageType.App && m.entries.some((e) => e.term === 4) && h.node(m.to).storage.lastIndex() >= 2;
      const moved = h.deliver((m) => (to.includes(m.to) || m.to === 1) && !lost(m), lost, false);
      if (moved === 0) return;
    }
  }

  test("(c) the term-2 entry on a majority is not committed by the term-4 leader", () => {
    const h = figure8();
    electS1(h);
    // S1 brings S3 and S4 up to index 2 (they reject the first App, get the
    // term-2 entry) but every App carrying its term-4 entry is lost.
    replicateTerm2Only(h, [3, 4]);
    const st = h.node(1).raw.status();
    assert.deepEqual(termsOf(h, 3), [1, 2]);
    assert.deepEqual(termsOf(h, 4), [1, 2]);
    assert.equal(st.progress.get(3)?.match, 2);
    assert.equal(st.progress.get(4)?.match, 2);
    // S1, S3 and S4 (3 of 5) hold index 2, and S1 knows it: counting alone
    // would commit it. The rule says no: its term is 2, not 4.
    assert.equal(st.commit, 1, "S1 must not commit the term-2 entry by counting replicas");
    assert.deepEqual(termsOf(h, 1), [1, 2, 4]);
  });

  test("(d) the uncommitted term-2 entry is overwritten by S5", () => {
    const h = figure8();
    electS1(h);
    replicateTerm2Only(h, [3, 4]);
    // S1 crashes (is cut off). S5 campaigns: term 4 is taken (everyone voted
    // for S1), so it loses once and wins term 5 with S2, S3, S4, whose last
    // log term (2 or 1) is older than S5's (3).
    h.partition([[1], [2, 3, 4, 5]]);
    h.queue = [];
    for (let attempt = 0; attempt < 5 && role(h, 5) !== Role.Leader; attempt++) {
      h.node(5).raw.campaign();
      quiet(h, [2, 3, 4, 5]);
    }
    const st = h.node(5).raw.status();
    assert.equal(st.role, Role.Leader);
    assert.equal(st.term, 5);
    // S5 replicated its term-3 entry at index 2 over the term-2 entries.
    for (const id of [2, 3, 4, 5]) assert.deepEqual(termsOf(h, id), [1, 3, 5], `S${id}`);
    assert.equal(st.commit, 3);
    // When S1 comes back it loses its term-2 and term-4 entries too.
    h.heal();
    h.tick(5, 1); // heartbeat
    quiet(h);
    assert.deepEqual(termsOf(h, 1), [1, 3, 5]);
    assert.equal(role(h, 1), Role.Follower);
  });

  test("(e) once an entry of term 4 is committed, the term-2 entry before it is safe", () => {
    const h = figure8();
    electS1(h);
    // This time S1 replicates everything to S2 and S3 before crashing.
    quiet(h, [1, 2, 3]);
    assert.deepEqual(termsOf(h, 2), [1, 2, 4]);
    assert.deepEqual(termsOf(h, 3), [1, 2, 4]);
    assert.equal(h.node(1).raw.status().commit, 3, "S1, S2, S3 hold the term-4 entry: it commits, and index 2 with it");
    assert.deepEqual(
      h.node(1).sm.map((e) => e.data),
      ["t1i1", "t2i2"],
      "S1 applied the term-2 entry at index 2",
    );
    h.partition([[1], [2, 3, 4, 5]]);
    h.queue = [];
    for (let attempt = 0; attempt < 5; attempt++) {
      h.node(5).raw.campaign();
      quiet(h, [2, 3, 4, 5]);
      assert.notEqual(role(h, 5), Role.Leader, "S5 cannot be elected: S2 and S3 have a newer last term");
    }
    for (const id of [2, 3]) assert.equal(termsOf(h, id)[1], 2, `S${id} keeps the committed term-2 entry`);
  });
});

// -------------------------------------------------------------- elections (§5.2, §5.4.1)

describe("elections", () => {
  function three(logs: [number[], number[], number[]], term = 1, extra: Partial<NodeOptions> = {}): Harness {
    const h = new Harness();
    logs.forEach((terms, i) => h.addNode(i + 1, storageWith(terms, { term, vote: 0, commit: 0 }, [1, 2, 3]), plain(extra)));
    return h;
  }

  /** The VoteResp each voter sent to `cand` for its campaign. */
  function votesFor(h: Harness, cand: NodeId): Map<NodeId, boolean> {
    h.node(cand).raw.campaign();
    h.processReady(cand, false);
    const voters = h.ids().filter((id) => id !== cand);
    h.deliverTo(voters, false);
    for (const id of voters) h.processReady(id, false);
    const got = new Map<NodeId, boolean>();
    for (const m of h.queue) if (m.type === MessageType.VoteResp && m.to === cand) got.set(m.from, !m.reject);
    return got;
  }

  test("§5.4.1: a voter refuses a candidate whose log is less up to date", () => {
    // Node 2's last entry has a newer term; node 3's log is as long as node 1's but older.
    const h = three([[1, 1], [1, 2], [1, 1]]);
    const v = votesFor(h, 1);
    assert.equal(v.get(2), false, "node 2 (last term 2) refuses a candidate whose last term is 1");
    assert.equal(v.get(3), true, "node 3 (same last term and index) grants");
  });

  test("§5.4.1: same last term, shorter log is refused; newer last term wins over a longer log", () => {
    const h = three([[1, 2], [1, 2, 2], [1, 1, 1, 1]]);
    const v = votesFor(h, 1);
    assert.equal(v.get(2), false, "same last term 2 but index 2 < 3: refused");
    assert.equal(v.get(3), true, "last term 2 > 1 beats the longer log of node 3");
  });

  test("a candidate with a stale log cannot win when the up-to-date nodes are a majority", () => {
    const h = three([[1], [1, 2], [1, 2]]);
    h.node(1).raw.campaign();
    quiet(h);
    assert.notEqual(role(h, 1), Role.Leader);
    assert.deepEqual(termsOf(h, 1), [1], "nothing was replicated by node 1");
  });

  test("one vote per term: a second candidate in the same term is refused, the first one's retry granted", () => {
    const h = three([[1], [1], [1]]);
    const vote = (from: NodeId, term: number): Message => ({
      type: MessageType.Vote,
      clusterId: h.node(3).opts.clusterId,
      from,
      to: 3,
      term,
      logTerm: 1,
      index: 1,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
    });
    const answer = (m: Message): boolean => {
      h.node(3).raw.step(m);
      h.processReady(3, false);
      const r = h.queue.pop();
      assert.ok(r && r.type === MessageType.VoteResp && r.to === m.from);
      return !r.reject;
    };
    assert.equal(answer(vote(1, 2)), true, "first request of term 2 granted");
    assert.equal(h.node(3).storage.hardState.vote, 1, "the vote is persisted before the answer is sent");
    assert.equal(answer(vote(2, 2)), false, "another candidate in term 2 is refused");
    assert.equal(answer(vote(1, 2)), true, "a retry from the same candidate is granted again");
    assert.equal(answer(vote(2, 3)), true, "a new term allows a new vote");
    assert.equal(h.node(3).storage.hardState.vote, 2);
  });

  /** Ticks every live node once per round, delivering in between; returns the rounds used. */
  function runUntilLeader(h: Harness, ids: NodeId[], maxRounds: number): number {
    for (let round = 1; round <= maxRounds; round++) {
      for (const id of ids) h.tick(id, 1);
      quiet(h, ids);
      if (ids.some((id) => role(h, id) === Role.Leader)) return round;
    }
    return -1;
  }

  test("split votes are resolved by randomized election timeouts", () => {
    // Node 3 is down; nodes 1 and 2 campaign at the same moment in term 2 and
    // each votes for itself: nobody wins the term.
    const h = three([[1], [1], [1]]);
    h.partition([[1, 2], [3]]);
    h.node(1).raw.campaign();
    h.node(2).raw.campaign();
    quiet(h, [1, 2]);
    assert.equal(h.node(1).raw.status().term, 2);
    assert.equal(h.node(2).raw.status().term, 2);
    assert.notEqual(role(h, 1), Role.Leader);
    assert.notEqual(role(h, 2), Role.Leader);
    // Their timeouts are drawn independently in [10, 20): one fires first and
    // wins the next term before the other's timer runs out.
    const rounds = runUntilLeader(h, [1, 2], 100);
    assert.ok(rounds > 0 && rounds < 20, `a leader within one randomized timeout (took ${rounds})`);
    const leaders = [1, 2].filter((id) => role(h, id) === Role.Leader);
    assert.equal(leaders.length, 1);
    assert.equal(h.node(leaders[0]!).raw.status().term, 3);
  });

  test("control: with identical timeouts the split repeats term after term", () => {
    // Same scenario, but both nodes draw the same timeout every time: ticking
    // in lock step they campaign together forever. (This is what the
    // randomization in the previous test prevents.)
    const h = three([[1], [1], [1]], 1, { random: () => 0.5 });
    h.partition([[1, 2], [3]]);
    const rounds = runUntilLeader(h, [1, 2], 100);
    assert.equal(rounds, -1, "no leader");
    assert.ok(h.node(1).raw.status().term >= 6, "and the terms keep climbing");
  });
});
