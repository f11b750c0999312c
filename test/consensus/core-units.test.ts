// Unit tests of the pieces of the Raft core in isolation: the log, progress
// tracking and flow control, quorum arithmetic, membership changes and the
// in-memory storage.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { applyToConfState, decodeConfChange, encodeConfChange, validateNodeId, type ConfChange } from "../../src/consensus/confchange.js";
import { isRaftError, type RaftErrorCode } from "../../src/consensus/errors.js";
import { Inflights } from "../../src/consensus/inflights.js";
import { RaftLog } from "../../src/consensus/log.js";
import { Progress } from "../../src/consensus/progress.js";
import { committedIndex, majority, tallyVotes } from "../../src/consensus/quorum.js";
import { seededRandom } from "../../src/consensus/random.js";
import { RawNode } from "../../src/consensus/raw-node.js";
import { entryBytes, limitSize, MemoryStorage } from "../../src/consensus/storage.js";
import { EntryType, MessageType, Role, type ConfState, type Entry, type Message, type Snapshot } from "../../src/consensus/types.js";

const enc = new TextEncoder();

function ent(index: number, term: number, data = ""): Entry {
  return { index, term, type: EntryType.Normal, data: enc.encode(data) };
}

/** Entries index from..from+terms.length-1 with the given terms. */
function ents(from: number, terms: number[]): Entry[] {
  return terms.map((t, i) => ent(from + i, t));
}

const termsOf = (es: Entry[]): number[] => es.map((e) => e.term);
const indexesOf = (es: Entry[]): number[] => es.map((e) => e.index);

function throwsCode(fn: () => unknown, code: RaftErrorCode, msg?: string): void {
  assert.throws(fn, (e: unknown) => isRaftError(e, code), msg ?? `expected a RaftError ${code}`);
}

function snap(index: number, term: number, conf: ConfState = { voters: [1], learners: [] }): Snapshot {
  return { meta: { index, term, conf }, data: new Uint8Array() };
}

/** A RaftLog over a storage that durably holds entries 1..terms.length. */
function logWith(terms: number[]): RaftLog {
  const s = new MemoryStorage();
  s.append(ents(1, terms));
  return new RaftLog(s);
}

// ============================================================== log.ts

