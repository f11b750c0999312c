// The driver binds the pure core to durable storage, a transport, a clock and
// the application's state machine, in the order etcd documents for each Ready:
// persist (snapshot file, then WAL with one fsync), then send, then apply, then
// advance. Proposals and reads are promises that settle when the entry is
// applied (or the read is safe to serve), or fail with a typed RaftError.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { RaftLogger } from "./config.js";
import { applyToConfState, validateNodeId, type ConfChange } from "./confchange.js";
import { NotLeaderError, RaftError } from "./errors.js";
import { majority } from "./quorum.js";
import { seededRandom, type Random } from "./random.js";
import { RawNode } from "./raw-node.js";
import { contextKey } from "./read-only.js";
import { MemoryStorage } from "./storage.js";
import { EntryType, MessageType, Role, type ConfState, type Entry, type HardState, type Message, type NodeId, type RaftStatus, type Ready, type Snapshot } from "./types.js";
import type { FsLayer } from "./wal/fs-layer.js";
import { SnapshotStore } from "./wal/snapshot-store.js";
import { Wal } from "./wal/wal.js";

/** Sends messages to peers; best effort, never throws (Raft retries on its own). */
export interface Transport {
  send(messages: Message[]): void;
}

/** The replicated application state. `apply` must be deterministic. */
export interface StateMachine {
  /** Called for every committed Normal entry with data and every ConfChange entry, in log order. */
  apply(entry: Entry): unknown;
  snapshot(): Uint8Array | Promise<Uint8Array>;
  restore(data: Uint8Array): void | Promise<void>;
}

export interface Clock {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface DriverObserver {
  /** Every fsync'd WAL write (for the fsync histogram). */
  onPersist?(seconds: number, entries: number): void;
  onLeaderChange?(leader: NodeId, term: number, role: Role): void;
  onApply?(index: number): void;
  /**
   * Every proposal (command or membership change) once settled: "applied", or
   * the lower-case RaftError code it failed with ("not_leader", "timeout", ...).
   */
  onProposal?(outcome: string, seconds: number): void;
}

export interface RaftNodeOptions {
  id: NodeId;
  clusterId: string;
  dataDir: string;
  transport: Transport;
  stateMachine: StateMachine;
  /** Voters of a brand-new cluster; ignored when the data dir already holds state. Omit to join. */
  bootstrap?: ConfState;
  clock?: Clock;
  /** One tick; the heartbeat is heartbeatTicks ticks, the election timeout electionTicks ticks. */
  tickMs?: number;
  heartbeatTicks?: number;
  electionTicks?: number;
  random?: Random;
  logger?: RaftLogger;
  fs?: FsLayer;
  walSegmentBytes?: number;
  /** Take a snapshot after this many applied entries since the last one. */
  snapshotEntries?: number;
  /** Entries kept in memory behind a snapshot so slow followers need not get one. */
  keepEntriesAfterSnapshot?: number;
  /** Default deadline for proposals, reads and transfers. */
  requestTimeoutMs?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  readOnly?: "safe" | "lease";
  maxInflightMsgs?: number;
  maxSizePerMsg?: number;
  observer?: DriverObserver;
}

interface PendingProposal {
  term: number;
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: unknown;
}

interface PendingRead {
  index: number | undefined;
  resolve(): void;
  reject(e: Error): void;
  timer: unknown;
}

interface PendingTransfer {
  to: NodeId;
  resolve(): void;
  reject(e: Error): void;
  timer: unknown;
}

export interface RequestOptions {
  timeoutMs?: number;
}

const silent: RaftLogger = { info: () => {}, warn: () => {}, debug: () => {} };

export class RaftNode {
  readonly id: NodeId;
  private readonly rn: RawNode;
  private readonly clock: Clock;
  private readonly log: RaftLogger;
  private readonly timeoutMs: number;
  private snapshotEntries: number;
  private readonly keepEntries: number;
  private readonly proposals = new Map<number, PendingProposal>();
  private readonly reads = new Map<string, PendingRead>();
  private readonly transfers = new Set<PendingTransfer>();
  private readCounter = 0n;
  private readonly readPrefix = randomBytes(8);
  private ticker: unknown;
  private loopRunning = false;
  private loopAgain = false;
  private loopDone: Promise<void> = Promise.resolve();
  private stopped = false;
  private fatal: Error | undefined;
  private snapshotIndex: number;
  private lastLeader: NodeId = 0;
  /** Role as of the latest Ready (decides whether messages may go before the disk write). */
  private role: Role = Role.Follower;
  /** Index of the last entry known durable in the WAL, and the term of the durable hard state. */
  private durableLast: number;
  private durableTerm: number;

