// Installs (or upgrades in place) the shim in the local PostgreSQL: the dblink
// extension, schema pgraft, roles, the pgraft_* functions, and the foreign
// server + user mapping that point dblink at this node's sidecar. One
// transaction under an advisory lock, so concurrent sidecars or restarts never
// see half a shim; every statement is idempotent.
import type { Client } from "pg";
import { ensureLocalObjects } from "../slots/local-objects.js";
import { CONFLICT_VIEWS_SQL, SERVER_NAME, SHIM_VERSION, shimBodySql } from "./install-sql.js";

export interface EndpointTarget {
  host: string;
  port: number;
  user: string;
  password: string;
}

export class ShimInstallError extends Error {}

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export interface InstallResult {
  previousVersion: string | undefined;
  version: string;
  /** The shim's functions belong to a CREATE EXTENSION pgraft (only the server settings were written). */
  viaExtension: boolean;
  /**
   * dblink was already installed in this schema (not pgraft's): roles allowed to
   * call dblink there can reuse a session's shim connection. Revoke EXECUTE on it
   * from PUBLIC, or drop and let the sidecar reinstall it in schema pgraft.
   */
  dblinkElsewhere?: string;
}

export async function installShim(client: Client, target: EndpointTarget): Promise<InstallResult> {
  const who = await client.query<{ user: string; rolsuper: boolean }>("SELECT current_user AS user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user");
  const role = who.rows[0];
  if (!role?.rolsuper) {
    throw new ShimInstallError(
      `the sidecar's PostgreSQL role ${role?.user ?? "(unknown)"} is not a superuser: installing the shim needs one (CREATE EXTENSION dblink, SECURITY DEFINER functions and a user mapping); connect as a superuser in --postgres-dsn`,
    );
  }
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgraft_shim'))");
    const ext = await client.query<{ extversion: string }>("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgraft'");
    const viaExtension = ext.rows.length > 0;
    let previousVersion: string | undefined;
    let dblinkElsewhere: string | undefined;
    if (viaExtension) {
      previousVersion = ext.rows[0]!.extversion;
    } else {
      // dblink goes into schema pgraft with EXECUTE revoked from PUBLIC: the session's
      // connection to the sidecar is named, so anyone who could call dblink directly
      // could reuse it and bypass the pgraft_admin / pgraft_monitor split.
      await client.query("CREATE SCHEMA IF NOT EXISTS pgraft");
      const dblink = await client.query<{ schema: string }>(
        "SELECT n.nspname AS schema FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'",
      );
      if (dblink.rows.length === 0) await client.query("CREATE EXTENSION dblink SCHEMA pgraft");
      else if (dblink.rows[0]!.schema !== "pgraft") dblinkElsewhere = dblink.rows[0]!.schema;
      const hasTable = await client.query("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = 'pgraft' AND tablename = 'shim_version'");
      if (hasTable.rows.length) {
        const v = await client.query<{ version: string }>("SELECT version FROM pgraft.shim_version ORDER BY installed_at DESC LIMIT 1");
        previousVersion = v.rows[0]?.version;
      }
      // CREATE OR REPLACE throughout: an older shim is upgraded in place.
      await client.query(shimBodySql());
      await client.query("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pgraft FROM PUBLIC");
      await client.query("DELETE FROM pgraft.shim_version");
      await client.query(`INSERT INTO pgraft.shim_version(version) VALUES (${lit(SHIM_VERSION)})`);
    }
    await configureServer(client, target);
    await client.query("COMMIT");
    // The data plane's tables (conflict history) exist from the start, so the views over them do too.
    await ensureLocalObjects(client);
    await client.query(CONFLICT_VIEWS_SQL);
    return { previousVersion, version: viaExtension ? previousVersion! : SHIM_VERSION, viaExtension, ...(dblinkElsewhere ? { dblinkElsewhere } : {}) };
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** The foreign server (where the endpoint is) and the owner's user mapping (how to log in). */
async function configureServer(client: Client, t: EndpointTarget): Promise<void> {
  const opts: Record<string, string> = {
    host: t.host,
    port: String(t.port),
    dbname: "pgraft",
    connect_timeout: "5",
    sslmode: "disable",
    application_name: "pgraft_shim",
  };
  const exists = await client.query("SELECT 1 FROM pg_catalog.pg_foreign_server WHERE srvname = $1", [SERVER_NAME]);
  if (exists.rows.length === 0) {
    const list = Object.entries(opts).map(([k, v]) => `${k} ${lit(v)}`).join(", ");
    await client.query(`CREATE SERVER ${SERVER_NAME} FOREIGN DATA WRAPPER dblink_fdw OPTIONS (${list})`);
  } else {
    const cur = await client.query<{ srvoptions: string[] | null }>("SELECT srvoptions FROM pg_catalog.pg_foreign_server WHERE srvname = $1", [SERVER_NAME]);
    const have = new Set((cur.rows[0]?.srvoptions ?? []).map((o) => o.split("=")[0]!));
    const list = Object.entries(opts).map(([k, v]) => `${have.has(k) ? "SET " : "ADD "}${k} ${lit(v)}`).join(", ");
    await client.query(`ALTER SERVER ${SERVER_NAME} OPTIONS (${list})`);
  }
  const um = await client.query(
    "SELECT 1 FROM pg_catalog.pg_user_mapping m JOIN pg_catalog.pg_foreign_server s ON s.oid = m.umserver WHERE s.srvname = $1 AND m.umuser = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)",
    [SERVER_NAME],
  );
  if (um.rows.length === 0) {
    await client.query(`CREATE USER MAPPING FOR CURRENT_USER SERVER ${SERVER_NAME} OPTIONS (user ${lit(t.user)}, password ${lit(t.password)})`);
  } else {
    await client.query(`ALTER USER MAPPING FOR CURRENT_USER SERVER ${SERVER_NAME} OPTIONS (SET user ${lit(t.user)}, SET password ${lit(t.password)})`);
  }
}

/** Mirror the replicated saved overrides into pgraft.saved_config (pgraft_save_config). */
export async function writeSavedConfig(client: Client, rows: readonly { name: string; value: string }[]): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query("DELETE FROM pgraft.saved_config");
    for (const r of rows) await client.query("INSERT INTO pgraft.saved_config(name, value) VALUES ($1, $2)", [r.name, r.value]);
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}
