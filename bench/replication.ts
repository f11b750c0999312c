// bench/replication: pgraft's data plane against PostgreSQL's native logical
// replication (CREATE SUBSCRIPTION), between the same two PostgreSQL 15
// servers in the same run. The servers are a 2-node `pgraft demo` (real
// sidecars, fsync on, loopback); node 1 is A (written to), node 2 is B. Each
// system has its own database and table, both set up first:
//  - native: database bench_native on A and B, CREATE PUBLICATION on A,
//    CREATE SUBSCRIPTION ... WITH (copy_data = false) on B: ONE-WAY, A -> B;
//  - pgraft: the group's database (postgres) once B has joined the group A
//    created (bdr.create_node_group / bdr.join_node_group: the product path).
//    The sidecars stream both ways, as in production: B's walsender for A
//    reads B's WAL, where B's applied rows are, and drops them by origin
//    (node slots are test_decoding with only-local: src/slots/text-decoding.ts;
//    with pgoutput, PG15's, it decoded them and sent them back to A, which
//    dropped them). That TWO-WAY cost is pgraft's and is counted in its
//    figures; the native side does not pay it.
// Then BENCH_REPS (3) repetitions, native and pgraft alternating which runs
// first, each system running (1) then (2); never both systems' loads at once
// (while one runs, the other's walsender still reads A's WAL and skips the
// other database's records: the same small cost for both).
//
// What is compared, apart:
//  - one-way apply capacity, (2): how fast B applies a backlog; native's apply
//    worker vs pgraft's apply (pgraft's stream back to A still reads B's WAL);
//  - the two-way cost at a load both keep up with, (1): CPU per row of both
//    servers and both sidecars, and lag. Under such a load B applies rows as
//    fast as A writes them, so B's rows/s would only repeat A's write rate:
//    it is not printed as a throughput.
//
// 1. Sustained load: pgbench on A, BENCH_CLIENTS (8) connections for
//    BENCH_SECONDS (10), each transaction one row change: 80 % an INSERT of a
//    new row, 20 % an UPDATE of one of 10,000 prefilled rows. Every change sets
//    `seq` (a sequence on A: the change's number) and `ts` (clock_timestamp()
//    on A). Measured on B every 100 ms: the newest change applied (highest seq)
//    and the lag, B's clock minus that change's ts (same machine, same clock;
//    the first 0.5 s are left out). "A rows/s" is A's write rate (pgbench's
//    changes over the load's duration; pgbench competes with both systems for
//    the same cores); "caught up" is how long after the load B held exactly
//    A's rows (count, sum(seq), sum(v)). CPU is core-seconds
//    over load + catch-up of each server's whole process tree (backends,
//    walsenders, apply workers, reaped ones included) and of both sidecars.
// 2. Apply capacity: the same load, with B's table locked IN SHARE MODE (reads
//    go on, the apply waits) until it ends; then the time B takes to apply the
//    whole backlog with A idle: the apply throughput itself.
// 3. Joining a node to a database of BENCH_JOIN_MB (pgbench -i on A): native =
//    schema (pg_dump -s | psql) + CREATE SUBSCRIPTION ... WITH (copy_data =
//    true) until every table is ready ('r') into a fresh database on B; pgraft
//    = bdr.join_node_group of B's empty database until the node is ACTIVE
//    (schema, snapshot copy, catch-up). Repeated BENCH_REPS times, native and
//    pgraft alternating which joins first; before each pgraft join but the
//    first, B leaves and is emptied the documented way (part_node from A, B's
//    slots gone, drop_node, the copied tables dropped on B, create_node), and
//    each native join gets a fresh database on B (created, dropped after).
//    From the second repetition on, B is a group member while native joins
//    (pgraft's walsender on B reads and skips the copy's WAL), as native's
//    walsender on A (bench_sub) reads pgraft's copy. The issue asks about 1 GB:
//    BENCH_JOIN_MB=1024 works, and adds about a minute per join on a 2-core
//    machine; the default (200 MB) keeps `make bench` short.
//
//   make build && node dist/bench/replication.js   (BENCH_SECONDS=10 BENCH_CLIENTS=8 BENCH_JOIN_MB=200 BENCH_REPS=3
//   BENCH_TX_ROWS=1: row changes per transaction;
//   BENCH_KEEP=1 keeps the temp dir with the server and sidecar logs)
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDemo, type DemoNodeInfo, type RunningDemo } from "../src/demo/local-cluster.js";
import type { PostgresBinaries } from "../src/postgres/index.js";
import { GROUP_DB, Server, checkInterrupted, createGroup, interrupt, joinGroup, printLogTails, ql, run, sleep, stopDemo, until } from "./demo-group.js";
import { MAIN } from "./pgraft-cluster.js";
import { reachableTempDir, requirePgbench } from "./pgbench.js";
import { pidsByCommandLine, treeCpuSeconds } from "./proc-cpu.js";
import { percentile } from "./stats.js";
import { alternate, fmtSpread, loadAverage, machineNote, repetitions, spread } from "./report.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const JOIN_MB = Number(process.env.BENCH_JOIN_MB ?? 200);
const TX_ROWS = Math.max(1, Number(process.env.BENCH_TX_ROWS ?? 1));
const REPS = repetitions();
/** Pause between runs so the previous run's trailing work (pgraft's stream back to A, checkpoints) does not land in the next one. */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 2000);
const PREFILL = 10_000;
const SAMPLE_MS = 100;
const WARMUP_MS = 500;
const CATCHUP_TIMEOUT_MS = Number(process.env.BENCH_CATCHUP_TIMEOUT_MS ?? 120_000);
const JOIN_TIMEOUT_MS = Number(process.env.BENCH_JOIN_TIMEOUT_MS ?? 20 * 60_000);
const NATIVE_DB = "bench_native";
const NATIVE_JOIN_DB = "bench_native_join";
const PGBENCH_TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers"];