  private constructor(
    private readonly opts: RaftNodeOptions,
    private readonly storage: MemoryStorage,
    private readonly wal: Wal,
    private readonly snaps: SnapshotStore,
    applied: number,
  ) {
    this.id = opts.id;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silent;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.snapshotEntries = opts.snapshotEntries ?? 10_000;
    this.keepEntries = opts.keepEntriesAfterSnapshot ?? 5_000;
    this.snapshotIndex = storage.snapshot().meta.index;
    this.durableLast = storage.lastIndex();
    this.durableTerm = storage.initialState().hardState.term;
    this.tickMs = opts.tickMs ?? 100;
    this.rn = new RawNode({
      id: opts.id,
      clusterId: opts.clusterId,
      storage,
      random: opts.random ?? seededRandom(randomBytes(4).readUInt32LE(0)),
      electionTick: opts.electionTicks ?? 10,
      heartbeatTick: opts.heartbeatTicks ?? 1,
      applied,
      preVote: opts.preVote ?? true,
      checkQuorum: opts.checkQuorum ?? true,
      readOnlyOption: opts.readOnly ?? "safe",
      ...(opts.maxInflightMsgs ? { maxInflightMsgs: opts.maxInflightMsgs } : {}),
      ...(opts.maxSizePerMsg ? { maxSizePerMsg: opts.maxSizePerMsg } : {}),
      logger: this.log,
    });
  }

  /**
   * Open (or create) the node's data dir: restore the newest snapshot into the
   * state machine, replay the WAL after it, and bootstrap a brand-new cluster
   * when `bootstrap` is given and the dir is empty.
   */
  static async open(opts: RaftNodeOptions): Promise<RaftNode> {
    validateNodeId(opts.id);
    if (!opts.clusterId) throw new RaftError("INVALID_ARGUMENT", "cluster id must not be empty");
    const log = opts.logger ?? silent;
    const snaps = new SnapshotStore(join(opts.dataDir, "snap"), opts.fs, (m) => log.warn(m));
    const { wal, recovery } = await Wal.open({
      dir: join(opts.dataDir, "wal"),
      ...(opts.walSegmentBytes ? { segmentBytes: opts.walSegmentBytes } : {}),
      ...(opts.fs ? { fs: opts.fs } : {}),
      onWarning: (m: string) => log.warn(m),
    });
    try {
      let snap = await snaps.loadNewest();
      const storage = new MemoryStorage();
      let hs = recovery.hardState;
      const fresh = !snap && recovery.entries.length === 0 && hs.term === 0;
      if (fresh && opts.bootstrap) {
        const conf = { voters: [...opts.bootstrap.voters], learners: [...opts.bootstrap.learners] };
        if (!conf.voters.includes(opts.id) && !conf.learners.includes(opts.id)) {
          throw new RaftError("INVALID_ARGUMENT", `node ${opts.id} is not in the bootstrap membership [${conf.voters.join(",")}]`);
        }
        for (const v of [...conf.voters, ...conf.learners]) validateNodeId(v);
        // Every founding node starts from the same snapshot at index 1, so their logs agree.
        snap = { meta: { index: 1, term: 1, conf }, data: await opts.stateMachine.snapshot() };
        await snaps.save(snap);
        hs = { term: 1, vote: 0, commit: 1 };
        await wal.save([], hs, { index: 1, term: 1 });
        log.info(`node ${opts.id}: bootstrapped a new cluster with voters [${conf.voters.join(",")}]`);
      }
      if (snap) {
        // A crash between writing the snapshot file and the WAL's marker leaves a WAL
        // that ends below the snapshot: mark it now so the log can continue after it.
        if (wal.lastIndex === undefined || wal.lastIndex < snap.meta.index) {
          await wal.save([], undefined, { index: snap.meta.index, term: snap.meta.term });
        }
        storage.applySnapshot(snap);
        await opts.stateMachine.restore(snap.data);
      }
      const after = recovery.entries.filter((e) => e.index > storage.lastIndex());
      if (after.length && after[0]!.index !== storage.lastIndex() + 1) {
        throw new RaftError(
          "CORRUPT",
          `the WAL in ${opts.dataDir} starts at index ${after[0]!.index} but the snapshot ends at ${storage.lastIndex()}: entries are missing`,
        );
      }
      storage.append(after);
      // A snapshot is only ever of committed state; its file may be durable before the hard state.
      storage.setHardState({ ...hs, commit: Math.max(hs.commit, storage.snapshot().meta.index) });
      return new RaftNode(opts, storage, wal, snaps, storage.snapshot().meta.index);
    } catch (e) {
      await wal.close();
      throw e;
    }
  }

