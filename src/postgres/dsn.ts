// Connection strings for a server, in the two libpq forms, and a psql command
// line a person can paste into a shell; the node-postgres config for a DSN,
// with libpq's password sources (passfile.ts).
import type pg from "pg";
import { parseIntoClientConfig } from "pg-connection-string";
import { passwordResolver } from "./passfile.js";

export interface ConnectionParams {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  /** libpq's `passfile` parameter: the password file to read the password from. */
  passfile?: string;
}

/** `postgresql://user:password@host:port/database`, every part percent-encoded. */
export function uriDsn(p: ConnectionParams): string {
  const auth = encodeURIComponent(p.user) + (p.password !== undefined ? `:${encodeURIComponent(p.password)}` : "");
  const host = p.host.includes(":") ? `[${p.host}]` : p.host;
  return `postgresql://${auth}@${host}:${p.port}/${encodeURIComponent(p.database)}${p.passfile !== undefined ? `?passfile=${encodeURIComponent(p.passfile)}` : ""}`;
}

/** A libpq key/value value: quoted when empty or holding spaces, quotes or backslashes. */
function kvValue(v: string): string {
  return v !== "" && !/[\s'\\]/.test(v) ? v : `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/** `host=... port=... user=... password=... dbname=...` (the form CREATE SUBSCRIPTION and dblink take). */
export function keyValueDsn(p: ConnectionParams): string {
  const parts: [string, string][] = [
    ["host", p.host],
    ["port", String(p.port)],
    ["user", p.user],
    ...(p.password !== undefined ? [["password", p.password] as [string, string]] : []),
    ["dbname", p.database],
    ...(p.passfile !== undefined ? [["passfile", p.passfile] as [string, string]] : []),
  ];
  return parts.map(([k, v]) => `${k}=${kvValue(v)}`).join(" ");
}

/** One POSIX shell word: left bare when it is plainly safe, else single-quoted. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The pairs of a libpq key=value connection string (values may be single-quoted,
 * with \' and \\ escapes), or undefined when it is not one.
 */
export function parseKeyValueDsn(dsn: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  const pair = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s']*))/y;
  let at = 0;
  const s = dsn.trim();
  while (at < s.length) {
    pair.lastIndex = at;
    const m = pair.exec(s);
    if (!m) return undefined;
    out.set(m[1]!, m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!);
    at = pair.lastIndex;
    while (at < s.length && /\s/.test(s[at]!)) at++;
  }
  return out.size ? out : undefined;
}

/**
 * A DSN in either libpq form as a URI the `pg` client understands (its
 * connectionString takes URIs only). Key=value pairs become the URI's parts and
 * query parameters (sslmode, sslrootcert, … carry over); a socket directory host
 * goes in the query, as libpq allows.
 */
export function toUriDsn(dsn: string): string {
  if (/^postgres(ql)?:\/\//i.test(dsn.trim())) return dsn.trim();
  const kv = parseKeyValueDsn(dsn);
  if (!kv) throw new Error("not a PostgreSQL connection string (expected key=value pairs or a postgresql:// URI)");
  const user = kv.get("user");
  const password = kv.get("password");
  const host = kv.get("host") ?? kv.get("hostaddr");
  const port = kv.get("port");
  const db = kv.get("dbname");
  const auth = user !== undefined ? encodeURIComponent(user) + (password !== undefined ? `:${encodeURIComponent(password)}` : "") + "@" : "";
  const netHost = host !== undefined && !host.startsWith("/") ? (host.includes(":") ? `[${host}]` : host) : "";
  const query: string[] = [];
  if (host?.startsWith("/")) query.push(`host=${encodeURIComponent(host)}`);
  for (const [k, v] of kv) if (!["user", "password", "host", "hostaddr", "port", "dbname"].includes(k)) query.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return `postgresql://${auth}${netHost}${port !== undefined && netHost ? `:${port}` : ""}/${db !== undefined ? encodeURIComponent(db) : ""}${query.length ? `?${query.join("&")}` : ""}`;
}

/** Keys that carry a secret: a password, or the passphrase of a client key. */
const SECRET_KEYS = new Set(["password", "sslpassword"]);

/**
 * Whether a DSN (either form) carries a non-empty secret: a password in the
 * URI's user info, or a `password`/`sslpassword` parameter — whatever the
 * case of its name (libpq refuses `PASSWORD=`, but the text would already be
 * stored wherever the DSN went).
 */
export function dsnHasPassword(dsn: string): boolean {
  const s = dsn.trim();
  if (/^postgres(ql)?:\/\//i.test(s)) {
    try {
      const u = new URL(s);
      return u.password !== "" || [...u.searchParams].some(([k, v]) => SECRET_KEYS.has(k.toLowerCase()) && v !== "");
    } catch {
      return /[?&](ssl)?password=[^&]/i.test(s) || /^[^/]*\/\/[^/@]*:[^/@]+@/.test(s);
    }
  }
  const kv = parseKeyValueDsn(s);
  if (kv) return [...kv].some(([k, v]) => SECRET_KEYS.has(k.toLowerCase()) && v !== "");
  return /(^|\s)(ssl)?password\s*=\s*[^\s]/i.test(s);
}

/** libpq's connection parameters (PostgreSQL 15), the only keys a DSN may hold. */
const LIBPQ_KEYS = new Set([
  "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding", "connect_timeout", "client_encoding",
  "options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
  "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl", "sslcompression", "sslcert",
  "sslkey", "sslpassword", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
  "ssl_max_protocol_version", "krbsrvname", "gsslib", "service", "target_session_attrs",
]);

/** The DSN's keys that libpq does not know (it would refuse the DSN: `invalid connection option`), in order. */
export function unknownDsnKeys(dsn: string): string[] {
  const s = dsn.trim();
  if (/^postgres(ql)?:\/\//i.test(s)) {
    try {
      return [...new URL(s).searchParams.keys()].filter((k) => !LIBPQ_KEYS.has(k));
    } catch {
      return [];
    }
  }
  return [...(parseKeyValueDsn(s)?.keys() ?? [])].filter((k) => !LIBPQ_KEYS.has(k));
}

/**
 * The node-postgres client config for a libpq DSN (either form), as pg's own
 * `connectionString` would make it — the DSN's parameters win over `options`,
 * as they do there — except for the password: when the DSN has none, libpq's
 * sources are asked when the server wants one (PGPASSWORD, the DSN's
 * `passfile`, PGPASSFILE, ~/.pgpass: see passfile.ts). Every connection the
 * sidecar makes to a DSN goes through here.
 */
export function dsnClientConfig(dsn: string, options: pg.ClientConfig = {}): pg.ClientConfig {
  const { passfile, password, ...fromDsn } = parseIntoClientConfig(toUriDsn(dsn)) as pg.ClientConfig & { passfile?: unknown };
  const { connectionString: _unused, ...base } = options;
  return {
    ...base,
    ...fromDsn,
    password: typeof password === "string" && password !== "" ? password : passwordResolver(typeof passfile === "string" && passfile !== "" ? passfile : undefined),
  };
}

/**
 * The `host:port` a DSN (either form) connects to, as libpq would: the first
 * host of a list, localhost and 5432 when left out, a socket directory as it is.
 */
export function dsnAddress(dsn: string): string {
  const cfg = parseIntoClientConfig(toUriDsn(dsn));
  const host = (cfg.host ?? "").split(",")[0] || "localhost";
  const port = cfg.port !== undefined && cfg.port !== null && String(cfg.port) !== "" ? String(cfg.port).split(",")[0] : "5432";
  return `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
}