/** The table both systems replicate (created on B first, then on A: pgraft's publication is FOR ALL TABLES). */
const TABLE_DDL = `
  CREATE SEQUENCE bench_id START ${PREFILL + 1};
  CREATE SEQUENCE bench_seq;
  CREATE TABLE bench_t (id bigint PRIMARY KEY, seq bigint NOT NULL, k int NOT NULL, v int NOT NULL, payload text NOT NULL, ts timestamptz NOT NULL);
  CREATE INDEX bench_t_seq ON bench_t (seq);`;
const PREFILL_SQL = `INSERT INTO bench_t SELECT g, 0, 0, 0, repeat('p', 100), now() FROM generate_series(1, ${PREFILL}) g`;
/** One row change: 80 % inserts, 20 % updates of a prefilled row. */
const CHANGE = `\\set r random(1, 10)
\\if :r <= 8
INSERT INTO bench_t (id, seq, k, v, payload, ts) VALUES (nextval('bench_id'), nextval('bench_seq'), :client_id, 0, '${"x".repeat(100)}', clock_timestamp());
\\else
\\set id random(1, ${PREFILL})
UPDATE bench_t SET seq = nextval('bench_seq'), v = v + 1, ts = clock_timestamp() WHERE id = :id;
\\endif
`;
/** A transaction: one change (autocommit) by default, BENCH_TX_ROWS changes between BEGIN and END otherwise. */
const LOAD_SCRIPT = TX_ROWS === 1 ? CHANGE : `BEGIN;\n${CHANGE.repeat(TX_ROWS)}END;\n`;

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
const qi = (s: string): string => `"${s.replace(/"/g, '""')}"`;

// ------------------------------------------------------------------ load + apply

interface LoadResult {
  system: string;
  rep: number;
  changes: number;
  loadSeconds: number;
  /** Changes B had applied when the load ended. */
  appliedAtEnd: number;
  catchupSeconds: number;
  lagMs: number[];
  cpuA: number;
  cpuB: number;
  cpuSidecars: number;
}

