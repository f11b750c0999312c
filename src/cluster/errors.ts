// The one error type of the replicated state machine, and the SQLSTATE each code
// maps to. Callers (the SQL shim, the HTTP API) switch on `code`, never on text.
// The same codes appear in failed CommandResults, so a command refused on apply
// and one refused before it was proposed look alike to the caller.

export type ClusterErrorCode =
  /** A malformed command or argument (bad field type, empty key, unknown op). */
  | "INVALID"
  /** A command written by a newer encoder than this node understands. */
  | "UNSUPPORTED_VERSION"
  /** A runtime setting that does not exist. */
  | "UNKNOWN_SETTING"
  /** A runtime setting's value that does not parse. */
  | "INVALID_VALUE"
  /** A runtime setting's value outside its bounds. */
  | "OUT_OF_RANGE"
  /** Two runtime settings that do not fit together (election_timeout vs heartbeat_interval). */
  | "INCOMPATIBLE_SETTINGS"
  /** A setting this version lists but cannot change (its value is fixed). */
  | "NOT_CHANGEABLE"
  /** A KV value that is not JSON text. */
  | "INVALID_JSON"
  /** A KV key or value over its configured limit. */
  | "TOO_LARGE"
  /** The compare of a compare-and-set did not hold; nothing was changed. */
  | "CAS_FAILED"
  /** The key, lease or member named by the command does not exist. */
  | "NOT_FOUND"
  /** The lease id is already in use. */
  | "ALREADY_EXISTS"
  /** The entry's index is at or below the applied index (a replay): skipped. */
  | "ALREADY_APPLIED"
  /** Snapshot bytes that do not decode to a valid state. */
  | "CORRUPT_SNAPSHOT";

/**
 * SQLSTATE per code. The configuration codes are all 22023 (invalid_parameter_value),
 * as PostgreSQL reports a bad GUC value; CAS_FAILED is 40001 (serialization_failure)
 * because the right reaction is to re-read and retry.
 */
export const SQLSTATE: Readonly<Record<ClusterErrorCode, string>> = {
  INVALID: "22023",
  UNSUPPORTED_VERSION: "0A000",
  UNKNOWN_SETTING: "22023",
  INVALID_VALUE: "22023",
  OUT_OF_RANGE: "22023",
  INCOMPATIBLE_SETTINGS: "22023",
  NOT_CHANGEABLE: "55P02",
  INVALID_JSON: "22P02",
  TOO_LARGE: "54000",
  CAS_FAILED: "40001",
  NOT_FOUND: "P0002",
  ALREADY_EXISTS: "42710",
  ALREADY_APPLIED: "XX000",
  CORRUPT_SNAPSHOT: "XX001",
};

export class ClusterError extends Error {
  readonly sqlstate: string;
  constructor(
    readonly code: ClusterErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "ClusterError";
    this.sqlstate = SQLSTATE[code];
  }
}

export const isClusterError = (e: unknown, code?: ClusterErrorCode): e is ClusterError =>
  e instanceof ClusterError && (code === undefined || e.code === code);
