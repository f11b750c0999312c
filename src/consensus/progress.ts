// What the leader knows of one follower's log, and how it sends to it:
//  probe     — one App at a time until the follower's match point is found;
//  replicate — optimistic pipelining, bounded by Inflights;
//  snapshot  — a snapshot is on its way; nothing else is sent.
import { Inflights } from "./inflights.js";
import type { ProgressState, ProgressStatus } from "./types.js";

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  pendingSnapshot = 0;
  /** Heard from within the last election timeout (check-quorum). */
  recentActive = true;
  /** Our tick when this follower last answered anything. */
  lastActiveTick = 0;
  /** Our tick when we sent the newest heartbeat this follower answered (lease reads). */
  lastHeartbeatAcked = -Infinity;
  /** In probe state: one message is out, wait for its answer or a heartbeat response. */
  probeSent = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    public learner: boolean,
    maxInflightMsgs: number,
    maxInflightBytes: number,
  ) {
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, resume right after it: the follower has at least that much.
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** The follower acknowledged up to n. Returns true if match advanced. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * The follower rejected an App whose previous index was `rejected`; `matchHint`
   * is where the logs may match. Returns false for a stale rejection.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false; // stale: we already know better
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false; // not the probe we are waiting for
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Record an App sent with `count` entries ending at `last`. */
  sentEntries(count: number, bytes: number, last: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next = last + 1;
        this.inflights.add(last, bytes);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }

  status(nowTick: number): ProgressStatus {
    return {
      ticksSinceActive: nowTick - this.lastActiveTick,
      match: this.match,
      next: this.next,
      state: this.state,
      learner: this.learner,
      recentActive: this.recentActive,
      inflightMsgs: this.inflights.count(),
      inflightBytes: this.inflights.bytes(),
      pendingSnapshot: this.pendingSnapshot,
    };
  }
}