describe("RaftLog", () => {
  test("findConflict: first entry whose term differs or that is missing; 0 when all match", () => {
    const log = logWith([1, 2, 3]);
    assert.equal(log.findConflict([]), 0);
    assert.equal(log.findConflict(ents(1, [1, 2, 3])), 0, "all present and equal");
    assert.equal(log.findConflict(ents(2, [2, 3])), 0, "a matching suffix");
    assert.equal(log.findConflict(ents(2, [2, 3, 4, 4])), 4, "first new entry");
    assert.equal(log.findConflict(ents(1, [1, 4, 4])), 2, "term differs at 2");
    assert.equal(log.findConflict(ents(3, [4, 4])), 3);
    assert.equal(log.findConflict(ents(4, [3])), 4, "beyond the log");
  });

  test("findConflictByTerm: largest index <= i whose term is <= t", () => {
    // index:      1  2  3  4  5  6  7
    const log = logWith([1, 1, 3, 3, 3, 5, 5]);
    assert.deepEqual(log.findConflictByTerm(7, 5), { index: 7, term: 5 });
    assert.deepEqual(log.findConflictByTerm(7, 4), { index: 5, term: 3 }, "skips all of term 5");
    assert.deepEqual(log.findConflictByTerm(7, 2), { index: 2, term: 1 }, "skips terms 5 and 3");
    assert.deepEqual(log.findConflictByTerm(4, 3), { index: 4, term: 3 }, "starts at i, not at the end");
    assert.deepEqual(log.findConflictByTerm(7, 0), { index: 0, term: 0 }, "down to the dummy entry");
    assert.deepEqual(log.findConflictByTerm(9, 5), { index: 9, term: 0 }, "an index beyond the log is returned as is");
  });

  test("findConflictByTerm stops at the compaction point", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 1, 2, 2, 3]));
    s.createSnapshot(3, { voters: [1], learners: [] }, new Uint8Array());
    s.compact(3);
    const log = new RaftLog(s);
    assert.deepEqual(log.findConflictByTerm(5, 2), { index: 4, term: 2 });
    assert.deepEqual(log.findConflictByTerm(5, 1), { index: 2, term: 0 }, "term of 2 is unknown: stop there");
  });

  test("maybeAppend: refuses when (index, logTerm) does not match, log untouched", () => {
    const log = logWith([1, 2, 3]);
    assert.equal(log.maybeAppend(3, 2, 3, ents(4, [4])), undefined, "term at 3 is 3, not 2");
    assert.equal(log.maybeAppend(4, 3, 3, ents(5, [4])), undefined, "no entry 4");
    assert.equal(log.lastIndex(), 3);
    assert.equal(log.committed, 0);
  });

  test("maybeAppend: a stale (already known) batch does not truncate what follows it", () => {
    const log = logWith([1, 2, 3, 3]);
    assert.equal(log.maybeAppend(1, 1, 0, ents(2, [2])), 2, "last new index is that of the batch");
    assert.equal(log.lastIndex(), 4, "entries 3 and 4 survive");
    assert.deepEqual(termsOf(log.entries(1, Infinity)), [1, 2, 3, 3]);
  });

  test("maybeAppend: truncates from the first conflict and appends the rest", () => {
    const log = logWith([1, 2, 2, 2, 2]);
    assert.equal(log.maybeAppend(2, 2, 0, ents(3, [3, 3])), 4);
    assert.deepEqual(termsOf(log.entries(1, Infinity)), [1, 2, 3, 3], "entry 5 (term 2) is gone");
    assert.equal(log.lastIndex(), 4);
  });

  test("maybeAppend: commits min(leader commit, last new index)", () => {
    const log = logWith([1, 1, 1]);
    assert.equal(log.maybeAppend(1, 1, 10, ents(2, [1])), 2);
    assert.equal(log.committed, 2, "entry 3 is not vouched for by this message");
    assert.equal(log.maybeAppend(3, 1, 2, []), 3);
    assert.equal(log.committed, 2, "commit never moves back");
    assert.equal(log.maybeAppend(3, 1, 3, ents(4, [2])), 4);
    assert.equal(log.committed, 3);
  });

  test("maybeAppend: a conflict with a committed entry is corruption", () => {
    const log = logWith([1, 1, 1]);
    log.commitTo(3);
    throwsCode(() => log.maybeAppend(1, 1, 3, ents(2, [2])), "CORRUPT");
    assert.deepEqual(termsOf(log.entries(1, Infinity)), [1, 1, 1]);
  });

  test("commit rule: maybeCommit only for an entry of the given term, never backwards", () => {
    const log = logWith([1, 1, 2, 2]);
    assert.equal(log.maybeCommit(2, 2), false, "entry 2 has term 1: not committed by counting in term 2");
    assert.equal(log.committed, 0);
    assert.equal(log.maybeCommit(3, 2), true);
    assert.equal(log.committed, 3);
    assert.equal(log.maybeCommit(2, 1), false, "behind the commit index");
    assert.equal(log.committed, 3);
    assert.equal(log.maybeCommit(4, 3), false, "term mismatch");
    assert.equal(log.maybeCommit(5, 2), false, "beyond the log");
    assert.equal(log.committed, 3);
  });

  test("commitTo beyond the last index and appliedTo out of range are corruption", () => {
    const log = logWith([1, 1]);
    throwsCode(() => log.commitTo(3), "CORRUPT");
    log.commitTo(1);
    throwsCode(() => log.appliedTo(2), "CORRUPT", "cannot apply past commit");
    log.commitTo(2);
    log.appliedTo(2);
    throwsCode(() => log.appliedTo(1), "CORRUPT", "cannot apply backwards");
    assert.equal(log.applied, 2);
  });

  test("next committed entries: from applied+1 to commit, bounded by bytes but at least one", () => {
    const log = logWith([1, 1, 1, 1]);
    assert.equal(log.hasNextCommittedEnts(), false);
    log.commitTo(3);
    assert.equal(log.hasNextCommittedEnts(), true);
    assert.deepEqual(indexesOf(log.nextCommittedEnts(Infinity)), [1, 2, 3]);
    assert.deepEqual(indexesOf(log.nextCommittedEnts(0)), [1], "a tiny budget still yields one entry");
    assert.deepEqual(indexesOf(log.nextCommittedEnts(2 * entryBytes(ent(1, 1)))), [1, 2]);
    log.appliedTo(2);
    assert.deepEqual(indexesOf(log.nextCommittedEnts(Infinity)), [3]);
    log.appliedTo(3);
    assert.equal(log.hasNextCommittedEnts(), false);
  });

  test("isUpToDate compares last term first, then last index", () => {
    const log = logWith([1, 2, 2]);
    assert.equal(log.isUpToDate(3, 2), true, "equal");
    assert.equal(log.isUpToDate(4, 2), true, "longer, same term");
    assert.equal(log.isUpToDate(2, 2), false, "shorter, same term");
    assert.equal(log.isUpToDate(1, 3), true, "newer term beats length");
    assert.equal(log.isUpToDate(9, 1), false, "older term loses despite length");
  });

  test("unstable entries shadow the stable log; slices stitch both", () => {
    const log = logWith([1, 1, 1, 1]);
    assert.equal(log.append(ents(3, [2, 2, 2])), 5, "replaces 3 and 4, adds 5");
    assert.deepEqual(termsOf(log.slice(1, 6, Infinity)), [1, 1, 2, 2, 2]);
    assert.equal(log.term(4), 2, "the unstable term wins over the stored one");
    assert.equal(log.term(6), undefined);
    throwsCode(() => log.slice(1, 7, Infinity), "UNAVAILABLE");
    log.commitTo(2);
    throwsCode(() => log.append(ents(2, [3])), "CORRUPT", "cannot overwrite a committed entry");
  });

  test("compacted entries: term is unknown below the snapshot, slices refuse them", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 1, 2, 2]));
    s.createSnapshot(2, { voters: [1], learners: [] }, new Uint8Array());
    s.compact(2);
    const log = new RaftLog(s);
    assert.equal(log.firstIndex(), 3);
    assert.equal(log.committed, 2, "a snapshot is committed");
    assert.equal(log.applied, 2);
    assert.equal(log.term(2), 1, "the snapshot's own term is known");
    assert.equal(log.term(1), undefined);
    throwsCode(() => log.slice(2, 4, Infinity), "COMPACTED");
    throwsCode(() => log.termOrThrow(1), "COMPACTED");
    assert.deepEqual(indexesOf(log.entries(3, Infinity)), [3, 4]);
  });

  test("restore: the log becomes the snapshot; appends continue after it", () => {
    const log = logWith([1, 1, 1]);
    log.restore(snap(10, 4));
    assert.equal(log.firstIndex(), 11);
    assert.equal(log.lastIndex(), 10);
    assert.equal(log.lastTerm(), 4);
    assert.equal(log.committed, 10);
    assert.equal(log.term(3), undefined, "the old entries are gone");
    assert.equal(log.maybeAppend(10, 4, 11, ents(11, [5])), 11);
    assert.equal(log.committed, 11);
  });
});

