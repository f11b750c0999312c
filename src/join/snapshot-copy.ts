// The data half of a join: copy the schema and every table from one source
// node into the joining node under ONE consistent snapshot, and report where
// streaming must resume so that nothing is lost or applied twice:
//
//  - the source's node slot for the joiner is created with EXPORT_SNAPSHOT, so
//    its consistent point is exactly where the snapshot ends: changes that
//    originated on the source stream from there;
//  - for every other origin, the source's replication-origin progress read
//    while no apply transaction can commit on the source (the applier holds
//    APPLY_LOCK shared in each transaction; the snapshot is exported under it
//    held exclusively) says up to which LSN the copied data contains that
//    origin's changes: the joiner resumes each origin there.
//
// The schema comes from pg_dump --snapshot (synchronize_structure = 'all'); the
// tables are copied in parallel, each worker importing the snapshot.
//
// Copied rows keep the version they have on the source. Last-update-wins
// compares a change with the local row's commit time and writer, read from
// the row's xmin; a row copied in the joiner's own transaction would carry
// the instant the copy committed, and every member's update committed between
// the snapshot and the end of the copy would lose to it on the joiner for good.
// So each table is staged (COPY into a temporary table, with each row's commit
// time and writer on the source), then inserted one version at a time, each in
// its own transaction committed under the writer's origin with the source's
// commit time (pg_replication_origin_xact_setup, no LSN: the origin's progress
// does not move). A row the source wrote itself gets the origin for the source;
// one a member wrote, that member's; one whose writer the source did not know
// (a node long gone), an origin of no member (it loses ties, as on the source);
// one with no commit time (written before track_commit_timestamp), the origin
// for the source at 1970, which any change beats, as on the source. These
// transactions carry an origin, so the joiner never sends them on.
// Tables whose rows came in one transaction take one; a table of N separately
// written rows takes N (one DO block, no round trips).
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { findPostgresBinaries } from "../postgres/binaries.js";
import { dsnClientConfig, toUriDsn } from "../postgres/dsn.js";
import { withNodeSlotPlugin } from "../slots/node-slot-plugin.js";
import { APPLY_LOCK_KEY } from "../slots/statements.js";

/** Schemas that are pgraft's own (or the system's): never copied, never counted as user data. */
export const INTERNAL_SCHEMAS = ["pg_catalog", "information_schema", "pgraft", "bdr", "pg_toast"];

export class JoinCopyError extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export interface SnapshotCopyOptions {
  sourceDsn: string;
  targetDsn: string;
  /** The source's node slot for the joiner (created here, with the snapshot). */
  slotName: string;
  synchronizeStructure: "all" | "none";
  /** Tables copied at once (default 4). */
  parallel?: number;
  progress?: (message: string) => void;
  /** Called once the snapshot exists (tests use it to commit a change that must not be copied). */
  afterSnapshot?: () => Promise<void>;
  /** The joiner's origins that copied rows are committed under (see the header); each must exist on the target. */
  origins: CopyOrigins;
}

/** Origin names on the joiner (they are the same on every node) for the writers of copied rows. */
export interface CopyOrigins {
  /** The origin for the source node: rows the source wrote itself, and rows without a commit time. */
  source: string;
  /** Origins of the group's current members other than the source and the joiner: a row a member wrote keeps its writer. */
  members: string[];
  /** For rows whose writer is no current member. */
  unknown: string;
}

export interface SnapshotCopyResult {
  /** Where the source's slot for the joiner starts: stream the source's own changes from here. */
  consistentPoint: string;
  /** Per origin name (other nodes' changes the source had applied): the LSN the copy contains them up to. */
  originProgress: Map<string, string>;
  tables: number;
  rows: number;
}

const qi = (s: string): string => `"${s.replace(/"/g, '""')}"`;

async function connect(dsn: string, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const c = new pg.Client(dsnClientConfig(dsn, { application_name: "pgraft_join", ...extra }));
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** User tables of a database (not pgraft's, not the system's), as schema.table pairs. */
export async function userTables(c: pg.Client): Promise<{ schema: string; table: string }[]> {
  const r = await c.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND NOT (n.nspname = ANY ($1)) AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast%'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1, 2`,
    [INTERNAL_SCHEMAS],
  );
  return r.rows;
}

/** Schemas a user created (not public, not the system's or pgraft's). */
export async function userSchemas(c: pg.Client): Promise<string[]> {
  const r = await c.query<{ nspname: string }>(
    `SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname <> 'public' AND NOT (nspname = ANY ($1)) AND nspname NOT LIKE 'pg\\_%'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = pg_namespace.oid AND d.deptype = 'e')
      ORDER BY 1`,
    [INTERNAL_SCHEMAS],
  );
  return r.rows.map((x) => x.nspname);
}

