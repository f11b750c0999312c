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
import { sqlState } from "./connection.js";

interface LocalRow {
  ctid: string;
  ts_us: string | null;
  ts: string | null;
  roident: string | null;
  tuple: string;
}

export interface SlowPathContext {
  session: ApplySession;
  /** Log update_origin_change conflicts the incoming change won. */
  logOriginChange: boolean;
  /** Each conflict met, logged or not, as `type/resolution` (for the applier's counts). */
  onConflict?(kind: string): void;
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
  const exists = ch.kind === "insert" ? "insert_exists" : "update_exists";
  /** Write the new row (insert, or update of `self`), minding the other unique indexes. */
  const write = (self: string | undefined): Promise<Outcome> =>
    withUniqueIndexes(ctx, meta, tx, exists, ch.kind === "delete" ? [] : ch.new, self, () =>
      self === undefined ? insert(s, meta, (ch as { new: Value[] }).new) : updateByCtid(s, meta, (ch as { new: Value[] }).new, self),
    );
  if (ch.kind === "insert") {
    if (!local) return (await write(undefined)).conflicts;
    if (!remoteWins(await versionOf(s, local), remote)) return conflict("insert_exists", "keep_local");
    const o = await write(local.ctid);
    return o.conflicts + (await conflict("insert_exists", o.applied ? "apply_remote" : "keep_local"));
  }
  if (!local) {
    if (ch.kind === "delete") return conflict("delete_missing", "skip");
    const o = await write(undefined);
    return o.conflicts + (await conflict("update_missing", o.applied ? "insert_remote" : "keep_local"));
  }
  // Last written by this same peer, by this transaction, or before commit timestamps were kept: no conflict.
  const same = local.roident === null || Number(local.roident) === s.roident;
  const win = same || remoteWins(await versionOf(s, local), remote);
  let applied = win;
  let conflicts = 0;
  if (win) {
    if (ch.kind === "update") ({ applied, conflicts } = await write(local.ctid));
    else await s.prepared(meta, "dc", () => deleteByCtidSql(meta), [local.ctid]);
  }
  if (same) return conflicts;
  // As the fast path decides (resolving-statements.ts): a delete newer than another node's row is no conflict;
  // an update that wins over it is logged only when asked (PGD's default).
  if (ch.kind === "delete") return win ? conflicts : conflicts + (await conflict("delete_recently_updated", "skip"));
  if (applied && !ctx.logOriginChange) {
    ctx.onConflict?.("update_origin_change/apply_remote");
    return conflicts + 1;
  }
  return conflicts + (await conflict("update_origin_change", applied ? "apply_remote" : "keep_local"));
}

/** A write's fate: applied (perhaps after deleting rows it collided with), or skipped; and the conflicts it met. */
interface Outcome {
  applied: boolean;
  conflicts: number;
}

/** How many other rows one change may push aside (one per unique index, at most). */
const MAX_UNIQUE_COLLISIONS = 32;

/**
 * Run `write` (an insert, or an update of the row at `self`). When the new
 * row collides with another local row on a unique index other than the
 * primary key, last update wins against that row: a newer change deletes it
 * and tries again (the next index may collide too), an older one is skipped.
 * Each collision is a conflict (`type`) keyed by the index's columns. Every
 * node decides alike from the same commit times, so they converge. A
 * collision pgraft cannot attribute to a row (an index on an expression or
 * with a WHERE clause) still stops the stream with the error.
 */
async function withUniqueIndexes(
  ctx: SlowPathContext,
  meta: TableMeta,
  tx: RemoteTransaction,
  type: "insert_exists" | "update_exists",
  row: Value[],
  self: string | undefined,
  write: () => Promise<unknown>,
): Promise<Outcome> {
  const s = ctx.session;
  if (!meta.otherUnique) {
    await write();
    return { applied: true, conflicts: 0 };
  }
  for (let conflicts = 0; ; conflicts++) {
    await s.query({ text: "SAVEPOINT pgraft_unique" });
    try {
      await write();
      await s.query({ text: "RELEASE SAVEPOINT pgraft_unique" });
      return { applied: true, conflicts };
    } catch (e) {
      if (sqlState(e) !== "23505" || conflicts >= MAX_UNIQUE_COLLISIONS) throw e;
      await s.query({ text: "ROLLBACK TO SAVEPOINT pgraft_unique" });
      const cols = await uniqueColumns(s, meta, (e as { constraint?: string }).constraint);
      const values = cols?.map((i) => row[i]);
      if (!cols || !values || values.some((v) => v === undefined || v === null)) throw e;
      const r = (await s.prepared(meta, `lu${cols.join(",")}`, () => lookupSql(meta, cols), values)) as pg.QueryResult<LocalRow>;
      const other = r.rows[0];
      if (!other || other.ctid === self) throw e;
      const win = remoteWins(await versionOf(s, other), { commitTimeUs: tx.commitTime, nodeId: ctx.peer.id });
      await record(ctx, type, win ? "apply_remote" : "keep_local", meta, row, row, other, tx, cols);
      if (!win) return { applied: false, conflicts: conflicts + 1 };
      await s.prepared(meta, "dc", () => deleteByCtidSql(meta), [other.ctid]);
    }
  }
}

/** The columns (positions in the upstream's description) of the plain unique index `name` on the table, or undefined. */
async function uniqueColumns(s: ApplySession, meta: TableMeta, name: string | undefined): Promise<number[] | undefined> {
  if (!name) return undefined;
  const r = await s.query<{ cols: string | null }>({
    name: "pgraft_unique_cols",
    text: `SELECT (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)::text AS cols
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = to_regclass($1) AND c.relname = $2 AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL`,
    values: [meta.qualified, name],
  });
  const names = r.rows[0]?.cols ? (JSON.parse(r.rows[0].cols) as string[]) : undefined;
  const cols = names?.map((n) => meta.rel.columns.findIndex((c) => c.name === n));
  return cols && cols.length && cols.every((i) => i >= 0) ? cols : undefined;
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
  /** The columns that identify the row in the history (default: the primary key). */
  keyCols: number[] | null = meta.key,
): Promise<void> {
  const writer = local?.roident == null ? undefined : await ctx.session.writer(Number(local.roident));
  const rec: ConflictRecord = {
    localNode: ctx.localNode.name,
    originNode: ctx.peer.name,
    table: meta.qualified,
    type,
    resolution,
    key: keyCols ? Object.fromEntries(keyCols.map((i) => [meta.rel.columns[i]!.name, found[i] ?? null])) : null,
    localTuple: local?.tuple ?? null,
    remoteTuple: remote ? Object.fromEntries(meta.rel.columns.flatMap((c, i) => (remote[i] === undefined ? [] : [[c.name, remote[i]]]))) : null,
    localCommitTs: local?.ts ?? null,
    remoteCommitTimeUs: tx.commitTime,
    localOrigin: local ? (writer?.name ?? (local.roident === null ? null : `origin ${local.roident}`)) : null,
    remoteCommitLsn: tx.commitLsn,
  };
  ctx.log.info("replication conflict", { peer: ctx.peer.name, table: rec.table, type, resolution, key: rec.key });
  ctx.onConflict?.(`${type}/${resolution}`);
  await ctx.session.query({ name: "pgraft_conflict", text: RECORD_CONFLICT_SQL, values: recordParams(rec) });
}
