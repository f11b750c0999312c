// Conflict detection and resolution for changes from a peer.
//
// The local row's version is its commit timestamp and the origin (node) that
// wrote it (pg_xact_commit_timestamp_origin(xmin); the applier commits every
// remote transaction with the upstream's commit timestamp, so these are the
// *origin* commit timestamps on every node). Types and default resolutions
// are PGD's (origin conflict detection):
// - insert_exists (the key is already here)         → the newer row wins
// - update_origin_change (the row was last written by another node than the
//   one sending this update)                         → the newer change wins;
//   logged when the local row stays, and when the update wins only with
//   log_origin_change on (most updates of a multi-writer group are this)
// - update_missing (no such row)                    → insert it
// - delete_recently_updated (the local row, another node's, is newer than
//   the delete)                                      → skip; a delete newer
//   than another node's row is no conflict
// - delete_missing                                  → skip
// - insert_exists / update_exists on a unique index other than the key (the
//   new row's values are another local row's)       → the newer change wins:
//   the other row is deleted, or the change is skipped (slow path only)
// "Newer": the later commit timestamp; on a tie the higher node id. A row
// written before track_commit_timestamp was on (no timestamp), or earlier in
// this very transaction, is no conflict: the change applies.
// The fast path decides all but the unique-index and tie cases inside its
// statements (resolving-statements.ts); the slow path (slow-path.ts) decides
// the same way, change by change. Every logged conflict is a row in
// pgraft.conflict_history, in the same local transaction as the change, so
// the history never disagrees with the data.
//
// Deletes leave no tombstone: a delete racing an older update elsewhere can
// resurrect the row there through update_missing → insert. Tombstones would
// be the fix, if that matters.
import type pg from "pg";
import { CONFLICT_TABLE } from "./local-objects.js";
import { formatLsn, microsToTimestamptz } from "./lsn.js";

export type ConflictType = "insert_exists" | "update_exists" | "update_origin_change" | "update_missing" | "delete_recently_updated" | "delete_missing";
/** apply_remote: the incoming change was applied; keep_local: the local row stays; insert_remote: the update became an insert; skip: nothing to do. */
export type Resolution = "apply_remote" | "keep_local" | "insert_remote" | "skip";

/** The version of a local row: who wrote it and when (null: unknown). */
export interface LocalVersion {
  /** Commit time, µs since the Unix epoch; null when not known. */
  commitTimeUs: bigint | null;
  /** The node id of the writer (this node for local writes, a peer for applied ones); null when unknown (an origin of no current member). */
  nodeId: number | null;
}

/** The version of the incoming change. */
export interface RemoteVersion {
  commitTimeUs: bigint;
  nodeId: number;
}

/** Last update wins: true when the incoming change is newer than the local row (ties: the higher node id). */
export function remoteWins(local: LocalVersion, remote: RemoteVersion): boolean {
  if (local.commitTimeUs === null) return true;
  if (remote.commitTimeUs !== local.commitTimeUs) return remote.commitTimeUs > local.commitTimeUs;
  // An unknown writer loses ties: its node is gone from the group.
  return local.nodeId === null || remote.nodeId > local.nodeId;
}

export interface ConflictRecord {
  localNode: string;
  originNode: string;
  table: string;
  type: ConflictType;
  resolution: Resolution;
  key: Record<string, string | null> | null;
  localTuple: string | null;
  remoteTuple: Record<string, string | null> | null;
  /** The local row's commit timestamp as PostgreSQL printed it. */
  localCommitTs: string | null;
  remoteCommitTimeUs: bigint;
  /** Name of the node that wrote the local row (this node, a peer, or `origin <id>` when unknown). */
  localOrigin: string | null;
  remoteCommitLsn: bigint;
}

export const RECORD_CONFLICT_SQL = `INSERT INTO ${CONFLICT_TABLE}
  (local_node, origin_node, table_name, conflict_type, resolution, key, local_tuple, remote_tuple, local_commit_ts, remote_commit_ts, local_origin, remote_commit_lsn)
  VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9::timestamptz, $10::timestamptz, $11, $12::pg_lsn)`;

export function recordParams(c: ConflictRecord): (string | null)[] {
  return [
    c.localNode,
    c.originNode,
    c.table,
    c.type,
    c.resolution,
    c.key ? JSON.stringify(c.key) : null,
    c.localTuple,
    c.remoteTuple ? JSON.stringify(c.remoteTuple) : null,
    c.localCommitTs,
    microsToTimestamptz(c.remoteCommitTimeUs),
    c.localOrigin,
    formatLsn(c.remoteCommitLsn),
  ];
}

/** One row of pgraft.conflict_history as a test or an operator tool reads it. */
export interface ConflictRow {
  id: string;
  local_node: string;
  origin_node: string;
  table_name: string;
  conflict_type: ConflictType;
  resolution: Resolution;
  key: string | null;
  local_tuple: string | null;
  remote_tuple: string | null;
  local_commit_ts: string | null;
  remote_commit_ts: string;
  local_origin: string | null;
}

/** The conflict history, oldest first (values as text). */
export async function readConflicts(client: pg.Client): Promise<ConflictRow[]> {
  return (
    await client.query<ConflictRow>(
      `SELECT id::text, local_node, origin_node, table_name, conflict_type, resolution, key::text, local_tuple::text, remote_tuple::text,
              local_commit_ts::text, remote_commit_ts::text, local_origin FROM ${CONFLICT_TABLE} ORDER BY id`,
    )
  ).rows;
}
