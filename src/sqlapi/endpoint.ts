// The sidecar's PostgreSQL-wire endpoint: the shim's dblink calls (and a
// person's psql) arrive here as `SELECT * FROM pgraft_x(literals)`, are run by
// src/sqlapi/functions.ts and answered with the columns the catalog declares.
import type { Logger } from "pino";
import type { HostPort } from "../config/address.js";
import { makeScramVerifier, PgWireError, startPgWireServer, type PgWireServer, type QueryResult } from "../pgwire/index.js";
import { ALL_FUNCTIONS, FUNCTION_BY_NAME, wireColumns, SQL_TYPES } from "./catalog.js";
import { CallSyntaxError, parseCall } from "./call-parser.js";
import { toSqlError } from "./errors.js";
import { runFunction, type SqlApiDeps } from "./functions.js";

/** The one user of the endpoint: the shim (its password is in the sidecar's data dir). */
export const SHIM_USER = "pgraft_shim";

export async function runCall(sql: string, deps: SqlApiDeps): Promise<QueryResult[]> {
  if (sql.trim() === "" || sql.trim() === ";") return [];
  let call;
  try {
    call = parseCall(sql);
  } catch (e) {
    if (e instanceof CallSyntaxError) throw new PgWireError({ code: "42601", message: `syntax error: ${e.message}` });
    throw e;
  }
  const f = FUNCTION_BY_NAME.get(call.name);
  if (!f) {
    throw new PgWireError({
      code: "42883",
      message: `function ${call.name}() does not exist on the pgraft endpoint`,
      hint: `functions: ${ALL_FUNCTIONS.map((x) => x.name).join(", ")}`,
    });
  }
  if (call.args.length !== f.args.length) {
    throw new PgWireError({
      code: "42883",
      message: `function ${f.name} takes ${f.args.length} argument(s), got ${call.args.length}`,
      hint: `${f.name}(${f.args.map((a) => `${a.name} ${a.type}`).join(", ")})`,
    });
  }
  let rows;
  try {
    rows = await runFunction(f, call.args, deps);
  } catch (e) {
    throw toSqlError(e);
  }
  const columns = wireColumns(f).map((c) => ({ name: c.name, typeOid: SQL_TYPES[c.type] }));
  return [{ columns, rows, command: `SELECT ${rows.length}` }];
}

export interface SqlEndpointOptions {
  listen: HostPort;
  password: string;
  deps: SqlApiDeps;
  log: Logger;
}

export async function startSqlEndpoint(o: SqlEndpointOptions): Promise<PgWireServer> {
  const verifier = makeScramVerifier(o.password);
  const log = o.log.child({ component: "sql-endpoint" });
  return startPgWireServer({
    host: o.listen.host,
    port: o.listen.port,
    users: (name) => (name === SHIM_USER ? verifier : undefined),
    // Room for the largest KV value (kv_max_value_bytes up to 8 MiB), quoted as a SQL literal.
    maxMessageBytes: 17 * 1024 * 1024,
    logger: log,
    handler: {
      query: async (sql) => {
        const t0 = Date.now();
        try {
          return await runCall(sql, o.deps);
        } finally {
          log.debug({ sql: sql.length > 200 ? sql.slice(0, 200) + "…" : sql, ms: Date.now() - t0 }, "sql call");
        }
      },
    },
  });
}
