// bench/multi-writer: pgraft's data plane with every node of a group written
// to at once (multi-writer, last-update-wins). There is no competitor column:
// PostgreSQL 15's native logical replication cannot run multi-writer (pgoutput
// has no origin filter, so each node's applied changes would be published
// again and loop between the nodes).
//
// Set up, not timed: a 3-node `pgraft demo` (real sidecars, real PostgreSQL 15,
// fsync on, loopback). Node 1 (alpha) creates a node group on database
// `postgres` (bdr.create_node / bdr.create_node_group); `pgbench -i -s
// BENCH_MW_SCALE` (1) on alpha; then beta and gamma join, one after the other
// (bdr.join_node_group from alpha until each is ACTIVE), and the run waits
// until every node's receiver from each of its two peers is `streaming` and
// the three nodes hold identical tables. pgbench_history has no primary key:
// pgraft makes it REPLICA IDENTITY FULL.
//
// Then BENCH_REPS (3) repetitions on the same cluster, each:
//  - the load: pgbench's built-in tpcb-like script without vacuum (`-n -b
//    tpcb-like --max-tries=10`: a deadlock or serialization failure is retried,
//    and counted) on EVERY node at once, BENCH_MW_CLIENTS (4) clients per node,
//    for BENCH_MW_SECONDS (20). The rows were created on alpha and are updated
//    on all three; pgbench_branches (1 row per scale unit) and pgbench_tellers
//    (10) are the hot rows every transaction of every node updates.
//  - lag: every 200 ms during the load, each node's sidecar /metrics is
//    scraped for pgraft_apply_lag_seconds{peer} (0 when nothing from the peer
//    is left to apply, else seconds since the oldest transaction received from
//    the peer and not applied yet committed there; none waiting: how long the
//    last one received took to arrive, at most the time since the node was
//    last caught up). p50/p99 over every (node, peer) sample, leaving
//    out the first second and the last 0.7 s (the sidecar refreshes its data
//    plane status at most every 0.5 s: the scrape that closes the window must
//    not reuse a status from inside it). A pair without a value (behind, and
//    nothing applied from that peer since its sidecar started) counts as the
//    time since the load began: its lag is at least that. A round scrapes the
//    three nodes at once; under load a round can take longer than 200 ms, and
//    the number of rounds is printed.
//  - rates: the load window runs from just before the three pgbench start
//    until the last one exits. An origin's commit rate = the transactions
//    pgbench reports on that node ("number of transactions actually
//    processed") / the window's seconds; a (node, peer) pair's apply rate = the
//    increase of pgraft_apply_transactions_total{peer} on the node over the
//    window / the same seconds (a node skips, and does not count, the changes
//    a peer applied from another node: each node sends only what originated
//    on it). Printed per pair with their ratio, and the minimum ratio; beside
//    them, as a check of the counter, the increase from before the load to
//    after convergence divided by the origin's pgbench transactions (1.000:
//    each of the origin's transactions applied once on the node).
//  - convergence: after the load stops, every 100 ms, for each pgbench table
//    `SELECT count(*), md5(string_agg(t::text, E'\n' ORDER BY t::text))` on
//    all three nodes at once; converged = when the first poll finding them
//    equal began, after the last pgbench exited (so the figure's resolution
//    is a poll: its duration is printed). Timeout 120 s.
//  - conflicts: per node, the rows the repetition added to
//    pgraft.conflict_history by (conflict_type, resolution), and the increase
//    of pgraft_apply_conflicts_total summed over its labels (logged or not:
//    update_origin_change conflicts the incoming change won are not logged by
//    default).
// At the end: min / median / max over the repetitions of the converged
// seconds, lag p99 and minimum apply/commit ratio, beside pgraft's targets
// (converged ≤ 2 s after the load stops; lag p99 < 1 s during it; apply rate
// ≥ 0.9× the commit rate), met when every repetition meets them.
//
//   make build && node dist/bench/multi-writer.js   (BENCH_MW_SECONDS=20 BENCH_MW_CLIENTS=4 BENCH_MW_SCALE=1 BENCH_REPS=3;
//   BENCH_KEEP=1 keeps the temp dir with the server and sidecar logs; BENCH_MW_TRACE=1 prints each scrape round's lag values)
import { join } from "node:path";
import type pg from "pg";
import { startDemo, type RunningDemo } from "../src/demo/local-cluster.js";
import { GROUP_DB, Server, checkInterrupted, createGroup, interrupt, joinGroup, printLogTails, run, sleep, stopDemo, until } from "./demo-group.js";
import { MAIN } from "./pgraft-cluster.js";
import { reachableTempDir, requirePgbench } from "./pgbench.js";
import { fmt, fmtSpread, loadAverage, machineNote, repetitions, spread } from "./report.js";
import { percentile } from "./stats.js";

