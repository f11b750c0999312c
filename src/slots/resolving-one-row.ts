// The resolving statements for a run of ONE row (resolving-statements.ts has
// those for runs of many): the same decisions, conflict types and history
// rows, in a statement a third to a half the server's work. In a
// multi-writer group most runs are one row (a TPC-B transaction updates one
// account, one teller, one branch), and the many-row statement's executor
// set-up — the unnest of arrays, the hash joins of its CTEs on the row
// number, the locked/lost split — cost more than the row's own work.
//
// The decision is made by the UPDATE or DELETE itself: its WHERE keeps the
// row only when the incoming change wins against it (last update wins,
// GUARD_SQLSTATE on a tie). READ COMMITTED re-evaluates that condition on
// the newest version of a row a local transaction changed meanwhile (after
// waiting for it), so the decision is made on what the write replaces, and
// a row already newer in the statement's snapshot is passed over without
// waiting for its lock (a local transaction holding it can only make it
// newer still: the `lost` rows of the many-row statement).
//
// `old` reads the row as the statement's snapshot shows it, unlocked. When
// the write did not happen although that version would have lost to it, a
// local transaction changed the row since the snapshot: `moved` locks the
// row and reads its newest version (only then: it waits for the lock). `cur`
// is the version decided on, what the conflict is classified and logged
// with. The final check raises GUARD_SQLSTATE (the slow path redoes the
// transaction) when the write did not happen and `cur` does not beat the
// incoming change either: the row was deleted meanwhile, or changed by a
// local transaction whose commit time is older than the incoming one (clocks
// apart).
//
// Params: the values as text scalars, in the many-row statement's order,
// then the context (CONTEXT_PARAMS), then a lone transaction's setup.
import { quoteIdent, type Sql, type TableMeta } from "./statements.js";
import { column, columnsOf, contextRefs, historyCte, jsonObject, lit, requireKey, result, typed, CONTEXT_PARAMS, type Context, type ResolveNames } from "./resolving-statements.js";

/** Column `col`'s value: param `$p` (text), typed as the column or as text. */
const param = (meta: TableMeta, col: number, p: number, asText = false): string => (asText ? `$${p}::text` : `$${p}::text::${meta.types[col]!}`);

const ORIGIN = "pg_xact_commit_timestamp_origin(l.xmin)";

/**
 * True when the incoming change wins against `l`'s row: no conflict (written
 * by this peer, by this transaction, or before commit timestamps were kept;
 * only when `sameOrigin` counts — an insert's key found is always one), else
 * the later commit. A tie raises: the slow path breaks it by node id.
 */
function wins(c: Context, peerRoident: number, sameOrigin: boolean): string {
  const same = sameOrigin ? `COALESCE((${ORIGIN}).roident, ${peerRoident}) = ${peerRoident} OR ` : "";
  return (
    `CASE WHEN ${same}(${ORIGIN}).timestamp IS NULL THEN true ` +
    `WHEN (${ORIGIN}).timestamp <> ${c.ts} THEN (${ORIGIN}).timestamp < ${c.ts} ` +
    `ELSE (pgraft.apply_guard(false) IS NULL) END`
  );
}

/** The row by key as the snapshot shows it: `old(o, r)`, o the writer's (timestamp, roident), r the row. */
function oldRow(meta: TableMeta, where: string): string {
  return `old AS MATERIALIZED (SELECT ${ORIGIN} AS o, l AS r FROM ${meta.qualified} l WHERE ${where})`;
}

/**
 * `cte`'s version beats the incoming change (committed later, by another
 * writer than the peer unless `peerRoident` is undefined: an insert's key
 * found): a write that did not happen lost to it.
 */
const beats = (cte: string, c: Context, peerRoident: number | undefined): string =>
  `EXISTS (SELECT 1 FROM ${cte} WHERE ${peerRoident === undefined ? "" : `COALESCE((${cte}.o).roident, ${peerRoident}) <> ${peerRoident} AND `}(${cte}.o).timestamp > ${c.ts})`;

