// A PostgreSQL-wire (protocol 3.0) endpoint for the sidecar, so dblink (libpq)
// in the local PostgreSQL, psql and the `pg` client can call it with SQL.
export { startPgWireServer, DEFAULT_SERVER_VERSION } from "./server.js";
export { makeScramVerifier, parseScramVerifier } from "./scram.js";
export { PgWireError, SqlState, type PgWireErrorFields, type Severity } from "./errors.js";
export {
  PgType,
  type NoticeFields,
  type PgWireHandler,
  type PgWireLogger,
  type PgWireServer,
  type PgWireServerOptions,
  type QueryContext,
  type QueryResult,
  type ResultColumn,
} from "./types.js";