const SECONDS = Number(process.env.BENCH_MW_SECONDS ?? 20);
const CLIENTS = Number(process.env.BENCH_MW_CLIENTS ?? 4);
const SCALE = Number(process.env.BENCH_MW_SCALE ?? 1);
const REPS = repetitions();
const SCRAPE_MS = 200;
const WARMUP_MS = 1000;
/** Lag samples stop this long before the load's planned end, so the scrape closing the window reads a fresh status (the sidecar caches it 0.5 s). */
const TAIL_MS = 700;
const POLL_MS = 100;
const CONVERGE_TIMEOUT_MS = 120_000;
const JOIN_TIMEOUT_MS = Number(process.env.BENCH_JOIN_TIMEOUT_MS ?? 10 * 60_000);
/** Pause before each load (the previous repetition's trailing work: checkpoints, slot advances). */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 2000);
const NAMES = ["alpha", "beta", "gamma"];
const TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers"];
const TARGET = { convergedS: 2, lagP99S: 1, ratio: 0.9 };
/** BENCH_MW_TRACE=1: every scrape round's lag values on stderr (where a spike happens). */
const TRACE = process.env.BENCH_MW_TRACE === "1";
const APP = "pgraft_bench_multi_writer";

// ------------------------------------------------------------------ /metrics

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus' text format, the lines this benchmark reads. */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_x, c: string) => (c === "n" ? "\n" : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(s: Server): Promise<Sample[]> {
  const r = await fetch(s.info.metrics, { signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`${s.info.metrics}: HTTP ${r.status}`);
  return parseMetrics(await r.text());
}

const values = (ms: Sample[], name: string, peer?: string): number[] => ms.filter((m) => m.name === name && (peer === undefined || m.labels.peer === peer)).map((m) => m.value);
const sum = (v: number[]): number => v.reduce((a, b) => a + b, 0);

// ------------------------------------------------------------------ tables

const CHECK_SQL = TABLES.map((t) => `SELECT '${t}' AS tbl, count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h FROM ${t} t`).join(" UNION ALL ");
type TableSum = { tbl: string; n: string; h: string | null };

/** Whether the three nodes hold the same rows in every pgbench table; `counts` per node for a report. */
async function compareTables(clients: pg.Client[]): Promise<{ equal: boolean; counts: string }> {
  const per = await Promise.all(clients.map(async (c) => (await c.query<TableSum>(CHECK_SQL)).rows));
  const key = (rows: TableSum[]): string => rows.map((r) => `${r.tbl}:${r.n}:${r.h}`).join("|");
  const equal = per.every((rows) => key(rows) === key(per[0]!));
  const counts = per.map((rows, i) => `${NAMES[i]}: ${rows.map((r) => `${r.tbl.replace("pgbench_", "")} ${r.n}`).join(", ")}`).join("; ");
  return { equal, counts };
}

interface Convergence {
  /** Seconds from `since` to the start of the first poll that found the nodes equal; undefined when none did within the timeout. */
  seconds: number | undefined;
  pollMs: number[];
  counts: string;
}

