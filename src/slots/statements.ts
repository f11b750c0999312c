// The SQL the applier runs, one builder per statement shape. Each shape is
// prepared once per applier connection (a named prepared statement) and then
// only executed, so the stream never waits on planning: the fast path
// EXECUTEs it with literal arguments inside a batch (batch-text.ts), the slow
// path binds parameters.
//
// Values are text, whose types PostgreSQL infers from the target columns (the
// text input function reads exactly what the upstream's output function
// wrote: nothing is rounded).
//
// Three families:
// - fast path, optimistic (no conflict expected): a plain INSERT (a
//   duplicate key raises unique_violation), and UPDATE/DELETE that touch the
//   row only when it was last written by the same peer (or by this very
//   transaction, or before commit timestamps were tracked) and raise
//   (pgraft.apply_guard) unless they touched every row. Any error aborts the
//   local transaction; the applier sends it again with the resolving family
//   (or, for a real error, redoes it on the slow path). This is what makes it
//   safe to pipeline whole transactions, COMMIT included.
// - fast path, resolving (resolving-statements.ts): for a table with a
//   primary key where conflicts were just met, each run decides its
//   conflicts in line; 3-5 times the server's work of the optimistic family
//   per statement, so it is used only where conflicts happen.
// - slow path: a locking lookup of the local row with its commit timestamp and
//   origin, then the action conflicts.ts decided, by ctid.
import type { RelationDesc, Value } from "./types.js";

export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** What the applier knows about a table: the upstream's description plus how to find a row here. */
export interface TableMeta {
  rel: RelationDesc;
  /** `"schema"."table"` */
  qualified: string;
  /**
   * Positions (in rel.columns) of the local primary key's columns, or null
   * when the table has none: rows are then found by all their old values
   * (the upstream sends them with REPLICA IDENTITY FULL).
   */
  key: number[] | null;
  /**
   * The local type of each column without its modifier (format_type(type, NULL)),
   * for the casts of INSERT … SELECT: the assignment to the column then applies
   * the modifier as an INSERT … VALUES would (a too-long varchar raises rather
   * than being cut by an explicit cast).
   */
  types: string[];
  /** The table has a unique index besides its primary key (a change may then collide with another row: slow-path.ts). */
  otherUnique: boolean;
}

export interface Sql {
  text: string;
}

/** SQLSTATE raised by pgraft.apply_guard: "this change needs conflict resolution". */
export const GUARD_SQLSTATE = "PR001";

/** The origin check of the fast path: true when `alias`'s row needs no conflict resolution against `peerRoident`. */
function sameOrigin(alias: string, peerRoident: number): string {
  // NULL origin: written by this transaction (not yet committed) or before track_commit_timestamp covered it.
  return `COALESCE((pg_xact_commit_timestamp_origin(${alias}.xmin)).roident, ${peerRoident}) = ${peerRoident}`;
}

/** Column i of `alias` equals text parameter $p (full-row matching; the text form compares any type, NULL included). */
function matchColumn(alias: string, col: string, p: number): string {
  const c = `${alias}.${quoteIdent(col)}`;
  return `(${c} IS NULL AND $${p}::text IS NULL OR ${c} IS NOT NULL AND format('%s', ${c}) = $${p}::text)`;
}

/**
 * The WHERE condition that finds the row (key columns, or every column; or
 * the columns `by`, compared with =), parameters from $first on; and the
 * next free parameter.
 */
function locate(meta: TableMeta, alias: string, first: number, by?: number[]): { cond: string; next: number } {
  const parts: string[] = [];
  let p = first;
  const equal = by ?? meta.key;
  if (equal) {
    for (const i of equal) parts.push(`${alias}.${quoteIdent(meta.rel.columns[i]!.name)} = $${p++}`);
  } else {
    for (const c of meta.rel.columns) parts.push(matchColumn(alias, c.name, p++));
  }
  return { cond: parts.length ? parts.join(" AND ") : "true", next: p };
}

