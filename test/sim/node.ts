// A simulated server: the Raft core plus a driver with an explicit model of
// durability. The MemoryStorage holds exactly what is on disk. Handling a
// Ready takes two events: taking it (its writes are now in flight), and a
// later "fsync done" that makes its snapshot/entries/hard state durable and
// only then sends its messages, applies its committed entries and advances.
// A crash throws away the in-flight write, the core and the state machine;
// a restart rebuilds them from the durable storage alone.
import type { ConfChange } from "../../src/consensus/confchange.js";
import { RaftError } from "../../src/consensus/errors.js";
import { MemoryStorage } from "../../src/consensus/storage.js";
import { MessageType, Role, type Message, type NodeId, type RaftStatus, type Ready } from "../../src/consensus/types.js";
import { SafetyViolation, type LogView, type SafetyChecker } from "./checker.js";
import { confKey, ctxStr, fmtReady, fmtStatus } from "./format.js";
import type { Network } from "./network.js";
import type { RaftFactory, SimRaft } from "./raft.js";
import type { Rng } from "./rng.js";
import type { Scheduler } from "./scheduler.js";
import { decodeImage, encodeImage, entryDigest, StateMachine } from "./state-machine.js";

/** Deliberate driver bugs, to prove the checker notices them. */
export type DriverBug = "send-before-persist";

export interface NodeParams {
  clusterId: string;
  electionTick: number;
  heartbeatTick: number;
  preVote: boolean;
  checkQuorum: boolean;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  maxUncommittedEntriesSize: number;
  maxCommittedSizePerReady: number;
  /** Range of the fsync latency, ms. */
  fsyncMin: number;
  fsyncMax: number;
  /** Step messages and ticks into the core while a Ready is being persisted. */
  interleave: boolean;
  bug?: DriverBug | undefined;
}

export interface NodeContext {
  sched: Scheduler;
  net: Network;
  checker: SafetyChecker;
  rng: Rng;
  factory: RaftFactory;
  params: NodeParams;
  trace: (line: () => string) => void;
  /** The node's core was called during the current event (its status is checked after it). */
  touched: (n: SimNode) => void;
  /**
   * After the event's checks: the node was seen as leader of `term` for the
   * first time ("elected"), or it applied entries for the first time since
   * (its first commit as leader: "committed").
   */
  leaderEvent?: (n: SimNode, term: number, what: "elected" | "committed") => void;
}

const LOCAL_ONLY = new Set<MessageType>([MessageType.Hup, MessageType.Beat, MessageType.Unreachable, MessageType.SnapStatus, MessageType.CheckQuorum]);

interface PendingProposal {
  term: number;
  digest: string;
}

export class SimNode {
  /** The disk. Only durable writes ever reach it. */
  readonly storage = new MemoryStorage();
  raft: SimRaft | undefined;
  /** Bumped at every crash and restart; messages and timers of an older incarnation are void. */
  incarnation = 0;
  sm = new StateMachine({ index: 0, term: 0, hash: "" });
  /** The Ready whose writes are in flight. */
  private pending: Ready | undefined;
  /** Inputs given to the core after `pending` was taken: its log may hold entries we have not seen. */
  private unseen = false;
  private readonly deferred: (() => void)[] = [];
  private readonly proposals = new Map<number, PendingProposal>();
  lastStatus: RaftStatus | undefined;
  /** Permanently gone (removed from the cluster and shut down). */
  destroyed = false;
  /** The last term this node was seen leading, and its applied index when elected (-1: first commit reported). */
  private led = { term: 0, applied: 0 };
  readonly stats = { crashes: 0, readies: 0, snapshotsCreated: 0 };

  constructor(
    readonly id: NodeId,
    private readonly ctx: NodeContext,
  ) {}

  get alive(): boolean {
    return this.raft !== undefined;
  }

  /** A write is in flight (a crash now loses it). */
  get syncing(): boolean {
    return this.pending !== undefined;
  }

  get isLeader(): boolean {
    return this.lastStatus?.role === Role.Leader;
  }

  // -------------------------------------------------------------- lifecycle

