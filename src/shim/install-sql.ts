// The SQL of the shim: schema, roles, catalog tables and one thin function per
// entry of src/sqlapi/catalog.ts. The same text is what the sidecar installs
// (src/shim/installer.ts) and what ships as the `pgraft` extension script.
//
// Every public pgraft_* function is SECURITY DEFINER with a fixed search_path:
// it runs as the shim's owner (a superuser), whose user mapping holds the
// endpoint's password, so callers need only EXECUTE (granted to pgraft_monitor
// or pgraft_admin), never the secret. Each call is one round trip on a dblink
// connection kept for the session, sent asynchronously and awaited with short
// pg_sleep steps so statement_timeout and cancellation interrupt a call that
// the sidecar does not answer (a blocking dblink() call in PostgreSQL 15 cannot
// be interrupted).
import { ALL_FUNCTIONS, FUNCTION_BY_NAME, isSetReturning, resultColumns, VIEWS, type SqlFunction } from "../sqlapi/catalog.js";

/** Bumped whenever the generated SQL changes; the installer replaces an older shim in place. */
export const SHIM_VERSION = "0.4.0";
/**
 * Versions an installed extension may be at: `pgraft extension` writes an
 * update script from each (`pgraft--<old>--<new>.sql`), so `ALTER EXTENSION
 * pgraft UPDATE` works. The shim's body is CREATE OR REPLACE throughout, after
 * dropping any function whose result columns changed (replacedResultsSql), so
 * the update script is the body again. (0.3.0: pgraft_get_nodes gained
 * postgres_address.)
 */
export const PREVIOUS_SHIM_VERSIONS: readonly string[] = ["0.1.0", "0.2.0", "0.3.0"];
export const SERVER_NAME = "pgraft_sidecar";
export const CONNECTION_NAME = "pgraft_sidecar";
const SEARCH_PATH = "pg_catalog, pgraft, public";

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** The function's qualified SQL name: public.pgraft_x or pgraft.create_node. */
export function qualifiedName(f: SqlFunction, schema: string = f.schema ?? "public"): string {
  return `${schema}.${f.sqlName ?? f.name}`;
}

function signature(f: SqlFunction, schema?: string): string {
  return `${qualifiedName(f, schema)}(${f.args.map((a) => `${a.name} ${a.type}${a.default !== undefined ? ` DEFAULT ${a.default}` : ""}`).join(", ")})`;
}

function argTypes(f: SqlFunction, schema?: string): string {
  return `${qualifiedName(f, schema)}(${f.args.map((a) => a.type).join(", ")})`;
}

/** bdr.<name>(same args) → the pgraft function (SECURITY INVOKER: the privilege check is the target's). */
function aliasSql(f: SqlFunction): string {
  const cols = resultColumns(f);
  const call = `${qualifiedName(f)}(${f.args.map((_, i) => `$${i + 1}`).join(", ")})`;
  const returns = isSetReturning(f) ? `TABLE(${cols.map((c) => `${c.name} ${c.type}`).join(", ")})` : (f.returns as string);
  const body = isSetReturning(f) ? `SELECT * FROM ${call}` : `SELECT ${call}`;
  return `CREATE OR REPLACE FUNCTION ${signature(f, "bdr")}
RETURNS ${returns}
LANGUAGE sql VOLATILE SET search_path = ${SEARCH_PATH}
AS $fn$ ${body} $fn$;
GRANT EXECUTE ON FUNCTION ${argTypes(f, "bdr")} TO PUBLIC;`;
}

/** The call text sent to the endpoint, built with format() so every argument is a quoted literal or NULL. */
function callExpr(f: SqlFunction): string {
  const head = isSetReturning(f) ? `SELECT * FROM ${f.name}` : `SELECT ${f.name}`;
  if (f.args.length === 0) return lit(`${head}()`);
  const placeholders = f.args.map(() => "%L").join(", ");
  const values = f.args.map((a, i) => (a.type === "text" ? `$${i + 1}` : `$${i + 1}::text`)).join(", ");
  return `format(${lit(`${head}(${placeholders})`)}, ${values})`;
}

