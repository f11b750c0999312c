// One mapping from pgraft's typed errors to gRPC statuses. The trailer
// `pgraft-error-code` keeps the precise code, `pgraft-leader-id` the leader.
import * as grpc from "@grpc/grpc-js";
import { NotLeaderError, RaftError, type RaftErrorCode } from "../consensus/errors.js";
import { ClusterError, type ClusterErrorCode } from "../cluster/errors.js";
import { statusError, isServiceError } from "../transport/grpc-service.js";

const RAFT_STATUS: Record<RaftErrorCode, grpc.status> = {
  NOT_LEADER: grpc.status.UNAVAILABLE,
  NO_QUORUM: grpc.status.UNAVAILABLE,
  TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  REMOVED: grpc.status.FAILED_PRECONDITION,
  PROPOSAL_DROPPED: grpc.status.ABORTED,
  OUTCOME_UNKNOWN: grpc.status.DEADLINE_EXCEEDED,
  STOPPED: grpc.status.UNAVAILABLE,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  COMPACTED: grpc.status.INTERNAL,
  UNAVAILABLE: grpc.status.INTERNAL,
  SNAPSHOT_TEMPORARILY_UNAVAILABLE: grpc.status.UNAVAILABLE,
  CORRUPT: grpc.status.DATA_LOSS,
};

const CLUSTER_STATUS: Partial<Record<ClusterErrorCode, grpc.status>> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  CAS_FAILED: grpc.status.FAILED_PRECONDITION,
  NOT_CHANGEABLE: grpc.status.FAILED_PRECONDITION,
  TOO_LARGE: grpc.status.INVALID_ARGUMENT,
  UNSUPPORTED_VERSION: grpc.status.FAILED_PRECONDITION,
  CORRUPT_SNAPSHOT: grpc.status.DATA_LOSS,
};

export function toServiceError(e: unknown): grpc.ServerErrorResponse {
  if (isServiceError(e)) return e; // already a status (e.g. from a forwarded call)
  const md = new grpc.Metadata();
  if (e instanceof RaftError) {
    md.set("pgraft-error-code", e.code);
    if (e instanceof NotLeaderError && e.leader) md.set("pgraft-leader-id", String(e.leader));
    return statusError(RAFT_STATUS[e.code], e.message, md);
  }
  if (e instanceof ClusterError) {
    md.set("pgraft-error-code", e.code);
    return statusError(CLUSTER_STATUS[e.code] ?? grpc.status.INVALID_ARGUMENT, e.message, md);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return statusError(grpc.status.INTERNAL, `internal error: ${msg}`);
}

export const invalidArgument = (message: string): grpc.ServerErrorResponse => statusError(grpc.status.INVALID_ARGUMENT, message);

/**
 * True when a write certainly had no effect: its proposal was dropped (replaced
 * by a new leader's entry, or refused during a leadership transfer or a
 * membership change), here or on the leader it was forwarded to. Such a write
 * may be sent again as it is.
 */
export function certainlyNotApplied(e: unknown): boolean {
  if (e instanceof RaftError) return e.code === "PROPOSAL_DROPPED";
  return isServiceError(e) && e.metadata?.get("pgraft-error-code")[0] === "PROPOSAL_DROPPED";
}