/** Poll every POLL_MS (from each poll's start) until the three nodes hold identical tables, or CONVERGE_TIMEOUT_MS. */
async function converge(clients: pg.Client[], since: number): Promise<Convergence> {
  const pollMs: number[] = [];
  for (;;) {
    checkInterrupted();
    const start = performance.now();
    const r = await compareTables(clients);
    pollMs.push(performance.now() - start);
    if (r.equal) return { seconds: (start - since) / 1000, pollMs, counts: r.counts };
    if (performance.now() - since > CONVERGE_TIMEOUT_MS) return { seconds: undefined, pollMs, counts: r.counts };
    await sleep(Math.max(0, start + POLL_MS - performance.now()));
  }
}

/** conflict_history rows by "type/resolution". */
async function conflictHistory(s: Server): Promise<Map<string, number>> {
  const rows = await s.query<{ conflict_type: string; resolution: string; n: string }>(GROUP_DB, "SELECT conflict_type, resolution, count(*)::text AS n FROM pgraft.conflict_history GROUP BY 1, 2");
  return new Map(rows.map((r) => [`${r.conflict_type}/${r.resolution}`, Number(r.n)]));
}

// ------------------------------------------------------------------ one repetition

interface PgbenchResult {
  tx: number;
  failed: number;
  retried: number;
}

function parsePgbench(node: string, out: string): PgbenchResult {
  const done = /^number of transactions actually processed: (\d+)/m.exec(out);
  if (!done) throw new Error(`could not read pgbench's summary on ${node}:\n${out.trim()}`);
  const failed = /^number of failed transactions: (\d+)/m.exec(out);
  const retried = /^number of transactions retried: (\d+)/m.exec(out);
  return { tx: Number(done[1]), failed: Number(failed?.[1] ?? 0), retried: Number(retried?.[1] ?? 0) };
}

interface Pair {
  node: string;
  peer: string;
  /** During the load window. */
  applied: number;
  /** From before the load until after convergence. */
  appliedByConvergence: number;
}

interface RepResult {
  rep: number;
  loadSeconds: number;
  pgbench: PgbenchResult[];
  pairs: Pair[];
  /** Lag samples, seconds, sorted. */
  lag: number[];
  missingLag: number;
  scrapeErrors: number;
  rounds: number;
  conv: Convergence;
  history: Map<string, number>[];
  conflictsMetric: number[];
  /** Per node: transactions redone on the slow path, and sent again resolving, during the rep (increase of the counters). */
  slowPath: number[];
  resends: number[];
  loads: string;
}

const commitRate = (r: RepResult, node: string): number => r.pgbench[NAMES.indexOf(node)]!.tx / r.loadSeconds;
const ratio = (r: RepResult, p: Pair): number => p.applied / r.loadSeconds / commitRate(r, p.peer);
const minRatio = (r: RepResult): number => Math.min(...r.pairs.map((p) => ratio(r, p)));