function functionSql(f: SqlFunction): string {
  const cols = resultColumns(f);
  const defs = cols.map((c, i) => `c${i + 1} ${c.type}`).join(", ");
  const header = `CREATE OR REPLACE FUNCTION ${signature(f)}`;
  const common = `LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ${SEARCH_PATH}`;
  if (isSetReturning(f)) {
    return `${header}
RETURNS TABLE(${cols.map((c) => `${c.name} ${c.type}`).join(", ")})
${common}
AS $fn$
DECLARE
  q text := ${callExpr(f)};
BEGIN
  PERFORM pgraft._send(q);
  RETURN QUERY SELECT * FROM dblink_get_result(${lit(CONNECTION_NAME)}) AS t(${defs});
  PERFORM pgraft._finish();
END
$fn$;`;
  }
  if (f.warns) {
    // The endpoint's second column is a warning for the caller (dblink drops the endpoint's notices).
    return `${header}
RETURNS ${f.returns as string}
${common}
AS $fn$
DECLARE
  r ${f.returns as string};
  w text;
  q text := ${callExpr(f)};
BEGIN
  PERFORM pgraft._send(q);
  SELECT t.c1, t.c2 INTO r, w FROM dblink_get_result(${lit(CONNECTION_NAME)}) AS t(c1 ${f.returns as string}, c2 text);
  PERFORM pgraft._finish();
  IF w IS NOT NULL THEN
    RAISE WARNING '%', w;
  END IF;
  RETURN r;
END
$fn$;`;
  }
  return `${header}
RETURNS ${f.returns as string}
${common}
AS $fn$
DECLARE
  r ${f.returns as string};
  q text := ${callExpr(f)};
BEGIN
  PERFORM pgraft._send(q);
  SELECT t.c1 INTO r FROM dblink_get_result(${lit(CONNECTION_NAME)}) AS t(${defs});
  PERFORM pgraft._finish();
  RETURN r;
END
$fn$;`;
}

