// The few objects the data plane keeps in each node's database, in schema
// pgraft: the conflict history, the tables it set to REPLICA IDENTITY FULL,
// and the guard function of the fast apply path.
// Created idempotently at start; they are never replicated (the receiver
// ignores tables of schema pgraft, and rows written while applying carry a
// replication origin anyway).
import type pg from "pg";
import { GUARD_SQLSTATE } from "./statements.js";

export const CONFLICT_TABLE = "pgraft.conflict_history";
export const REPLICA_IDENTITY_TABLE = "pgraft.replica_identity_set";

/**
 * `table_name` rather than the brief's `table`: TABLE is a reserved word, and
 * a column every query would have to quote is a trap for operators.
 */
const DDL = `
CREATE SCHEMA IF NOT EXISTS pgraft;
CREATE TABLE IF NOT EXISTS pgraft.conflict_history (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  local_node       text NOT NULL,
  origin_node      text NOT NULL,
  table_name       text NOT NULL,
  conflict_type    text NOT NULL,
  resolution       text NOT NULL,
  key              jsonb,
  local_tuple      jsonb,
  remote_tuple     jsonb,
  local_commit_ts  timestamptz,
  remote_commit_ts timestamptz NOT NULL,
  local_origin     text,
  remote_commit_lsn pg_lsn
);
COMMENT ON TABLE pgraft.conflict_history IS
  'One row per replication conflict met while applying a peer''s change (pgraft data plane): insert_exists, update_exists, update_origin_change, update_missing, delete_recently_updated, delete_missing';
CREATE TABLE IF NOT EXISTS pgraft.replica_identity_set (
  relid  oid PRIMARY KEY,
  set_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgraft.replica_identity_set IS
  'Tables the pgraft data plane set to REPLICA IDENTITY FULL because they had no primary key: set back to DEFAULT once they have one';
CREATE OR REPLACE FUNCTION pgraft.apply_guard(ok boolean) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION 'pgraft: this change needs conflict resolution' USING ERRCODE = '${GUARD_SQLSTATE}';
  END IF;
END
$fn$;
COMMENT ON FUNCTION pgraft.apply_guard(boolean) IS
  'pgraft data plane: aborts a pipelined apply transaction whose change needs conflict resolution (it is then redone one change at a time)';
`;

/**
 * Create them if missing. Two sidecars (or a restart racing a stop) may run this
 * at once: an advisory lock makes the CREATE ... IF NOT EXISTS statements not
 * collide on the catalog's unique indexes.
 */
export async function ensureLocalObjects(client: pg.Client): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('pgraft.slots.local_objects'))");
    await client.query(DDL);
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}
