// The fast path's statements for tables with a primary key: each applies a
// run of one table's inserts, updates or deletes AND decides, row by row and
// inside the one statement, every conflict those rows meet — last update
// wins on the origin commit timestamps — and writes the conflicts to
// pgraft.conflict_history in the same statement. A change that meets a row
// another node wrote last is the normal case in a multi-writer group, so it
// must not abort the batch (the slow path, slow-path.ts, stays for real
// errors: a constraint no resolution satisfies, a unique index other than
// the key, a tie of commit timestamps, a table without a primary key).
//
// Conflict types and default resolutions are PGD's (origin conflict
// detection):
// - insert_exists: the key is here already → the newer row wins (update if
//   newer, else keep the local row);
// - update_origin_change: the row was last written by another node than the
//   one sending the update → the newer change wins; logged when the local
//   row stays (keep_local), and when the update wins only if
//   `log_origin_change` is on (PGD does not log it by default: in a
//   multi-writer group it is most updates);
// - update_missing: no such row → insert it (insert_remote);
// - delete_recently_updated: the local row is newer than the delete → skip;
//   a delete newer than another node's row applies without a conflict;
// - delete_missing: no such row → skip.
// A tie (equal commit timestamps, another writer) raises GUARD_SQLSTATE: the
// slow path breaks it by node id, which needs the writer's member id.
//
// Each statement is one WITH query. `cur` holds the rows the run targets:
// those the incoming change already loses against as the snapshot shows
// them, unlocked, and the rest locked (FOR UPDATE waits for a local
// transaction holding one, then reads its newest version); `d` decides, the data-modifying CTEs write by key — a row
// a local transaction changed since the statement's snapshot is followed to
// its newest version, the one locked and decided on, as READ COMMITTED's
// UPDATE does — and the history takes the local row as the lock found it.
// The final check (every decided write happened) raises GUARD_SQLSTATE when
// something else moved under the statement (a key inserted locally since its
// snapshot): the slow path redoes the transaction.
//
// Params: the run's values (text[] per column, element i = row i), then the
// four context params (CONTEXT_PARAMS), then a one-statement transaction's
// setup (statements.ts soloSetup).
import { CONFLICT_TABLE } from "./local-objects.js";
import { guardSql, quoteIdent, soloSetup, type Sql, type TableMeta } from "./statements.js";

/**
 * What every resolving statement takes after its rows: the transaction's
 * commit time and commit LSN (for the decision and the history), whether to
 * log update_origin_change rows the incoming change won, and the writers
 * (JSON: roident → member name, for the history's local_origin).
 */
export const CONTEXT_PARAMS = 4;

export const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export interface Context {
  ts: string;
  lsn: string;
  logOriginChange: string;
  writers: string;
}

export function contextRefs(first: number): Context {
  return { ts: `$${first}::timestamptz`, lsn: `$${first + 1}::pg_lsn`, logOriginChange: `$${first + 2}::boolean`, writers: `$${first + 3}::jsonb` };
}

/** Names the context params' types whether or not a statement uses each (PREPARE needs every parameter's type). */
export const typed = (c: Context): string => `ctx AS (SELECT ${c.ts}, ${c.lsn}, ${c.logOriginChange}, ${c.writers})`;

/** Who is applying what: names for the history rows. */
export interface ResolveNames {
  localNode: string;
  peer: string;
}

/** The run's rows `u(c1…cn, ord)`: params $1…$n are text[], element i of each being row i's value. */
function rowsCte(n: number): string {
  const aliases = Array.from({ length: n }, (_, j) => `c${j + 1}`);
  return `u AS (SELECT * FROM unnest(${aliases.map((_, j) => `$${j + 1}::text[]`).join(", ")}) WITH ORDINALITY AS u(${[...aliases, "ord"].join(", ")}))`;
}

/** Where a table column's value is in a run row: its alias number (1-based), or 0 when the run does not carry it. */
type Position = (col: number) => number;

/** Column `col`'s value in run row `alias` (a CTE with u's columns), typed, or as the text sent. */
function valueRef(meta: TableMeta, pos: Position, col: number, alias = "u", typed = true): string {
  const j = pos(col);
  if (j < 1) throw new Error(`${meta.qualified}: column ${meta.rel.columns[col]!.name} is not among the run's values`);
  return typed ? `${alias}.c${j}::${meta.types[col]!}` : `${alias}.c${j}`;
}