const checksumSql = "SELECT count(*)::text AS n, coalesce(sum(seq), 0)::text AS s, coalesce(sum(v), 0)::text AS v FROM bench_t";
type Checksum = { n: string; s: string; v: string };
const sameChecksum = (a: Checksum | undefined, b: Checksum | undefined): boolean => !!a && !!b && a.n === b.n && a.s === b.s && a.v === b.v;

/** The table on B, then on A (pgraft's publication is FOR ALL TABLES: A's changes must find it on B). */
async function prepareTable(a: Server, b: Server, db: string): Promise<void> {
  await b.query(db, TABLE_DDL);
  await a.query(db, TABLE_DDL);
}

/** The rows the updates pick from, written on A; resolves once B holds them. */
async function prefill(a: Server, b: Server, db: string): Promise<void> {
  await a.query(db, PREFILL_SQL);
  await until(`B to receive the ${PREFILL} prefilled rows (${db})`, async () => Number((await b.query<{ n: string }>(db, "SELECT count(*) AS n FROM bench_t"))[0]!.n) === PREFILL, 60_000);
}

/**
 * One pgbench run on A with B measured. `backlog`: B's table is locked (SHARE
 * mode: reads go on, the applier's writes wait) for the whole load and
 * released when it ends, so "caught up" is the time B takes to apply a backlog
 * of every change with A idle: its apply capacity.
 */
async function runLoad(system: string, pgbench: string, a: Server, b: Server, db: string, workDir: string, sidecarCpu: () => number, o: { backlog: boolean; rep: number }): Promise<LoadResult> {
  const dir = join(workDir, `${system}${o.backlog ? "-backlog" : ""}-${o.rep}`);
  await mkdir(dir, { recursive: true });
  const script = join(dir, "load.sql");
  await writeFile(script, LOAD_SCRIPT);
  await a.query(db, "CHECKPOINT");
  await b.query(db, "CHECKPOINT");
  const sampler = await b.connect(db);
  const aClient = await a.connect(db);
  const locker = o.backlog ? await b.connect(db) : undefined;
  try {
    if (locker) {
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE bench_t IN SHARE MODE");
    }
    const newest = async (): Promise<{ seq: number; nowMs: number; tsMs: number }> => {
      const r = await sampler.query<{ seq_text: string; now_ms: number; ts_ms: number }>(
        "SELECT t.seq::text AS seq_text, extract(epoch FROM clock_timestamp())::float8 * 1000 AS now_ms, extract(epoch FROM t.ts)::float8 * 1000 AS ts_ms FROM bench_t t ORDER BY t.seq DESC LIMIT 1",
      );
      const row = r.rows[0]!;
      return { seq: Number(row.seq_text), nowMs: row.now_ms, tsMs: row.ts_ms };
    };
    const seq0 = (await newest()).seq; // the previous run's changes
    const cpu0 = { a: a.cpu(), b: b.cpu(), side: sidecarCpu() };
    const startMs = Date.now();
    const t0 = performance.now();
    let loading = true;
    const lagMs: number[] = [];
    const sampling = (async () => {
      let next = performance.now();
      while (loading && !o.backlog) {
        const s = await newest();
        // Before B has any change of this run, its lag is the time since the load began.
        if (s.nowMs - startMs >= WARMUP_MS) lagMs.push(Math.max(0, s.nowMs - Math.max(s.tsMs, startMs)));
        next += SAMPLE_MS;
        await sleep(Math.max(0, next - performance.now()));
      }
    })();
    let out: string;
    try {
      out = await run(pgbench, ["-n", "-M", "prepared", "--max-tries=10", "-f", script, "-c", String(CLIENTS), "-j", String(Math.min(CLIENTS, 4)), "-T", String(SECONDS)], a.env(db), `pgbench on A (${system})`, dir);
    } finally {
      loading = false;
      await sampling.catch(() => undefined);
    }
    const loadSeconds = (performance.now() - t0) / 1000;
    const appliedAtEnd = (await newest()).seq - seq0;
    const done = /^number of transactions actually processed: (\d+)/m.exec(out);
    const failed = /^number of failed transactions: (\d+)/m.exec(out);
    if (!done) throw new Error(`could not read pgbench's summary:\n${out.trim()}`);
    if (failed && Number(failed[1]) > 0) throw new Error(`pgbench reported failed transactions:\n${out.trim()}`);
    const want = (await aClient.query<Checksum>(checksumSql)).rows[0];
    const lastSeq = Number((await aClient.query<{ s: string }>("SELECT max(seq)::text AS s FROM bench_t")).rows[0]!.s);
    if (locker) {
      if (appliedAtEnd !== 0) throw new Error(`${system}: B applied ${appliedAtEnd} changes while its table was locked`);
      await locker.query("COMMIT");
    }
    const tEnd = performance.now();
    // Cheap polls of the newest change (index) until B shows A's last one, then the full comparison.
    await until(`B (${system}) to hold A's rows after the load`, async () => (await newest()).seq >= lastSeq && sameChecksum((await sampler.query<Checksum>(checksumSql)).rows[0], want), CATCHUP_TIMEOUT_MS, 10);
    const catchupSeconds = (performance.now() - tEnd) / 1000;
    lagMs.sort((x, y) => x - y);
    return { system, rep: o.rep, changes: Number(done[1]) * TX_ROWS, loadSeconds, appliedAtEnd, catchupSeconds, lagMs, cpuA: a.cpu() - cpu0.a, cpuB: b.cpu() - cpu0.b, cpuSidecars: sidecarCpu() - cpu0.side };
  } finally {
    await sampler.end().catch(() => undefined);
    await aClient.end().catch(() => undefined);
    await locker?.end().catch(() => undefined);
  }
}

