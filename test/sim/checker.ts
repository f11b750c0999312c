// The safety invariants of Raft, checked incrementally as the simulation
// reports what it sees. Every method throws SafetyViolation with a precise
// description the moment an observation contradicts an invariant:
//
//  - election safety: at most one leader per term (over the whole history);
//  - log matching: an (index, term) pair names one entry, with one predecessor
//    term, in every log at every time (this implies the pairwise prefix rule);
//  - leader completeness: an entry committed by term T is in the log of every
//    leader of a term > T;
//  - state-machine safety: no two nodes apply different entries at an index,
//    and every node's state (hash chain) at an index is the same;
//  - durability: persisted term/vote/commit never go backwards, no node votes
//    twice in a term, commit never points past the durable log;
//  - no acknowledged entry is ever lost or replaced;
//  - membership agreement: all nodes have the same configuration at an index;
//  - ReadIndex: a read's index covers every write acknowledged (and every read
//    answered) before the read was issued.
import type { Entry, NodeId, HardState } from "../../src/consensus/types.js";
import { Role } from "../../src/consensus/types.js";
import type { StateMachineImage } from "./state-machine.js";

export class SafetyViolation extends Error {
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`${invariant} violated: ${detail}`);
    this.name = "SafetyViolation";
  }
}

/** What a leader's log looks like from outside: durable storage plus the in-flight write. */
export interface LogView {
  /** Entries at or below this index are compacted into a snapshot. */
  snapshotIndex: number;
  lastIndex: number;
  /** Term of entry i for snapshotIndex <= i <= lastIndex. */
  term(i: number): number | undefined;
}

interface EntryRecord {
  prevTerm: number | undefined;
  digest: string;
  node: NodeId;
  time: number;
}

interface CommittedRecord {
  term: number;
  digest: string;
  hash: string;
  /** Upper bound on the term in which the entry was committed. */
  bound: number;
  node: NodeId;
  time: number;
}

interface AckRecord {
  term: number;
  digest: string;
  node: NodeId;
  time: number;
}

interface ReadRequest {
  node: NodeId;
  bound: number;
  boundWhy: string;
  issued: number;
}

export class SafetyChecker {
  private readonly leaders = new Map<number, { node: NodeId; time: number }>();
  private readonly logIds = new Map<number, Map<number, EntryRecord>>();
  private readonly committed: (CommittedRecord | undefined)[] = [];
  private readonly confAt = new Map<number, { key: string; node: NodeId }>();
  private readonly cursors = new Map<NodeId, StateMachineImage>();
  private readonly acks = new Map<number, AckRecord>();
  private readonly reads = new Map<string, ReadRequest>();
  private readonly completenessChecked = new Set<string>();
  private maxAck = 0;
  private maxAckWhy = "";
  private maxRead = 0;
  private maxReadWhy = "";
  readonly stats = { leaders: 0, applied: 0, acked: 0, readsIssued: 0, readsAnswered: 0, snapshotsInstalled: 0 };

  constructor(private readonly clock: () => number = () => 0) {}

  private at(): string {
    return `t=${this.clock()}ms`;
  }

  // ------------------------------------------------------------ elections

  observeRole(node: NodeId, term: number, role: Role): void {
    if (role !== Role.Leader) return;
    const seen = this.leaders.get(term);
    if (!seen) {
      this.leaders.set(term, { node, time: this.clock() });
      this.stats.leaders++;
      return;
    }
    if (seen.node !== node) {
      throw new SafetyViolation(
        "election safety",
        `nodes ${seen.node} (leader since t=${seen.time}ms) and ${node} (${this.at()}) were both leader in term ${term}`,
      );
    }
  }

  leaderOf(term: number): NodeId | undefined {
    return this.leaders.get(term)?.node;
  }

  // ------------------------------------------------------------ log matching

