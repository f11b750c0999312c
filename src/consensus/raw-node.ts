// The thread-safe-by-construction face of the core: one Ready outstanding at a
// time. The driver takes a Ready, persists it, sends its messages, applies its
// committed entries, and calls advance(); only then is the next Ready handed out.
import type { RaftConfig } from "./config.js";
import { decodeConfChange, type ConfChange } from "./confchange.js";
import { RaftError } from "./errors.js";
import { LOCAL_ONLY, Raft } from "./raft.js";
import {
  EntryType,
  MessageType,
  Role,
  type HardState,
  type Message,
  type NodeId,
  type ProgressStatus,
  type RaftStatus,
  type Ready,
  type SoftState,
} from "./types.js";

export class RawNode {
  readonly raft: Raft;
  private prevHard: HardState;
  private prevSoft: SoftState;
  private outstanding: Ready | undefined;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevHard = this.hardState();
    this.prevSoft = this.softState();
  }

  private hardState(): HardState {
    return { term: this.raft.term, vote: this.raft.vote, commit: this.raft.log.committed };
  }

  private softState(): SoftState {
    return { leader: this.raft.leader, role: this.raft.role };
  }

  tick(): void {
    this.raft.tick();
  }

  /** Start an election now (skips the timer; still uses pre-vote when enabled). */
  campaign(): void {
    this.raft.stepLocal(MessageType.Hup);
  }

  propose(data: Uint8Array): { index: number; term: number } {
    return this.raft.propose(EntryType.Normal, data);
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    return this.raft.proposeConfChange(cc);
  }

  /** Feed a message from the network. Invalid ones are counted, never thrown. */
  step(m: Message): void {
    if (LOCAL_ONLY.has(m.type)) {
      throw new RaftError("INVALID_ARGUMENT", `${MessageType[m.type]} is a local message and cannot come from the network`);
    }
    this.raft.step(m);
  }

  /** Ask the leader (this node or, forwarded, the known leader) to hand over to `to`. */
  transferLeader(to: NodeId): void {
    this.raft.stepLocal(MessageType.TransferLeader, to);
  }

  readIndex(context: Uint8Array): void {
    this.raft.readIndex(context);
  }

  reportUnreachable(id: NodeId): void {
    this.raft.stepLocal(MessageType.Unreachable, id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.stepLocal(MessageType.SnapStatus, id, { reject: !ok });
  }

  hasReady(): boolean {
    if (this.outstanding) return false;
    const r = this.raft;
    const hs = this.hardState();
    const ss = this.softState();
    return (
      r.msgs.length > 0 ||
      r.readStates.length > 0 ||
      r.log.unstable.entries.length > 0 ||
      r.log.unstable.snapshot !== undefined ||
      r.log.hasNextCommittedEnts() ||
      hs.term !== this.prevHard.term ||
      hs.vote !== this.prevHard.vote ||
      hs.commit !== this.prevHard.commit ||
      ss.leader !== this.prevSoft.leader ||
      ss.role !== this.prevSoft.role
    );
  }

  ready(): Ready {
    if (this.outstanding) throw new RaftError("INVALID_ARGUMENT", "ready() called again before advance()");
    const r = this.raft;
    const hs = this.hardState();
    const ss = this.softState();
    const hardChanged = hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote || hs.commit !== this.prevHard.commit;
    const entries = r.log.unstable.entries.slice();
    const rd: Ready = {
      entries,
      committedEntries: r.log.nextCommittedEnts(r.cfg.maxCommittedSizePerReady),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: entries.length > 0 || hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote,
    };
    if (hardChanged) rd.hardState = hs;
    if (ss.leader !== this.prevSoft.leader || ss.role !== this.prevSoft.role) rd.softState = ss;
    if (r.log.unstable.snapshot) {
      rd.snapshot = r.log.unstable.snapshot;
      rd.mustSync = true;
    }
    r.msgs = [];
    r.readStates = [];
    this.outstanding = rd;
    return rd;
  }

  /** The Ready was persisted, sent and applied. Conf changes in it take effect now. */
  advance(rd: Ready): void {
    if (rd !== this.outstanding) throw new RaftError("INVALID_ARGUMENT", "advance() with a Ready that is not the outstanding one");
    this.outstanding = undefined;
    const r = this.raft;
    if (rd.hardState) this.prevHard = rd.hardState;
    if (rd.softState) this.prevSoft = rd.softState;
    const last = rd.entries[rd.entries.length - 1];
    if (last) r.log.unstable.stableTo(last.index, last.term);
    if (rd.snapshot) {
      r.log.unstable.stableSnapTo(rd.snapshot.meta.index);
      if (rd.snapshot.meta.index > r.log.applied) r.log.applied = rd.snapshot.meta.index;
    }
    // A snapshot restored while this Ready was out already holds the membership as of
    // its index; conf changes at or below it must not be applied on top of it again.
    const restoredSince = r.log.unstable.snapshot?.meta.index ?? 0;
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange && e.index > restoredSince) r.applyConfChange(decodeConfChange(e.data));
    }
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) {
      r.log.appliedTo(lastApplied.index);
      r.reduceUncommittedSize(rd.committedEntries);
    }
  }

  status(): RaftStatus {
    const r = this.raft;
    const progress = new Map<NodeId, ProgressStatus>();
    if (r.role === Role.Leader) for (const [id, pr] of r.prs) progress.set(id, pr.status(r.tickCount));
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      firstIndex: r.log.firstIndex(),
      leader: r.leader,
      role: r.role,
      conf: { voters: [...r.conf.voters], learners: [...r.conf.learners] },
      progress,
      leadTransferee: r.leadTransferee,
      rejected: { ...r.rejected },
      electionsStarted: r.electionsStarted,
    };
  }
}