  start(): void {
    if (this.raft || this.destroyed) return;
    const snap = this.storage.snapshot();
    const img = decodeImage(snap.data);
    if (img.index !== snap.meta.index) {
      throw new Error(`sim bug: node ${this.id}'s snapshot ${snap.meta.index} holds a state image of ${img.index}`);
    }
    this.sm = new StateMachine(img);
    this.ctx.checker.restart(this.id, img);
    if (img.index > 0) this.ctx.checker.observeConf(this.id, img.index, confKey(snap.meta.conf));
    this.incarnation++;
    const p = this.ctx.params;
    this.raft = this.ctx.factory({
      id: this.id,
      clusterId: p.clusterId,
      storage: this.storage,
      random: this.ctx.rng.fork(),
      electionTick: p.electionTick,
      heartbeatTick: p.heartbeatTick,
      applied: img.index,
      preVote: p.preVote,
      checkQuorum: p.checkQuorum,
      maxSizePerMsg: p.maxSizePerMsg,
      maxInflightMsgs: p.maxInflightMsgs,
      maxUncommittedEntriesSize: p.maxUncommittedEntriesSize,
      maxCommittedSizePerReady: p.maxCommittedSizePerReady,
    });
    this.pending = undefined;
    this.unseen = false;
    this.deferred.length = 0;
    this.ctx.trace(() => `  node ${this.id} started (incarnation ${this.incarnation}): snapshot ${snap.meta.index}@${snap.meta.term}, log [${this.storage.firstIndex()}..${this.storage.lastIndex()}], hard state t${this.storage.hardState.term}/v${this.storage.hardState.vote}/c${this.storage.hardState.commit}`);
    this.ctx.touched(this);
    this.processReady();
  }

  crash(): void {
    if (!this.raft) return;
    this.ctx.trace(() => `  node ${this.id} CRASHED${this.pending ? ` (lost in-flight write: ${fmtReady(this.pending)})` : ""}`);
    this.raft = undefined;
    this.pending = undefined;
    this.deferred.length = 0;
    this.proposals.clear();
    this.lastStatus = undefined;
    this.incarnation++;
    this.stats.crashes++;
  }

  destroy(): void {
    this.crash();
    this.destroyed = true;
  }

  // ------------------------------------------------------------------ input

  /** Run `fn` against the core (deferred while a write is in flight, unless interleaving). */
  private input(fn: (r: SimRaft) => void, deferrable: boolean): void {
    const r = this.raft;
    if (!r) return;
    if (this.pending && deferrable && !this.ctx.params.interleave) {
      this.deferred.push(() => this.input(fn, deferrable));
      return;
    }
    if (this.pending) this.unseen = true;
    this.ctx.touched(this);
    fn(r);
    this.processReady();
  }

  tick(): void {
    this.input((r) => r.tick(), true);
  }

  step(m: Message): void {
    this.input((r) => r.step(m), true);
  }

  campaign(): void {
    this.input((r) => r.campaign(), false);
  }

  transferLeader(to: NodeId): void {
    this.input((r) => r.transferLeader(to), false);
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    this.input((r) => r.reportSnapshot(to, ok), true);
  }

  reportUnreachable(to: NodeId): void {
    this.input((r) => r.reportUnreachable(to), true);
  }

  readIndex(ctx: string): void {
    this.ctx.checker.readIssued(this.id, ctx);
    this.input((r) => r.readIndex(Buffer.from(ctx, "latin1")), false);
  }

  /** Propose on this node; returns where the entry landed (throws what the core throws). */
  propose(data: string): { index: number; term: number } {
    return this.proposeWith((r) => r.propose(Buffer.from(data, "latin1")), data);
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    return this.proposeWith((r) => r.proposeConfChange(cc), `cc:${cc.type}:${cc.nodeId}`);
  }

  private proposeWith(fn: (r: SimRaft) => { index: number; term: number }, digest: string): { index: number; term: number } {
    let res: { index: number; term: number } | undefined;
    this.input((r) => {
      res = fn(r);
    }, false);
    if (!res) throw new RaftError("STOPPED", `node ${this.id} is down`);
    this.proposals.set(res.index, { term: res.term, digest });
    return res;
  }

  // ------------------------------------------------------------------ Ready

