// The server settings pgraft needs, as config file text. They live in their
// own file (pgraft.conf, included from postgresql.conf) so they can be
// rewritten on every start without touching the user's or initdb's lines;
// postgresql.auto.conf (ALTER SYSTEM) is read after it and still wins.
import { join } from "node:path";
import { PostgresError } from "./errors.js";

export type SettingValue = string | number | boolean;

export const PGRAFT_CONF = "pgraft.conf";
export const INCLUDE_LINE = `include '${PGRAFT_CONF}'  # settings pgraft manages; rewritten on every start`;

/**
 * The longest unix socket path: sun_path is 108 bytes on Linux, NUL included.
 * PostgreSQL rejects longer ones at startup, so we check up front and say why.
 */
export const MAX_SOCKET_PATH = 107;

export interface SettingsInput {
  port: number;
  socketDir: string;
  fsync: boolean;
  /** Extra or overriding settings. */
  extra?: Record<string, SettingValue>;
}

/** What pgraft needs: logical decoding, commit timestamps, TCP on loopback, small memory, logs on stderr. */
export function serverSettings(o: SettingsInput): Record<string, SettingValue> {
  return {
    listen_addresses: "127.0.0.1",
    port: o.port,
    unix_socket_directories: o.socketDir,
    // Logical replication between nodes, and conflict resolution by commit time.
    wal_level: "logical",
    max_wal_senders: 16,
    max_replication_slots: 16,
    max_worker_processes: 16,
    track_commit_timestamp: true,
    // The data plane commits what it applies asynchronously. With the default (1MB) the WAL writer
    // writes but does not flush between its rounds, so every asynchronous commit finds a full page
    // past the flushed position and wakes it: a kill() per applied transaction, a fifth of the
    // apply backend's time on one-row transactions. Flushing what it writes ends that
    // (bench/applier-alone: 1.2x the one-row apply rate, a fifth less backend CPU per transaction).
    wal_writer_flush_after: 0,
    // Stock PostgreSQL: pgraft loads nothing into the server.
    shared_preload_libraries: "",
    // Small: several of these run on one machine for tests and the demo.
    shared_buffers: "32MB",
    fsync: o.fsync,
    // The server writes to stderr, which is the log file we hand it.
    logging_collector: false,
    log_destination: "stderr",
    log_line_prefix: "%m [%p] %q%u@%d ",
    ...o.extra,
  };
}

function renderValue(v: SettingValue): string {
  if (typeof v === "boolean") return v ? "on" : "off";
  if (typeof v === "number") return String(v);
  return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

export function renderConf(settings: Record<string, SettingValue>): string {
  const lines = Object.entries(settings).map(([k, v]) => {
    if (!/^[a-z_][a-z0-9_.]*$/i.test(k)) throw new Error(`invalid PostgreSQL setting name ${JSON.stringify(k)}`);
    return `${k} = ${renderValue(v)}`;
  });
  return `# Written by pgraft on every start; edit the options that produce it instead.\n${lines.join("\n")}\n`;
}

/**
 * Trust over the unix socket (only the server's OS user and root can reach it
 * — the socket dir is theirs), passwords (SCRAM) over TCP. Replication
 * lines too: logical replication connects with `replication=database`.
 */
export function hbaConf(): string {
  return [
    "# Written by pgraft at initdb.",
    "# TYPE  DATABASE     USER  ADDRESS        METHOD",
    "local   all          all                  trust",
    "local   replication  all                  trust",
    "host    all          all   127.0.0.1/32   scram-sha-256",
    "host    replication  all   127.0.0.1/32   scram-sha-256",
    "host    all          all   ::1/128        scram-sha-256",
    "host    replication  all   ::1/128        scram-sha-256",
    "",
  ].join("\n");
}

export function socketPath(socketDir: string, port: number): string {
  return join(socketDir, `.s.PGSQL.${port}`);
}

/** Throws PG_SOCKET_PATH_TOO_LONG when the server's socket path would not fit. */
export function checkSocketPath(socketDir: string, port: number): void {
  const p = socketPath(socketDir, port);
  const len = Buffer.byteLength(p);
  if (len > MAX_SOCKET_PATH) {
    throw new PostgresError(
      "PG_SOCKET_PATH_TOO_LONG",
      `the unix socket path ${p} is ${len} bytes, over the ${MAX_SOCKET_PATH}-byte limit of unix socket addresses; ` +
        `choose a shorter socket directory (e.g. under /tmp) or a data directory with a shorter path`,
    );
  }
}