  private tickMs: number;

  /** Start ticking. */
  start(): void {
    if (this.ticker !== undefined || this.stopped) return;
    this.ticker = this.clock.setInterval(() => {
      this.rn.tick();
      this.schedule();
    }, this.tickMs);
    this.schedule();
  }

  /**
   * Apply new timing at runtime (the replicated heartbeat_interval and
   * election_timeout): one tick is the heartbeat, the election timeout a whole
   * number of ticks (at least 2).
   */
  /** Take a snapshot after this many applied entries (the snapshot_interval setting, at run time). */
  setSnapshotEntries(n: number): void {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`snapshot entries must be a positive integer, got ${n}`);
    this.snapshotEntries = n;
  }

  get snapshotEvery(): number {
    return this.snapshotEntries;
  }

  setTiming(heartbeatMs: number, electionMs: number): void {
    if (!(heartbeatMs > 0) || !(electionMs >= 2 * heartbeatMs)) {
      throw new RaftError("INVALID_ARGUMENT", `election timeout (${electionMs}ms) must be at least twice the heartbeat interval (${heartbeatMs}ms)`);
    }
    const electionTicks = Math.round(electionMs / heartbeatMs);
    this.rn.raft.setTiming(electionTicks, 1);
    this.tickMs = heartbeatMs;
    if (this.ticker !== undefined) {
      this.clock.clearInterval(this.ticker);
      this.ticker = undefined;
      this.start();
    }
  }

  status(): RaftStatus {
    return this.rn.status();
  }

  /** Peers this node has ever received a message from (since it started). */
  private readonly heardFrom = new Set<NodeId>();

  /** Milliseconds since each follower last answered (leader only); none for a follower never heard from. */
  lastContactMs(): Map<NodeId, number> {
    const out = new Map<NodeId, number>();
    for (const [id, p] of this.rn.status().progress) if (id !== this.id && this.heardFrom.has(id)) out.set(id, p.ticksSinceActive * this.tickMs);
    return out;
  }

  /** Counters of the write-ahead log (fsyncs, bytes written, segments). */
  storageStats(): { fsyncs: number; bytesWritten: number; segments: number } {
    const { fsyncs, bytesWritten, segments } = this.wal.stats;
    return { fsyncs, bytesWritten, segments };
  }

  /**
   * Bytes of entry data after `index` up to the last index (what a follower at
   * match `index` has yet to receive). Entries already compacted away are not
   * counted: the figure is then a lower bound.
   */
  logBytesAfter(index: number): number {
    const last = this.storage.lastIndex();
    const lo = Math.max(index + 1, this.storage.firstIndex());
    if (lo > last) return 0;
    let bytes = 0;
    for (const e of this.storage.entries(lo, last + 1, Number.MAX_SAFE_INTEGER)) bytes += e.data.byteLength;
    return bytes;
  }

  /** Feed a message from a peer. */
  receive(m: Message): void {
    if (this.stopped) return;
    this.heardFrom.add(m.from);
    this.rn.step(m);
    this.schedule();
  }

