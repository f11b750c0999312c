// Is a node's interface DSN well formed and reachable? Connect with it (as the
// other nodes will) and read the database it names. Errors say which, without
// echoing a password.
import pg from "pg";
import { dsnProblem } from "../config/sidecar-config.js";
import { PgWireError } from "../pgwire/index.js";
import { INTERFACE_DSN_PASSWORD, INTERFACE_DSN_PASSWORD_HINT } from "../cluster/node-groups.js";
import { dsnClientConfig, dsnHasPassword, unknownDsnKeys } from "../postgres/dsn.js";

const PROBE_TIMEOUT_MS = 5_000;

/**
 * Connect with `dsn` (as the other nodes will) and run `f` on that connection;
 * a malformed DSN is 22023, a failed connection 08001, neither echoing a password.
 */
export async function withDsn<T>(fn: string, dsn: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const why = dsnProblem(dsn);
  if (why) throw new PgWireError({ code: "22023", message: `${fn}: ${why}` });
  checkDsnKeys(fn, dsn);
  const c = new pg.Client(dsnClientConfig(dsn, { connectionTimeoutMillis: PROBE_TIMEOUT_MS, query_timeout: PROBE_TIMEOUT_MS, application_name: "pgraft_probe" }));
  c.on("error", () => {});
  try {
    try {
      await c.connect();
    } catch (e) {
      const msg = (e instanceof Error ? e.message : String(e)).replace(/password=\S+/gi, "password=…");
      throw new PgWireError({ code: "08001", message: `${fn}: cannot connect with the DSN given: ${msg}`, hint: "the DSN must reach that database from every node (host, port, dbname, user; the password from passfile=…, PGPASSFILE or ~/.pgpass of the sidecar's user)" });
    }
    return await f(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** An interface DSN (kept in the replicated catalog) must not carry a password: 22023, before anything is tried. */
export function checkInterfaceDsn(fn: string, dsn: string): void {
  if (dsnHasPassword(dsn)) throw new PgWireError({ code: "22023", message: `${fn}: ${INTERFACE_DSN_PASSWORD}`, hint: INTERFACE_DSN_PASSWORD_HINT });
  checkDsnKeys(fn, dsn);
}

/** Keys libpq does not know (a typo such as hots=): 22023, as libpq, pg_dump and every sidecar would refuse the DSN. */
function checkDsnKeys(fn: string, dsn: string): void {
  const unknown = unknownDsnKeys(dsn);
  if (unknown.length) {
    throw new PgWireError({
      code: "22023",
      message: `${fn}: invalid connection option ${unknown.map((k) => JSON.stringify(k)).join(", ")} in the DSN`,
      hint: "libpq's connection options are lower case (host, port, dbname, user, passfile, sslmode, …); pg_dump and every node's sidecar would refuse this DSN",
    });
  }
}

/** The database a reachable DSN names. */
export function probeDsn(fn: string, dsn: string): Promise<{ dbname: string }> {
  return withDsn(fn, dsn, async (c) => ({ dbname: (await c.query<{ db: string }>("SELECT current_database() AS db")).rows[0]!.db }));
}
