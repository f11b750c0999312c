// Is a node's interface DSN well formed and reachable? Connect with it (as the
// other nodes will) and read the database it names. Errors say which, without
// echoing a password.
import pg from "pg";
import { dsnProblem } from "../config/sidecar-config.js";
import { PgWireError } from "../pgwire/index.js";
import { toUriDsn } from "../postgres/dsn.js";

const PROBE_TIMEOUT_MS = 5_000;

export async function probeDsn(fn: string, dsn: string): Promise<{ dbname: string }> {
  const why = dsnProblem(dsn);
  if (why) throw new PgWireError({ code: "22023", message: `${fn}: ${why}` });
  const c = new pg.Client({ connectionString: toUriDsn(dsn), connectionTimeoutMillis: PROBE_TIMEOUT_MS, query_timeout: PROBE_TIMEOUT_MS, application_name: "pgraft_probe" });
  c.on("error", () => {});
  try {
    await c.connect();
    const r = await c.query<{ db: string }>("SELECT current_database() AS db");
    return { dbname: r.rows[0]!.db };
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).replace(/password=\S+/gi, "password=…");
    throw new PgWireError({ code: "08001", message: `${fn}: cannot connect with the DSN given: ${msg}`, hint: "the DSN must reach that database from every node (host, port, dbname, user, and a password or .pgpass)" });
  } finally {
    await c.end().catch(() => undefined);
  }
}