  reportUnreachable(id: NodeId): void {
    if (this.stopped) return;
    this.rn.reportUnreachable(id);
    this.schedule();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.stopped) return;
    this.rn.reportSnapshot(id, ok);
    this.schedule();
  }

  /** Campaign now (e.g. a single-node cluster that should not wait a timeout). */
  campaign(): void {
    this.rn.campaign();
    this.schedule();
  }

  private checkUsable(): void {
    if (this.fatal) throw this.fatal;
    if (this.stopped) throw new RaftError("STOPPED", `node ${this.id} is stopped`);
  }

  /** Propose a command; resolves with the state machine's result for it once applied here. */
  propose(data: Uint8Array, o: RequestOptions = {}): Promise<unknown> {
    return this.proposeEntry(() => this.rn.propose(data), o);
  }

  /** Propose a membership change; resolves with the membership once it is applied here. */
  async proposeConfChange(cc: ConfChange, o: RequestOptions = {}): Promise<ConfState> {
    this.checkUsable();
    applyToConfState(this.rn.status().conf, cc); // a clear INVALID_ARGUMENT before anything is proposed
    // One change at a time, and a new leader first applies an entry of its own term:
    // wait for that here rather than fail a caller who just happened to be early.
    const pending = this.rn.raft.pendingConfIndex;
    const deadline = Date.now() + (o.timeoutMs ?? this.timeoutMs);
    if (this.rn.status().role === Role.Leader && pending > this.rn.status().applied) {
      await this.waitApplied(pending, o.timeoutMs ?? this.timeoutMs);
    }
    await this.proposeEntry(() => this.rn.proposeConfChange(cc), { timeoutMs: Math.max(1, deadline - Date.now()) });
    return this.rn.status().conf;
  }

  private readonly applyWaiters = new Set<{ index: number; done(): void; fail(e: Error): void }>();

  /** Resolves once this node has applied `index`; fails with TIMEOUT/NO_QUORUM after timeoutMs. */
  waitApplied(index: number, timeoutMs: number = this.timeoutMs): Promise<void> {
    if (this.rn.status().applied >= index) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w = {
        index,
        done: () => {
          this.clock.clearTimeout(timer);
          this.applyWaiters.delete(w);
          resolve();
        },
        fail: (e: Error) => {
          this.clock.clearTimeout(timer);
          this.applyWaiters.delete(w);
          reject(e);
        },
      };
      const timer = this.clock.setTimeout(() => {
        this.applyWaiters.delete(w);
        reject(this.timeoutError(`waiting for index ${index} to be applied`));
      }, timeoutMs);
      this.applyWaiters.add(w);
    });
  }

  private proposeEntry(doPropose: () => { index: number; term: number }, o: RequestOptions): Promise<unknown> {
    const observer = this.opts.observer;
    if (!observer?.onProposal) return this.proposeUnobserved(doPropose, o);
    const observe = (outcome: string, seconds: number): void => observer.onProposal?.(outcome, seconds);
    const t0 = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
    return this.proposeUnobserved(doPropose, o).then(
      (r) => {
        observe("applied", seconds());
        return r;
      },
      (e: unknown) => {
        observe(e instanceof RaftError ? e.code.toLowerCase() : "error", seconds());
        throw e;
      },
    );
  }

  private proposeUnobserved(doPropose: () => { index: number; term: number }, o: RequestOptions): Promise<unknown> {
    try {
      this.checkUsable();
      const { index, term } = doPropose();
      this.schedule();
      return new Promise((resolve, reject) => {
        const timer = this.clock.setTimeout(() => {
          this.proposals.delete(index);
          reject(this.timeoutError(`proposal at index ${index}`));
        }, o.timeoutMs ?? this.timeoutMs);
        this.proposals.set(index, { term, resolve, reject, timer });
      });
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /**
   * Linearizable read barrier (ReadIndex): resolves once this node has applied
   * everything committed when the read was issued, as confirmed by a quorum.
   */
  read(o: RequestOptions = {}): Promise<void> {
    try {
      this.checkUsable();
      const ctx = Buffer.alloc(16);
      this.readPrefix.copy(ctx, 0);
      ctx.writeBigUInt64BE(++this.readCounter, 8);
      const key = contextKey(ctx);
      const p = new Promise<void>((resolve, reject) => {
        const timer = this.clock.setTimeout(() => {
          this.reads.delete(key);
          reject(this.timeoutError("read"));
        }, o.timeoutMs ?? this.timeoutMs);
        this.reads.set(key, { index: undefined, resolve, reject, timer });
      });
      try {
        this.rn.readIndex(new Uint8Array(ctx));
      } catch (e) {
        const r = this.reads.get(key)!;
        this.clock.clearTimeout(r.timer);
        this.reads.delete(key);
        throw e;
      }
      this.schedule();
      return p;
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Hand leadership to `to`; resolves once this node sees `to` as the leader. */
  transferLeadership(to: NodeId, o: RequestOptions = {}): Promise<void> {
    try {
      this.checkUsable();
      validateNodeId(to);
      const st = this.rn.status();
      if (st.conf.learners.includes(to)) throw new RaftError("INVALID_ARGUMENT", `node ${to} is a learner and cannot lead`);
      if (!st.conf.voters.includes(to)) throw new RaftError("INVALID_ARGUMENT", `node ${to} is not a voter of this cluster`);
      if (st.leader === to) return Promise.resolve();
      if (st.leader === 0) throw new NotLeaderError(0);
      const p = new Promise<void>((resolve, reject) => {
        const t: PendingTransfer = {
          to,
          resolve,
          reject,
          timer: this.clock.setTimeout(() => {
            this.transfers.delete(t);
            reject(new RaftError("TIMEOUT", `leadership did not move to node ${to} in time`));
          }, o.timeoutMs ?? this.timeoutMs),
        };
        this.transfers.add(t);
      });
      this.rn.transferLeader(to);
      this.schedule();
      return p;
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private timeoutError(what: string): RaftError {
    const st = this.rn.status();
    const quorumLost =
      st.leader === 0 ||
      (st.role === Role.Leader &&
        [...st.progress].filter(([id, p]) => st.conf.voters.includes(id) && (id === this.id || p.recentActive)).length <
          majority(st.conf.voters.length));
    if (quorumLost) return new RaftError("NO_QUORUM", `${what} timed out: no quorum (leader ${st.leader || "unknown"}); its outcome is unknown`);
    return new RaftError("TIMEOUT", `${what} timed out; its outcome is unknown`);
  }

  // ------------------------------------------------------------ the loop

  private schedule(): void {
    if (this.stopped) return;
    if (this.loopRunning) {
      this.loopAgain = true;
      return;
    }
    this.loopRunning = true;
    this.loopDone = this.runLoop();
  }

  private async runLoop(): Promise<void> {
    try {
      do {
        this.loopAgain = false;
        while (!this.stopped && this.rn.hasReady()) await this.handleReady(this.rn.ready());
        this.settleReads();
      } while (this.loopAgain && !this.stopped);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    } finally {
      this.loopRunning = false;
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState) this.role = rd.softState.role;
    // 0. A leader may replicate in parallel with its own disk write (Raft thesis
    //    §10.2.1): its entries count towards commit once followers persist them,
    //    but nobody learns of that commit before the next Ready, which this loop
    //    only takes after the write below has finished. Only Apps and heartbeats,
    //    and only when this Ready changes no term or vote (those must be durable
    //    before anyone hears of them).
    let early: Message[] = [];
    let rest = rd.messages;
    if (this.role === Role.Leader && !rd.snapshot && (!rd.hardState || rd.hardState.term === this.durableTerm)) {
      early = rd.messages.filter((m) => m.type === MessageType.App || m.type === MessageType.Heartbeat);
      if (early.length) rest = rd.messages.filter((m) => m.type !== MessageType.App && m.type !== MessageType.Heartbeat);
    }
    if (early.length) this.opts.transport.send(early);
    // Committed entries that were already durable here before this Ready (and are
    // not being rewritten by it) are applied while the disk works.
    const durableLimit = rd.snapshot ? 0 : Math.min(this.durableLast, rd.entries.length ? rd.entries[0]!.index - 1 : Infinity);
    let split = 0;
    while (split < rd.committedEntries.length && rd.committedEntries[split]!.index <= durableLimit) split++;
    const before = rd.committedEntries.slice(0, split);
    const after = split === 0 ? rd.committedEntries : rd.committedEntries.slice(split);
    // 1. Persist (the snapshot file first, so the WAL never points past it), and
    //    apply the durable part meanwhile.
    await Promise.all([this.persist(rd), this.applyEarly(before)]);
    if (rd.snapshot) this.storage.applySnapshot(rd.snapshot);
    this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    // 2. Send.
    if (rest.length) this.opts.transport.send(rest);
    // 3. Apply.
    if (rd.snapshot) await this.restoreSnapshot(rd.snapshot);
    for (const e of after) await this.applyEntry(e);
    for (const rs of rd.readStates) {
      const r = this.reads.get(contextKey(rs.context));
      if (r) r.index = rs.index;
    }
    // 4. Advance (conf changes in this batch take effect now).
    this.rn.advance(rd);
    for (const e of after) this.settleProposal(e);
    for (const e of before) if (e.type === EntryType.ConfChange) this.settleProposal(e);
    if (rd.softState) this.onSoftState();
    await this.maybeSnapshot();
  }

  private async persist(rd: Ready): Promise<void> {
    if (rd.snapshot) await this.snaps.save(rd.snapshot);
    if (rd.mustSync || rd.entries.length || rd.snapshot) {
      const t0 = process.hrtime.bigint();
      const hs = rd.hardState ?? this.deferredHardState;
      await this.wal.save(rd.entries, hs, rd.snapshot ? { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term } : undefined);
      this.deferredHardState = undefined;
      if (hs) this.durableTerm = hs.term;
      if (rd.entries.length) this.durableLast = rd.entries[rd.entries.length - 1]!.index;
      else if (rd.snapshot) this.durableLast = rd.snapshot.meta.index;
      this.opts.observer?.onPersist?.(Number(process.hrtime.bigint() - t0) / 1e9, rd.entries.length);
    } else if (rd.hardState) {
      // Only the commit index moved. Raft does not need it durable (a restart learns
      // it again from the leader), so it rides along with the next synced write.
      this.deferredHardState = rd.hardState;
    }
  }

  /**
   * Apply entries that are committed and durable, and answer their proposals at
   * once (conf changes are answered after advance, when they have taken effect).
   */
  private async applyEarly(entries: Entry[]): Promise<void> {
    for (const e of entries) {
      await this.applyEntry(e);
      if (e.type !== EntryType.ConfChange) this.settleProposal(e);
    }
  }

  private async restoreSnapshot(s: Snapshot): Promise<void> {
    await this.opts.stateMachine.restore(s.data);
    this.snapshotIndex = s.meta.index;
    // Proposals inside the snapshot may or may not have committed: say so.
    for (const [index, p] of this.proposals) {
      if (index > s.meta.index) continue;
      this.clock.clearTimeout(p.timer);
      this.proposals.delete(index);
      p.reject(new RaftError("OUTCOME_UNKNOWN", `proposal at index ${index} was superseded by a snapshot; its outcome is unknown`));
    }
  }

  private readonly results = new Map<number, unknown>();
  /** A commit-only HardState change not yet written (see handleReady). */
  private deferredHardState: HardState | undefined;

  private async applyEntry(e: Entry): Promise<void> {
    let result: unknown;
    if (e.type === EntryType.ConfChange || e.data.byteLength > 0) result = await this.opts.stateMachine.apply(e);
    if (this.proposals.has(e.index)) this.results.set(e.index, result);
    this.opts.observer?.onApply?.(e.index);
  }

  private settleProposal(e: Entry): void {
    const p = this.proposals.get(e.index);
    if (!p) return;
    this.proposals.delete(e.index);
    this.clock.clearTimeout(p.timer);
    const result = this.results.get(e.index);
    this.results.delete(e.index);
    if (p.term === e.term) p.resolve(result);
    else p.reject(new RaftError("PROPOSAL_DROPPED", `proposal at index ${e.index} was replaced by a new leader's entry; it was not applied`));
    if (e.type === EntryType.ConfChange && !this.isMember()) this.onRemoved();
  }

  private isMember(): boolean {
    const c = this.rn.status().conf;
    return c.voters.includes(this.id) || c.learners.includes(this.id);
  }

  private onRemoved(): void {
    const err = new RaftError("REMOVED", `node ${this.id} was removed from the cluster`);
    for (const [i, p] of this.proposals) {
      this.clock.clearTimeout(p.timer);
      p.reject(err);
      this.proposals.delete(i);
    }
  }

  private settleReads(): void {
    const applied = this.rn.status().applied;
    for (const w of this.applyWaiters) if (w.index <= applied) w.done();
    for (const [k, r] of this.reads) {
      if (r.index !== undefined && r.index <= applied) {
        this.clock.clearTimeout(r.timer);
        this.reads.delete(k);
        r.resolve();
      }
    }
  }

  private onSoftState(): void {
    const st = this.rn.status();
    if (st.leader !== this.lastLeader) {
      this.lastLeader = st.leader;
      this.opts.observer?.onLeaderChange?.(st.leader, st.term, st.role);
    }
    for (const t of this.transfers) {
      if (st.leader === t.to) {
        this.clock.clearTimeout(t.timer);
        this.transfers.delete(t);
        t.resolve();
      }
    }
  }

  private async maybeSnapshot(): Promise<void> {
    const st = this.rn.status();
    if (st.applied - this.snapshotIndex < this.snapshotEntries) return;
    // A leader's snapshot restored in the core meanwhile carries a newer membership
    // than our applied index: wait until it has been applied here.
    if (this.rn.raft.log.unstable.snapshot) return;
    const data = await this.opts.stateMachine.snapshot();
    const snap = this.storage.createSnapshot(st.applied, st.conf, data);
    await this.snaps.save(snap);
    this.snapshotIndex = snap.meta.index;
    // The WAL may drop what the snapshot covers; memory keeps a tail for slow followers.
    await this.wal.releaseTo(snap.meta.index);
    const compactTo = snap.meta.index - this.keepEntries;
    if (compactTo > this.storage.firstIndex()) this.storage.compact(compactTo);
    await this.snaps.purge(2);
    this.log.info(`node ${this.id}: snapshot at index ${snap.meta.index}`);
  }

  private fail(e: Error): void {
    if (this.fatal) return;
    this.fatal = e;
    this.log.warn(`node ${this.id}: fatal: ${e.message}`);
    this.rejectAll(e);
    this.stopped = true;
    if (this.ticker !== undefined) this.clock.clearInterval(this.ticker);
  }

  private rejectAll(e: Error): void {
    for (const p of this.proposals.values()) {
      this.clock.clearTimeout(p.timer);
      p.reject(e);
    }
    this.proposals.clear();
    for (const r of this.reads.values()) {
      this.clock.clearTimeout(r.timer);
      r.reject(e);
    }
    this.reads.clear();
    for (const t of this.transfers) {
      this.clock.clearTimeout(t.timer);
      t.reject(e);
    }
    this.transfers.clear();
    for (const w of this.applyWaiters) w.fail(e);
  }

  /** The error that stopped the node, if any (e.g. a disk failure). */
  failure(): Error | undefined {
    return this.fatal;
  }

  /** Stop ticking, finish the Ready in progress, fail what is pending, close the WAL. */
  async stop(): Promise<void> {
    if (this.ticker !== undefined) {
      this.clock.clearInterval(this.ticker);
      this.ticker = undefined;
    }
    const wasStopped = this.stopped;
    this.stopped = true;
    await this.loopDone;
    if (!wasStopped || !this.fatal) this.rejectAll(new RaftError("STOPPED", `node ${this.id} is stopping`));
    // Keep the newest commit index on a clean shutdown, so a restart re-applies at once.
    if (this.deferredHardState && !this.fatal) await this.wal.save([], this.deferredHardState);
    await this.wal.close();
  }
}
