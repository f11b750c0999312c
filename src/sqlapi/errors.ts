// What a failed call looks like to SQL: every pgraft error becomes a
// PgWireError with a SQLSTATE a script can branch on (dblink passes SQLSTATE,
// message, detail and hint through to the caller's session unchanged).
import * as grpc from "@grpc/grpc-js";
import { ClusterError, SQLSTATE as CLUSTER_SQLSTATE, type ClusterErrorCode } from "../cluster/errors.js";
import { RaftError, type RaftErrorCode } from "../consensus/errors.js";
import { PgWireError } from "../pgwire/index.js";
import { transportErrorText } from "../transport/grpc-error-text.js";
import { isServiceError } from "../transport/grpc-service.js";

const UNKNOWN_OUTCOME_HINT = "The change may or may not have been applied: read the state before retrying.";

/** SQLSTATE per Raft error. 40003 (statement_completion_unknown) is exactly "timed out, outcome unknown". */
const RAFT_SQLSTATE: Record<RaftErrorCode, string> = {
  NOT_LEADER: "55000",
  NO_QUORUM: "55000",
  TIMEOUT: "40003",
  // Not applied (another leader's entry replaced it, or a transfer was under way): retry.
  PROPOSAL_DROPPED: "40001",
  OUTCOME_UNKNOWN: "40003",
  REMOVED: "55000",
  STOPPED: "57P01",
  INVALID_ARGUMENT: "22023",
  COMPACTED: "XX000",
  UNAVAILABLE: "XX000",
  SNAPSHOT_TEMPORARILY_UNAVAILABLE: "55000",
  CORRUPT: "XX001",
};

const STATUS_SQLSTATE: Partial<Record<grpc.status, string>> = {
  [grpc.status.INVALID_ARGUMENT]: "22023",
  [grpc.status.NOT_FOUND]: "42704",
  [grpc.status.ALREADY_EXISTS]: "42710",
  [grpc.status.FAILED_PRECONDITION]: "55000",
  [grpc.status.UNAVAILABLE]: "55000",
  [grpc.status.DEADLINE_EXCEEDED]: "40003",
  [grpc.status.ABORTED]: "40003",
  [grpc.status.PERMISSION_DENIED]: "42501",
  [grpc.status.RESOURCE_EXHAUSTED]: "54000",
  [grpc.status.UNIMPLEMENTED]: "0A000",
  [grpc.status.DATA_LOSS]: "XX001",
};

function fromCode(code: string | undefined): string | undefined {
  if (!code) return undefined;
  if (code in RAFT_SQLSTATE) return RAFT_SQLSTATE[code as RaftErrorCode];
  if (code in CLUSTER_SQLSTATE) return CLUSTER_SQLSTATE[code as ClusterErrorCode];
  return undefined;
}

const withHint = (sqlstate: string, message: string): PgWireError =>
  new PgWireError({ code: sqlstate, message, ...(sqlstate === "40003" ? { hint: UNKNOWN_OUTCOME_HINT } : {}) });

/** Any error from a call (typed, a gRPC status, a plain Error) as the SQL error to send. */
export function toSqlError(e: unknown): PgWireError {
  if (e instanceof PgWireError) return e;
  if (e instanceof RaftError) return withHint(RAFT_SQLSTATE[e.code], e.message);
  if (e instanceof ClusterError) return withHint(e.sqlstate, e.message);
  if (isServiceError(e)) {
    const code = e.metadata?.get("pgraft-error-code")[0];
    const sqlstate = fromCode(typeof code === "string" ? code : undefined) ?? STATUS_SQLSTATE[e.code] ?? "XX000";
    // Without pgraft's own code the status is the transport's: the leader this sidecar forwarded to could not be reached.
    const text = e.details || e.message;
    return withHint(sqlstate, typeof code === "string" ? text : transportErrorText(text, "the leader's sidecar"));
  }
  return new PgWireError({ code: "XX000", message: e instanceof Error ? e.message : String(e) });
}

/** 22023 invalid_parameter_value. */
export const invalidParameter = (message: string, hint?: string): PgWireError => new PgWireError({ code: "22023", message, ...(hint ? { hint } : {}) });
/** 22004 null_value_not_allowed. */
export const nullArgument = (fn: string, arg: string): PgWireError => new PgWireError({ code: "22004", message: `${fn}: ${arg} must not be NULL` });
