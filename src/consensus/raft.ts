// The Raft algorithm as a pure state machine (the shape of etcd-io/raft):
// `step(message)` and `tick()` change state and queue outgoing messages; the
// RawNode hands them out as a Ready. No I/O, no clock, no Math.random here.
//
// Extensions over the paper: pre-vote and check-quorum (§9.6 of Ongaro's
// dissertation), leadership transfer (§3.10), ReadIndex and lease reads (§6.4),
// flow control per follower, learners, and one-at-a-time membership changes
// that take effect when applied (docs/ARCHITECTURE.md explains why).
import { resolveConfig, type RaftConfig, type ResolvedConfig } from "./config.js";
import { applyToConfState, decodeConfChange, encodeConfChange, type ConfChange } from "./confchange.js";
import { NotLeaderError, RaftError } from "./errors.js";
import { RaftLog } from "./log.js";
import { Progress } from "./progress.js";
import { committedIndex, tallyVotes } from "./quorum.js";
import { randomInt } from "./random.js";
import { ReadOnly } from "./read-only.js";
import { entryBytes } from "./storage.js";
import {
  EntryType,
  makeMessage,
  MessageType,
  NONE,
  Role,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type ReadState,
  type RejectReason,
  type Snapshot,
} from "./types.js";

/** Marks a vote request that comes from a leadership transfer (ignores leases). */
export const CAMPAIGN_TRANSFER = new Uint8Array([0x74]); // "t"

type CampaignType = "pre-election" | "election" | "transfer";

/** Messages a node only accepts from a member of its configuration. */
const MEMBER_ONLY = new Set<MessageType>([
  MessageType.AppResp,
  MessageType.HeartbeatResp,
  MessageType.VoteResp,
  MessageType.PreVoteResp,
  MessageType.TransferLeader,
  MessageType.ReadIndex,
]);

/** Messages the node makes for itself; never accepted from the network. */
export const LOCAL_ONLY = new Set<MessageType>([
  MessageType.Hup,
  MessageType.Beat,
  MessageType.Unreachable,
  MessageType.SnapStatus,
  MessageType.CheckQuorum,
]);

export class Raft {
  readonly cfg: ResolvedConfig;
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  leader: NodeId = NONE;
  role: Role = Role.Follower;
  readonly log: RaftLog;
  /** The applied membership. */
  conf: ConfState = { voters: [], learners: [] };
  readonly prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  leadTransferee: NodeId = NONE;
  /** Index of the last conf change the leader may not yet have applied. */
  pendingConfIndex = 0;
  private uncommittedSize = 0;
  private readOnly = new ReadOnly();
  /** ReadIndex requests that arrived before this leader committed an entry of its term. */
  private pendingReadIndex: Message[] = [];
  private electionElapsed = 0;
  /** Ticks since this node started; heartbeats carry it for lease reads. */
  tickCount = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  readonly rejected: Record<RejectReason, number> = {
    cluster_id_mismatch: 0,
    unknown_node: 0,
    stale_term: 0,
    not_addressed_to_me: 0,
  };
  electionsStarted = 0;