/**
 * `moved`: the row locked and read at its newest version, only when the
 * write (`written`) did not happen although `old` would have lost to it;
 * `cur`: that version, else `old`.
 */
function decidedOn(meta: TableMeta, where: string, written: string, c: Context, peerRoident: number | undefined): string {
  return (
    `moved AS MATERIALIZED (SELECT ${ORIGIN} AS o, l AS r FROM ${meta.qualified} l WHERE ${where} AND NOT ${written} AND NOT ${beats("old", c, peerRoident)} FOR UPDATE OF l), ` +
    `cur AS MATERIALIZED (SELECT * FROM moved UNION ALL SELECT * FROM old WHERE NOT EXISTS (SELECT 1 FROM moved))`
  );
}

/** A conflict row of `c` from `cur`: the local row as JSON only when it is logged. */
const curConflict = (type: string, resolution: string, logged: string, where: string): string =>
  `SELECT ${lit(type)}::text AS type, ${resolution}::text AS resolution, CASE WHEN ${logged} THEN to_jsonb(cur.r) END AS tuple, ` +
  `(cur.o).timestamp AS local_ts, (cur.o).roident AS ro, ${logged} AS logged FROM cur WHERE ${where}`;
/** A conflict row of `c` when the snapshot had no row. */
const missingConflict = (type: string, resolution: string): string =>
  `SELECT ${lit(type)}, ${lit(resolution)}, NULL::jsonb, NULL::timestamptz, NULL::oid, true WHERE NOT EXISTS (SELECT 1 FROM old)`;

const exists = (cte: string): string => `EXISTS (SELECT 1 FROM ${cte})`;

/** The key's match against params from $first on (in key order). */
function keyWhere(meta: TableMeta, first: number): string {
  return meta.key!.map((col, j) => `l.${column(meta, col)} = ${param(meta, col, first + j)}`).join(" AND ");
}

/** UPDATE of one row by key, the key unchanged (params: the values of `mask`'s columns, then the key's, then the context). */
export function resolvingUpdateOneSql(meta: TableMeta, mask: string, peerRoident: number, names: ResolveNames, solo = false): Sql {
  requireKey(meta, "resolving updates");
  const setCols = columnsOf(meta, mask);
  if (!setCols.length) throw new Error(`${meta.qualified}: a resolving update needs a column to set`);
  const key = meta.key!;
  const keyAt = setCols.length + 1;
  const n = setCols.length + key.length;
  const c = contextRefs(n + 1);
  const value = (col: number, asText = false): string => param(meta, col, setCols.indexOf(col) + 1, asText);
  const keyValue = (col: number): string => param(meta, col, keyAt + key.indexOf(col), true);
  const won = exists("upd");
  const text =
    `WITH ${typed(c)}, ${oldRow(meta, keyWhere(meta, keyAt))}, ` +
    `upd AS (UPDATE ${meta.qualified} l SET ${setCols.map((i) => `${column(meta, i)} = ${value(i)}`).join(", ")} WHERE ${keyWhere(meta, keyAt)} AND ${wins(c, peerRoident, true)} RETURNING 1), ` +
    `ins AS (INSERT INTO ${meta.qualified} (${setCols.map((i) => column(meta, i)).join(", ")}) SELECT ${setCols.map((i) => value(i)).join(", ")} WHERE NOT EXISTS (SELECT 1 FROM old) RETURNING 1), ` +
    `${decidedOn(meta, keyWhere(meta, keyAt), won, c, peerRoident)}, ` +
    `c AS MATERIALIZED (${curConflict("update_origin_change", `CASE WHEN ${won} THEN 'apply_remote' ELSE 'keep_local' END`, `(NOT ${won} OR ${c.logOriginChange})`, `COALESCE((cur.o).roident, ${peerRoident}) <> ${peerRoident}`)} ` +
    `UNION ALL ${missingConflict("update_missing", "insert_remote")}), ` +
    `${historyCte(meta, names, c, jsonObject(meta, key, keyValue), jsonObject(meta, setCols, (i) => value(i, true)), "FROM c")} ` +
    result(meta, `${won} OR ${exists("ins")} OR ${beats("cur", c, peerRoident)}`, n + 1 + CONTEXT_PARAMS, solo);
  return { text };
}