// ======================================================== progress / inflights

describe("Inflights", () => {
  test("full by count; freeLE frees acknowledged messages in order", () => {
    const inf = new Inflights(3, 0);
    inf.add(5, 10);
    inf.add(7, 10);
    assert.equal(inf.full(), false);
    inf.add(9, 10);
    assert.equal(inf.full(), true);
    inf.freeLE(6);
    assert.equal(inf.count(), 2, "only the message ending at 5 is acknowledged");
    assert.equal(inf.bytes(), 20);
    assert.equal(inf.full(), false);
    inf.freeLE(4);
    assert.equal(inf.count(), 2, "a stale ack frees nothing");
    inf.freeLE(100);
    assert.equal(inf.count(), 0);
    assert.equal(inf.bytes(), 0);
  });

  test("full by bytes (0 = no byte bound)", () => {
    const inf = new Inflights(100, 100);
    inf.add(1, 60);
    assert.equal(inf.full(), false);
    inf.add(2, 40);
    assert.equal(inf.full(), true, "100 bytes in flight reach the bound");
    inf.freeLE(1);
    assert.equal(inf.full(), false);
    assert.equal(inf.bytes(), 40);
    const unbounded = new Inflights(100, 0);
    unbounded.add(1, 1e12);
    assert.equal(unbounded.full(), false);
    unbounded.reset();
    assert.equal(unbounded.count(), 0);
  });
});

