// One error type for everything that can go wrong with a local PostgreSQL
// server, with a stable `code` so callers (the CLI, the demo, tests) can
// branch on the kind of failure while the message tells a person what is
// wrong and how to fix it.
export type PostgresErrorCode =
  /** No directory with both `initdb` and `postgres` was found. */
  | "PG_BINARIES_NOT_FOUND"
  /** The binaries found are older than pgraft supports. */
  | "PG_VERSION_UNSUPPORTED"
  /** Running as root, but there is no OS user to run the server as. */
  | "PG_NO_SERVER_USER"
  /** The server's OS user cannot reach (traverse) a directory it needs. */
  | "PG_DIR_NOT_REACHABLE"
  /** `<socketDir>/.s.PGSQL.<port>` does not fit in a unix socket address. */
  | "PG_SOCKET_PATH_TOO_LONG"
  | "PG_INITDB_FAILED"
  /** start() on a data dir without a cluster in it. */
  | "PG_NOT_INITIALIZED"
  /** A postmaster already runs on this data dir (ours or someone else's). */
  | "PG_ALREADY_RUNNING"
  /** The server exited before it accepted connections. */
  | "PG_START_FAILED"
  | "PG_START_TIMEOUT";

export class PostgresError extends Error {
  constructor(
    readonly code: PostgresErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PostgresError";
  }
}

export function isPostgresError(e: unknown, code?: PostgresErrorCode): e is PostgresError {
  return e instanceof PostgresError && (code === undefined || e.code === code);
}
