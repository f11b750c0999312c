// The slow path: one remote transaction applied change by change, each row
// looked up (and locked) first so conflicts can be detected, resolved
// (conflicts.ts) and recorded. Used for the transactions whose fast path
// failed; conflicts are rare, so this is the exception.
import type pg from "pg";
import { recordParams, remoteWins, RECORD_CONFLICT_SQL, type ConflictRecord, type ConflictType, type LocalVersion, type Resolution } from "./conflicts.js";
import { BEGIN, COMMIT, qualified, ROLLBACK, type ApplySession, type NodeRef } from "./session.js";
import {
  deleteByCtidSql,
  insertSql,
  locateParams,
  lookupSql,
  presentMask,
  presentValues,
  truncateSql,
  updateByCtidSql,
  type TableMeta,
} from "./statements.js";
import type { Change, RemoteTransaction, SlotsLogger, Value } from "./types.js";

interface LocalRow {
  ctid: string;
  ts_us: string | null;
  ts: string | null;
  roident: string | null;
  tuple: string;
}

export interface SlowPathContext {
  session: ApplySession;
  localNode: NodeRef;
  peer: NodeRef;
  log: SlotsLogger;
}

/** Apply `tx` in one local transaction, committed synchronously; returns the number of conflicts met. */
export async function applyOneByOne(ctx: SlowPathContext, tx: RemoteTransaction): Promise<number> {
  const s = ctx.session;
  await s.ensureMetas(tx);
  await s.query(BEGIN);
  let conflicts = 0;
  try {
    await s.query(s.setup(tx, true));
    for (const ch of tx.changes) conflicts += await applyChange(ctx, ch, tx);
    const r = await s.query(COMMIT);
    if (r.command !== "COMMIT") throw new Error(`COMMIT answered ${r.command}`);
  } catch (e) {
    await s.query(ROLLBACK).catch(() => undefined);
    throw e;
  }
  return conflicts;
}

/** The row that identifies the target: the old row/key when the upstream sent one, else the new row (its key did not change). */
export function locateRow(meta: TableMeta, old: Value[] | null, row: Value[]): Value[] {
  if (old) return old;
  if (!meta.key) {
    throw new Error(
      `${meta.qualified} has no primary key here, and the upstream sent no old row to find it by: give it a primary key, or REPLICA IDENTITY FULL on every node`,
    );
  }
  return row;
}

async function applyChange(ctx: SlowPathContext, ch: Change, tx: RemoteTransaction): Promise<number> {
  const s = ctx.session;
  if (ch.kind === "truncate") {
    await s.query(truncateSql(ch.rels.map((r) => qualified(r)), ch.restartIdentity, ch.cascade));
    return 0;
  }
  const meta = s.meta(ch.rel);
  const found = ch.kind === "insert" ? ch.new : ch.kind === "update" ? locateRow(meta, ch.old, ch.new) : ch.old;
  // Tables without a primary key have no insert conflicts (nothing identifies "the same row").
  const local = ch.kind === "insert" && !meta.key ? undefined : await lookup(s, meta, found);
  const conflict = async (type: ConflictType, resolution: Resolution): Promise<number> => {
    await record(ctx, type, resolution, meta, ch.kind === "delete" ? null : ch.new, found, local, tx);
    return 1;
  };
  const remote = { commitTimeUs: tx.commitTime, nodeId: ctx.peer.id };
  if (ch.kind === "insert") {
    if (!local) {
      await insert(s, meta, ch.new);
      return 0;
    }
    const win = remoteWins(await versionOf(s, local), remote);
    if (win) await updateByCtid(s, meta, ch.new, local.ctid);
    return conflict("insert_exists", win ? "apply_remote" : "keep_local");
  }
  if (!local) {
    if (ch.kind === "delete") return conflict("delete_missing", "skip");
    await insert(s, meta, ch.new);
    return conflict("update_missing", "insert_remote");
  }
  // Last written by this same peer, by this transaction, or before commit timestamps were kept: no conflict.
  const same = local.roident === null || Number(local.roident) === s.roident;
  const win = same || remoteWins(await versionOf(s, local), remote);
  if (win) {
    if (ch.kind === "update") await updateByCtid(s, meta, ch.new, local.ctid);
    else await s.prepared(meta, "dc", () => deleteByCtidSql(meta), [local.ctid]);
  }
  if (same) return 0;
  return conflict(ch.kind === "update" ? "update_differing" : "delete_differing", win ? "apply_remote" : "keep_local");
}

async function lookup(s: ApplySession, meta: TableMeta, row: Value[]): Promise<LocalRow | undefined> {
  const r = (await s.prepared(meta, "l", () => lookupSql(meta), locateParams(meta, row))) as pg.QueryResult<LocalRow>;
  return r.rows[0];
}

function insert(s: ApplySession, meta: TableMeta, row: Value[]): Promise<unknown> {
  const mask = presentMask(row);
  return s.prepared(meta, `i${mask}`, () => insertSql(meta, mask), presentValues(row));
}

function updateByCtid(s: ApplySession, meta: TableMeta, row: Value[], ctid: string): Promise<unknown> {
  const mask = presentMask(row);
  return s.prepared(meta, `uc${mask}`, () => updateByCtidSql(meta, mask), [...presentValues(row), ctid]);
}

/** Who wrote the local row, and when. */
async function versionOf(s: ApplySession, local: LocalRow): Promise<LocalVersion> {
  const commitTimeUs = local.ts_us === null ? null : BigInt(local.ts_us);
  const writer = local.roident === null ? undefined : await s.writer(Number(local.roident));
  return { commitTimeUs, nodeId: writer?.id ?? null };
}

/** A row in pgraft.conflict_history, in the same local transaction as the change. */
async function record(
  ctx: SlowPathContext,
  type: ConflictType,
  resolution: Resolution,
  meta: TableMeta,
  remote: Value[] | null,
  found: Value[],
  local: LocalRow | undefined,
  tx: RemoteTransaction,
): Promise<void> {
  const writer = local?.roident == null ? undefined : await ctx.session.writer(Number(local.roident));
  const rec: ConflictRecord = {
    localNode: ctx.localNode.name,
    originNode: ctx.peer.name,
    table: meta.qualified,
    type,
    resolution,
    key: meta.key ? Object.fromEntries(meta.key.map((i) => [meta.rel.columns[i]!.name, found[i] ?? null])) : null,
    localTuple: local?.tuple ?? null,
    remoteTuple: remote ? Object.fromEntries(meta.rel.columns.flatMap((c, i) => (remote[i] === undefined ? [] : [[c.name, remote[i]]]))) : null,
    localCommitTs: local?.ts ?? null,
    remoteCommitTimeUs: tx.commitTime,
    localOrigin: local ? (writer?.name ?? (local.roident === null ? null : `origin ${local.roident}`)) : null,
    remoteCommitLsn: tx.commitLsn,
  };
  ctx.log.info("replication conflict", { peer: ctx.peer.name, table: rec.table, type, resolution, key: rec.key });
  await ctx.session.query({ name: "pgraft_conflict", text: RECORD_CONFLICT_SQL, values: recordParams(rec) });
}
