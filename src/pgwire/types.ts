// The public shapes of the PostgreSQL-wire endpoint: what a handler receives
// and returns, and how the server is configured.
import type { SecureContextOptions } from "node:tls";
import type { Severity } from "./errors.js";

/** OIDs of common PostgreSQL types, for ResultColumn.typeOid. */
export const PgType = {
  bool: 16,
  bytea: 17,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  textArray: 1009,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

export interface ResultColumn {
  name: string;
  typeOid: number;
}

/**
 * One statement's outcome. Values are in PostgreSQL's text format (what the
 * type's output function would print: "t"/"f" for bool, ISO dates...), null for
 * SQL NULL. No columns (or none given) means a statement that returns no rows:
 * only its command tag is sent.
 */
export interface QueryResult {
  columns?: ResultColumn[];
  rows?: (string | null)[][];
  /** Command tag, e.g. "SELECT 3", "INSERT 0 1", "SET". */
  command: string;
}

export interface NoticeFields {
  message: string;
  detail?: string;
  hint?: string;
  /** SQLSTATE; defaults to 00000. */
  code?: string;
  severity?: Extract<Severity, "WARNING" | "NOTICE" | "DEBUG" | "INFO" | "LOG">;
}

export interface QueryContext {
  user: string;
  database: string;
  applicationName: string;
  /** The session's BackendKeyData process id (handy in logs). */
  pid: number;
  remoteAddress: string;
  /**
   * Aborted when the client cancels the query (CancelRequest, psql's Ctrl-C,
   * pg_cancel_backend through dblink), disconnects, or the server closes.
   * Throwing anything after a cancel is reported as SQLSTATE 57014.
   */
  signal: AbortSignal;
  /** Sends a NoticeResponse now (psql prints "NOTICE:  msg"). */
  notice(msg: string | NoticeFields): void;
}

export interface PgWireHandler {
  /**
   * Runs a query string and returns one result per statement (the handler does
   * the parsing, so it decides how ';'-separated statements split). An empty
   * list is answered like an empty query. Throw PgWireError for a
   * PostgreSQL-style error; anything else becomes SQLSTATE XX000.
   *
   * Extended-protocol (parameterized) queries arrive with their parameters
   * already substituted as standard SQL literals ('it''s', NULL), and must
   * yield exactly one result.
   */
  query(sql: string, ctx: QueryContext): Promise<QueryResult[]> | QueryResult[];
}

/** pino-compatible: `logger.warn({ user }, "message")`. */
export interface PgWireLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface PgWireServerOptions {
  host: string;
  /** 0 picks a free port (see the returned address). */
  port: number;
  /** A user's SCRAM-SHA-256 verifier (see makeScramVerifier), or undefined if there is no such user. */
  users: (name: string) => string | undefined | Promise<string | undefined>;
  handler: PgWireHandler;
  logger?: PgWireLogger;
  /** When set, SSLRequest is accepted and the connection upgraded to TLS; otherwise refused ('N'). */
  tls?: SecureContextOptions;
  /** Sessions admitted at once (default 100); more get SQLSTATE 53300. */
  maxConnections?: number;
  /** Longest frontend message after startup (default 1 MiB); longer ones get SQLSTATE 54000. */
  maxMessageBytes?: number;
  /** Time allowed from connect to authenticated (default 10 s). */
  authTimeoutMs?: number;
  /** Reported as server_version; must start with a version number libpq can parse. */
  serverVersion?: string;
}

export interface PgWireServer {
  address: { host: string; port: number };
  /** Stops listening, ends every session (in-flight queries are aborted) and waits for them. */
  close(): Promise<void>;
  /** Sessions currently admitted (connected past the startup packet). */
  sessions(): number;
}