  /**
   * Entries a node's log now holds (handed out by the core for persistence),
   * preceded by an entry of term `prevTerm` (undefined when unknown).
   */
  registerEntries(node: NodeId, prevTerm: number | undefined, entries: readonly Entry[], digests: readonly string[]): void {
    let prev = prevTerm;
    let prevIndex = entries[0] ? entries[0].index - 1 : 0;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      const digest = digests[k]!;
      if (e.index !== prevIndex + 1) {
        throw new SafetyViolation("log matching", `node ${node} was handed a non-contiguous batch: index ${e.index} follows ${prevIndex} (${this.at()})`);
      }
      if (prev !== undefined && e.term < prev) {
        throw new SafetyViolation("log matching", `node ${node}'s log has term ${e.term} at index ${e.index} after term ${prev} at ${e.index - 1}: terms must not decrease (${this.at()})`);
      }
      let byTerm = this.logIds.get(e.index);
      if (!byTerm) {
        byTerm = new Map();
        this.logIds.set(e.index, byTerm);
      }
      const rec = byTerm.get(e.term);
      if (!rec) {
        byTerm.set(e.term, { prevTerm: prev, digest, node, time: this.clock() });
      } else {
        if (rec.digest !== digest) {
          throw new SafetyViolation(
            "log matching",
            `entry ${e.index}@${e.term} is "${digest}" on node ${node} (${this.at()}) but was "${rec.digest}" on node ${rec.node} (t=${rec.time}ms)`,
          );
        }
        if (prev !== undefined && rec.prevTerm !== undefined && rec.prevTerm !== prev) {
          throw new SafetyViolation(
            "log matching",
            `entry ${e.index}@${e.term} follows term ${prev} at ${e.index - 1} on node ${node} (${this.at()}) but term ${rec.prevTerm} on node ${rec.node} (t=${rec.time}ms): same entry, different prefixes`,
          );
        }
        if (rec.prevTerm === undefined) rec.prevTerm = prev;
      }
      prev = e.term;
      prevIndex = e.index;
    }
  }

  // ---------------------------------------------------- leader completeness

  /** True until checkLeaderCompleteness ran for this (term, node). */
  needsCompletenessCheck(node: NodeId, term: number): boolean {
    return !this.completenessChecked.has(`${term}/${node}`);
  }

  checkLeaderCompleteness(node: NodeId, term: number, view: LogView): void {
    this.completenessChecked.add(`${term}/${node}`);
    for (let i = view.snapshotIndex + 1; i < this.committed.length; i++) {
      const c = this.committed[i];
      if (!c || c.bound >= term) continue;
      const t = i <= view.lastIndex ? view.term(i) : undefined;
      if (t !== c.term) {
        throw new SafetyViolation(
          "leader completeness",
          `entry ${i}@${c.term} ("${c.digest}") was committed by term ${c.bound} at the latest (applied by node ${c.node} at t=${c.time}ms), ` +
            `but node ${node}, leader of term ${term}, has ${t === undefined ? `no entry at ${i} (log ends at ${view.lastIndex})` : `term ${t} at ${i}`} (${this.at()})`,
        );
      }
    }
  }

  // -------------------------------------------------------- state machines

  /** A node (re)starts with its state machine restored from its durable snapshot. */
  restart(node: NodeId, img: StateMachineImage): void {
    this.checkImage(node, img, "restarted from its snapshot");
    this.cursors.set(node, { ...img });
  }

  /** A node installs a snapshot it received. */
  installSnapshot(node: NodeId, img: StateMachineImage): void {
    const cur = this.cursors.get(node);
    if (cur && img.index <= cur.index) {
      throw new SafetyViolation("state-machine safety", `node ${node} was handed snapshot ${img.index}@${img.term} but has applied up to ${cur.index} already (${this.at()})`);
    }
    this.checkImage(node, img, "installed snapshot");
    this.cursors.set(node, { ...img });
    this.stats.snapshotsInstalled++;
  }

  private checkImage(node: NodeId, img: StateMachineImage, what: string): void {
    if (img.index === 0) return;
    const c = this.committed[img.index];
    if (!c) {
      throw new SafetyViolation("state-machine safety", `node ${node} ${what} at index ${img.index}, which no node ever applied (${this.at()})`);
    }
    if (c.term !== img.term || c.hash !== img.hash) {
      throw new SafetyViolation(
        "state-machine safety",
        `node ${node} ${what} ${img.index}@${img.term} with state ${img.hash}, but node ${c.node} applied ${img.index}@${c.term} reaching state ${c.hash} (${this.at()})`,
      );
    }
  }

  /**
   * Node applied entry e, reaching state `hash`. `termBound` is a term the
   * node had reached when it learned e was committed (its durable term).
   */
  apply(node: NodeId, e: Entry, digest: string, hash: string, termBound: number): void {
    const cur = this.cursors.get(node);
    if (cur && e.index !== cur.index + 1) {
      throw new SafetyViolation(
        "state-machine safety",
        `node ${node} applied index ${e.index} right after ${cur.index} (${e.index <= cur.index ? "applied twice" : "skipped entries"}) (${this.at()})`,
      );
    }
    this.cursors.set(node, { index: e.index, term: e.term, hash });
    this.stats.applied++;
    const c = this.committed[e.index];
    if (!c) {
      this.committed[e.index] = { term: e.term, digest, hash, bound: termBound, node, time: this.clock() };
    } else {
      if (c.term !== e.term || c.digest !== digest) {
        throw new SafetyViolation(
          "state-machine safety",
          `node ${node} applied ${e.index}@${e.term} "${digest}" (${this.at()}) but node ${c.node} applied ${e.index}@${c.term} "${c.digest}" (t=${c.time}ms)`,
        );
      }
      if (c.hash !== hash) {
        throw new SafetyViolation(
          "state-machine safety",
          `node ${node} reached state ${hash} at index ${e.index} but node ${c.node} reached ${c.hash}: their applied prefixes differ (${this.at()})`,
        );
      }
      if (termBound < c.bound) c.bound = termBound;
    }
    const ack = this.acks.get(e.index);
    if (ack && (ack.term !== e.term || ack.digest !== digest)) {
      throw new SafetyViolation(
        "durability of acknowledged writes",
        `node ${node} applied ${e.index}@${e.term} "${digest}" but ${e.index}@${ack.term} "${ack.digest}" was acknowledged by node ${ack.node} at t=${ack.time}ms (${this.at()})`,
      );
    }
  }

  appliedIndex(node: NodeId): number {
    return this.cursors.get(node)?.index ?? 0;
  }

  committedAt(index: number): { term: number; digest: string } | undefined {
    return this.committed[index];
  }

  /** Node's applied configuration after applying up to `index`. */
  observeConf(node: NodeId, index: number, key: string): void {
    const seen = this.confAt.get(index);
    if (!seen) this.confAt.set(index, { key, node });
    else if (seen.key !== key) {
      throw new SafetyViolation("membership agreement", `after applying ${index}, node ${node} has configuration ${key} but node ${seen.node} had ${seen.key} (${this.at()})`);
    }
  }

  // ------------------------------------------------------------- durability

  persistedHardState(node: NodeId, prev: HardState, next: HardState, lastIndex: number): void {
    const where = `node ${node} persisted term ${next.term} vote ${next.vote} commit ${next.commit} over term ${prev.term} vote ${prev.vote} commit ${prev.commit} (${this.at()})`;
    if (next.term < prev.term) throw new SafetyViolation("durable state", `term went backwards: ${where}`);
    if (next.term === prev.term && prev.vote !== 0 && next.vote !== prev.vote) {
      throw new SafetyViolation("election safety", `a node voted twice in one term: ${where}`);
    }
    if (next.commit < prev.commit) throw new SafetyViolation("durable state", `commit went backwards: ${where}`);
    if (next.commit > lastIndex) throw new SafetyViolation("durable state", `commit beyond the durable log (last index ${lastIndex}): ${where}`);
  }

  // ---------------------------------------------------------- client view

  /** The proposer applied its own proposal at (index, term): the client got its answer. */
  acknowledge(node: NodeId, index: number, term: number, digest: string): void {
    const prev = this.acks.get(index);
    if (prev && (prev.term !== term || prev.digest !== digest)) {
      throw new SafetyViolation(
        "durability of acknowledged writes",
        `${index}@${term} "${digest}" acknowledged by node ${node} (${this.at()}) but ${index}@${prev.term} "${prev.digest}" was acknowledged by node ${prev.node} at t=${prev.time}ms`,
      );
    }
    this.acks.set(index, { term, digest, node, time: this.clock() });
    this.stats.acked++;
    if (index > this.maxAck) {
      this.maxAck = index;
      this.maxAckWhy = `write ${index}@${term} "${digest}" acknowledged by node ${node} at ${this.at()}`;
    }
  }

  readIssued(node: NodeId, ctx: string): void {
    const [bound, why] = this.maxAck >= this.maxRead ? [this.maxAck, this.maxAckWhy] : [this.maxRead, this.maxReadWhy];
    this.reads.set(ctx, { node, bound, boundWhy: why, issued: this.clock() });
    this.stats.readsIssued++;
  }

  readAnswered(node: NodeId, ctx: string, index: number): void {
    const req = this.reads.get(ctx);
    if (!req) throw new SafetyViolation("ReadIndex safety", `node ${node} got an answer for read "${ctx}" that nobody issued (${this.at()})`);
    if (req.node !== node) throw new SafetyViolation("ReadIndex safety", `read "${ctx}" issued on node ${req.node} was answered on node ${node} (${this.at()})`);
    if (index < req.bound) {
      throw new SafetyViolation(
        "ReadIndex safety",
        `read "${ctx}" issued on node ${node} at t=${req.issued}ms got read index ${index} (${this.at()}), but before it was issued the ${req.boundWhy}: a stale read`,
      );
    }
    this.stats.readsAnswered++;
    if (index > this.maxRead) {
      this.maxRead = index;
      this.maxReadWhy = `read "${ctx}" was answered with index ${index} at ${this.at()}`;
    }
  }

  /** At the end: every acknowledged entry up to `upTo` is applied, identically, on each given node. */
  checkAcknowledgedSurvive(nodes: readonly NodeId[], upTo: number): void {
    for (const [index, ack] of this.acks) {
      if (index > upTo) continue;
      const c = this.committed[index];
      if (!c || c.term !== ack.term || c.digest !== ack.digest) {
        throw new SafetyViolation("durability of acknowledged writes", `acknowledged ${index}@${ack.term} "${ack.digest}" is not what was applied at ${index}`);
      }
      for (const n of nodes) {
        const applied = this.appliedIndex(n);
        if (applied < index) {
          throw new SafetyViolation("durability of acknowledged writes", `node ${n} has applied only up to ${applied}, missing acknowledged ${index}@${ack.term} "${ack.digest}"`);
        }
      }
    }
  }
}
