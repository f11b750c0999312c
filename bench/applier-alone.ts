// bench/applier-alone: pgraft's applier (src/slots/applier.ts, what a receiver
// hands a peer's transactions to) against one PostgreSQL 15 server, with no
// sidecar, walsender or second server in the way: the applying backend's own
// speed. Two servers in the same run, fsync on, differing only in
// wal_writer_flush_after: 0, what pgraft sets on the servers it starts and the
// Helm chart's default, against PostgreSQL's default (1MB). With the default,
// the WAL writer writes without flushing between its rounds, so every
// asynchronous commit (the data plane commits what it applies that way) finds
// a full page past the flushed position and wakes it with a kill(): about a
// fifth of the backend's time on one-row transactions (perf). PostgreSQL's own
// apply worker also commits asynchronously and gains alike (bench/replication
// runs both on the same servers).
//
// Each repetition, on each server (the order alternating): BENCH_TX (60,000)
// transactions of BENCH_TX_ROWS (1) inserted rows each (a bigint key, two
// numbers, a timestamptz and ~90 bytes of text), submitted to an Applier at
// once as if streamed from a peer; timed from the first submit until the last
// is durable. The applying backend's CPU is read from /proc.
//
//   make build && node dist/bench/applier-alone.js   (BENCH_REPS=3 BENCH_TX=60000 BENCH_TX_ROWS=1; BENCH_KEEP=1 keeps the servers' dir)
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { LocalPostgres, findPostgresBinaries, reachableTempDir, type PostgresBinaries } from "../src/postgres/index.js";
import { Applier } from "../src/slots/applier.js";
import { ensureLocalObjects } from "../src/slots/local-objects.js";
import type { RelationDesc } from "../src/slots/types.js";
import { freePorts } from "./pgraft-cluster.js";
import { readStat } from "./proc-cpu.js";
import { alternate, fmt, fmtSpread, loadAverageChecked, machineNote, repetitions } from "./report.js";

const REPS = repetitions();
const ROWS = Math.max(1, Number(process.env.BENCH_TX_ROWS ?? 1));
const TX = Math.max(1, Math.floor(Number(process.env.BENCH_TX ?? 60_000) / ROWS));
/** Submitted but not yet durable at most (the receiver pauses its stream at 5,000). */
const WINDOW = 4_000;
const ORIGIN = "pgraft_bench_peer";

interface Variant {
  label: string;
  settings: Record<string, string>;
}
const VARIANTS: Variant[] = [
  { label: "wal_writer_flush_after = 0 (pgraft's)", settings: {} },
  { label: "wal_writer_flush_after = 1MB (PostgreSQL's default)", settings: { wal_writer_flush_after: "1MB" } },
];

const rel: RelationDesc = {
  oid: 1,
  schema: "public",
  name: "bench_apply",
  replicaIdentity: "default",
  columns: [
    { name: "id", typeOid: 20 },
    { name: "seq", typeOid: 20 },
    { name: "v", typeOid: 23 },
    { name: "ts", typeOid: 1184 },
    { name: "pad", typeOid: 25 },
  ],
};
const PAD = "x".repeat(90);

interface Run {
  seconds: number;
  backendCpuS: number;
}

async function startServer(bins: PostgresBinaries, dir: string, port: number, v: Variant): Promise<LocalPostgres> {
  const server = await LocalPostgres.initdb({ dataDir: join(dir, "data"), port, password: `pw-${Math.random().toString(36).slice(2)}`, binaries: bins, fsync: true, noSync: true, settings: { ...v.settings, max_wal_size: "4GB", shared_buffers: "128MB" } });
  await server.start();
  const c = await server.connect();
  try {
    await ensureLocalObjects(c);
    await c.query("SELECT pg_replication_origin_create($1)", [ORIGIN]);
  } finally {
    await c.end();
  }
  return server;
}