/** DELETE of one row by key (params: the key's values, then the context). */
export function resolvingDeleteOneSql(meta: TableMeta, peerRoident: number, names: ResolveNames, solo = false): Sql {
  requireKey(meta, "resolving deletes");
  const key = meta.key!;
  const c = contextRefs(key.length + 1);
  const keyValue = (col: number): string => param(meta, col, 1 + key.indexOf(col), true);
  const text =
    `WITH ${typed(c)}, ${oldRow(meta, keyWhere(meta, 1))}, ` +
    `del AS (DELETE FROM ${meta.qualified} l WHERE ${keyWhere(meta, 1)} AND ${wins(c, peerRoident, true)} RETURNING 1), ` +
    `${decidedOn(meta, keyWhere(meta, 1), exists("del"), c, peerRoident)}, ` +
    // The row stays: the local row is newer than the delete.
    `c AS MATERIALIZED (${curConflict("delete_recently_updated", "'skip'", "true", `NOT ${exists("del")}`)} ` +
    `UNION ALL ${missingConflict("delete_missing", "skip")}), ` +
    `${historyCte(meta, names, c, jsonObject(meta, key, keyValue), "NULL::jsonb", "FROM c")} ` +
    result(meta, `${exists("del")} OR NOT ${exists("old")} OR ${beats("cur", c, peerRoident)}`, key.length + 1 + CONTEXT_PARAMS, solo);
  return { text };
}

/** INSERT of one row (params: the values of `mask`'s columns, then the context). The key found: insert_exists, the newer row wins. */
export function resolvingInsertOneSql(meta: TableMeta, mask: string, peerRoident: number, names: ResolveNames, solo = false): Sql {
  requireKey(meta, "resolving inserts");
  const cols = columnsOf(meta, mask);
  const key = meta.key!;
  if (!key.every((i) => cols.includes(i))) throw new Error(`${meta.qualified}: a resolving insert needs the key's values`);
  const c = contextRefs(cols.length + 1);
  const value = (col: number, asText = false): string => param(meta, col, cols.indexOf(col) + 1, asText);
  const keyMatch = key.map((i) => `l.${column(meta, i)} = ${value(i)}`).join(" AND ");
  const inserted = exists("ins");
  const text =
    `WITH ${typed(c)}, ` +
    `ins AS (INSERT INTO ${meta.qualified} (${cols.map((i) => column(meta, i)).join(", ")}) VALUES (${cols.map((i) => value(i)).join(", ")}) ` +
    `ON CONFLICT (${key.map((i) => quoteIdent(meta.rel.columns[i]!.name)).join(", ")}) DO NOTHING RETURNING 1), ` +
    `${oldRow(meta, keyMatch)}, ` +
    `upd AS (UPDATE ${meta.qualified} l SET ${cols.map((i) => `${column(meta, i)} = ${value(i)}`).join(", ")} WHERE ${keyMatch} AND ${wins(c, peerRoident, false)} RETURNING 1), ` +
    `${decidedOn(meta, keyMatch, `(${inserted} OR ${exists("upd")})`, c, undefined)}, ` +
    `c AS MATERIALIZED (${curConflict("insert_exists", `CASE WHEN ${exists("upd")} THEN 'apply_remote' ELSE 'keep_local' END`, "true", `NOT ${inserted}`)}), ` +
    `${historyCte(meta, names, c, jsonObject(meta, key, (i) => value(i, true)), jsonObject(meta, cols, (i) => value(i, true)), "FROM c")} ` +
    result(meta, `${inserted} OR ${exists("upd")} OR ${beats("cur", c, undefined)}`, cols.length + 1 + CONTEXT_PARAMS, solo);
  return { text };
}
