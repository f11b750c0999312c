// Typed errors of the consensus layer. Callers switch on `code`, never on text.
import type { NodeId } from "./types.js";

export type RaftErrorCode =
  | "NOT_LEADER"
  | "NO_QUORUM"
  | "TIMEOUT"
  | "REMOVED"
  | "PROPOSAL_DROPPED"
  /** The proposal may or may not have been applied (e.g. superseded by a snapshot while waiting). */
  | "OUTCOME_UNKNOWN"
  | "STOPPED"
  | "INVALID_ARGUMENT"
  | "COMPACTED"
  | "UNAVAILABLE"
  | "SNAPSHOT_TEMPORARILY_UNAVAILABLE"
  | "CORRUPT";

export class RaftError extends Error {
  constructor(
    readonly code: RaftErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "RaftError";
  }
}

/** This node cannot serve the request; `leader` is the leader's id when known (0 otherwise). */
export class NotLeaderError extends RaftError {
  constructor(readonly leader: NodeId) {
    super("NOT_LEADER", leader ? `not the leader; the leader is node ${leader}` : "not the leader; no leader is known");
    this.name = "NotLeaderError";
  }
}

export const isRaftError = (e: unknown, code?: RaftErrorCode): e is RaftError =>
  e instanceof RaftError && (code === undefined || e.code === code);
