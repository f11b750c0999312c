// Connection strings for a server, in the two libpq forms, and a psql command
// line a person can paste into a shell.

export interface ConnectionParams {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
}

/** `postgresql://user:password@host:port/database`, every part percent-encoded. */
export function uriDsn(p: ConnectionParams): string {
  const auth = encodeURIComponent(p.user) + (p.password !== undefined ? `:${encodeURIComponent(p.password)}` : "");
  const host = p.host.includes(":") ? `[${p.host}]` : p.host;
  return `postgresql://${auth}@${host}:${p.port}/${encodeURIComponent(p.database)}`;
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
  ];
  return parts.map(([k, v]) => `${k}=${kvValue(v)}`).join(" ");
}

/** One POSIX shell word: left bare when it is plainly safe, else single-quoted. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