  private processReady(): void {
    for (let rounds = 0; ; rounds++) {
      const r = this.raft;
      if (!r || this.pending || !r.hasReady()) return;
      if (rounds > 1000) throw new SafetyViolation("liveness of the driver loop", `node ${this.id} kept producing Readies without input`);
      const rd = r.ready();
      this.stats.readies++;
      this.unseen = false;
      this.ctx.trace(() => `  node ${this.id} ready: ${fmtReady(rd)}`);
      this.acceptReady(rd);
      const durable = rd.snapshot !== undefined || rd.entries.length > 0 || rd.hardState !== undefined;
      const sendEarly = this.ctx.params.bug === "send-before-persist";
      if (sendEarly) this.send(rd);
      if (!durable) {
        this.complete(rd, sendEarly);
        continue;
      }
      this.pending = rd;
      const inc = this.incarnation;
      const p = this.ctx.params;
      this.ctx.sched.after(
        this.ctx.rng.int(p.fsyncMin, p.fsyncMax + 1),
        () => `node ${this.id} fsync done`,
        () => {
          if (this.incarnation !== inc || this.pending !== rd) return;
          this.ctx.touched(this);
          this.complete(rd, sendEarly);
          this.processReady();
          this.runDeferred();
        },
      );
      return;
    }
  }

  private runDeferred(): void {
    while (!this.pending && this.deferred.length > 0) this.deferred.shift()!();
  }

  /** Checks on a Ready as soon as the core hands it out. */
  private acceptReady(rd: Ready): void {
    const checker = this.ctx.checker;
    for (const m of rd.messages) {
      // Forwarded requests keep the requester in `from`; everything else is from us.
      const forwarded = m.type === MessageType.ReadIndex || m.type === MessageType.TransferLeader;
      if ((m.from !== this.id && !forwarded) || m.to === this.id || m.to === 0 || LOCAL_ONLY.has(m.type) || m.clusterId !== this.ctx.params.clusterId) {
        throw new SafetyViolation("driver contract", `node ${this.id} was handed an unsendable message ${MessageType[m.type]} ${m.from}→${m.to} (cluster "${m.clusterId}")`);
      }
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!;
      checker.registerEntries(this.id, this.termBefore(first.index, rd), rd.entries, rd.entries.map(entryDigest));
    }
    for (const rs of rd.readStates) checker.readAnswered(this.id, ctxStr(rs.context), rs.index);
  }

  /** Term of entry i-1 in the log that durable storage plus `rd` will form (undefined if compacted). */
  private termBefore(i: number, rd: Ready): number | undefined {
    const prev = i - 1;
    if (rd.snapshot) return prev === rd.snapshot.meta.index ? rd.snapshot.meta.term : undefined;
    try {
      return this.storage.term(prev);
    } catch {
      return undefined;
    }
  }

  /** The write is durable: persist, send, apply, advance. */
  private complete(rd: Ready, sent: boolean): void {
    const r = this.raft!;
    const checker = this.ctx.checker;
    this.persist(rd);
    this.pending = undefined;
    if (!sent) this.send(rd);
    const applying = rd.snapshot !== undefined || rd.committedEntries.length > 0;
    if (rd.snapshot) {
      const img = decodeImage(rd.snapshot.data);
      if (img.index !== rd.snapshot.meta.index || img.term !== rd.snapshot.meta.term) {
        throw new SafetyViolation("snapshot integrity", `node ${this.id} got snapshot ${rd.snapshot.meta.index}@${rd.snapshot.meta.term} whose state is of ${img.index}@${img.term}`);
      }
      checker.installSnapshot(this.id, img);
      for (const i of this.proposals.keys()) if (i <= img.index) this.proposals.delete(i);
      checker.observeConf(this.id, img.index, confKey(rd.snapshot.meta.conf));
      this.sm.restore(img);
    }
    const hs = this.storage.hardState;
    for (const e of rd.committedEntries) {
      if (e.index > hs.commit) {
        throw new SafetyViolation("driver contract", `node ${this.id} was asked to apply ${e.index} but its durable commit index is ${hs.commit}`);
      }
      let durableTerm: number | undefined;
      try {
        durableTerm = this.storage.term(e.index);
      } catch {
        durableTerm = undefined;
      }
      if (durableTerm !== e.term) {
        throw new SafetyViolation(
          "driver contract",
          `node ${this.id} was asked to apply ${e.index}@${e.term}, but its durable log has ${durableTerm === undefined ? "no such entry" : `term ${durableTerm}`} there`,
        );
      }
      const digest = entryDigest(e);
      this.sm.apply(e, digest);
      checker.apply(this.id, e, digest, this.sm.hash, hs.term);
      const prop = this.proposals.get(e.index);
      if (prop) {
        this.proposals.delete(e.index);
        if (prop.term === e.term) {
          if (prop.digest !== digest) {
            throw new SafetyViolation("proposal integrity", `node ${this.id} proposed "${prop.digest}" and was told ${e.index}@${e.term}, but that entry is "${digest}"`);
          }
          checker.acknowledge(this.id, e.index, e.term, digest);
        }
      }
    }
    r.advance(rd);
    if (applying) {
      const st = r.status();
      this.lastStatus = st;
      if (st.applied !== this.sm.applied) {
        throw new SafetyViolation("driver contract", `node ${this.id} applied up to ${this.sm.applied} but the core reports applied=${st.applied}`);
      }
      // A snapshot the core accepted meanwhile (not yet handed out) already set its
      // configuration; the conf then belongs to the snapshot's index, not ours.
      if (st.firstIndex <= this.sm.applied + 1) checker.observeConf(this.id, this.sm.applied, confKey(st.conf));
    }
  }