/** The parameter values `locate()` expects, from the old row (or the new one when the key did not change). */
export function locateParams(meta: TableMeta, row: Value[]): (string | null)[] {
  const idx = meta.key ?? meta.rel.columns.map((_, i) => i);
  return idx.map((i) => {
    const v = row[i];
    if (v === undefined) throw new Error(`${meta.qualified}: the upstream did not send column ${meta.rel.columns[i]!.name}, needed to find the row`);
    return v;
  });
}

/** Which columns a row carries (undefined = unchanged TOAST, not sent): the shape part of a statement's cache key. */
export function presentMask(row: Value[]): string {
  return row.map((v) => (v === undefined ? "0" : "1")).join("");
}

export function presentValues(row: Value[]): (string | null)[] {
  return row.filter((v): v is string | null => v !== undefined);
}

function setList(meta: TableMeta, mask: string, first: number): { set: string; next: number } {
  const parts: string[] = [];
  let p = first;
  meta.rel.columns.forEach((c, i) => {
    if (mask[i] === "1") parts.push(`${quoteIdent(c.name)} = $${p++}`);
  });
  return { set: parts.join(", "), next: p };
}

/**
 * Every apply transaction holds this advisory lock shared until it commits. A
 * join takes it exclusively while it exports its snapshot and reads the
 * origins' progress on this node (src/join/snapshot-copy.ts), so no applied
 * transaction commits in between: the progress read matches the snapshot.
 */
export const APPLY_LOCK_KEY = 0x70677266; // "pgrf"
const APPLY_LOCK_SQL = `pg_advisory_xact_lock_shared(${APPLY_LOCK_KEY})`;

/**
 * Raise GUARD_SQLSTATE unless `cond` holds. The plpgsql guard is only called
 * when the condition fails: a function call per statement costs the server
 * more than the statement's own check.
 */
export function guardSql(cond: string): string {
  return `CASE WHEN ${cond} THEN NULL ELSE pgraft.apply_guard(false) END`;
}

/** The chain check: the origin's progress is where the transaction sent before this one ended ($p). */
function chainCheck(p: number): string {
  return guardSql(`COALESCE(pg_replication_origin_session_progress(false), '0/0') = $${p}::pg_lsn`);
}

/**
 * The select-list items of a transaction's setup: the origin's LSN and time
 * and the apply lock (params: end LSN, commit time, from $p), then either
 * the chain check (`chained`; param: previous end LSN) or the commit's
 * durability (param: synchronous_commit). The applier's batches set up every
 * transaction chained and commit asynchronously, the session's default (see
 * applier.ts); the slow path runs alone and commits synchronously.
 */
export function setupItems(p: number, chained: boolean): string {
  const base = `pg_replication_origin_xact_setup($${p}::pg_lsn, $${p + 1}::timestamptz), ${APPLY_LOCK_SQL}`;
  return chained ? `${base}, ${chainCheck(p + 2)}` : `${base}, set_config('synchronous_commit', $${p + 2}, true)`;
}

/** The setup as its own statement (a transaction of several statements). */
export function setupSql(chained: boolean): Sql {
  return { text: `SELECT ${setupItems(1, chained)}` };
}

/** The setup folded into a transaction's only statement (it then needs no statement of its own). */
export function soloSetup(p: number): string {
  return setupItems(p, true);
}

/** `WITH w AS (<dml> RETURNING 1) SELECT <check>[, <solo setup>] FROM w`, the setup's params after the statement's own. */
function withCheck(dml: string, check: string, nextParam: number, solo: boolean): Sql {
  return { text: `WITH w AS (${dml} RETURNING 1) SELECT ${check}${solo ? `, ${soloSetup(nextParam)}` : ""} FROM w` };
}

/**
 * INSERT of the columns in `mask` (params: their values in column order).
 * `solo`: also the transaction's setup (soloSetup), evaluated once as the
 * source row's subquery; the statement then returns no rows, which a batch
 * of thousands of them notices on the client.
 */
