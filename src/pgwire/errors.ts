// The error a handler throws to answer a query with a PostgreSQL ErrorResponse,
// and the SQLSTATE codes this module itself uses. Clients (libpq, psql, dblink,
// the `pg` npm client) show and branch on these fields exactly as they would
// for a real server, so the codes follow PostgreSQL's errcodes.txt.

export type Severity = "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE" | "DEBUG" | "INFO" | "LOG";

export interface PgWireErrorFields {
  /** Five-character SQLSTATE, e.g. "22023". */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  /** Defaults to ERROR; FATAL additionally ends the session. */
  severity?: Severity;
}

/** Well-known SQLSTATEs (PostgreSQL's names, shortened). */
export const SqlState = {
  successfulCompletion: "00000",
  connectionFailure: "08006",
  protocolViolation: "08P01",
  featureNotSupported: "0A000",
  invalidAuthorizationSpecification: "28000",
  invalidPassword: "28P01",
  invalidParameterValue: "22023",
  characterNotInRepertoire: "22021",
  syntaxError: "42601",
  duplicatePreparedStatement: "42P05",
  duplicateCursor: "42P03",
  invalidSqlStatementName: "26000",
  invalidCursorName: "34000",
  undefinedParameter: "42P02",
  programLimitExceeded: "54000",
  tooManyConnections: "53300",
  queryCanceled: "57014",
  adminShutdown: "57P01",
  cannotConnectNow: "57P03",
  internalError: "XX000",
} as const;

export class PgWireError extends Error {
  readonly code: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly severity: Severity;

  constructor(fields: PgWireErrorFields) {
    super(fields.message);
    this.name = "PgWireError";
    this.code = fields.code;
    if (fields.detail !== undefined) this.detail = fields.detail;
    if (fields.hint !== undefined) this.hint = fields.hint;
    this.severity = fields.severity ?? "ERROR";
  }

  get fields(): PgWireErrorFields {
    return { code: this.code, message: this.message, detail: this.detail, hint: this.hint, severity: this.severity };
  }
}

/** Shorthand for the errors that end the connection (protocol violations, failed auth...). */
export function fatal(code: string, message: string, extra: { detail?: string; hint?: string } = {}): PgWireError {
  return new PgWireError({ code, message, ...extra, severity: "FATAL" });
}

/**
 * What the client sees for an arbitrary thrown value: a PgWireError keeps its
 * fields; anything else becomes an internal error carrying its message (the
 * stack stays in the server log).
 */
export function toPgWireError(e: unknown): PgWireError {
  if (e instanceof PgWireError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new PgWireError({ code: SqlState.internalError, message: message || "internal error" });
}