const LOAD_HEADER = `${"system".padEnd(12)}${"A rows/s".padEnd(10)}${"caught up s".padEnd(13)}${"lag p50 ms".padEnd(12)}${"p90 ms".padEnd(9)}${"max ms".padEnd(9)}${"cpu s A/B/sidecars".padEnd(20)}cpu ms/1k rows`;
const cpuTotal = (r: LoadResult): number => r.cpuA + r.cpuB + r.cpuSidecars;
const cpuPerRow = (r: LoadResult): number => cpuTotal(r) / r.changes;
const label = (r: LoadResult): string => `${r.system} #${r.rep + 1}`;
function loadRow(r: LoadResult): string {
  const cpu = `${fmt(r.cpuA, 1)}/${fmt(r.cpuB, 1)}/${fmt(r.cpuSidecars, 1)}`;
  return `${label(r).padEnd(12)}${fmt(r.changes / r.loadSeconds).padEnd(10)}${fmt(r.catchupSeconds, 2).padEnd(13)}${fmt(percentile(r.lagMs, 50), 1).padEnd(12)}${fmt(percentile(r.lagMs, 90), 1).padEnd(9)}${fmt(r.lagMs[r.lagMs.length - 1] ?? NaN, 1).padEnd(9)}${cpu.padEnd(20)}${fmt(1e6 * cpuPerRow(r), 1)}`;
}

const BACKLOG_HEADER = `${"system".padEnd(12)}${"A rows/s".padEnd(10)}${"backlog rows".padEnd(14)}${"applied in s".padEnd(14)}${"apply rows/s".padEnd(14)}${"cpu s A/B/sidecars".padEnd(20)}cpu ms/1k rows`;
const drain = (r: LoadResult): number => r.changes / r.catchupSeconds;
function backlogRow(r: LoadResult): string {
  const cpu = `${fmt(r.cpuA, 1)}/${fmt(r.cpuB, 1)}/${fmt(r.cpuSidecars, 1)}`;
  return `${label(r).padEnd(12)}${fmt(r.changes / r.loadSeconds).padEnd(10)}${String(r.changes).padEnd(14)}${fmt(r.catchupSeconds, 2).padEnd(14)}${fmt(drain(r)).padEnd(14)}${cpu.padEnd(20)}${fmt(1e6 * cpuPerRow(r), 1)}`;
}