describe("Progress", () => {
  test("probe: one message at a time, unpaused by an ack; an ack moves match and next", () => {
    const pr = new Progress(5, false, 4, 0);
    assert.equal(pr.state, "probe");
    assert.equal(pr.isPaused(), false);
    pr.sentEntries(1, 30, 5);
    assert.equal(pr.isPaused(), true, "waiting for the answer to the probe");
    assert.equal(pr.next, 5, "probing does not move next optimistically");
    assert.equal(pr.maybeUpdate(5), true);
    assert.equal(pr.match, 5);
    assert.equal(pr.next, 6);
    assert.equal(pr.isPaused(), false);
    assert.equal(pr.maybeUpdate(3), false, "a stale ack");
    assert.equal(pr.match, 5);
  });

  test("replicate: next advances as messages are sent; the window pauses it", () => {
    const pr = new Progress(1, false, 2, 0);
    pr.maybeUpdate(3);
    pr.becomeReplicate();
    assert.equal(pr.next, 4);
    pr.sentEntries(2, 50, 5);
    assert.equal(pr.next, 6);
    pr.sentEntries(0, 0, 5);
    assert.equal(pr.inflights.count(), 1, "an empty App does not take a slot");
    pr.sentEntries(1, 25, 6);
    assert.equal(pr.isPaused(), true, "2 messages in flight");
    pr.maybeUpdate(5);
    pr.inflights.freeLE(5);
    assert.equal(pr.isPaused(), false);
  });

  test("replicate: window full by bytes", () => {
    const pr = new Progress(1, false, 100, 64);
    pr.becomeReplicate();
    pr.sentEntries(1, 40, 1);
    assert.equal(pr.isPaused(), false);
    pr.sentEntries(1, 40, 2);
    assert.equal(pr.isPaused(), true, "80 bytes > 64");
    assert.equal(pr.status(0).inflightBytes, 80);
  });

  test("maybeDecrTo in replicate: stale rejections are ignored, others fall back to match+1", () => {
    const pr = new Progress(1, false, 10, 0);
    pr.maybeUpdate(5);
    pr.becomeReplicate();
    pr.sentEntries(3, 10, 8);
    assert.equal(pr.maybeDecrTo(4, 0), false, "rejection of an App before match: stale");
    assert.equal(pr.next, 9);
    assert.equal(pr.maybeDecrTo(7, 2), true);
    assert.equal(pr.next, 6, "back to match+1 (the hint is not used in replicate)");
  });

  test("maybeDecrTo in probe: only the outstanding probe counts; the hint skips back, never below match+1", () => {
    const pr = new Progress(11, false, 10, 0);
    pr.sentEntries(1, 10, 11); // probe at prev index 10
    assert.equal(pr.maybeDecrTo(8, 3), false, "not the probe we sent (prev 10)");
    assert.equal(pr.next, 11);
    assert.equal(pr.maybeDecrTo(10, 3), true);
    assert.equal(pr.next, 4, "hint 3: the next probe is at prev 3");
    assert.equal(pr.isPaused(), false, "a new probe may go out");
    pr.maybeUpdate(2);
    pr.next = 8;
    assert.equal(pr.maybeDecrTo(7, 0), true);
    assert.equal(pr.next, 3, "never below match+1");
    const fresh = new Progress(5, false, 10, 0);
    assert.equal(fresh.maybeDecrTo(4, 99), true);
    assert.equal(fresh.next, 4, "a hint beyond the rejected index does not move next forward");
  });

  test("snapshot: paused until it resolves; probing resumes after the snapshot index", () => {
    const pr = new Progress(3, false, 10, 0);
    pr.maybeUpdate(2);
    pr.becomeSnapshot(20);
    assert.equal(pr.state, "snapshot");
    assert.equal(pr.isPaused(), true);
    assert.equal(pr.pendingSnapshot, 20);
    pr.becomeProbe();
    assert.equal(pr.state, "probe");
    assert.equal(pr.next, 21, "the follower has at least the snapshot");
    assert.equal(pr.pendingSnapshot, 0);
    // A failed snapshot (pendingSnapshot reset first): back to match+1.
    const failed = new Progress(3, false, 10, 0);
    failed.maybeUpdate(2);
    failed.becomeSnapshot(20);
    failed.pendingSnapshot = 0;
    failed.becomeProbe();
    assert.equal(failed.next, 3);
  });

  test("becomeProbe from replicate resets the window and next", () => {
    const pr = new Progress(1, false, 2, 0);
    pr.maybeUpdate(4);
    pr.becomeReplicate();
    pr.sentEntries(1, 1, 5);
    pr.sentEntries(1, 1, 6);
    assert.equal(pr.isPaused(), true);
    pr.becomeProbe();
    assert.equal(pr.next, 5);
    assert.equal(pr.inflights.count(), 0);
    assert.equal(pr.isPaused(), false);
  });
});