export function insertSql(meta: TableMeta, mask: string, solo = false): Sql {
  const cols = meta.rel.columns.flatMap((c, i) => (mask[i] === "1" ? [{ name: quoteIdent(c.name), type: meta.types[i]! }] : []));
  if (!cols.length) {
    const dml = `INSERT INTO ${meta.qualified} DEFAULT VALUES`;
    return solo ? withCheck(dml, "count(*)", 1, true) : { text: dml };
  }
  const into = `INSERT INTO ${meta.qualified} (${cols.map((c) => c.name).join(", ")})`;
  if (!solo) return { text: `${into} VALUES (${cols.map((_, i) => `$${i + 1}`).join(", ")})` };
  return { text: `${into} SELECT ${cols.map((c, i) => `$${i + 1}::${c.type}`).join(", ")} FROM (SELECT ${soloSetup(cols.length + 1)}) s` };
}

/**
 * Many rows at once (params: one text[] per column of `mask`, element i
 * being row i's value): unnest zips the arrays into rows and each value goes
 * through its column type's text input, as a single-row INSERT's would.
 */
export function insertManySql(meta: TableMeta, mask: string, solo = false): Sql {
  const cols = meta.rel.columns.flatMap((c, i) => (mask[i] === "1" ? [{ name: quoteIdent(c.name), type: meta.types[i]! }] : []));
  const aliases = cols.map((_, i) => `c${i + 1}`);
  const dml =
    `INSERT INTO ${meta.qualified} (${cols.map((c) => c.name).join(", ")}) ` +
    `SELECT ${cols.map((c, i) => `u.${aliases[i]}::${c.type}`).join(", ")} FROM unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}) AS u(${aliases.join(", ")})`;
  return solo ? withCheck(dml, "count(*)", cols.length + 1, true) : { text: dml };
}

/** `column = u.alias::type` for each of `cols`, and the unnest of their text[] params from $first on. */
function unnested(meta: TableMeta, cols: number[], alias: string, first: number): { refs: string[]; params: string[] } {
  return {
    refs: cols.map((i, j) => `u.${alias}${j + 1}::${meta.types[i]!}`),
    params: cols.map((_, j) => `$${first + j}::text[]`),
  };
}

/**
 * Many updates of one table at once, each row found by its primary key
 * (params: one text[] per column of `mask`, then one per key column, then
 * the number of rows). The applier only batches rows whose keys differ (an
 * UPDATE … FROM changes a row once however many source rows match it).
 * Raises GUARD_SQLSTATE unless every row was updated (one may be another
 * node's now, or gone: the slow path sorts it out).
 */
export function updateManySql(meta: TableMeta, mask: string, peerRoident: number, solo = false): Sql {
  const key = meta.key;
  if (!key) throw new Error(`${meta.qualified}: batched updates need a primary key`);
  const setCols = meta.rel.columns.flatMap((_, i) => (mask[i] === "1" ? [i] : []));
  const set = unnested(meta, setCols, "c", 1);
  const k = unnested(meta, key, "k", 1 + setCols.length);
  const n = 1 + setCols.length + key.length;
  const aliases = [...setCols.map((_, j) => `c${j + 1}`), ...key.map((_, j) => `k${j + 1}`)];
  const dml =
    `UPDATE ${meta.qualified} l SET ${setCols.map((i, j) => `${quoteIdent(meta.rel.columns[i]!.name)} = ${set.refs[j]}`).join(", ")} ` +
    `FROM unnest(${[...set.params, ...k.params].join(", ")}) AS u(${aliases.join(", ")}) ` +
    `WHERE ${key.map((i, j) => `l.${quoteIdent(meta.rel.columns[i]!.name)} = ${k.refs[j]}`).join(" AND ")} AND ${sameOrigin("l", peerRoident)}`;
  return withCheck(dml, guardSql(`count(*) = $${n}::int`), n + 1, solo);
}

/** Many deletes of one table at once by primary key (params: one text[] per key column, then the number of rows); as updateManySql. */
export function deleteManySql(meta: TableMeta, peerRoident: number, solo = false): Sql {
  const key = meta.key;
  if (!key) throw new Error(`${meta.qualified}: batched deletes need a primary key`);
  const k = unnested(meta, key, "k", 1);
  const n = 1 + key.length;
  const dml =
    `DELETE FROM ${meta.qualified} l USING unnest(${k.params.join(", ")}) AS u(${key.map((_, j) => `k${j + 1}`).join(", ")}) ` +
    `WHERE ${key.map((i, j) => `l.${quoteIdent(meta.rel.columns[i]!.name)} = ${k.refs[j]}`).join(" AND ")} AND ${sameOrigin("l", peerRoident)}`;
  return withCheck(dml, guardSql(`count(*) = $${n}::int`), n + 1, solo);
}

