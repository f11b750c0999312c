// Local PostgreSQL servers for `pgraft demo` and the tests: see README.md.
export { MIN_POSTGRES_MAJOR, defaultSearchDirs, findPostgresBinaries, parsePostgresVersion } from "./binaries.js";
export type { BinariesSource, FindBinariesOptions, PostgresBinaries } from "./binaries.js";
export { dsnClientConfig, dsnHasPassword, keyValueDsn, parseKeyValueDsn, shellQuote, toUriDsn, uriDsn } from "./dsn.js";
export { findPassword, lookupPassword, passfilePath, passwordResolver } from "./passfile.js";
export type { ConnectionParams } from "./dsn.js";
export { PostgresError, isPostgresError } from "./errors.js";
export type { PostgresErrorCode } from "./errors.js";
export { LocalPostgres, initdb } from "./local-server.js";
export type { InitdbOptions, LocalPostgresOptions, ServerExit, StopMode } from "./local-server.js";
export { assertReachable, chownTree, createServerDir, lookupOsUser, reachableTempDir, serverOsUser } from "./os-user.js";
export type { OsUser } from "./os-user.js";
export { MAX_SOCKET_PATH, checkSocketPath, serverSettings, socketPath } from "./settings.js";
export type { SettingValue } from "./settings.js";