// ============================================================== quorum.ts

describe("quorum", () => {
  test("majority", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
  });

  test("committedIndex: the highest index a majority has", () => {
    const m = (xs: Record<number, number>) => (id: number) => xs[id] ?? 0;
    assert.equal(committedIndex([], m({})), 0);
    assert.equal(committedIndex([1], m({ 1: 7 })), 7);
    assert.equal(committedIndex([1, 2], m({ 1: 7, 2: 5 })), 5, "both of two");
    assert.equal(committedIndex([1, 2, 3], m({ 1: 7, 2: 5, 3: 1 })), 5);
    assert.equal(committedIndex([1, 2, 3, 4], m({ 1: 9, 2: 8, 3: 2, 4: 1 })), 2, "3 of 4");
    assert.equal(committedIndex([1, 2, 3, 4, 5], m({ 1: 9, 2: 9, 3: 4, 4: 3, 5: 0 })), 4);
    assert.equal(committedIndex([3, 1, 2], m({ 1: 7, 2: 5, 9: 100 })), 5, "only voters count; missing = 0");
  });

  test("tallyVotes: won, lost or pending; non-voters are ignored", () => {
    const v = (o: Record<number, boolean>) => new Map(Object.entries(o).map(([k, b]) => [Number(k), b]));
    assert.equal(tallyVotes([1, 2, 3], v({ 1: true })), "pending");
    assert.equal(tallyVotes([1, 2, 3], v({ 1: true, 2: true })), "won");
    assert.equal(tallyVotes([1, 2, 3], v({ 1: true, 2: false })), "pending");
    assert.equal(tallyVotes([1, 2, 3], v({ 1: true, 2: false, 3: false })), "lost");
    assert.equal(tallyVotes([1, 2, 3, 4], v({ 1: true, 2: true, 3: false, 4: false })), "lost", "2 of 4 is not a majority");
    assert.equal(tallyVotes([1, 2, 3], v({ 1: true, 4: true, 5: true })), "pending", "learners' votes do not count");
    assert.equal(tallyVotes([1], v({ 1: true })), "won");
  });
});

// =========================================================== confchange.ts

