// libpq's password sources, for the connections the sidecar makes itself.
//
// Interface DSNs are replicated to every node (Raft WAL, snapshots), so they
// must not carry a password. libpq's own ways of finding one must work instead,
// for the sidecar's connections (node-postgres reads none of them: it gets the
// password from the function below) as for the pg_dump/pg_restore it spawns
// (libpq itself, same environment, the DSN's `passfile` in their --dbname):
//
//   1. a `password` in the DSN (only the sidecar's own --postgres-dsn may say one);
//   2. PGPASSWORD in the environment, when not empty;
//   3. the password file: the DSN's `passfile` parameter, else PGPASSFILE, else
//      ~/.pgpass of the OS user the sidecar runs as (HOME, else the passwd entry).
//
// The password file follows libpq (fe-connect.c, passwordFromFile):
// `hostname:port:database:username:password` lines, `#` comments, the first
// matching line wins; a field that is exactly `*` matches anything; `\`
// escapes `:` and `\`; the password ends at the first unescaped `:`. The
// hostname matched is the connection's host, `localhost` when none is given or
// when it is the default unix socket directory; the port defaults to 5432, the
// database to the user name. A file that is not a regular file, or that its
// group or others can read or write (mode & 0077), is ignored, as libpq does —
// and the error that follows says so.
import { statSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** What a password line is matched against: the connection's parameters. */
export interface PassfileTarget {
  host?: string | undefined;
  port?: number | string | undefined;
  database?: string | undefined;
  user?: string | undefined;
}

/** The unix socket directory libpq (Debian's build, /usr/lib/postgresql/<v>) connects to by default. */
export const DEFAULT_SOCKET_DIR = "/var/run/postgresql";

/**
 * One field of a password-file line against `token`: the rest of the line
 * after the field's `:` when it matches, else undefined. A field that is
 * exactly `*` matches anything; `\` makes the next character literal.
 */
function matchField(line: string, at: number, token: string): number | undefined {
  if (line[at] === "*" && line[at + 1] === ":") return at + 2;
  let i = at;
  let t = 0;
  for (;;) {
    if (i >= line.length) return undefined;
    let escaped = false;
    if (line[i] === "\\" && i + 1 < line.length) {
      i++;
      escaped = true;
    }
    if (!escaped && line[i] === ":") return t === token.length ? i + 1 : undefined;
    if (t >= token.length || line[i] !== token[t]) return undefined;
    i++;
    t++;
  }
}

/** The password field of a line (from `at`): up to the first unescaped `:`, escapes removed. */
function passwordField(line: string, at: number): string {
  let out = "";
  for (let i = at; i < line.length; i++) {
    const c = line[i]!;
    if (c === ":") break;
    if (c === "\\" && i + 1 < line.length) {
      out += line[++i];
      continue;
    }
    out += c;
  }
  return out;
}

/** The hostname libpq matches: `localhost` for no host or the default socket dir. */
export function passfileHost(host: string | undefined): string {
  if (host === undefined || host === "") return "localhost";
  if (host.startsWith("/") && host.replace(/\/+$/, "") === DEFAULT_SOCKET_DIR) return "localhost";
  return host;
}

/** Resolve the target's defaults as libpq does for the match (port 5432, database = user). */
function matchKeys(t: PassfileTarget): { host: string; port: string; database: string; user: string } | undefined {
  const user = t.user ?? "";
  if (user === "") return undefined;
  const port = t.port === undefined || t.port === "" ? "5432" : String(t.port);
  const database = t.database === undefined || t.database === null || t.database === "" ? user : t.database;
  return { host: passfileHost(t.host), port, database, user };
}

/** The password of the first line of `text` that matches `target`, as libpq picks it ("" possible); undefined when none does. */
export function findPassword(text: string, target: PassfileTarget): string | undefined {
  const k = matchKeys(target);
  if (!k) return undefined;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[\r\n]+$/, "");
    if (line === "" || line.startsWith("#")) continue;
    let at: number | undefined = 0;
    for (const token of [k.host, k.port, k.database, k.user]) {
      at = matchField(line, at, token);
      if (at === undefined) break;
    }
    if (at === undefined) continue;
    // The first matching line wins, even with an empty password (libpq then has none).
    return passwordField(line, at);
  }
  return undefined;
}