export const column = (meta: TableMeta, i: number): string => quoteIdent(meta.rel.columns[i]!.name);

/** `l`'s key columns equal run row `alias`'s. */
function keyMatch(meta: TableMeta, l: string, pos: Position, alias = "u"): string {
  return meta.key!.map((i) => `${l}.${column(meta, i)} = ${valueRef(meta, pos, i, alias)}`).join(" AND ");
}

/**
 * The local rows the run (rows of `from`) targets, `cur(ord, o, tuple)`,
 * with o the writer's (timestamp, roident) and, for a row that is a conflict
 * (`peerRoident` set: written last by another node than the peer; else
 * every row), the row as JSON for the history.
 *
 * A row whose committed version, as the statement's snapshot shows it, was
 * written by another node than the peer (or here) after the incoming change
 * committed is decided at once (`lost`: the incoming change loses, keep_local):
 * a local transaction holding it can only make it newer still, so waiting
 * for its lock changes nothing. In a multi-writer group that is most changes
 * to hot rows while the peer's stream lags, and the wait for a row that
 * every local client also updates is what held the applier to one
 * transaction per round of that row's lock queue.
 *
 * Every other row is locked (`locked`): FOR UPDATE waits for a local
 * transaction holding it and then reads its newest version, so the decision
 * is made on what the write will replace.
 */
function lockedRows(meta: TableMeta, keyPos: Position, from: string, peerRoident: number | undefined, c: Context): string {
  const origin = "pg_xact_commit_timestamp_origin(l.xmin)";
  const conflict = peerRoident === undefined ? "true" : `COALESCE((${origin}).roident, ${peerRoident}) <> ${peerRoident}`;
  const newer = `(${origin}).timestamp > ${c.ts}${peerRoident === undefined ? "" : ` AND (${origin}).roident <> ${peerRoident}`}`;
  const join = `FROM ${from} JOIN ${meta.qualified} l ON ${keyMatch(meta, "l", keyPos, from)}`;
  return (
    `lost AS MATERIALIZED (SELECT ${from}.ord, ${origin} AS o, to_jsonb(l) AS tuple ${join} WHERE ${newer}), ` +
    `locked AS MATERIALIZED (SELECT ${from}.ord, ${origin} AS o, CASE WHEN ${conflict} THEN to_jsonb(l) END AS tuple ` +
    `${join} WHERE NOT EXISTS (SELECT 1 FROM lost WHERE lost.ord = ${from}.ord) FOR UPDATE OF l), ` +
    `cur AS MATERIALIZED (SELECT * FROM lost UNION ALL SELECT * FROM locked)`
  );
}

/**
 * The decision per locked row: `same` (no conflict: written by this peer,
 * by this transaction, or before commit timestamps were kept) and `win`
 * (the incoming change is to be applied). `sameOrigin` false: every
 * existing row is a conflict (an insert's).
 */
function decided(c: Context, peerRoident: number, sameOrigin: boolean): string {
  const same = sameOrigin ? `((cur.o).roident IS NULL OR (cur.o).roident = ${peerRoident})` : "false";
  const win =
    `CASE WHEN ${same} OR (cur.o).timestamp IS NULL THEN true ` +
    `WHEN (cur.o).timestamp <> ${c.ts} THEN (cur.o).timestamp < ${c.ts} ` +
    // A tie: the slow path breaks it by node id.
    `ELSE (pgraft.apply_guard(false) IS NULL) END`;
  return `d AS MATERIALIZED (SELECT cur.ord, cur.tuple, (cur.o).timestamp AS ts, (cur.o).roident AS ro, ${same} AS same, ${win} AS win FROM cur)`;
}

/** A JSON object of `cols`' names and text values (`ref(col)`: the value as text). */
export function jsonObject(meta: TableMeta, cols: number[], ref: (col: number) => string): string {
  return `jsonb_object(ARRAY[${cols.map((i) => lit(meta.rel.columns[i]!.name)).join(", ")}]::text[], ARRAY[${cols.map(ref).join(", ")}]::text[])`;
}

/**
 * The history rows of `c(type, resolution, tuple, local_ts, ro, logged)`
 * (`from`: c and whatever `key` and `remote`, the JSON of the change's key
 * and row, refer to).
 */