/** Schema, roles, tables and internal helpers: everything but the per-node server settings. */
function baseSql(): string {
  return `CREATE SCHEMA IF NOT EXISTS pgraft;
COMMENT ON SCHEMA pgraft IS 'pgraft: the SQL shim of the pgraft sidecar';

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgraft_monitor') THEN
    CREATE ROLE pgraft_monitor NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgraft_admin') THEN
    CREATE ROLE pgraft_admin NOLOGIN;
  END IF;
END
$roles$;
GRANT pgraft_monitor TO pgraft_admin;
GRANT USAGE ON SCHEMA pgraft TO pgraft_monitor;

CREATE TABLE IF NOT EXISTS pgraft.shim_version (
  version text NOT NULL,
  installed_at timestamptz NOT NULL DEFAULT now()
);
-- pgraft_save_config(): the saved overrides, written by this node's sidecar on every node.
CREATE TABLE IF NOT EXISTS pgraft.saved_config (
  name text PRIMARY KEY,
  value text NOT NULL,
  saved_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON pgraft.saved_config TO pgraft_monitor;

-- Open the session's connection to the sidecar. dblink_connect() blocks in
-- libpq and cannot be interrupted, so statement_timeout cannot stop it: the
-- connection string is built here from the server's options and the user
-- mapping, with connect_timeout under statement_timeout (whole seconds, at
-- least 2: libpq's floor; a statement_timeout of 2 s or less may then fire
-- first, with the same 57014). A connection that cannot be made is one
-- short error naming the sidecar's address; one cut short by statement_timeout
-- is the usual 57014. Returns NULL once connected, else the error to raise
-- (sqlstate, message, detail, hint): _send raises it, so the error's context
-- is the three lines of the call, not dblink's internals.
CREATE OR REPLACE FUNCTION pgraft._connect() RETURNS text[]
LANGUAGE plpgsql VOLATILE SET search_path = ${SEARCH_PATH}
AS $fn$
DECLARE
  opt text;
  k text;
  v text;
  conn text := '';
  host text := '?';
  port text := '?';
  server_timeout int;
  st_ms bigint;
  timeout_s int;
  det text;
  msg text;
BEGIN
  FOR opt IN
    SELECT unnest(s.srvoptions) FROM pg_catalog.pg_foreign_server s WHERE s.srvname = ${lit(SERVER_NAME)}
    UNION ALL
    SELECT unnest((SELECT m.umoptions FROM pg_catalog.pg_user_mappings m
      WHERE m.srvname = ${lit(SERVER_NAME)} AND m.usename IN (current_user, 'public')
      ORDER BY m.usename = 'public' LIMIT 1))
  LOOP
    k := split_part(opt, '=', 1);
    v := substr(opt, length(k) + 2);
    IF k = 'host' THEN host := v; ELSIF k = 'port' THEN port := v; END IF;
    IF k = 'connect_timeout' THEN
      server_timeout := nullif(v, '')::int;
    ELSE
      conn := conn || k || '=''' || replace(replace(v, '\\', '\\\\'), '''', '\\''') || ''' ';
    END IF;
  END LOOP;
  SELECT setting::bigint INTO st_ms FROM pg_catalog.pg_settings WHERE name = 'statement_timeout';
  timeout_s := server_timeout;
  -- Whole seconds strictly under statement_timeout where libpq allows (3s gives 2), so the
  -- connect gives up first and says why.
  IF st_ms > 0 AND (timeout_s IS NULL OR timeout_s <= 0 OR (st_ms - 1) / 1000 < timeout_s) THEN
    timeout_s := greatest(2, (st_ms - 1) / 1000);
  END IF;
  IF timeout_s > 0 THEN conn := conn || 'connect_timeout=' || timeout_s; END IF;
  BEGIN
    PERFORM dblink_connect(${lit(CONNECTION_NAME)}, conn);
    RETURN NULL;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    det := coalesce(nullif(det, ''), msg);
    IF st_ms > 0 AND det LIKE '%timeout expired%' AND timeout_s IS DISTINCT FROM server_timeout THEN
      RETURN ARRAY['57014', 'canceling statement due to statement timeout',
        format('the pgraft sidecar at %s:%s did not accept a connection within statement_timeout (%s)', host, port, current_setting('statement_timeout')), NULL];
    END IF;
    RETURN ARRAY['08001', format('the pgraft sidecar at %s:%s is unreachable', host, port), det,
      'Check that this node''s pgraft sidecar is running and serves SQL at that address (its log, or pgraft status). Nothing was sent to it.'];
  END;
END
$fn$;

-- Send one call on the session's connection to the sidecar and wait for the
-- answer in short sleeps (interruptible). A connection left busy or broken by an
-- earlier, interrupted call is replaced.
CREATE OR REPLACE FUNCTION pgraft._send(q text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ${SEARCH_PATH} SET client_min_messages = warning
AS $fn$
DECLARE
  waited int := 0;
  err text[];
BEGIN
  IF coalesce(${lit(CONNECTION_NAME)} = ANY (dblink_get_connections()), false) AND dblink_is_busy(${lit(CONNECTION_NAME)}) = 1 THEN
    PERFORM dblink_disconnect(${lit(CONNECTION_NAME)});
  END IF;
  FOR attempt IN 1..2 LOOP
    IF NOT coalesce(${lit(CONNECTION_NAME)} = ANY (dblink_get_connections()), false) THEN
      err := pgraft._connect();
      IF err IS NOT NULL THEN
        IF err[4] IS NULL THEN
          RAISE EXCEPTION USING ERRCODE = err[1], MESSAGE = err[2], DETAIL = err[3];
        END IF;
        RAISE EXCEPTION USING ERRCODE = err[1], MESSAGE = err[2], DETAIL = err[3], HINT = err[4];
      END IF;
    END IF;
    EXIT WHEN dblink_send_query(${lit(CONNECTION_NAME)}, q) = 1;
    IF attempt = 2 THEN
      RAISE EXCEPTION 'pgraft: could not send the call to the sidecar: %', dblink_error_message(${lit(CONNECTION_NAME)})
        USING ERRCODE = '08006';
    END IF;
    -- A connection broken since the last call: replace it once.
    PERFORM dblink_disconnect(${lit(CONNECTION_NAME)});
  END LOOP;
  WHILE dblink_is_busy(${lit(CONNECTION_NAME)}) = 1 LOOP
    IF waited < 50 THEN
      PERFORM pg_sleep(0.001);
    ELSE
      PERFORM pg_sleep(0.01);
    END IF;
    waited := waited + 1;
  END LOOP;
END
$fn$;

-- Consume the end of the call's results so the connection is free for the next.
CREATE OR REPLACE FUNCTION pgraft._finish() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = ${SEARCH_PATH}
AS $fn$
BEGIN
  PERFORM 1 FROM dblink_get_result(${lit(CONNECTION_NAME)}, false) AS t(x text);
END
$fn$;

REVOKE ALL ON FUNCTION pgraft._connect() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgraft._send(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgraft._finish() FROM PUBLIC;
`;
}

/**
 * PostgreSQL cannot change a function's result columns in place (CREATE OR
 * REPLACE refuses): for each set-returning function, drop the installed one
 * when its column names differ from the catalogue's, with the pgraft views and
 * the bdr alias over it; the body then creates them again. A user's own view
 * over it makes the DROP fail (and the install with it) rather than vanish.
 */
function replacedResultsSql(): string {
  const blocks: string[] = [];
  for (const f of ALL_FUNCTIONS) {
    if (!isSetReturning(f)) continue;
    const names = [...f.args.map((a) => a.name), ...resultColumns(f).map((c) => c.name)];
    const drops = [
      ...VIEWS.filter((v) => v.fn === f.name).map((v) => `DROP VIEW IF EXISTS pgraft.${v.name}, bdr.${v.name};`),
      ...(f.bdrAlias ? [`DROP FUNCTION IF EXISTS ${argTypes(f, "bdr")};`] : []),
      `DROP FUNCTION ${argTypes(f)};`,
    ];
    blocks.push(`IF EXISTS (SELECT FROM pg_catalog.pg_proc WHERE oid = pg_catalog.to_regprocedure(${lit(argTypes(f))})
      AND proargnames IS DISTINCT FROM ARRAY[${names.map(lit).join(", ")}]::text[]) THEN
    ${drops.join("\n    ")}
  END IF;`);
  }
  return `DO $replaced$
BEGIN
  ${blocks.join("\n  ")}
END
$replaced$;`;
}