describe("confchange", () => {
  const cs = (voters: number[], learners: number[] = []): ConfState => ({ voters, learners });

  test("encode/decode round trip, with and without context", () => {
    for (const cc of [
      { type: "addVoter", nodeId: 1 },
      { type: "addLearner", nodeId: 0xffffffff },
      { type: "removeNode", nodeId: 77, context: enc.encode("10.0.0.7:5433") },
    ] satisfies ConfChange[]) {
      assert.deepEqual(decodeConfChange(encodeConfChange(cc)), cc);
    }
    // Decoding a view into a larger buffer works too.
    const inner = encodeConfChange({ type: "addVoter", nodeId: 9 });
    const big = new Uint8Array(inner.length + 3);
    big.set(inner, 3);
    assert.deepEqual(decodeConfChange(big.subarray(3)), { type: "addVoter", nodeId: 9 });
  });

  test("decode refuses short or unknown data", () => {
    throwsCode(() => decodeConfChange(new Uint8Array([0, 0, 0, 1])), "CORRUPT");
    throwsCode(() => decodeConfChange(new Uint8Array([7, 0, 0, 0, 1])), "CORRUPT");
  });

  test("valid changes: add, promote, demote, remove; the result is sorted", () => {
    assert.deepEqual(applyToConfState(cs([3, 1]), { type: "addVoter", nodeId: 2 }), cs([1, 2, 3]));
    assert.deepEqual(applyToConfState(cs([1]), { type: "addLearner", nodeId: 5 }), cs([1], [5]));
    assert.deepEqual(applyToConfState(cs([1], [5, 4]), { type: "addVoter", nodeId: 5 }), cs([1, 5], [4]), "promotion");
    assert.deepEqual(applyToConfState(cs([1, 2]), { type: "addLearner", nodeId: 2 }), cs([1], [2]), "demotion");
    assert.deepEqual(applyToConfState(cs([1, 2], [3]), { type: "removeNode", nodeId: 3 }), cs([1, 2]));
    assert.deepEqual(applyToConfState(cs([1, 2], [3]), { type: "removeNode", nodeId: 1 }), cs([2], [3]));
    const before = cs([1, 2]);
    applyToConfState(before, { type: "removeNode", nodeId: 2 });
    assert.deepEqual(before, cs([1, 2]), "the input is not modified");
  });

  test("invalid changes are refused with INVALID_ARGUMENT", () => {
    throwsCode(() => applyToConfState(cs([1, 2]), { type: "addVoter", nodeId: 2 }), "INVALID_ARGUMENT", "duplicate voter");
    throwsCode(() => applyToConfState(cs([1], [2]), { type: "addLearner", nodeId: 2 }), "INVALID_ARGUMENT", "duplicate learner");
    throwsCode(() => applyToConfState(cs([1, 2]), { type: "removeNode", nodeId: 3 }), "INVALID_ARGUMENT", "unknown node");
    throwsCode(() => applyToConfState(cs([1], [2]), { type: "removeNode", nodeId: 1 }), "INVALID_ARGUMENT", "no voter left");
    throwsCode(() => applyToConfState(cs([1]), { type: "addLearner", nodeId: 1 }), "INVALID_ARGUMENT", "demoting the last voter");
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 32, Infinity]) {
      throwsCode(() => applyToConfState(cs([1]), { type: "addVoter", nodeId: bad }), "INVALID_ARGUMENT", `node id ${bad}`);
      throwsCode(() => validateNodeId(bad), "INVALID_ARGUMENT");
    }
    throwsCode(() => validateNodeId("2"), "INVALID_ARGUMENT", "a string is not a node id");
  });

  // The proposal path encodes the change into a log entry before validating it.
  // DataView.setUint32 wraps what it is given (-1 becomes 4294967295, 2.5 becomes
  // 2, 2**32+2 becomes 2), so an invalid id must be refused before encoding, or
  // it turns into a different, valid node id.
  test("regression: encoding an invalid node id is refused instead of silently wrapped", () => {
    for (const nodeId of [-1, 2.5, 2 ** 32 + 2]) {
      let decoded: ConfChange | undefined;
      try {
        decoded = decodeConfChange(encodeConfChange({ type: "removeNode", nodeId }));
      } catch (e) {
        assert.ok(isRaftError(e, "INVALID_ARGUMENT"), `node id ${nodeId}: wrong error ${String(e)}`);
        continue;
      }
      assert.fail(`node id ${nodeId} was encoded and decodes as node ${decoded.nodeId}`);
    }
  });

  /** A leader of voters (1 2 3) whose first entry is committed and applied (conf changes allowed). */
  function leaderOfThree(): { rn: RawNode; storage: MemoryStorage } {
    const storage = new MemoryStorage();
    storage.applySnapshot(snap(1, 1, { voters: [1, 2, 3], learners: [] }));
    const rn = new RawNode({ id: 1, clusterId: "c", storage, random: seededRandom(1) });
    const msg = (type: MessageType, from: number, term: number, index = 0): Message => ({
      type, clusterId: "c", from, to: 1, term, logTerm: 0, index, entries: [], commit: 0, reject: false, rejectHint: 0,
    });
    rn.campaign();
    rn.step(msg(MessageType.PreVoteResp, 2, 1));
    rn.step(msg(MessageType.VoteResp, 2, 1));
    assert.equal(rn.status().role, Role.Leader);
    let rd = rn.ready();
    storage.append(rd.entries);
    rn.advance(rd);
    rn.step(msg(MessageType.AppResp, 2, 1, 2));
    rd = rn.ready();
    rn.advance(rd);
    assert.equal(rn.status().applied, 2);
    return { rn, storage };
  }

  test("regression: proposeConfChange refuses node ids that are negative, fractional or too large", () => {
    // removeNode 2.5 / 2**32+2 would remove node 2; addVoter -1 would add node 4294967295.
    const bad: ConfChange[] = [
      { type: "removeNode", nodeId: 2.5 },
      { type: "removeNode", nodeId: 2 ** 32 + 2 },
      { type: "addVoter", nodeId: -1 },
      { type: "addLearner", nodeId: 4.2 },
    ];
    const accepted: string[] = [];
    for (const cc of bad) {
      const { rn } = leaderOfThree();
      const last = rn.status().lastIndex;
      try {
        rn.proposeConfChange(cc);
        const logged = rn.ready().entries.map((e) => decodeConfChange(e.data));
        accepted.push(`${cc.type} ${cc.nodeId} (logged as ${logged.map((l) => `${l.type} ${l.nodeId}`).join(", ")})`);
      } catch (e) {
        assert.ok(isRaftError(e, "INVALID_ARGUMENT"), `${cc.type} ${cc.nodeId}: wrong error ${String(e)}`);
        assert.equal(rn.status().lastIndex, last, "nothing was appended");
      }
    }
    assert.deepEqual(accepted, [], "invalid node ids were accepted");
  });

  test("regression: proposeConfChange with an unknown change type is INVALID_ARGUMENT, not CORRUPT", () => {
    const { rn } = leaderOfThree();
    assert.throws(
      () => rn.proposeConfChange({ type: "promote" as ConfChange["type"], nodeId: 2 }),
      (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"),
      "a bad change type is the caller's mistake (INVALID_ARGUMENT), not a corrupt log (CORRUPT)",
    );
  });

  test("a valid conf change proposal is appended as a ConfChange entry", () => {
    const { rn } = leaderOfThree();
    const at = rn.proposeConfChange({ type: "removeNode", nodeId: 3 });
    assert.deepEqual(at, { index: 3, term: 1 });
    const e = rn.ready().entries[0];
    assert.ok(e);
    assert.equal(e.type, EntryType.ConfChange);
    assert.deepEqual(decodeConfChange(e.data), { type: "removeNode", nodeId: 3 });
    throwsCode(() => rn.proposeConfChange({ type: "addVoter", nodeId: 4 }), "PROPOSAL_DROPPED", "one change at a time");
  });
});