/** The password file libpq would read: the DSN's `passfile`, else PGPASSFILE, else ~/.pgpass. */
export function passfilePath(dsnPassfile: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (dsnPassfile) return dsnPassfile;
  if (env["PGPASSFILE"]) return env["PGPASSFILE"];
  return join(env["HOME"] || homedir(), ".pgpass");
}

/** Where a lookup found its password, or why it found none (for the error). */
export type PasswordLookup =
  | { password: string; source: "PGPASSWORD" | "passfile"; file?: string }
  | { password: undefined; file: string; problem: "missing" | "no-match" | "empty" | "not-a-file" | "too-open" | "unreadable"; detail?: string };

/**
 * The password for `target` from libpq's sources after the DSN: PGPASSWORD,
 * then the password file (see passfilePath). Never throws.
 */
export function lookupPassword(target: PassfileTarget, dsnPassfile?: string, env: NodeJS.ProcessEnv = process.env): PasswordLookup {
  const fromEnv = env["PGPASSWORD"];
  if (fromEnv) return { password: fromEnv, source: "PGPASSWORD" };
  const file = passfilePath(dsnPassfile, env);
  let st;
  try {
    st = statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === "ENOENT" || code === "ENOTDIR" ? { password: undefined, file, problem: "missing" } : { password: undefined, file, problem: "unreadable", detail: (e as Error).message };
  }
  if (!st.isFile()) return { password: undefined, file, problem: "not-a-file" };
  if ((st.mode & 0o077) !== 0) return { password: undefined, file, problem: "too-open", detail: (st.mode & 0o777).toString(8).padStart(4, "0") };
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    return { password: undefined, file, problem: "unreadable", detail: (e as Error).message };
  }
  const pw = findPassword(text, target);
  if (pw === undefined) return { password: undefined, file, problem: "no-match" };
  if (pw === "") return { password: undefined, file, problem: "empty" };
  return { password: pw, source: "passfile", file };
}

/** Why no password was found, in one sentence that says what to fix. */
export function noPasswordMessage(target: PassfileTarget, l: Extract<PasswordLookup, { password: undefined }>): string {
  const k = matchKeys(target);
  const who = k ? `user "${k.user}" at ${k.host}:${k.port}, database "${k.database}"` : "a connection with no user name";
  const why = {
    missing: `the password file ${l.file} does not exist`,
    "no-match": `no line of the password file ${l.file} matches ${k ? `${k.host}:${k.port}:${k.database}:${k.user}` : "it"}`,
    empty: `the first line of the password file ${l.file} that matches it has an empty password`,
    "not-a-file": `the password file ${l.file} is not a plain file (ignored)`,
    "too-open": `the password file ${l.file} was ignored: it has group or world access (mode ${l.detail ?? "?"}); permissions should be u=rw (0600) or less`,
    unreadable: `the password file ${l.file} cannot be read (${l.detail ?? "?"})`,
  }[l.problem];
  return `no password supplied for ${who}: none in the DSN or PGPASSWORD, and ${why}`;
}

/**
 * A node-postgres `password` function (called only when the server asks for
 * a password, with the parameters pg actually connects with) that resolves
 * libpq's sources; it fails with noPasswordMessage when there is none.
 */
export function passwordResolver(dsnPassfile: string | undefined, env: NodeJS.ProcessEnv = process.env): (params?: PassfileTarget) => Promise<string> {
  return (params?: PassfileTarget) => {
    const target: PassfileTarget = { host: params?.host, port: params?.port, database: params?.database, user: params?.user };
    const l = lookupPassword(target, dsnPassfile, env);
    if (l.password !== undefined) return Promise.resolve(l.password);
    return Promise.reject(new Error(noPasswordMessage(target, l)));
  };
}

/** One password-file line for these parameters (`\` and `:` escaped); `*` for a field that should match anything. */
export function passfileLine(p: { host: string; port: number | string; database: string; user: string; password: string }): string {
  const esc = (s: string): string => (s === "*" ? s : s.replace(/[\\:]/g, (c) => `\\${c}`));
  return [esc(p.host), esc(String(p.port)), esc(p.database), esc(p.user), p.password.replace(/[\\:]/g, (c) => `\\${c}`)].join(":");
}