export function historyCte(meta: TableMeta, names: ResolveNames, c: Context, key: string, remote: string, from: string): string {
  return (
    `hist AS (INSERT INTO ${CONFLICT_TABLE} (local_node, origin_node, table_name, conflict_type, resolution, key, local_tuple, remote_tuple, local_commit_ts, remote_commit_ts, local_origin, remote_commit_lsn) ` +
    `SELECT ${lit(names.localNode)}, ${lit(names.peer)}, ${lit(meta.qualified)}, c.type, c.resolution, ${key}, ` +
    `c.tuple, ${remote}, c.local_ts, ${c.ts}, ` +
    `CASE WHEN c.ro IS NULL THEN NULL ELSE COALESCE(${c.writers} ->> c.ro::text, 'origin ' || c.ro) END, ${c.lsn} ` +
    `${from} WHERE c.logged RETURNING 1)`
  );
}

/**
 * The history rows of a run's `c(type, resolution, ord, tuple, local_ts, ro, logged)`:
 * key and remote row from the run's values, the local row as the lock found
 * it.
 */
function history(meta: TableMeta, names: ResolveNames, c: Context, keyPos: Position, remoteCols: number[] | null, pos: Position): string {
  const text = (p: Position) => (i: number) => valueRef(meta, p, i, "u", false);
  const remote = remoteCols ? jsonObject(meta, remoteCols, text(pos)) : "NULL::jsonb";
  return historyCte(meta, names, c, jsonObject(meta, meta.key!, text(keyPos)), remote, "FROM c JOIN u ON u.ord = c.ord");
}

/** A conflict row of `c` from the decided rows (`d` joined). */
const decidedConflict = (type: string, resolution: string, where: string, logged: string): string =>
  `SELECT ${lit(type)}::text AS type, ${resolution}::text AS resolution, d.ord, d.tuple, d.ts AS local_ts, d.ro, ${logged} AS logged FROM d WHERE ${where}`;
/** A conflict row of `c` for run rows that found no local row. */
const missingConflict = (type: string, resolution: string): string =>
  `SELECT ${lit(type)}, ${lit(resolution)}, u.ord, NULL::jsonb, NULL::timestamptz, NULL::oid, true FROM u WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.ord = u.ord)`;

/**
 * The final SELECT: the check, the conflicts met (`type/resolution=n,…`, NULL
 * for none), the table (the applier keeps a table that still meets conflicts
 * resolving), and a lone transaction's setup.
 */
export function result(meta: TableMeta, check: string, setupAt: number, solo: boolean): string {
  return (
    `SELECT ${guardSql(check)} AS ok, ` +
    `(SELECT string_agg(g.type || '/' || g.resolution || '=' || g.n, ',') FROM (SELECT type, resolution, count(*) AS n FROM c GROUP BY 1, 2) g) AS pgraft_conflicts, ` +
    `${lit(meta.qualified)} AS pgraft_table` +
    (solo ? `, ${soloSetup(setupAt)}` : "")
  );
}

const count = (cte: string, where = ""): string => `(SELECT count(*) FROM ${cte}${where ? ` WHERE ${where}` : ""})`;

export function columnsOf(meta: TableMeta, mask: string): number[] {
  return meta.rel.columns.flatMap((_, i) => (mask[i] === "1" ? [i] : []));
}

export function requireKey(meta: TableMeta, what: string): void {
  if (!meta.key) throw new Error(`${meta.qualified}: ${what} need a primary key`);
}

/** INSERTs of a run (params: one text[] per column of `mask`, then the context). */
export function resolvingInsertSql(meta: TableMeta, mask: string, peerRoident: number, names: ResolveNames, solo = false): Sql {
  requireKey(meta, "resolving inserts");
  const cols = columnsOf(meta, mask);
  const pos: Position = (col) => cols.indexOf(col) + 1;
  const ref = (col: number): string => valueRef(meta, pos, col);
  const c = contextRefs(cols.length + 1);
  const keyList = meta.key!.map((i) => column(meta, i)).join(", ");
  const text =
    `WITH ${rowsCte(cols.length)}, ${typed(c)}, ` +
    `ins AS (INSERT INTO ${meta.qualified} (${cols.map((i) => column(meta, i)).join(", ")}) SELECT ${cols.map(ref).join(", ")} FROM u ON CONFLICT (${keyList}) DO NOTHING RETURNING ${keyList}), ` +
    // The rows whose key is here already.
    `rest AS MATERIALIZED (SELECT u.* FROM u WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ${keyMatch(meta, "ins", pos)})), ` +
    `${lockedRows(meta, pos, "rest", undefined, c)}, ` +
    `${decided(c, peerRoident, false)}, ` +
    `upd AS (UPDATE ${meta.qualified} l SET ${cols.map((i) => `${column(meta, i)} = ${ref(i)}`).join(", ")} FROM d JOIN u ON u.ord = d.ord WHERE ${keyMatch(meta, "l", pos)} AND d.win RETURNING 1), ` +
    `c AS (${decidedConflict("insert_exists", "CASE WHEN d.win THEN 'apply_remote' ELSE 'keep_local' END", "true", "true")}), ` +
    `${history(meta, names, c, pos, cols, pos)} ` +
    result(meta, `${count("upd")} = ${count("d", "d.win")} AND ${count("cur")} = ${count("rest")}`, cols.length + 1 + CONTEXT_PARAMS, solo);
  return { text };
}