  private persist(rd: Ready): void {
    const s = this.storage;
    try {
      if (rd.snapshot) s.applySnapshot(rd.snapshot);
      s.append(rd.entries);
    } catch (e) {
      throw new SafetyViolation("driver contract", `node ${this.id} could not persist ${fmtReady(rd)}: ${(e as Error).message}`);
    }
    if (rd.hardState) {
      this.ctx.checker.persistedHardState(this.id, s.hardState, rd.hardState, s.lastIndex());
      s.setHardState(rd.hardState);
    } else if (s.hardState.commit > s.lastIndex()) {
      throw new SafetyViolation("durable state", `node ${this.id}'s durable commit ${s.hardState.commit} is beyond its durable log (last ${s.lastIndex()}) after ${fmtReady(rd)}`);
    }
  }

  private send(rd: Ready): void {
    for (const m of rd.messages) this.ctx.net.send(this.id, m);
  }

  // ------------------------------------------------------------- snapshots

  /** Take a snapshot at the applied index and drop the log up to `applied - keep`. */
  compact(keep: number): boolean {
    const r = this.raft;
    if (!r || this.pending) return false;
    const at = this.sm.applied;
    if (at <= this.storage.snapshot().meta.index) return false;
    const conf = r.status().conf;
    this.storage.createSnapshot(at, conf, encodeImage(this.sm.image()));
    this.storage.compact(Math.max(0, at - keep));
    this.stats.snapshotsCreated++;
    this.ctx.trace(() => `  node ${this.id} snapshot at ${at}, log now [${this.storage.firstIndex()}..${this.storage.lastIndex()}]`);
    return true;
  }

  // ----------------------------------------------------------------- checks

  /** After an event that called into this node: observe its role and check a new leader's log. */
  checkAfterEvent(): void {
    const r = this.raft;
    if (!r) return;
    const st = r.status();
    this.lastStatus = st;
    const checker = this.ctx.checker;
    checker.observeRole(this.id, st.term, st.role);
    if (st.role === Role.Leader && !this.unseen && checker.needsCompletenessCheck(this.id, st.term)) {
      checker.checkLeaderCompleteness(this.id, st.term, this.logView());
    }
    if (st.role !== Role.Leader) return;
    if (st.term !== this.led.term) {
      this.led = { term: st.term, applied: st.applied };
      this.ctx.leaderEvent?.(this, st.term, "elected");
    } else if (this.led.applied >= 0 && st.applied > this.led.applied) {
      this.led.applied = -1;
      this.ctx.leaderEvent?.(this, st.term, "committed");
    }
  }

  /** The node's whole log: durable storage with the in-flight write on top. */
  logView(): LogView {
    const s = this.storage;
    const rd = this.pending;
    const snap = rd?.snapshot;
    const ents = rd?.entries ?? [];
    const first = ents[0]?.index;
    const snapshotIndex = snap ? snap.meta.index : s.firstIndex() - 1;
    const lastIndex = first !== undefined ? first + ents.length - 1 : snap ? snap.meta.index : s.lastIndex();
    return {
      snapshotIndex,
      lastIndex,
      term: (i) => {
        if (first !== undefined && i >= first) return ents[i - first]?.term;
        if (snap) return i === snap.meta.index ? snap.meta.term : undefined;
        try {
          return s.term(i);
        } catch {
          return undefined;
        }
      },
    };
  }

  describe(): string {
    if (this.destroyed) return `node ${this.id}: removed and shut down`;
    if (!this.raft) return `node ${this.id}: DOWN (durable log [${this.storage.firstIndex()}..${this.storage.lastIndex()}], hard state t${this.storage.hardState.term}/c${this.storage.hardState.commit})`;
    return `${fmtStatus(this.raft.status())} sm=${this.sm.applied}${this.pending ? " (write in flight)" : ""}`;
  }
}