  constructor(config: RaftConfig) {
    this.cfg = resolveConfig(config);
    this.id = this.cfg.id;
    this.log = new RaftLog(this.cfg.storage);
    const { hardState, confState } = this.cfg.storage.initialState();
    this.setConf(confState);
    if (hardState.term || hardState.vote || hardState.commit) {
      if (hardState.commit < this.log.committed || hardState.commit > this.log.lastIndex()) {
        throw new RaftError("CORRUPT", `hard state commit ${hardState.commit} outside the log [${this.log.committed}, ${this.log.lastIndex()}]`);
      }
      this.log.committed = hardState.commit;
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
    if (this.cfg.applied > 0) {
      const applied = Math.min(Math.max(this.cfg.applied, this.log.applied), this.log.committed);
      // Conf changes between the snapshot and `applied` were applied before the restart.
      for (const e of this.log.slice(this.log.applied + 1, applied + 1, Number.MAX_SAFE_INTEGER)) {
        if (e.type === EntryType.ConfChange) this.applyConfChange(decodeConfChange(e.data));
      }
      this.log.appliedTo(applied);
    }
    this.becomeFollower(this.term, NONE);
  }

  // ---------------------------------------------------------------- helpers

  private say(msg: string): void {
    this.cfg.logger.info(`node ${this.id}: ${msg}`);
  }

  /** Elections and lost leadership: what an operator must see even at warn level. */
  private alarm(msg: string): void {
    this.cfg.logger.warn(`node ${this.id}: ${msg}`);
  }

  isVoter(id: NodeId): boolean {
    return this.conf.voters.includes(id);
  }

  isMember(id: NodeId): boolean {
    return this.isVoter(id) || this.conf.learners.includes(id);
  }

  /** A node may campaign only as a voter of its applied config. */
  promotable(): boolean {
    return this.isVoter(this.id);
  }

  private send(m: Partial<Message> & { type: MessageType; to: NodeId }): void {
    const msg = makeMessage({ clusterId: this.cfg.clusterId, from: this.id, ...m });
    // Votes carry the term they are for; everything else our current term.
    if (m.term === undefined && msg.type !== MessageType.Prop && msg.type !== MessageType.ReadIndex && msg.type !== MessageType.TransferLeader) {
      msg.term = this.term;
    }
    this.msgs.push(msg);
  }

  private setConf(cs: ConfState): void {
    this.conf = { voters: [...cs.voters].sort((a, b) => a - b), learners: [...cs.learners].sort((a, b) => a - b) };
    const members = new Set([...this.conf.voters, ...this.conf.learners]);
    for (const id of [...this.prs.keys()]) if (!members.has(id)) this.prs.delete(id);
    const next = this.log.lastIndex() + 1;
    for (const id of members) {
      const learner = !this.conf.voters.includes(id);
      const pr = this.prs.get(id);
      if (pr) pr.learner = learner;
      else {
        const p = new Progress(next, learner, this.cfg.maxInflightMsgs, this.cfg.maxInflightBytes);
        if (id === this.id) p.match = next - 1;
        this.prs.set(id, p);
      }
    }
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = randomInt(this.cfg.random, this.cfg.electionTick, 2 * this.cfg.electionTick);
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.leader = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.votes = new Map();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(last + 1, pr.learner, this.cfg.maxInflightMsgs, this.cfg.maxInflightBytes);
      if (id === this.id) fresh.match = last;
      this.prs.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndex = [];
  }

  // ------------------------------------------------------------ role changes

  becomeFollower(term: number, leader: NodeId): void {
    const was = this.role;
    const prevLeader = this.leader;
    this.reset(term);
    this.leader = leader;
    this.role = Role.Follower;
    if (was === Role.Leader) this.alarm(`stepped down to follower at term ${term}`);
    else if (leader !== NONE && leader !== prevLeader) this.say(`following leader ${leader} at term ${term}`);
  }

  private becomePreCandidate(): void {
    // Pre-vote does not touch term or vote: a partitioned node cannot inflate terms.
    this.votes = new Map();
    this.leader = NONE;
    this.role = Role.PreCandidate;
    this.alarm(`became pre-candidate at term ${this.term}`);
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.alarm(`became candidate at term ${this.term}`);
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.leader = this.id;
    this.role = Role.Leader;
    const self = this.prs.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // The empty entry commits everything before it (the commit rule counts only
    // entries of the current term) and must be applied before any conf change.
    this.appendEntry([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array() }]);
    this.pendingConfIndex = this.log.lastIndex();
    this.say(`became leader at term ${this.term}`);
  }

  // ------------------------------------------------------------------ ticking