// ------------------------------------------------------------------ joins

interface JoinResult {
  schemaSeconds: number;
  copySeconds: number;
}

/** Native: B's fresh database gets the schema (pg_dump -s | psql), then a subscription copies the data; done when every table is 'r'. */
async function nativeJoin(bins: PostgresBinaries, a: Server, b: Server, workDir: string): Promise<JoinResult> {
  await b.query("postgres", `CREATE DATABASE ${qi(NATIVE_JOIN_DB)}`);
  await a.query(GROUP_DB, `CREATE PUBLICATION bench_join_pub FOR TABLE ${PGBENCH_TABLES.join(", ")}`);
  const dump = join(workDir, "native-join-schema.sql");
  const t0 = performance.now();
  await run(bins.bin("pg_dump"), ["--schema-only", "--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions", ...PGBENCH_TABLES.flatMap((t) => ["--table", `public.${t}`]), "--file", dump], a.env(GROUP_DB), "pg_dump of A's schema");
  await run(bins.bin("psql"), ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump], b.env(NATIVE_JOIN_DB), "psql: the schema into B");
  const t1 = performance.now();
  await b.query(NATIVE_JOIN_DB, `CREATE SUBSCRIPTION bench_join_sub CONNECTION ${ql(a.kv(GROUP_DB))} PUBLICATION bench_join_pub WITH (copy_data = true)`);
  await until(
    "the native subscription's initial copy (every table 'r' in pg_subscription_rel)",
    async () => {
      const r = await b.query<{ total: string; ready: string }>(NATIVE_JOIN_DB, "SELECT count(*)::text AS total, count(*) FILTER (WHERE srsubstate = 'r')::text AS ready FROM pg_subscription_rel");
      return Number(r[0]!.total) === PGBENCH_TABLES.length && r[0]!.ready === r[0]!.total;
    },
    JOIN_TIMEOUT_MS,
  );
  const t2 = performance.now();
  const rows = await b.query<{ n: string }>(NATIVE_JOIN_DB, "SELECT count(*)::text AS n FROM pgbench_accounts");
  const want = await a.query<{ n: string }>(GROUP_DB, "SELECT count(*)::text AS n FROM pgbench_accounts");
  if (rows[0]!.n !== want[0]!.n) throw new Error(`native copy: B has ${rows[0]!.n} accounts, A ${want[0]!.n}`);
  await b.query(NATIVE_JOIN_DB, "DROP SUBSCRIPTION bench_join_sub");
  await b.query("postgres", `DROP DATABASE ${qi(NATIVE_JOIN_DB)} WITH (FORCE)`);
  await a.query(GROUP_DB, "DROP PUBLICATION bench_join_pub");
  return { schemaSeconds: (t1 - t0) / 1000, copySeconds: (t2 - t1) / 1000 };
}

/**
 * pgraft: B leaves the group and its database is emptied, as the docs say to
 * rejoin a node: part_node from A, until B holds no slot and A no slot or
 * origin for B, drop_node, the copied tables dropped on B.
 */