/** The joining database must hold no user data (and, with 'all', no user schema or table). */
export async function checkTargetEmpty(targetDsn: string, sync: "all" | "none"): Promise<void> {
  const c = await connect(targetDsn);
  try {
    const schemas = sync === "all" ? await userSchemas(c) : [];
    if (schemas.length) {
      throw new JoinCopyError("55000", `the joining database is not empty: it has schema(s) ${schemas.join(", ")}`, "join an empty database, or create the schema yourself and join with synchronize_structure := 'none'");
    }
    const tables = await userTables(c);
    if (sync === "all" && tables.length) {
      throw new JoinCopyError(
        "55000",
        `the joining database is not empty: it has ${tables.length} table(s) (${tables.slice(0, 5).map((t) => `${t.schema}.${t.table}`).join(", ")}${tables.length > 5 ? ", …" : ""})`,
        "join an empty database, or create the schema yourself and join with synchronize_structure := 'none'",
      );
    }
    for (const t of tables) {
      const r = await c.query(`SELECT 1 FROM ${qi(t.schema)}.${qi(t.table)} LIMIT 1`);
      if (r.rows.length) throw new JoinCopyError("55000", `the joining database already has rows in ${t.schema}.${t.table}`, "a joining database must be empty: its data comes from the source node");
    }
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A pg_restore list entry that belongs to pgraft's shim (never copied: the joiner has its own). */
export function isShimEntry(line: string): boolean {
  // e.g. "215; 1255 16401 FUNCTION public pgraft_add_node(integer, text, integer) postgres"
  const m = /^\d+; \d+ \d+ (\S+(?: \S+)*?) (\S+|-) (.+)$/.exec(line.trim());
  if (!m) return false;
  const [, , schema, rest] = m;
  if (schema === "pgraft" || schema === "bdr") return true;
  // The shim's functions in public, dblink, and the foreign server + user mapping that point at this node's sidecar.
  return /(^|\s)pgraft_[a-z_]+\(/.test(rest ?? "") || /EXTENSION - dblink|COMMENT - EXTENSION dblink|pgraft_sidecar/.test(line);
}

async function run(cmd: string, args: string[], what: string): Promise<string> {
  const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  p.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const code = await new Promise<number | null>((res) => p.once("close", (c) => res(c)));
  if (code !== 0) throw new JoinCopyError("58000", `${what} failed: ${err.trim().split("\n").slice(-3).join("; ")}`);
  return out;
}

/**
 * The source's schema into the target, as of the snapshot: pg_dump (custom
 * format) → the entry list without pgraft's own shim objects → pg_restore in
 * one transaction (a failure leaves nothing behind). Both are libpq: they
 * find the password themselves, as the sidecar's own connections do (the
 * DSN's `passfile`, kept in the URI's query by toUriDsn; PGPASSFILE or
 * ~/.pgpass in the environment they inherit).
 */
async function runPgDumpRestore(sourceDsn: string, targetDsn: string, snapshot: string): Promise<void> {
  const bins = await findPostgresBinaries();
  const dir = await mkdtemp(join(tmpdir(), "pgraft-join-"));
  try {
    const dump = join(dir, "schema.dump");
    await run(
      bins.bin("pg_dump"),
      ["--schema-only", "--format=custom", "--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions", `--snapshot=${snapshot}`, ...INTERNAL_SCHEMAS.slice(2).flatMap((x) => ["--exclude-schema", x]), "--file", dump, "--dbname", toUriDsn(sourceDsn)],
      "pg_dump of the source's schema",
    );
    const list = await run(bins.bin("pg_restore"), ["--list", dump], "listing the source's schema");
    const keep = list.split("\n").filter((l) => !l.startsWith(";") && l.trim() !== "" && !isShimEntry(l));
    const listFile = join(dir, "schema.list");
    await writeFile(listFile, keep.join("\n") + "\n");
    await run(bins.bin("pg_restore"), ["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--use-list", listFile, "--dbname", toUriDsn(targetDsn), dump], "restoring the source's schema into the joining database");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The stage table of a copy (temporary, so neither WAL-logged nor decoded) and its version columns. */
const STAGE = "pgraft_join_stage";
const V_GROUP = "pgraft_v_group";
const V_ORIGIN = "pgraft_v_origin";
const V_TS = "pgraft_v_ts";
/** Commit time given to rows that have none on the source: older than any change, as "unknown" is there. */
const NO_TIME = "1970-01-01 00:00:00+00";

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** The columns a copy carries: every stored column but generated ones (which the target computes), in order. */
async function copiedColumns(c: pg.Client, table: string): Promise<string[]> {
  const r = await c.query<{ attname: string }>(
    `SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [table],
  );
  return r.rows.map((x) => qi(x.attname));
}

/**
 * The source's rows with their versions, numbered by version (1..n, ordered):
 * the writer as the joiner's origin name, and the commit time.
 */
export function versionedRowsSql(table: string, cols: string[], o: CopyOrigins): string {
  const members = `ARRAY[${o.members.map(lit).join(", ")}]::text[]`;
  const writer =
    `CASE WHEN v.timestamp IS NULL OR v.roident = 0 THEN ${lit(o.source)} ` +
    `WHEN r.roname = ANY (${members}) THEN r.roname ELSE ${lit(o.unknown)} END`;
  return (
    `SELECT dense_rank() OVER (ORDER BY w.${V_ORIGIN}, w.${V_TS}) AS ${V_GROUP}, w.${V_ORIGIN}, w.${V_TS}${cols.map((c) => `, w.${c}`).join("")} FROM (` +
    `SELECT ${writer} AS ${V_ORIGIN}, coalesce(v.timestamp, ${lit(NO_TIME)}) AS ${V_TS}${cols.map((c) => `, t.${c}`).join("")} ` +
    `FROM ${table} t CROSS JOIN LATERAL pg_catalog.pg_xact_commit_timestamp_origin(t.xmin) v ` +
    `LEFT JOIN pg_catalog.pg_replication_origin r ON r.roident = v.roident) w ORDER BY 1`
  );
}

function stageTableSql(table: string, cols: string[]): string {
  return (
    `CREATE TEMP TABLE ${STAGE} AS SELECT NULL::bigint AS ${V_GROUP}, NULL::text AS ${V_ORIGIN}, NULL::timestamptz AS ${V_TS}` +
    `${cols.map((c) => `, ${c}`).join("")} FROM ${table} WITH NO DATA`
  );
}

/** One transaction per version, under its writer's origin and with its commit time (a DO block: no round trips). */
function insertVersionsSql(table: string, cols: string[]): string {
  const list = cols.join(", ");
  // A table without a column to copy (none, or only generated ones): its rows are inserted as they are, empty.
  const insert = cols.length ? `(${list}) OVERRIDING SYSTEM VALUE SELECT ${list}` : "SELECT";
  // The block's variables are prefixed and columns win name clashes: a user column may be called n or cur.
  return `DO $pgraft$
#variable_conflict use_column
DECLARE pgraft_n bigint; pgraft_cur text; pgraft_o text; pgraft_ts timestamptz;
BEGIN
  SELECT max(${V_GROUP}) INTO pgraft_n FROM pg_temp.${STAGE};
  FOR pgraft_i IN 1 .. coalesce(pgraft_n, 0) LOOP
    SELECT ${V_ORIGIN}, ${V_TS} INTO pgraft_o, pgraft_ts FROM pg_temp.${STAGE} WHERE ${V_GROUP} = pgraft_i LIMIT 1;
    IF pgraft_cur IS DISTINCT FROM pgraft_o THEN
      IF pgraft_cur IS NOT NULL THEN PERFORM pg_catalog.pg_replication_origin_session_reset(); END IF;
      PERFORM pg_catalog.pg_replication_origin_session_setup(pgraft_o);
      pgraft_cur := pgraft_o;
    END IF;
    PERFORM pg_catalog.pg_replication_origin_xact_setup('0/0', pgraft_ts);
    INSERT INTO ${table} ${insert} FROM pg_temp.${STAGE} WHERE ${V_GROUP} = pgraft_i;
    COMMIT;
  END LOOP;
  IF pgraft_cur IS NOT NULL THEN PERFORM pg_catalog.pg_replication_origin_session_reset(); END IF;
END $pgraft$`;
}

export async function copyFromSnapshot(o: SnapshotCopyOptions): Promise<SnapshotCopyResult> {
  const say = o.progress ?? (() => {});
  // The replication connection that exports the snapshot must stay open, and idle, until every copy has started.
  const repl = await connect(o.sourceDsn, { replication: "database" } as pg.ClientConfig);
  const lock = await connect(o.sourceDsn);
  try {
    // No apply transaction commits on the source between the snapshot and the read of the origins' progress.
    await lock.query("SELECT pg_advisory_lock($1)", [APPLY_LOCK_KEY]);
    const originProgress = new Map<string, string>();
    let consistentPoint: string;
    let snapshot: string;
    try {
      const { result: slot } = await withNodeSlotPlugin((p) => repl.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT ${qi(o.slotName)} LOGICAL ${p} EXPORT_SNAPSHOT`));
      ({ consistent_point: consistentPoint, snapshot_name: snapshot } = slot.rows[0]!);
      const r = await lock.query<{ roname: string; lsn: string | null }>("SELECT roname, pg_replication_origin_progress(roname, false)::text AS lsn FROM pg_replication_origin");
      for (const row of r.rows) if (row.lsn && row.lsn !== "0/0") originProgress.set(row.roname, row.lsn);
    } finally {
      await lock.query("SELECT pg_advisory_unlock($1)", [APPLY_LOCK_KEY]).catch(() => undefined);
      await lock.end().catch(() => undefined);
    }
    say(`snapshot ${snapshot} at ${consistentPoint} (slot ${o.slotName} on the source)`);
    if (o.afterSnapshot) await o.afterSnapshot();

    const open = async (): Promise<pg.Client> => {
      const c = await connect(o.sourceDsn);
      await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      await c.query(`SET TRANSACTION SNAPSHOT '${snapshot.replace(/'/g, "''")}'`);
      return c;
    };
    const meta = await open();
    let tables: { schema: string; table: string }[];
    try {
      tables = await userTables(meta);
    } finally {
      await meta.query("COMMIT").catch(() => undefined);
      await meta.end().catch(() => undefined);
    }

    if (o.synchronizeStructure === "all") {
      say(`copying the schema (${tables.length} table(s)) with pg_dump`);
      await runPgDumpRestore(o.sourceDsn, o.targetDsn, snapshot);
    }

    let rows = 0;
    let next = 0;
    // Two sessions cannot hold one origin at once: the versioned inserts of one table at a time (the COPYs run in parallel).
    let insertTurn: Promise<unknown> = Promise.resolve();
    const inTurn = <T>(f: () => Promise<T>): Promise<T> => {
      const p = insertTurn.then(f);
      insertTurn = p.catch(() => undefined);
      return p;
    };
    const worker = async (): Promise<void> => {
      for (;;) {
        const t = tables[next++];
        if (!t) return;
        const src = await open();
        const dst = await connect(o.targetDsn);
        try {
          const name = `${qi(t.schema)}.${qi(t.table)}`;
          const cols = await copiedColumns(src, name);
          await dst.query(`SET session_replication_role = replica; SET synchronous_commit = off; ${stageTableSql(name, cols)}`);
          const out = src.query(copyTo(`COPY (${versionedRowsSql(name, cols, o.origins)}) TO STDOUT`));
          const into = dst.query(copyFrom(`COPY pg_temp.${STAGE} FROM STDIN`));
          await pipeline(out, into);
          await dst.query(`CREATE INDEX ON pg_temp.${STAGE} (${V_GROUP}); ANALYZE pg_temp.${STAGE}`);
          const versions = await inTurn(async () => {
            await dst.query(insertVersionsSql(name, cols));
            return (await dst.query<{ n: string }>(`SELECT coalesce(max(${V_GROUP}), 0)::text AS n FROM pg_temp.${STAGE}`)).rows[0]!.n;
          });
          await dst.query(`DROP TABLE pg_temp.${STAGE}`);
          // Statistics now, as after any restore: until autovacuum gets to it, the planner would guess, and the
          // data plane's statements (prepared once, generic plans) keep the plan made from the guess.
          await dst.query(`ANALYZE ${name}`);
          rows += Number(into.rowCount ?? 0);
          say(`copied ${t.schema}.${t.table} (${into.rowCount ?? 0} rows, ${versions} version(s))`);
        } finally {
          await dst.end().catch(() => undefined);
          await src.query("COMMIT").catch(() => undefined);
          await src.end().catch(() => undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.parallel ?? 4, tables.length)) }, () => worker()));
    // The inserts committed asynchronously; a synchronous commit of a transaction with an xid flushes the WAL through them.
    const flush = await connect(o.targetDsn);
    try {
      await flush.query("SET synchronous_commit = local; BEGIN; SELECT txid_current(); COMMIT");
    } finally {
      await flush.end().catch(() => undefined);
    }
    return { consistentPoint, originProgress, tables: tables.length, rows };
  } catch (e) {
    // A failed copy leaves no slot behind on the source (a retry creates it again).
    await lock.end().catch(() => undefined);
    await repl.end().catch(() => undefined);
    const c = await connect(o.sourceDsn).catch(() => undefined);
    if (c) {
      await c.query("SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", [o.slotName]).catch(() => undefined);
      await c.end().catch(() => undefined);
    }
    throw e;
  } finally {
    await repl.end().catch(() => undefined);
  }
}