/** The whole shim except the dblink extension and the server settings (shared by the installer and the extension script). */
export function shimBodySql(): string {
  const parts = [baseSql(), replacedResultsSql(), "CREATE SCHEMA IF NOT EXISTS bdr;\nCOMMENT ON SCHEMA bdr IS 'pgraft: the bdr.* names of EDB Postgres Distributed''s node management, calling the pgraft functions';\nGRANT USAGE ON SCHEMA bdr TO PUBLIC;"];
  for (const f of ALL_FUNCTIONS) {
    parts.push(functionSql(f));
    parts.push(`COMMENT ON FUNCTION ${argTypes(f)} IS ${lit(f.comment)};`);
    parts.push(`REVOKE ALL ON FUNCTION ${argTypes(f)} FROM PUBLIC;`);
    parts.push(`GRANT EXECUTE ON FUNCTION ${argTypes(f)} TO ${f.privilege === "admin" ? "pgraft_admin" : "pgraft_monitor"};`);
    if (f.bdrAlias) parts.push(aliasSql(f));
  }
  for (const v of VIEWS) {
    const f = FUNCTION_BY_NAME.get(v.fn);
    if (!f) throw new Error(`view ${v.name}: no function ${v.fn} in the catalogue`);
    for (const schema of ["pgraft", "bdr"]) {
      parts.push(`CREATE OR REPLACE VIEW ${schema}.${v.name} AS SELECT * FROM ${qualifiedName(f)}();
COMMENT ON VIEW ${schema}.${v.name} IS ${lit(v.comment)};
GRANT SELECT ON ${schema}.${v.name} TO pgraft_monitor;`);
    }
  }
  return parts.join("\n\n") + "\n";
}

/** bdr.conflict_history over the data plane's table (created with it, after the shim). */
export const CONFLICT_VIEWS_SQL = `CREATE OR REPLACE VIEW bdr.conflict_history AS SELECT * FROM pgraft.conflict_history;
COMMENT ON VIEW bdr.conflict_history IS 'One row per replication conflict this node resolved (pgraft.conflict_history)';
GRANT SELECT ON pgraft.conflict_history, bdr.conflict_history TO pgraft_monitor;`;

/** The \`pgraft--<version>.sql\` extension script. */
export function extensionScript(): string {
  return `-- pgraft ${SHIM_VERSION}: the SQL shim of the pgraft sidecar (generated; see src/shim/install-sql.ts)
\\echo Use "CREATE EXTENSION pgraft" to load this file. \\quit

${shimBodySql()}
INSERT INTO pgraft.shim_version(version) VALUES (${lit(SHIM_VERSION)});

-- dblink (installed by CASCADE) must not be callable by everyone: the session's
-- connection to the sidecar is named, and a role that could call dblink directly
-- could reuse it and bypass the pgraft_admin / pgraft_monitor split.
DO $revoke$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_proc p ON p.oid = d.objid
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE e.extname = 'dblink' AND d.deptype = 'e' AND d.classid = 'pg_catalog.pg_proc'::regclass
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END
$revoke$;

-- As the pgraft SQL reference says, CREATE EXTENSION runs pgraft_init(): at once when this
-- node's sidecar has already configured the connection to itself, otherwise the
-- sidecar does so when it connects.
DO $init$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_foreign_server WHERE srvname = ${lit(SERVER_NAME)}) THEN
    PERFORM public.pgraft_init();
  END IF;
END
$init$;
`;
}

/** The `pgraft--<from>--<SHIM_VERSION>.sql` update script. */
export function extensionUpdateScript(from: string): string {
  return `-- pgraft ${from} -> ${SHIM_VERSION}: the SQL shim of the pgraft sidecar (generated; see src/shim/install-sql.ts)
\\echo Use "ALTER EXTENSION pgraft UPDATE" to load this file. \\quit

${shimBodySql()}
DELETE FROM pgraft.shim_version;
INSERT INTO pgraft.shim_version(version) VALUES (${lit(SHIM_VERSION)});
`;
}

/** The `pgraft.control` file. */
export function extensionControl(): string {
  return `# pgraft: the SQL shim of the pgraft sidecar
comment = 'pgraft: Raft cluster functions answered by the pgraft sidecar'
default_version = '${SHIM_VERSION}'
requires = 'dblink'
relocatable = false
superuser = true
`;
}
