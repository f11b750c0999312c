// bench/failover-patroni: the Patroni side of bench/failover-app's write-leader
// failover comparison (issue 12 §5). A 3-node Patroni 3 + etcd cluster of
// PostgreSQL 15 (bench/patroni-baseline) under a continuous write load
// (bench/write-probe: one numbered row about every 10 ms, one at a time,
// through the application's connection path); BENCH_TRIALS (10) times per
// timing, kill -9 the primary and measure, from the client's side:
//   - time to next ack: from the kill to the acknowledgement of the first
//     write *sent* after the kill (a write in flight at the kill does not
//     count);
//   - lost writes: acknowledged numbers missing, once the cluster is whole
//     again, on the new primary (and on each replica, once it has replayed
//     up to the primary's WAL position);
//   - time until whole again: the killed node back as a streaming replica.
// Each timing runs on a fresh cluster: Patroni's default (ttl 30, loop_wait
// 10, retry_timeout 10) and its tightest supported (ttl 20, loop_wait 1,
// retry_timeout 3; see PATRONI_TIGHTEST in bench/patroni-baseline for where
// those minimums come from).
//
// The kill (BENCH_PATRONI_KILL): "node" (default) SIGKILLs the primary's
// Patroni and its whole PostgreSQL (postmaster and backends) at once, a
// crashed host, as bench/failover kills a pgraft node; the node is started
// again once a write has been acknowledged without it, and comes back as a
// replica (pg_rewind). "postgres" (or "postmaster") SIGKILLs only the
// postmaster and its backends: Patroni, still holding the leader key, starts
// PostgreSQL again in place at its next loop (no failover). A postmaster
// killed alone would leave its backends running a moment, able to commit and
// acknowledge a write after the kill.
//
// The connection path (BENCH_PATRONI_PATH): "libpq" (default) does what
// libpq's `host=a,b,c target_session_attrs=read-write` does; "rest" does what
// HAProxy does with Patroni's REST `/primary` check. Each write and connection
// attempt is abandoned after 2 s (BENCH_WRITE_TIMEOUT_MS).
//
// BENCH_PATRONI_TIMINGS=default,tightest picks timings; BENCH_KEEP=1 keeps the
// temp dirs (logs in p*.log); BENCH_PG_FSYNC=off turns PostgreSQL's fsync off.
//
//   make build && node dist/bench/failover-patroni.js          (BENCH_TRIALS=10)
import type pg from "pg";
import { abandon, createProbeTable, WriteProbe } from "./write-probe.js";
import { ensurePatroniInstalled, PATRONI_DEFAULT, PATRONI_TIGHTEST, startPatroni, type KillWhat, type PatroniCluster, type PatroniTiming } from "./patroni-baseline.js";
import { fmt, loadAverageChecked, machineNote } from "./report.js";
import { percentile } from "./stats.js";

const TRIALS = Math.max(1, Number(process.env.BENCH_TRIALS ?? 10));
const KILL: KillWhat = ["postgres", "postmaster"].includes(process.env.BENCH_PATRONI_KILL ?? "") ? "postgres" : "node";
const PATH_KIND = process.env.BENCH_PATRONI_PATH === "rest" ? "rest" : "libpq";
const WRITE_TIMEOUT_MS = Number(process.env.BENCH_WRITE_TIMEOUT_MS ?? 2_000);
const WRITE_EVERY_MS = 10;
/** Time to the first ack after a kill, and to a whole cluster again, before a trial is given up (s). */
const GIVE_UP_MS = 180_000;
/** Steady writes before each kill: the probe has an established connection to the primary. */
const STEADY_MS = 2_000;

export interface PatroniTrial {
  ackMs: number;
  wholeMs: number;
  lost: number;
  /** Acknowledged numbers missing on some node that the new primary has (replicas that diverged), if any. */
  divergent: number;
}