// ============================================================== storage.ts

describe("MemoryStorage", () => {
  test("empty storage: first 1, last 0, term(0) = 0", () => {
    const s = new MemoryStorage();
    assert.equal(s.firstIndex(), 1);
    assert.equal(s.lastIndex(), 0);
    assert.equal(s.term(0), 0);
    throwsCode(() => s.term(1), "UNAVAILABLE");
    assert.deepEqual(s.entries(1, 1, Infinity), []);
  });

  test("append: extends, truncates a conflicting suffix, refuses a gap", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 1, 1]));
    s.append(ents(4, [1]));
    assert.equal(s.lastIndex(), 4);
    s.append(ents(3, [2]));
    assert.deepEqual(termsOf(s.entries(1, 4, Infinity)), [1, 1, 2]);
    assert.equal(s.lastIndex(), 3, "entry 4 went with the replaced suffix");
    throwsCode(() => s.append(ents(5, [2])), "UNAVAILABLE", "a gap at 4");
    assert.equal(s.lastIndex(), 3);
    s.append([]);
    assert.equal(s.lastIndex(), 3);
  });

  test("append across the compaction point skips what the snapshot covers", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 1, 1, 1]));
    s.createSnapshot(3, { voters: [1], learners: [] }, new Uint8Array());
    s.compact(3);
    s.append(ents(1, [1, 1]));
    assert.equal(s.lastIndex(), 4, "entirely compacted: ignored");
    s.append(ents(2, [1, 1, 2, 2]));
    assert.equal(s.firstIndex(), 4);
    assert.deepEqual(termsOf(s.entries(4, 6, Infinity)), [2, 2]);
  });

  test("entries: range checks and size limit", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 1, 1, 1]));
    throwsCode(() => s.entries(0, 2, Infinity), "COMPACTED");
    throwsCode(() => s.entries(2, 6, Infinity), "UNAVAILABLE");
    assert.deepEqual(indexesOf(s.entries(2, 5, Infinity)), [2, 3, 4]);
    const one = entryBytes(ent(1, 1));
    assert.deepEqual(indexesOf(s.entries(1, 5, 2 * one)), [1, 2]);
    assert.deepEqual(indexesOf(s.entries(1, 5, 1)), [1], "at least one entry");
  });

  test("limitSize keeps the longest prefix within the budget, at least one", () => {
    const es = [ent(1, 1, "x".repeat(10)), ent(2, 1, "y".repeat(10)), ent(3, 1)];
    const b = es.map(entryBytes);
    assert.deepEqual(indexesOf(limitSize(es, b[0]! + b[1]!)), [1, 2]);
    assert.deepEqual(indexesOf(limitSize(es, b[0]! + b[1]! - 1)), [1]);
    assert.deepEqual(indexesOf(limitSize(es, Infinity)), [1, 2, 3]);
    assert.deepEqual(limitSize([], 0), []);
  });

  test("compact: drops entries up to the index, keeps its term; out of range is refused", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 2, 3, 4, 5]));
    s.compact(3);
    assert.equal(s.firstIndex(), 4);
    assert.equal(s.lastIndex(), 5);
    assert.equal(s.term(3), 3, "the compaction point's term is kept");
    throwsCode(() => s.term(2), "COMPACTED");
    throwsCode(() => s.entries(3, 5, Infinity), "COMPACTED");
    s.compact(2);
    assert.equal(s.firstIndex(), 4, "compacting behind the point is a no-op");
    throwsCode(() => s.compact(6), "UNAVAILABLE");
    assert.equal(s.firstIndex(), 4);
    s.compact(5);
    assert.equal(s.firstIndex(), 6);
    assert.equal(s.lastIndex(), 5);
    s.append(ents(6, [6]));
    assert.equal(s.lastIndex(), 6, "appending continues after a full compaction");
  });

  test("createSnapshot records index, term and conf; applySnapshot replaces the log", () => {
    const s = new MemoryStorage();
    s.append(ents(1, [1, 1, 2]));
    const conf = { voters: [1, 2], learners: [3] };
    const sn = s.createSnapshot(3, conf, enc.encode("state"));
    assert.deepEqual(sn.meta, { index: 3, term: 2, conf });
    assert.equal(s.snapshot(), sn);
    assert.equal(s.createSnapshot(2, conf, new Uint8Array()), sn, "an older snapshot is not taken");
    throwsCode(() => s.createSnapshot(4, conf, new Uint8Array()), "UNAVAILABLE");
    assert.deepEqual(s.initialState().confState, conf);
    s.applySnapshot(snap(10, 5));
    assert.equal(s.firstIndex(), 11);
    assert.equal(s.lastIndex(), 10);
    assert.equal(s.term(10), 5);
    throwsCode(() => s.term(3), "COMPACTED");
    throwsCode(() => s.applySnapshot(snap(9, 5)), "COMPACTED", "older than the current snapshot");
  });

  test("hard state is copied in and out", () => {
    const s = new MemoryStorage();
    const hs = { term: 3, vote: 2, commit: 1 };
    s.setHardState(hs);
    hs.term = 99;
    const got = s.initialState().hardState;
    assert.deepEqual(got, { term: 3, vote: 2, commit: 1 });
    got.commit = 50;
    assert.equal(s.initialState().hardState.commit, 1);
  });
});