const ONE_ROW = guardSql("count(*) = 1");

/** Fast-path UPDATE (params: new values of `mask`'s columns, then locateParams). Raises GUARD_SQLSTATE unless exactly one row was updated. */
export function fastUpdateSql(meta: TableMeta, mask: string, peerRoident: number, solo = false): Sql {
  const { set, next } = setList(meta, mask, 1);
  if (!set) return fastTouchSql(meta, peerRoident, solo);
  const at = meta.key ? locate(meta, "l", next) : locate(meta, "s", next);
  const where = meta.key
    ? `${at.cond} AND ${sameOrigin("l", peerRoident)}`
    : `l.ctid = (SELECT s.ctid FROM ${meta.qualified} s WHERE ${at.cond} AND ${sameOrigin("s", peerRoident)} LIMIT 1)`;
  return withCheck(`UPDATE ${meta.qualified} l SET ${set} WHERE ${where}`, ONE_ROW, at.next, solo);
}

/** An update that changes no column we were sent (all unchanged TOAST): still checks the row is there and ours to change. */
function fastTouchSql(meta: TableMeta, peerRoident: number, solo: boolean): Sql {
  const { cond, next } = locate(meta, "l", 1);
  return {
    text: `SELECT ${ONE_ROW}${solo ? `, ${soloSetup(next)}` : ""} FROM (SELECT 1 FROM ${meta.qualified} l WHERE ${cond} AND ${sameOrigin("l", peerRoident)} LIMIT 1 FOR UPDATE) s`,
  };
}

/** Fast-path DELETE (params: locateParams). Raises GUARD_SQLSTATE unless exactly one row was deleted. */
export function fastDeleteSql(meta: TableMeta, peerRoident: number, solo = false): Sql {
  const at = meta.key ? locate(meta, "l", 1) : locate(meta, "s", 1);
  const where = meta.key
    ? `${at.cond} AND ${sameOrigin("l", peerRoident)}`
    : `l.ctid = (SELECT s.ctid FROM ${meta.qualified} s WHERE ${at.cond} AND ${sameOrigin("s", peerRoident)} LIMIT 1)`;
  return withCheck(`DELETE FROM ${meta.qualified} l WHERE ${where}`, ONE_ROW, at.next, solo);
}

/**
 * The local row's version, locked (params: locateParams, or the values of
 * the columns `by`): ctid, commit time (µs and text), origin, and the row as
 * JSON.
 */
export function lookupSql(meta: TableMeta, by?: number[]): Sql {
  const { cond } = locate(meta, "l", 1, by);
  return {
    text:
      `SELECT s.ctid::text AS ctid, (extract(epoch FROM (s.o).timestamp) * 1000000)::bigint::text AS ts_us, (s.o).timestamp::text AS ts, ` +
      `(s.o).roident::text AS roident, s.tuple::text AS tuple ` +
      `FROM (SELECT l.ctid, pg_xact_commit_timestamp_origin(l.xmin) AS o, to_jsonb(l) AS tuple FROM ${meta.qualified} l WHERE ${cond} LIMIT 1 FOR UPDATE) s`,
  };
}

/** UPDATE of one locked row by ctid (params: values of `mask`'s columns, then the ctid). */
export function updateByCtidSql(meta: TableMeta, mask: string): Sql {
  const { set, next } = setList(meta, mask, 1);
  if (!set) return { text: `SELECT $1::tid` };
  return { text: `UPDATE ${meta.qualified} SET ${set} WHERE ctid = $${next}::tid` };
}

export function deleteByCtidSql(meta: TableMeta): Sql {
  return { text: `DELETE FROM ${meta.qualified} WHERE ctid = $1::tid` };
}

export function truncateSql(tables: string[], restartIdentity: boolean, cascade: boolean): Sql {
  return { text: `TRUNCATE ${tables.join(", ")}${restartIdentity ? " RESTART IDENTITY" : ""}${cascade ? " CASCADE" : ""}` };
}