  tick(): void {
    this.tickCount++;
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.stepLocal(MessageType.Hup);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTick) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) this.stepLocal(MessageType.CheckQuorum);
      // A transfer that has not finished within an election timeout is abandoned.
      if (this.role === Role.Leader && this.leadTransferee !== NONE) {
        this.say(`abandoned leadership transfer to ${this.leadTransferee}: not done within the election timeout`);
        this.abortLeaderTransfer();
      }
      // A leader removed from the voters keeps trying until someone takes over.
      if (this.role === Role.Leader && !this.isVoter(this.id)) this.handOffLeadership();
    }
    if (this.role !== Role.Leader) return;
    if (this.heartbeatElapsed >= this.cfg.heartbeatTick) {
      this.heartbeatElapsed = 0;
      this.stepLocal(MessageType.Beat);
    }
  }

  stepLocal(type: MessageType, from: NodeId = this.id, extra: Partial<Message> = {}): void {
    this.step(makeMessage({ type, clusterId: this.cfg.clusterId, from, to: this.id, ...extra }));
  }

  // ---------------------------------------------------------------- stepping

  private rejectMessage(reason: RejectReason, m: Message): void {
    this.rejected[reason]++;
    this.cfg.logger.debug(`node ${this.id}: rejected ${MessageType[m.type]} from ${m.from} (${reason})`);
  }

  step(m: Message): void {
    if (m.clusterId !== this.cfg.clusterId) return this.rejectMessage("cluster_id_mismatch", m);
    if (m.to !== this.id) return this.rejectMessage("not_addressed_to_me", m);
    // A node with no configuration yet (joining) accepts a leader's messages from anyone;
    // otherwise answers and requests that need a member are refused from strangers.
    if (MEMBER_ONLY.has(m.type) && this.prs.size > 0 && !this.prs.has(m.from)) return this.rejectMessage("unknown_node", m);

    if (m.term === 0) {
      // local message, or a term-less request (ReadIndex/TransferLeader forwarded by a follower)
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = m.context !== undefined && m.context.length === 1 && m.context[0] === CAMPAIGN_TRANSFER[0];
        const inLease = this.cfg.checkQuorum && this.leader !== NONE && this.electionElapsed < this.cfg.electionTick;
        // A node that heard from a live leader recently ignores disruptive candidates
        // (e.g. a removed or partitioned node), unless the leader asked for the election.
        if (!force && inLease) {
          this.cfg.logger.debug(`node ${this.id}: ignored ${MessageType[m.type]} from ${m.from} at term ${m.term}: leader ${this.leader} is alive`);
          return;
        }
      }
      if (m.type === MessageType.PreVote || (m.type === MessageType.PreVoteResp && !m.reject)) {
        // Pre-votes are for a future term and change nothing here.
      } else if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A stale leader (e.g. back from a partition) learns the new term from this
        // answer and steps down; without it, pre-vote could leave it stuck forever.
        this.send({ type: MessageType.AppResp, to: m.from });
      } else if (m.type === MessageType.PreVote) {
        this.send({ type: MessageType.PreVoteResp, to: m.from, reject: true });
      }
      return this.rejectMessage("stale_term", m);
    }

    switch (m.type) {
      case MessageType.Hup:
        return this.hup(this.cfg.preVote ? "pre-election" : "election");
      case MessageType.Vote:
      case MessageType.PreVote:
        return this.handleVoteRequest(m);
      default:
        break;
    }
    switch (this.role) {
      case Role.Leader:
        return this.stepLeader(m);
      case Role.Candidate:
      case Role.PreCandidate:
        return this.stepCandidate(m);
      case Role.Follower:
        return this.stepFollower(m);
    }
  }

  private handleVoteRequest(m: Message): void {
    const respType = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.leader === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // Answer in the term of the request: a pre-candidate counts answers for term+1.
      this.send({ type: respType, to: m.from, term: m.term });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private hup(t: CampaignType): void {
    if (this.role === Role.Leader) return;
    if (!this.promotable()) {
      this.cfg.logger.debug(`node ${this.id}: not campaigning: not a voter`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.cfg.logger.debug(`node ${this.id}: not campaigning: committed conf changes are not yet applied`);
      return;
    }
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    for (const e of this.log.slice(lo, this.log.committed + 1, Number.MAX_SAFE_INTEGER)) {
      if (e.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  campaign(t: CampaignType): void {
    let voteType: MessageType;
    let term: number;
    if (t === "pre-election") {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    // Real elections only: a pre-vote round that fails changes no term and disturbs nobody.
    if (t === "election") this.electionsStarted++;
    this.votes.set(this.id, true);
    if (tallyVotes(this.conf.voters, this.votes) === "won") {
      // A single-voter cluster wins at once.
      if (t === "pre-election") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.conf.voters) {
      if (id === this.id) continue;
      this.send({
        type: voteType,
        to: id,
        term,
        index: lastIndex,
        logTerm: lastTerm,
        ...(t === "transfer" ? { context: CAMPAIGN_TRANSFER } : {}),
      });
    }
  }

  // ------------------------------------------------------------------ leader

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        return this.bcastHeartbeat(undefined);
      case MessageType.CheckQuorum:
        if (!this.quorumActive()) {
          this.alarm(`stepped down: lost quorum (no answer from a majority within ${this.cfg.electionTick} ticks) at term ${this.term}`);
          this.becomeFollower(this.term, NONE);
        }
        for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
        return;
      case MessageType.ReadIndex:
        return this.leaderReadIndex(m);
      case MessageType.TransferLeader:
        return this.leaderTransfer(m.from);
      default:
        break;
    }
    const pr = this.prs.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.AppResp:
        return this.handleAppendResponse(m, pr);
      case MessageType.HeartbeatResp:
        return this.handleHeartbeatResponse(m, pr);
      case MessageType.SnapStatus:
        if (pr.state !== "snapshot") return;
        if (m.reject) {
          this.cfg.logger.debug(`node ${this.id}: snapshot to ${m.from} failed; probing again`);
          pr.pendingSnapshot = 0;
        }
        // Wait for the follower's answer (or a heartbeat) before sending more.
        pr.becomeProbe();
        pr.probeSent = true;
        return;
      case MessageType.Unreachable:
        if (pr.state === "replicate") pr.becomeProbe();
        return;
      default:
        return;
    }
  }

  private quorumActive(): boolean {
    const active = new Map<NodeId, boolean>();
    for (const id of this.conf.voters) {
      const pr = this.prs.get(id);
      active.set(id, id === this.id || (pr?.recentActive ?? false));
    }
    return tallyVotes(this.conf.voters, active) === "won";
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.lastActiveTick = this.tickCount;
    if (m.reject) {
      let hint = m.rejectHint;
      if (m.logTermHint !== undefined && m.logTermHint > 0) {
        // Skip every entry of a term the follower does not have (§5.3 optimisation).
        hint = this.log.findConflictByTerm(m.rejectHint, m.logTermHint).index;
      }
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) {
      return;
    }
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && (pr.match + 1 >= this.log.firstIndex() || pr.match >= pr.pendingSnapshot)) {
      // The follower has the snapshot (or caught up past it by appends). If we compacted
      // again meanwhile, probing finds that out and sends the newer snapshot.
      const caughtUp = pr.match + 1 >= this.log.firstIndex();
      pr.becomeProbe();
      if (caughtUp) pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);

    if (this.maybeCommit()) {
      this.onCommitted();
      this.bcastAppend();
    } else if (wasPaused) {
      this.sendAppend(m.from);
    }
    // Pipelining: keep sending while the window has room.
    while (this.maybeSendAppend(m.from, false)) {
      /* keep going */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.say(`transferring leadership to ${m.from}: it has caught up`);
      this.send({ type: MessageType.TimeoutNow, to: m.from });
    }
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.lastActiveTick = this.tickCount;
    // The follower echoes the tick at which we sent the heartbeat: its lease on us
    // (it refuses votes for an election timeout) started no earlier than that.
    pr.lastHeartbeatAcked = Math.max(pr.lastHeartbeatAcked, m.index);
    pr.probeSent = false;
    // An App lost on the way never gets an answer, so a full window would stay full
    // forever. The follower is alive: free one slot so the next App goes out; if the
    // follower lacks what it builds on, its rejection sends us back to probing.
    if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
    if (this.cfg.readOnlyOption !== "safe" || !m.context || m.context.length === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks) return;
    const votes = new Map<NodeId, boolean>([[this.id, true]]);
    for (const a of acks) votes.set(a, true);
    if (tallyVotes(this.conf.voters, votes) !== "won") return;
    for (const rs of this.readOnly.advance(m.context)) this.answerRead(rs.req, rs.index);
  }

  private answerRead(req: Message, index: number): void {
    const context = req.context ?? new Uint8Array();
    if (req.from === NONE || req.from === this.id) this.readStates.push({ index, context });
    else this.send({ type: MessageType.ReadIndexResp, to: req.from, index, context });
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private leaderReadIndex(m: Message): void {
    if (this.conf.voters.length === 1 && this.isVoter(this.id)) {
      return this.answerRead(m, this.log.committed);
    }
    // Until an entry of this term commits, the leader's commit index may be stale.
    if (!this.committedEntryInCurrentTerm()) {
      this.pendingReadIndex.push(m);
      return;
    }
    this.sendReadIndex(m);
  }

  private sendReadIndex(m: Message): void {
    if (this.cfg.readOnlyOption === "lease" && this.leaseValid()) {
      // Clock-dependent: relies on the nodes' clocks running at (nearly) the same rate.
      return this.answerRead(m, this.log.committed);
    }
    this.readOnly.addRequest(this.log.committed, m);
    this.readOnly.recvAck(this.id, m.context ?? new Uint8Array());
    this.bcastHeartbeat(m.context ?? new Uint8Array());
  }

  /**
   * A quorum acknowledged heartbeats we sent less than an election timeout ago
   * (minus a tick for drift), so none of them can have voted for another leader yet.
   */
  private leaseValid(): boolean {
    const horizon = this.tickCount - this.cfg.electionTick + 1;
    const fresh = new Map<NodeId, boolean>();
    for (const id of this.conf.voters) {
      fresh.set(id, id === this.id || (this.prs.get(id)?.lastHeartbeatAcked ?? -Infinity) > horizon);
    }
    return tallyVotes(this.conf.voters, fresh) === "won";
  }

  private onCommitted(): void {
    if (this.pendingReadIndex.length && this.committedEntryInCurrentTerm()) {
      const reqs = this.pendingReadIndex;
      this.pendingReadIndex = [];
      for (const r of reqs) this.sendReadIndex(r);
    }
  }

  private leaderTransfer(target: NodeId): void {
    const pr = this.prs.get(target);
    if (!pr) return;
    if (pr.learner) {
      this.say(`refused leadership transfer to ${target}: it is a learner`);
      return;
    }
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === target) return;
      this.abortLeaderTransfer();
    }
    if (target === this.id) return;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    this.leadTransferee = target;
    this.say(`transferring leadership to ${target}`);
    if (pr.match === this.log.lastIndex()) this.send({ type: MessageType.TimeoutNow, to: target });
    else this.sendAppend(target);
  }

  /** A leader that is no longer a voter passes leadership to the best-placed voter. */
  private handOffLeadership(): void {
    let best: NodeId = NONE;
    let bestMatch = -1;
    for (const id of this.conf.voters) {
      const pr = this.prs.get(id);
      if (!pr || id === this.id) continue;
      const score = pr.match + (pr.recentActive ? 0.5 : 0);
      if (score > bestMatch) {
        best = id;
        bestMatch = score;
      }
    }
    if (best !== NONE) this.leaderTransfer(best);
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  private maybeCommit(): boolean {
    const mci = committedIndex(this.conf.voters, (id) => this.prs.get(id)?.match ?? 0);
    return this.log.maybeCommit(mci, this.term);
  }

  private appendEntry(ents: Entry[]): boolean {
    let last = this.log.lastIndex();
    const sized = ents.reduce((s, e) => s + e.data.byteLength, 0);
    if (
      this.cfg.maxUncommittedEntriesSize > 0 &&
      this.uncommittedSize > 0 &&
      sized > 0 &&
      this.uncommittedSize + sized > this.cfg.maxUncommittedEntriesSize
    ) {
      return false;
    }
    this.uncommittedSize += sized;
    for (const e of ents) {
      e.term = this.term;
      e.index = ++last;
    }
    this.log.append(ents);
    const self = this.prs.get(this.id);
    // The leader's own copy counts once the driver persists it; the driver
    // persists before it sends, so no follower can ack an entry before that.
    if (self) self.maybeUpdate(last);
    if (this.maybeCommit()) this.onCommitted();
    return true;
  }

  /** Leader-only proposal; returns where the entry landed. */
  propose(type: EntryType, data: Uint8Array): { index: number; term: number } {
    if (this.role !== Role.Leader) throw new NotLeaderError(this.leader);
    if (!this.prs.has(this.id)) throw new RaftError("REMOVED", `node ${this.id} was removed from the cluster`);
    if (!this.isVoter(this.id)) throw new RaftError("PROPOSAL_DROPPED", `node ${this.id} is no longer a voter and is handing leadership over`);
    if (this.leadTransferee !== NONE) {
      throw new RaftError("PROPOSAL_DROPPED", `leadership is being transferred to node ${this.leadTransferee}`);
    }
    if (this.pendingConfIndex > this.log.applied && this.pendingChangeRemovesSelf()) {
      // Nothing may follow our own removal in our log: the survivors must be able to
      // match it exactly, or in a two-voter cluster none of them could be elected.
      throw new RaftError("PROPOSAL_DROPPED", `node ${this.id} is being removed from the voters; propose to the next leader`);
    }
    if (type === EntryType.ConfChange) {
      const cc = decodeConfChange(data);
      if (cc.nodeId === this.id && cc.type !== "addVoter") {
        throw new RaftError(
          "INVALID_ARGUMENT",
          `node ${this.id} is the leader and cannot remove or demote itself; transfer leadership to another voter first`,
        );
      }
      if (this.pendingConfIndex > this.log.applied) {
        throw new RaftError(
          "PROPOSAL_DROPPED",
          `a membership change (or this new leader's first entry) at index ${this.pendingConfIndex} is not applied yet (applied ${this.log.applied}); retry once it is`,
        );
      }
      applyToConfState(this.conf, cc); // validates, throws INVALID_ARGUMENT
    }
    const e: Entry = { term: 0, index: 0, type, data };
    if (!this.appendEntry([e])) {
      throw new RaftError("PROPOSAL_DROPPED", `too many uncommitted bytes (limit ${this.cfg.maxUncommittedEntriesSize})`);
    }
    if (type === EntryType.ConfChange) this.pendingConfIndex = e.index;
    this.bcastAppend();
    return { index: e.index, term: e.term };
  }

  /** Does an unapplied conf change in our log remove or demote this node? */
  private pendingChangeRemovesSelf(): boolean {
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    for (const e of this.log.slice(lo, this.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER)) {
      if (e.type !== EntryType.ConfChange) continue;
      const cc = decodeConfChange(e.data);
      if (cc.nodeId === this.id && cc.type !== "addVoter") return true;
    }
    return false;
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    return this.propose(EntryType.ConfChange, encodeConfChange(cc));
  }

  /** Called when committed entries are applied: release their bytes from the budget. */
  reduceUncommittedSize(ents: Entry[]): void {
    if (this.role !== Role.Leader) return;
    const s = ents.reduce((n, e) => n + e.data.byteLength, 0);
    this.uncommittedSize = Math.max(0, this.uncommittedSize - s);
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(ctx: Uint8Array | undefined): void {
    const context = ctx ?? this.readOnly.lastPendingContext();
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      // Never tell a follower a commit index beyond what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      // `index` carries our tick so the answer tells when the follower's lease began.
      this.send({ type: MessageType.Heartbeat, to: id, commit, index: this.tickCount, ...(context ? { context } : {}) });
    }
  }

  sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    let ents: Entry[] | undefined;
    if (prevTerm !== undefined) {
      try {
        ents = this.log.entries(pr.next, this.cfg.maxSizePerMsg);
      } catch (e) {
        if (!(e instanceof RaftError && e.code === "COMPACTED")) throw e;
      }
    }
    if (prevTerm === undefined || ents === undefined) return this.maybeSendSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    const bytes = ents.reduce((s, e) => s + entryBytes(e), 0);
    this.send({ type: MessageType.App, to, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed });
    pr.sentEntries(ents.length, bytes, prevIndex + ents.length);
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false; // don't ship a snapshot to a node that may be down
    let snap: Snapshot;
    try {
      snap = this.log.snapshot();
    } catch (e) {
      if (e instanceof RaftError && e.code === "SNAPSHOT_TEMPORARILY_UNAVAILABLE") return false;
      throw e;
    }
    if (snap.meta.index === 0) throw new RaftError("CORRUPT", "need a snapshot to send but none exists");
    this.cfg.logger.debug(`node ${this.id}: sending snapshot at ${snap.meta.index} to ${to}`);
    pr.becomeSnapshot(snap.meta.index);
    this.send({ type: MessageType.Snap, to, snapshot: snap });
    return true;
  }

  // ------------------------------------------------------- candidate/follower

  private stepCandidate(m: Message): void {
    const myVoteResp = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.App:
        this.becomeFollower(m.term, m.from);
        return this.handleAppend(m);
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        return this.handleHeartbeat(m);
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        return this.handleSnapshot(m);
      case myVoteResp: {
        this.votes.set(m.from, !m.reject);
        const r = tallyVotes(this.conf.voters, this.votes);
        if (r === "won") {
          if (this.role === Role.PreCandidate) this.campaign("election");
          else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (r === "lost") {
          // Back to follower; a rejection for a higher term already moved our term.
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.leader = m.from;
        return this.handleAppend(m);
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.leader = m.from;
        return this.handleHeartbeat(m);
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.leader = m.from;
        return this.handleSnapshot(m);
      case MessageType.TransferLeader:
      case MessageType.ReadIndex:
        if (this.leader === NONE) {
          this.cfg.logger.debug(`node ${this.id}: dropped ${MessageType[m.type]}: no leader`);
          return;
        }
        // Forward to the leader, keeping the original requester in `from`.
        this.msgs.push({ ...m, to: this.leader, term: 0 });
        return;
      case MessageType.TimeoutNow:
        this.say(`campaigning at once: leader ${m.from} handed leadership over (term ${this.term})`);
        // Skips pre-vote: the leader has asked for this election.
        return this.hup("transfer");
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context ?? new Uint8Array() });
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ type: MessageType.AppResp, to: m.from, index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({ type: MessageType.AppResp, to: m.from, index: lastNew });
      return;
    }
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({ type: MessageType.AppResp, to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTermHint: hint.term });
  }

  private handleHeartbeat(m: Message): void {
    if (m.commit > this.log.committed) this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({ type: MessageType.HeartbeatResp, to: m.from, index: m.index, ...(m.context ? { context: m.context } : {}) });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s) return;
    if (this.restore(s)) {
      this.say(`restored snapshot at index ${s.meta.index} term ${s.meta.term} from ${m.from}`);
      this.send({ type: MessageType.AppResp, to: m.from, index: this.log.lastIndex() });
    } else {
      this.send({ type: MessageType.AppResp, to: m.from, index: this.log.committed });
    }
  }

  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We already have the entry: just fast-forward the commit index.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.prs.clear();
    this.setConf(s.meta.conf);
    return true;
  }

  // --------------------------------------------------- conf changes (applied)

  applyConfChange(cc: ConfChange): void {
    let next: ConfState;
    try {
      next = applyToConfState(this.conf, cc);
    } catch (e) {
      // Every node reaches the same verdict on the same entry, so skipping is deterministic.
      this.cfg.logger.warn(`node ${this.id}: ignored conf change ${cc.type} ${cc.nodeId}: ${(e as Error).message}`);
      return;
    }
    this.setConf(next);
    this.say(`applied conf change ${cc.type} ${cc.nodeId}: voters [${next.voters.join(",")}] learners [${next.learners.join(",")}]`);
    if (this.role !== Role.Leader) return;
    if (this.leadTransferee !== NONE && !this.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
    if (!this.isVoter(this.id)) {
      // Stepping down at once could strand the others: they may not yet know that
      // this change is committed, or lack entries only we can send, and then none
      // of them can win an election. Keep replicating (refusing proposals) and hand
      // leadership to the most up-to-date voter once it has everything.
      this.say(`removed from the voters: handing leadership over`);
      this.handOffLeadership();
    }
    // A smaller quorum may commit more at once; new members need the log.
    if (this.maybeCommit()) this.onCommitted();
    this.bcastAppend();
  }

  // ---------------------------------------------------------------- ReadIndex

  readIndex(context: Uint8Array): void {
    const m = makeMessage({ type: MessageType.ReadIndex, clusterId: this.cfg.clusterId, from: this.id, to: this.id, context });
    if (this.role === Role.Leader) this.leaderReadIndex(m);
    else if (this.role === Role.Follower && this.leader !== NONE) this.msgs.push({ ...m, to: this.leader });
    else throw new NotLeaderError(this.leader);
  }

  /** Change the election timeout and heartbeat (in ticks) at runtime, e.g. from replicated config. */
  setTiming(electionTick: number, heartbeatTick: number): void {
    if (!Number.isInteger(heartbeatTick) || heartbeatTick <= 0 || !Number.isInteger(electionTick) || electionTick <= heartbeatTick) {
      throw new RaftError("INVALID_ARGUMENT", `electionTick (${electionTick}) must be an integer greater than heartbeatTick (${heartbeatTick})`);
    }
    this.cfg.electionTick = electionTick;
    this.cfg.heartbeatTick = heartbeatTick;
    this.resetRandomizedElectionTimeout();
  }

  electionElapsedTicks(): number {
    return this.electionElapsed;
  }
}