/** UPDATEs of a run by key, the key unchanged (params: one text[] per column of `mask`, one per key column, then the context). */
export function resolvingUpdateSql(meta: TableMeta, mask: string, peerRoident: number, names: ResolveNames, solo = false): Sql {
  requireKey(meta, "resolving updates");
  const setCols = columnsOf(meta, mask);
  if (!setCols.length) throw new Error(`${meta.qualified}: a resolving update needs a column to set`);
  const key = meta.key!;
  // The new values first, then the key's values as columns of their own.
  const setPos: Position = (col) => setCols.indexOf(col) + 1;
  const keyPos: Position = (col) => (key.includes(col) ? setCols.length + key.indexOf(col) + 1 : 0);
  const setRef = (col: number): string => valueRef(meta, setPos, col);
  const n = setCols.length + key.length;
  const c = contextRefs(n + 1);
  const text =
    `WITH ${rowsCte(n)}, ${typed(c)}, ` +
    `${lockedRows(meta, keyPos, "u", peerRoident, c)}, ` +
    `${decided(c, peerRoident, true)}, ` +
    `upd AS (UPDATE ${meta.qualified} l SET ${setCols.map((i) => `${column(meta, i)} = ${setRef(i)}`).join(", ")} FROM d JOIN u ON u.ord = d.ord WHERE ${keyMatch(meta, "l", keyPos)} AND d.win RETURNING 1), ` +
    `ins AS (INSERT INTO ${meta.qualified} (${setCols.map((i) => column(meta, i)).join(", ")}) SELECT ${setCols.map(setRef).join(", ")} FROM u WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.ord = u.ord) RETURNING 1), ` +
    `c AS (${decidedConflict("update_origin_change", "CASE WHEN d.win THEN 'apply_remote' ELSE 'keep_local' END", "NOT d.same", `(NOT d.win OR ${c.logOriginChange})`)} UNION ALL ${missingConflict("update_missing", "insert_remote")}), ` +
    `${history(meta, names, c, keyPos, setCols, setPos)} ` +
    result(meta, `${count("upd")} = ${count("d", "d.win")} AND ${count("ins")} = ${count("c", "c.type = 'update_missing'")}`, n + 1 + CONTEXT_PARAMS, solo);
  return { text };
}

/** DELETEs of a run by key (params: one text[] per key column, then the context). */
export function resolvingDeleteSql(meta: TableMeta, peerRoident: number, names: ResolveNames, solo = false): Sql {
  requireKey(meta, "resolving deletes");
  const key = meta.key!;
  const keyPos: Position = (col) => key.indexOf(col) + 1;
  const c = contextRefs(key.length + 1);
  const text =
    `WITH ${rowsCte(key.length)}, ${typed(c)}, ` +
    `${lockedRows(meta, keyPos, "u", peerRoident, c)}, ` +
    `${decided(c, peerRoident, true)}, ` +
    `del AS (DELETE FROM ${meta.qualified} l USING d JOIN u ON u.ord = d.ord WHERE ${keyMatch(meta, "l", keyPos)} AND d.win RETURNING 1), ` +
    `c AS (${decidedConflict("delete_recently_updated", "'skip'", "NOT d.win", "true")} UNION ALL ${missingConflict("delete_missing", "skip")}), ` +
    `${history(meta, names, c, keyPos, null, keyPos)} ` +
    result(meta, `${count("del")} = ${count("d", "d.win")}`, key.length + 1 + CONTEXT_PARAMS, solo);
  return { text };
}