async function pgraftLeave(a: Server, b: Server): Promise<void> {
  const r = await a.query<{ part_node: string }>(GROUP_DB, "SELECT bdr.part_node($1)", [b.name]);
  if (!/parted/.test(r[0]!.part_node)) throw new Error(`part_node(${b.name}): ${r[0]!.part_node}`);
  await until(`${b.name} to remove its slots`, async () => (await b.query("postgres", "SELECT 1 FROM pg_replication_slots")).length === 0, 60_000);
  const like = `%${b.name}%`;
  await until(
    `A to drop its slot and origin for ${b.name}`,
    async () => (await a.query("postgres", "SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE $1 UNION ALL SELECT 1 FROM pg_replication_origin WHERE roname LIKE $1", [like])).length === 0,
    60_000,
  );
  await a.query(GROUP_DB, "SELECT bdr.drop_node($1)", [b.name]);
  await b.query(GROUP_DB, `DROP TABLE IF EXISTS ${PGBENCH_TABLES.map((t) => `public.${t}`).join(", ")} CASCADE`);
}

/** pgraft: B's empty group database joins through the SQL API; done when B is ACTIVE. */
async function pgraftJoin(a: Server, b: Server): Promise<number> {
  await b.query(GROUP_DB, "SELECT bdr.create_node($1, $2)", [b.name, b.iface(GROUP_DB)]);
  const t0 = performance.now();
  await joinGroup(b, a, JOIN_TIMEOUT_MS);
  const seconds = (performance.now() - t0) / 1000;
  const rows = await b.query<{ n: string }>(GROUP_DB, "SELECT count(*)::text AS n FROM pgbench_accounts");
  const want = await a.query<{ n: string }>(GROUP_DB, "SELECT count(*)::text AS n FROM pgbench_accounts");
  if (rows[0]!.n !== want[0]!.n) throw new Error(`pgraft join: B has ${rows[0]!.n} accounts, A ${want[0]!.n}`);
  return seconds;
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const { bins, pgbench } = await requirePgbench();
  const onSignal = interrupt;
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const baseDir = await reachableTempDir("pgraft-bench-repl-");
  const workDir = join(baseDir, "work");
  await mkdir(workDir);
  let demo: RunningDemo | undefined;
  let died: string | undefined;
  const started = Date.now();
  try {
    console.log(`bench/replication: 2-node pgraft demo (PostgreSQL ${bins.version} + sidecars, fsync on, loopback), A = node 1 written to, B = node 2`);
    console.log(`  load: pgbench on A, ${CLIENTS} clients, ${SECONDS}s, ${TX_ROWS === 1 ? "one row change per transaction" : `${TX_ROWS} row changes per transaction`} (80% insert, 20% update of ${PREFILL} rows), ~150-byte rows`);
    console.log(`  native = one-way subscription A -> B; pgraft = its group data plane, both ways (B's walsender for A reads B's WAL and drops B's applied rows by origin); ${REPS} repetitions, alternating which system runs first`);
    console.log(`  load average before: ${loadAverage()} (${machineNote()})`);
    demo = await startDemo({ nodes: 2, baseDir, mainJs: MAIN, progress: (l) => void (process.env.BENCH_VERBOSE ? process.stderr.write(`  ${l}\n`) : undefined) });
    void demo.unexpectedExit.then((why) => (died = why));
    const [na, nb] = demo.nodes as [DemoNodeInfo, DemoNodeInfo];
    const a = new Server(na, join(baseDir, `node${na.id}`, "pg", "data"), "alpha");
    const b = new Server(nb, join(baseDir, `node${nb.id}`, "pg", "data"), "beta");
    const sidecarCpu = (): number => [na, nb].reduce((sum, n) => sum + pidsByCommandLine(["sidecar", join(baseDir, `node${n.id}`, "raft")]).reduce((s, pid) => s + treeCpuSeconds(pid), 0), 0);
    console.log(`  cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const alive = (): void => {
      checkInterrupted();
      if (died) throw new Error(died);
    };

    // ---- 1. native set up (no pgraft group exists yet)
    for (const s of [a, b]) await s.query("postgres", `CREATE DATABASE ${qi(NATIVE_DB)}`);
    await prepareTable(a, b, NATIVE_DB);
    await a.query(NATIVE_DB, "CREATE PUBLICATION bench_pub FOR TABLE bench_t");
    await b.query(NATIVE_DB, `CREATE SUBSCRIPTION bench_sub CONNECTION ${ql(a.kv(NATIVE_DB))} PUBLICATION bench_pub WITH (copy_data = false)`);
    await prefill(a, b, NATIVE_DB);
    alive();

    // ---- 2. the group on A, the join data set, native copy, pgraft join
    await createGroup(a, "bench");
    const scale = Math.max(1, Math.round(JOIN_MB / 15));
    const t = performance.now();
    await run(pgbench, ["-i", "-s", String(scale), "-I", "dtGvp"], a.env(GROUP_DB), "pgbench -i on A");
    const built = (performance.now() - t) / 1000;
    const size = await a.query<{ mb: number; rows: string }>(
      GROUP_DB,
      `SELECT sum(pg_total_relation_size(c.oid))::float8 / 1048576 AS mb, sum(c.reltuples)::bigint::text AS rows FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = ANY ($1)`,
      [PGBENCH_TABLES],
    );
    const mb = size[0]!.mb;
    alive();
    const nativeJoins: JoinResult[] = [];
    const pgraftJoins: number[] = [];
    const joinLoads: string[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const system of alternate<"native" | "pgraft">(rep, "native", "pgraft")) {
        if (system === "pgraft" && pgraftJoins.length > 0) await pgraftLeave(a, b);
        await sleep(SETTLE_MS);
        const before = loadAverage();
        if (system === "native") nativeJoins.push(await nativeJoin(bins, a, b, workDir));
        else pgraftJoins.push(await pgraftJoin(a, b));
        joinLoads.push(`${system} #${rep + 1} ${before} -> ${loadAverage()}`);
        alive();
      }
    }

    // ---- 3. pgraft set up, then both systems under load, alternating
    await until(
      "A's slot for B to stream",
      async () => (await a.query<{ state: string }>(GROUP_DB, "SELECT state FROM pgraft.node_slots WHERE NOT is_group_slot")).every((r) => r.state === "streaming"),
      60_000,
    );
    await prepareTable(a, b, GROUP_DB);
    await prefill(a, b, GROUP_DB);
    alive();
    const sustained: Record<"native" | "pgraft", LoadResult[]> = { native: [], pgraft: [] };
    const backlog: Record<"native" | "pgraft", LoadResult[]> = { native: [], pgraft: [] };
    const loads: string[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const system of alternate<"native" | "pgraft">(rep, "native", "pgraft")) {
        const db = system === "native" ? NATIVE_DB : GROUP_DB;
        for (const bl of [false, true]) {
          await sleep(SETTLE_MS);
          const before = loadAverage();
          const r = await runLoad(system, pgbench, a, b, db, workDir, sidecarCpu, { backlog: bl, rep });
          loads.push(`${system} #${rep + 1}${bl ? " backlog" : ""} ${before} -> ${loadAverage()}`);
          (bl ? backlog : sustained)[system].push(r);
          alive();
        }
      }
    }
    await b.query(NATIVE_DB, "DROP SUBSCRIPTION bench_sub");
    await a.query(NATIVE_DB, "DROP PUBLICATION bench_pub");

    // ---- report
    const perRep = (f: (r: LoadResult) => number, rs: Record<"native" | "pgraft", LoadResult[]>): string => fmtSpread(rs.pgraft.map((p, i) => f(p) / f(rs.native[i]!)));
    const med = (f: (r: LoadResult) => number, rs: LoadResult[]): string => fmt(spread(rs.map(f)).median);
    console.log("");
    console.log(`one-way apply capacity: B's table locked (SHARE mode) while A writes for ${SECONDS}s, then released; the backlog applied by B with A idle:`);
    console.log(BACKLOG_HEADER);
    for (const r of [...backlog.native, ...backlog.pgraft]) console.log(backlogRow(r));
    console.log(`apply rows/s median: native ${med(drain, backlog.native)}, pgraft ${med(drain, backlog.pgraft)}`);
    console.log(`ratio pgraft/native per repetition: apply rows/s ${perRep(drain, backlog)}; cpu/row ${perRep(cpuPerRow, backlog)}`);
    console.log("  (while pgraft's apply on B drains, B's walsender for A reads the WAL it writes, dropping it by origin: on shared cores that slows it; native has no such stream)");
    console.log("");
    console.log(`two-way cost at a load both keep up with (A -> B; pgraft also B -> A): pgbench on A for ${SECONDS}s`);
    console.log(LOAD_HEADER);
    for (const r of [...sustained.native, ...sustained.pgraft]) console.log(loadRow(r));
    const keptUp = (rs: LoadResult[]): string => (rs.every((r) => r.catchupSeconds < 1) ? "kept up in every run" : `fell behind in ${rs.filter((r) => r.catchupSeconds >= 1).length} of ${rs.length} runs (caught up >= 1 s after the load)`);
    console.log(`  native ${keptUp(sustained.native)}; pgraft ${keptUp(sustained.pgraft)}. While B keeps up it applies rows as fast as A writes them: "A rows/s" is A's write rate, not an apply throughput (see the capacity test above)`);
    console.log(`ratio pgraft/native per repetition: cpu/row ${perRep(cpuPerRow, sustained)}; lag p50 ${perRep((r) => percentile(r.lagMs, 50), sustained)}; lag p90 ${perRep((r) => percentile(r.lagMs, 90), sustained)}; A rows/s ${perRep((r) => r.changes / r.loadSeconds, sustained)}`);
    console.log(
      `  lag: samples every ${SAMPLE_MS} ms after the first ${WARMUP_MS} ms (B's clock minus A's clock_timestamp() of the newest change B shows), about ${Math.round(spread([...sustained.pgraft, ...sustained.native].map((r) => r.lagMs.length)).median)} per run: p90 and max, no p99 (it would be the maximum)`,
    );
    console.log(`  load average (1/5/15 min) around each run: ${loads.join("; ")}`);
    console.log("");
    const nativeTotal = nativeJoins.map((j) => j.schemaSeconds + j.copySeconds);
    const secs = (v: number[]): string => {
      const s = spread(v);
      return `${fmt(s.median, 2)}s (${fmt(s.min, 2)}–${fmt(s.max, 2)})`;
    };
    console.log(`join of a ${fmt(mb)} MB database (pgbench -i -s ${scale} on A: ${size[0]!.rows} rows in 4 tables with their indexes; built in ${fmt(built, 1)}s); ${REPS} repetitions, alternating which system joins first; seconds as median (min–max):`);
    console.log(
      `  native  schema (pg_dump -s | psql) ${secs(nativeJoins.map((j) => j.schemaSeconds))} + CREATE SUBSCRIPTION (copy_data = true) until every table is ready ${secs(nativeJoins.map((j) => j.copySeconds))} = ${secs(nativeTotal)} (${fmt(mb / spread(nativeTotal).median, 1)} MB/s at the median)`,
    );
    console.log(`  pgraft  bdr.join_node_group until ACTIVE (schema, snapshot copy, catch-up) ${secs(pgraftJoins)} (${fmt(mb / spread(pgraftJoins).median, 1)} MB/s at the median)`);
    console.log(`ratio pgraft/native join time per repetition: ${fmtSpread(pgraftJoins.map((p, i) => p / nativeTotal[i]!))}`);
    console.log(`  before each pgraft join but the first, B parted, dropped, emptied and created again (not timed); each native join into a fresh database on B`);
    console.log(`  load average (1/5/15 min) around each join: ${joinLoads.join("; ")}`);
    console.log("");
    console.log(`load average after: ${loadAverage()}; total ${((Date.now() - started) / 1000).toFixed(0)}s`);
  } catch (e) {
    await printLogTails(demo);
    throw e;
  } finally {
    await stopDemo(demo, baseDir);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