/** One timed run: a fresh table, TX transactions through a new Applier. */
async function runOnce(server: LocalPostgres): Promise<Run> {
  const admin = await server.connect();
  const ap = new Applier({ localDsn: server.keyValueDsn(), localNode: { name: "here", id: 1 }, peer: { name: "peer", id: 2 }, originName: ORIGIN, members: () => new Map(), log: { debug() {}, info() {}, warn: console.warn, error: console.error } });
  try {
    await admin.query("DROP TABLE IF EXISTS bench_apply; CREATE TABLE bench_apply (id bigint PRIMARY KEY, seq bigint, v int, ts timestamptz, pad text); CHECKPOINT");
    let lsn = (await ap.connect()) + 1_000n;
    const pid = Number((await admin.query<{ pid: string }>("SELECT pid::text AS pid FROM pg_stat_activity WHERE application_name = 'pgraft_apply_peer'")).rows[0]?.pid);
    const cpu0 = readStat(pid)?.self ?? NaN;
    const t0 = performance.now();
    const pending: Promise<void>[] = [];
    let id = 1;
    for (let i = 0; i < TX; i++) {
      lsn += 200n;
      const changes = Array.from({ length: ROWS }, () => ({ kind: "insert" as const, rel, new: [String(id++), String(i), "42", "2026-12-07 06:00:00.123456+00", PAD] }));
      pending.push(ap.submit({ kind: "apply", tx: { xid: i + 1, commitLsn: lsn - 100n, endLsn: lsn, commitTime: BigInt(Date.now()) * 1000n, changes } }));
      if (pending.length >= WINDOW) await pending.shift();
    }
    await Promise.all(pending);
    const seconds = (performance.now() - t0) / 1000;
    const backendCpuS = (readStat(pid)?.self ?? NaN) - cpu0;
    const n = Number((await admin.query<{ n: string }>("SELECT count(*)::text AS n FROM bench_apply")).rows[0]!.n);
    if (n !== TX * ROWS) throw new Error(`${n} rows applied, expected ${TX * ROWS}`);
    return { seconds, backendCpuS };
  } finally {
    await ap.close();
    await admin.end();
  }
}

async function main(): Promise<void> {
  const bins = await findPostgresBinaries();
  const baseDir = await reachableTempDir("pgraft-bench-applier-");
  const servers: LocalPostgres[] = [];
  try {
    console.log(`bench/applier-alone: pgraft's applier against one PostgreSQL ${bins.version} server (fsync on), ${TX} transactions of ${ROWS} inserted row${ROWS === 1 ? "" : "s"}; ${REPS} repetitions, alternating which server runs first`);
    console.log(`  load average before: ${loadAverageChecked()} (${machineNote()})`);
    const ports = await freePorts(VARIANTS.length);
    for (const [i, v] of VARIANTS.entries()) servers.push(await startServer(bins, join(baseDir, `s${i}`), ports[i]!, v));
    const runs: Run[][] = VARIANTS.map(() => []);
    for (let rep = 0; rep < REPS; rep++) {
      for (const i of alternate(rep, 0, 1)) {
        const r = await runOnce(servers[i]!);
        runs[i]!.push(r);
        console.log(`  rep ${rep + 1}  ${VARIANTS[i]!.label.padEnd(52)} ${fmt(TX / r.seconds).padStart(7)} tx/s  ${fmt((TX * ROWS) / r.seconds).padStart(7)} rows/s  backend ${fmt((r.backendCpuS * 1e6) / TX, 1)} µs cpu/tx   load ${loadAverageChecked()}`);
      }
    }
    console.log("");
    for (const [i, v] of VARIANTS.entries()) console.log(`  ${v.label}: tx/s ${fmtSpread(runs[i]!.map((r) => TX / r.seconds), 0)}; backend µs cpu/tx ${fmtSpread(runs[i]!.map((r) => (r.backendCpuS * 1e6) / TX), 1)}`);
    const [a, b] = runs as [Run[], Run[]];
    console.log(`  ratio 0 / default, per repetition: tx/s ${fmtSpread(a.map((r, k) => b[k]!.seconds / r.seconds))}; backend cpu per tx ${fmtSpread(a.map((r, k) => r.backendCpuS / b[k]!.backendCpuS))}`);
    console.log(`load average after: ${loadAverageChecked()}`);
  } finally {
    for (const s of servers) await s.stop({ mode: "fast" }).catch((e: unknown) => console.error("stopping a server:", e));
    if (process.env.BENCH_KEEP === "1") console.log(`kept ${baseDir}`);
    else await rm(baseDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