async function runRep(rep: number, pgbench: string, servers: Server[]): Promise<RepResult> {
  await sleep(SETTLE_MS);
  const before = loadAverage();
  const history0 = await Promise.all(servers.map(conflictHistory));
  const m0 = await Promise.all(servers.map(scrape));
  const lag: number[] = [];
  let missingLag = 0;
  let scrapeErrors = 0;
  let rounds = 0;
  let loading = true;
  const t0 = performance.now();
  const sampling = (async () => {
    let next = t0 + SCRAPE_MS;
    for (;;) {
      await sleep(Math.max(0, next - performance.now()));
      next += SCRAPE_MS;
      const at = performance.now() - t0;
      if (!loading || at > SECONDS * 1000 - TAIL_MS) return;
      const got = await Promise.all(servers.map((s) => scrape(s).catch(() => undefined)));
      if (TRACE) process.stderr.write(`  ${(at / 1000).toFixed(1)}s lag ${got.map((ms, i) => NAMES.filter((n) => n !== servers[i]!.name).map((peer) => `${servers[i]!.name}<-${peer} ${ms ? (values(ms, "pgraft_apply_lag_seconds", peer)[0] ?? "-") : "?"}`).join(" ")).join(" ")}\n`);
      if (at < WARMUP_MS) continue;
      rounds++;
      got.forEach((ms, i) => {
        if (!ms) {
          scrapeErrors++;
          return;
        }
        for (const peer of NAMES.filter((n) => n !== servers[i]!.name)) {
          const v = values(ms, "pgraft_apply_lag_seconds", peer);
          if (v.length) lag.push(v[0]!);
          else {
            missingLag++;
            lag.push(at / 1000);
          }
        }
      });
    }
  })();
  const args = ["-n", "-b", "tpcb-like", "-c", String(CLIENTS), "-T", String(SECONDS), "--max-tries=10"];
  const settled = await Promise.allSettled(servers.map((s) => run(pgbench, args, s.env(GROUP_DB), `pgbench on ${s.name}`)));
  const tEnd = performance.now();
  loading = false;
  await sampling;
  const m1 = await Promise.all(servers.map(scrape));
  const failed = settled.find((x) => x.status === "rejected");
  if (failed) throw failed.reason;
  const outputs = settled.map((x) => (x as PromiseFulfilledResult<string>).value);
  const loadSeconds = (tEnd - t0) / 1000;

  const clients = await Promise.all(servers.map((s) => s.connect(GROUP_DB)));
  let conv: Convergence;
  try {
    conv = await converge(clients, tEnd);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
  await sleep(600); // a fresh data plane status for the conflict counters
  const m2 = await Promise.all(servers.map(scrape));
  const history1 = await Promise.all(servers.map(conflictHistory));

  const pairs: Pair[] = [];
  servers.forEach((s, i) => {
    for (const peer of NAMES.filter((n) => n !== s.name)) {
      const a = values(m0[i]!, "pgraft_apply_transactions_total", peer)[0] ?? 0;
      const b = values(m1[i]!, "pgraft_apply_transactions_total", peer)[0] ?? 0;
      const c = values(m2[i]!, "pgraft_apply_transactions_total", peer)[0] ?? 0;
      pairs.push({ node: s.name, peer, applied: b - a, appliedByConvergence: c - a });
    }
  });
  const history = history1.map((h1, i) => {
    const d = new Map<string, number>();
    for (const [k, n] of h1) if (n - (history0[i]!.get(k) ?? 0) > 0) d.set(k, n - (history0[i]!.get(k) ?? 0));
    return d;
  });
  const increase = (name: string): number[] => servers.map((_s, i) => sum(values(m2[i]!, name)) - sum(values(m0[i]!, name)));
  const conflictsMetric = increase("pgraft_apply_conflicts_total");
  const slowPath = increase("pgraft_apply_slow_path_transactions_total");
  const resends = increase("pgraft_apply_resolving_resends_total");
  lag.sort((x, y) => x - y);
  return {
    rep,
    loadSeconds,
    pgbench: outputs.map((o, i) => parsePgbench(servers[i]!.name, o)),
    pairs,
    lag,
    missingLag,
    scrapeErrors,
    rounds,
    conv,
    history,
    conflictsMetric,
    slowPath,
    resends,
    loads: `${before} -> ${loadAverage()}`,
  };
}

function report(r: RepResult): void {
  console.log("");
  console.log(`repetition ${r.rep + 1}: load window ${fmt(r.loadSeconds, 2)}s; load average (1/5/15 min) ${r.loads}`);
  console.log(`  commits/s per origin (pgbench): ${NAMES.map((n, i) => `${n} ${fmt(commitRate(r, n), 1)} (${r.pgbench[i]!.tx} tx, ${r.pgbench[i]!.retried} retried, ${r.pgbench[i]!.failed} failed)`).join("; ")}`);
  console.log(`  ${"node <- origin".padEnd(18)}${"applied/s".padEnd(12)}${"origin commits/s".padEnd(18)}${"apply/commit".padEnd(14)}check: applied by convergence / origin tx`);
  for (const p of r.pairs) {
    const tx = r.pgbench[NAMES.indexOf(p.peer)]!.tx;
    console.log(`  ${`${p.node} <- ${p.peer}`.padEnd(18)}${fmt(p.applied / r.loadSeconds, 1).padEnd(12)}${fmt(commitRate(r, p.peer), 1).padEnd(18)}${fmt(ratio(r, p), 3).padEnd(14)}${p.appliedByConvergence}/${tx} = ${fmt(p.appliedByConvergence / tx, 3)}`);
  }
  console.log(`  minimum apply/commit ratio: ${fmt(minRatio(r), 3)}`);
  const ms = (p: number): string => fmt(1000 * percentile(r.lag, p), 0);
  const extra = [r.missingLag ? `${r.missingLag} without a value (nothing applied from the peer yet) counted as the time since the load began` : "", r.scrapeErrors ? `${r.scrapeErrors} scrapes failed` : ""].filter(Boolean).join(", ");
  console.log(`  apply lag during the load: p50 ${ms(50)} ms, p99 ${ms(99)} ms, max ${fmt(1000 * (r.lag[r.lag.length - 1] ?? NaN), 0)} ms (${r.lag.length} samples of 6 node/peer pairs in ${r.rounds} scrape rounds${extra ? `; ${extra}` : ""})`);
  const poll = spread(r.conv.pollMs);
  if (r.conv.seconds === undefined) console.log(`  not converged after ${CONVERGE_TIMEOUT_MS / 1000} s: ${r.conv.counts}`);
  else console.log(`  converged ${fmt(r.conv.seconds, 2)}s after the load stopped (${r.conv.pollMs.length} polls; a poll of the 4 tables on 3 nodes took ${fmt(poll.median)} ms median, ${fmt(poll.max)} max)`);
  const hist = r.history.map((h, i) => `${NAMES[i]}: ${h.size ? [...h].map(([k, n]) => `${k} ${n}`).join(", ") : "none"}`).join("; ");
  console.log(`  conflicts logged to pgraft.conflict_history: ${hist}`);
  console.log(`  pgraft_apply_conflicts_total (logged or not), increase: ${NAMES.map((n, i) => `${n} ${r.conflictsMetric[i]}`).join(", ")}`);
  console.log(`  transactions redone on the slow path / sent again resolving after a conflict stopped their batch: ${NAMES.map((n, i) => `${n} ${r.slowPath[i]}/${r.resends[i]}`).join(", ")}`);
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const { bins, pgbench } = await requirePgbench();
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  const baseDir = await reachableTempDir("pgraft-bench-mw-");
  let demo: RunningDemo | undefined;
  let died: string | undefined;
  const started = Date.now();
  try {
    console.log(`bench/multi-writer: 3-node pgraft demo (PostgreSQL ${bins.version} + sidecars, fsync on, loopback), one node group on database ${GROUP_DB}, every node written to at once`);
    console.log(`  load: pgbench -n -b tpcb-like --max-tries=10 on all 3 nodes at once, ${CLIENTS} clients per node, ${SECONDS}s; data: pgbench -i -s ${SCALE} on alpha, then beta and gamma joined; ${REPS} repetition${REPS === 1 ? "" : "s"} on the same cluster`);
    console.log("  no competitor column: PostgreSQL 15's native logical replication cannot run multi-writer (no origin filtering: applied changes are published again and loop)");
    console.log(`  load average before: ${loadAverage()} (${machineNote()})`);
    demo = await startDemo({ nodes: 3, baseDir, mainJs: MAIN, progress: (l) => void (process.env.BENCH_VERBOSE ? process.stderr.write(`  ${l}\n`) : undefined) });
    void demo.unexpectedExit.then((why) => (died = why));
    const servers = demo.nodes.map((n, i) => new Server(n, join(baseDir, `node${n.id}`, "pg", "data"), NAMES[i]!, APP));
    if (servers.length !== 3) throw new Error(`the demo started ${servers.length} nodes, not 3`);
    const [alpha, ...joiners] = servers as [Server, Server, Server];
    console.log(`  cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const alive = (): void => {
      checkInterrupted();
      if (died) throw new Error(died);
    };

    // ---- the group, its data, the joins
    await createGroup(alpha, "bench");
    await run(pgbench, ["-i", "-s", String(SCALE)], alpha.env(GROUP_DB), "pgbench -i on alpha");
    const joins: string[] = [];
    for (const s of joiners) {
      await s.query(GROUP_DB, "SELECT bdr.create_node($1, $2)", [s.name, s.iface(GROUP_DB)]);
      const t = performance.now();
      await joinGroup(s, alpha, JOIN_TIMEOUT_MS);
      joins.push(`${s.name} ${fmt((performance.now() - t) / 1000, 1)}s`);
      alive();
    }
    await until(
      "every node's receivers from both peers to be streaming",
      async () =>
        (await Promise.all(servers.map(scrape))).every((ms, i) => NAMES.filter((n) => n !== servers[i]!.name).every((peer) => ms.some((m) => m.name === "pgraft_receiver_state" && m.labels.peer === peer && m.labels.state === "streaming" && m.value === 1))),
      120_000,
      500,
    );
    const clients = await Promise.all(servers.map((s) => s.connect(GROUP_DB)));
    let initial: Convergence;
    try {
      initial = await converge(clients, performance.now());
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
    if (initial.seconds === undefined) throw new Error(`the nodes do not hold the same tables after the joins: ${initial.counts}`);
    console.log(`  joined (bdr.join_node_group until ACTIVE): ${joins.join(", ")}; every stream up and the tables identical: ${initial.counts}`);
    alive();

    // ---- the repetitions
    const results: RepResult[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      const r = await runRep(rep, pgbench, servers);
      results.push(r);
      report(r);
      alive();
      if (r.conv.seconds === undefined) {
        console.log(`  (the remaining repetitions are not run: the nodes did not converge)`);
        break;
      }
    }

    // ---- summary against pgraft's targets
    const n = results.length;
    const conv = results.map((r) => r.conv.seconds ?? Infinity);
    const p99 = results.map((r) => percentile(r.lag, 99));
    const ratios = results.map(minRatio);
    const verdict = (ok: boolean[]): string => (ok.every(Boolean) ? "met" : `NOT met (${ok.filter((x) => !x).length} of ${ok.length} repetitions miss it)`);
    console.log("");
    console.log(`summary over ${n} repetition${n === 1 ? "" : "s"} (min / median / max), beside pgraft's targets:`);
    const notConv = conv.filter((c) => !Number.isFinite(c)).length;
    console.log(`  converged after the load stops: ${fmtSpread(conv, 2)} s${notConv ? `; not converged within ${CONVERGE_TIMEOUT_MS / 1000} s in ${notConv}` : ""}   target ≤ ${TARGET.convergedS} s: ${verdict(conv.map((c) => c <= TARGET.convergedS))}`);
    console.log(`  apply lag p99 during the load:  ${fmtSpread(p99, 3)} s   target < ${TARGET.lagP99S} s: ${verdict(p99.map((p) => p < TARGET.lagP99S))}`);
    console.log(`  minimum apply/commit ratio:     ${fmtSpread(ratios, 3)}   target ≥ ${TARGET.ratio}: ${verdict(ratios.map((x) => x >= TARGET.ratio))}`);
    console.log("");
    console.log(`load average after: ${loadAverage()}; total ${((Date.now() - started) / 1000).toFixed(0)}s`);
  } catch (e) {
    await printLogTails(demo);
    throw e;
  } finally {
    await stopDemo(demo, baseDir);
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