export interface PatroniTimingResult {
  timing: PatroniTiming;
  trials: PatroniTrial[];
  acked: number;
  failedWrites: number;
  error?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Wait until `probe` acknowledges a write sent from now on (the connection path works). */
async function steady(probe: WriteProbe, ms: number): Promise<void> {
  await probe.timeToAckAfter(performance.now(), GIVE_UP_MS);
  await sleep(ms);
}

/** Which of `want` node i lacks, after it has replayed up to `lsn` (a replica; up to 30 s). */
async function missingAfterReplay(c: PatroniCluster, i: number, probe: WriteProbe, want: number[], lsn: string): Promise<number[]> {
  const end = Date.now() + 30_000;
  for (;;) {
    let client: pg.Client | undefined;
    try {
      client = await c.connect(i);
      const r = await client.query<{ ok: boolean | null; rec: boolean }>(
        "SELECT pg_is_in_recovery() AS rec, CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() >= $1::pg_lsn ELSE true END AS ok",
        [lsn],
      );
      if (r.rows[0]?.ok || Date.now() > end) return await probe.missingOn(client, want);
    } catch (e) {
      if (Date.now() > end) throw e;
    } finally {
      if (client) abandon(client);
    }
    await sleep(100);
  }
}

/** The replicas' replay lag on the leader (bytes and pg_stat_replication's replay_lag), for the report; never throws. */
async function replicationLag(c: PatroniCluster, leader: number): Promise<string> {
  let client: pg.Client | undefined;
  try {
    client = await c.connect(leader);
    const r = await client.query<{ name: string; state: string; bytes: string | null; lag: string | null }>(
      "SELECT application_name AS name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text AS bytes, replay_lag::text AS lag FROM pg_stat_replication ORDER BY 1",
    );
    return `replicas behind ${c.nodes[leader]!.name}: ${r.rows.map((x) => `${x.name} ${x.state} ${x.bytes ?? "?"} bytes (replay_lag ${x.lag ?? "n/a"})`).join("; ") || "none"}`;
  } catch (e) {
    return `replication lag unknown: ${(e as Error).message}`;
  } finally {
    if (client) abandon(client);
  }
}

/** `kill` defaults to BENCH_PATRONI_KILL (see above); bench/failover-app passes its own. */
export async function runPatroniTiming(timing: PatroniTiming, trials = TRIALS, log: (s: string) => void = console.log, kill: KillWhat = KILL): Promise<PatroniTimingResult> {
  const out: PatroniTrial[] = [];
  let where = "starting the cluster";
  let c: PatroniCluster | undefined;
  let probe: WriteProbe | undefined;
  const lostSoFar = new Set<number>();
  try {
    c = await startPatroni(timing);
    const leader0 = await c.healthy(GIVE_UP_MS);
    const admin = await c.connect(leader0);
    try {
      await createProbeTable(admin);
    } finally {
      abandon(admin);
    }
    const path = PATH_KIND === "rest" ? c.restPath({ timeoutMs: WRITE_TIMEOUT_MS }) : c.multiHostPath({ timeoutMs: WRITE_TIMEOUT_MS });
    probe = new WriteProbe(path, { intervalMs: WRITE_EVERY_MS, timeoutMs: WRITE_TIMEOUT_MS });
    probe.start();
    for (let t = 0; t < trials; t++) {
      where = `trial ${t + 1}/${trials}, waiting for a whole cluster and steady writes`;
      await c.healthy(GIVE_UP_MS);
      await steady(probe, STEADY_MS);
      // Still whole after the steady writes (a replica restarting then would make the kill a double failure).
      const leader = await c.healthy(GIVE_UP_MS);
      where = `trial ${t + 1}/${trials}, kill -9 (${kill}) of ${c.nodes[leader]!.name}, waiting for the next acknowledged write`;
      const lagAtKill = await replicationLag(c, leader);
      const t0 = performance.now();
      const lastBefore = probe.acknowledged().at(-1);
      await c.kill(leader, kill);
      const ackMs = await probe.timeToAckAfter(t0, GIVE_UP_MS);
      // As bench/failover restarts a killed pgraft node: once a write has been acknowledged without it. Started
      // before its leader key expires (ttl), the killed node's Patroni would find itself still the lock owner and
      // simply start its PostgreSQL again as the primary: no failover.
      if (kill === "node") c.restart(leader);
      where = `trial ${t + 1}/${trials}, waiting for ${c.nodes[leader]!.name} to be back as a streaming replica`;
      const newLeader = await c.healthy(GIVE_UP_MS);
      const wholeMs = performance.now() - t0;
      where = `trial ${t + 1}/${trials}, counting lost writes`;
      const want = probe.acknowledged();
      let lsn: string;
      let onLeader: number[];
      const lc = await c.connect(newLeader);
      try {
        lsn = (await lc.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
        onLeader = await probe.missingOn(lc, want);
      } finally {
        abandon(lc);
      }
      const newLost = onLeader.filter((n) => !lostSoFar.has(n));
      for (const n of newLost) lostSoFar.add(n);
      let divergent = 0;
      for (let i = 0; i < c.nodes.length; i++) {
        if (i === newLeader) continue;
        const m = await missingAfterReplay(c, i, probe, want, lsn);
        divergent = Math.max(divergent, m.filter((n) => !lostSoFar.has(n)).length);
      }
      out.push({ ackMs, wholeMs, lost: newLost.length, divergent });
      log(`    trial ${t + 1}/${trials}: just before the kill, ${lagAtKill}`);
      log(
        `    trial ${t + 1}/${trials}: killed ${c.nodes[leader]!.name}, new primary ${c.nodes[newLeader]!.name}; next ack after ${fmt(ackMs / 1000, 2)} s, whole again after ${fmt(wholeMs / 1000, 1)} s, acknowledged writes lost ${newLost.length}${newLost.length ? ` (n=${newLost.slice(0, 10).join(",")}${newLost.length > 10 ? `,...,${newLost[newLost.length - 1]}` : ""}; acknowledged by ${probe.ackedBy(newLost)}; the last acknowledged before the kill: n=${lastBefore})` : ""}${divergent ? `, ${divergent} missing on a replica only` : ""}`,
      );
    }
    await probe.stop();
    return { timing, trials: out, acked: probe.ackCount, failedWrites: probe.failures };
  } catch (e) {
    const cl = c;
    const msg = `${where}: ${(e as Error).message}`;
    await probe?.stop();
    return { timing, trials: out, acked: probe?.ackCount ?? 0, failedWrites: probe?.failures ?? 0, error: cl && !msg.includes("\n") ? `${msg}\n${cl.logTails()}` : msg };
  } finally {
    await c?.stop();
  }
}

const label = (t: PatroniTiming): string => `${t.name} (ttl ${t.ttl} s, loop_wait ${t.loopWait} s, retry_timeout ${t.retryTimeout} s)`;

export function printPatroniSummary(r: PatroniTimingResult, log: (s: string) => void = console.log): void {
  const acks = r.trials.map((x) => x.ackMs).sort((a, b) => a - b);
  const whole = r.trials.map((x) => x.wholeMs).sort((a, b) => a - b);
  const lost = r.trials.map((x) => x.lost);
  const s = (v: number[], p: number): string => fmt(percentile(v, p) / 1000, 2);
  log(`  ${label(r.timing)}: ${r.trials.length} trials${r.error ? " (FAILED, see above)" : ""}`);
  log(`    time to next acknowledged write: p50 ${s(acks, 50)} s, p99 ${s(acks, 99)} s, max ${s(acks, 100)} s${acks.length < 100 ? ` (p99 of ${acks.length} trials is the maximum)` : ""}`);
  log(`    kill to whole again (a primary, both replicas streaming through their slots; with the node kill, the killed node as a replica): p50 ${s(whole, 50)} s, max ${s(whole, 100)} s`);
  log(`    acknowledged writes lost: ${lost.reduce((a, b) => a + b, 0)} in total over ${lost.length} kills (per kill: ${lost.join(", ") || "n/a"}); writes acknowledged ${r.acked}, failed or abandoned ${r.failedWrites}`);
}

async function main(): Promise<void> {
  const why = ensurePatroniInstalled();
  if (why) {
    console.log(`bench/failover-patroni: skipped: ${why}`);
    return;
  }
  const want = (process.env.BENCH_PATRONI_TIMINGS ?? "default,tightest").split(",").map((s) => s.trim());
  const timings = [PATRONI_DEFAULT, PATRONI_TIGHTEST].filter((t) => want.includes(t.name));
  console.log(`bench/failover-patroni: kill -9 the primary of a 3-node Patroni + etcd cluster (PostgreSQL 15, asynchronous replication) under a write load`);
  console.log(`  ${TRIALS} kills per timing (BENCH_TRIALS), each timing on a fresh cluster; kill: ${KILL === "node" ? "the primary's Patroni, postmaster and backends together (a crashed host), started again once a write was acknowledged without it" : "the primary's postmaster and backends only (its Patroni lives on)"} (BENCH_PATRONI_KILL)`);
  console.log(`  writer: one numbered INSERT every ${WRITE_EVERY_MS} ms, one at a time, each abandoned after ${WRITE_TIMEOUT_MS} ms; connection path: ${PATH_KIND === "rest" ? "Patroni REST /primary, HAProxy-style" : "libpq-style host=p1,p2,p3 target_session_attrs=read-write"} (BENCH_PATRONI_PATH)`);
  console.log("  time to next ack: from the kill to the ack of the first write sent after it; lost: acknowledged numbers missing on the new primary once the cluster is whole again");
  console.log(`load average before: ${loadAverageChecked()} (${machineNote()})`);
  const failures: string[] = [];
  const results: PatroniTimingResult[] = [];
  for (const t of timings) {
    console.log("");
    console.log(`${label(t)}:`);
    const r = await runPatroniTiming(t);
    results.push(r);
    if (r.error) {
      failures.push(t.name);
      console.log(`  FAILED after ${r.trials.length} of ${TRIALS} trials: ${r.error.replace(/\n/g, "\n  ")}`);
    }
    printPatroniSummary(r);
  }
  console.log("");
  console.log("summary:");
  for (const r of results) printPatroniSummary(r);
  if (failures.length) console.log(`failed: ${failures.join(", ")}`);
  console.log(`load average after: ${loadAverageChecked()}`);
  if (failures.length) process.exitCode = 1;
}

// Runnable on its own (node dist/bench/failover-patroni.js); bench/failover-app imports runPatroniTiming.
if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
