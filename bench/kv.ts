// bench/kv: put throughput and latency through each system's client API, one
// load generator (this process), against a 3-node pgraft cluster (real
// sidecar processes, the @grpc/grpc-js client) and a 3-member etcd cluster
// (the `etcd3` client, also gRPC), both on loopback with fsync on, in the same
// run. 8-byte keys, 256-byte values, 1/16/64 concurrent closed-loop clients
// spread over every member (writes to a follower are forwarded, as etcd's
// are). Each level runs BENCH_REPS (3) times, pgraft and etcd alternating
// which goes first, each run on a fresh cluster.
//
// What is compared: the same puts through the same kind of path (a gRPC
// client in one Node process -> the member -> Raft -> fsync'd log -> the KV).
// The load generator's CPU (this process, user + system, % of one core) is
// printed per run; a level where either side's generator reached
// BENCH_SATURATED_PCT (90) % is the last one run, since beyond it the
// generator, not the system, sets the figure. Both sides' clients are made
// and connected before the clock (and the CPU meter) starts: pgraft's
// channels with one put each, etcd's client with WARM_PUTS puts.
//
//   make bench      (BENCH_SECONDS=5 BENCH_CLIENTS=1,16,64 BENCH_REPS=3)
import { existsSync } from "node:fs";
import { etcdKvClient, runEtcd, startEtcd, WARM_PUTS } from "./etcd-baseline.js";
import { startPgraft } from "./pgraft-cluster.js";
import { closedLoop, percentile, type RunResult } from "./stats.js";
import { alternate, fmt, fmtSpread, loadAverageChecked, machineNote, repetitions, SATURATED_PCT, selfCpuMeter, spread } from "./report.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = (process.env.BENCH_CLIENTS ?? "1,16,64").split(",").map(Number);
const VALUE = JSON.stringify("x".repeat(254)); // 256 bytes of JSON text
const key = (n: number): string => `k${String(n % 1_000_000).padStart(7, "0")}`; // 8 bytes

const REPS = repetitions();

type Run = RunResult & { cpuPct: number };
type System = "pgraft" | "etcd";

async function runPgraft(c: number): Promise<Run> {
  const cluster = await startPgraft();
  try {
    await cluster.ready(60_000); // a loaded 2-core machine can take a while to start three Node processes
    let n = 0;
    const clients = cluster.ids.map((id) => cluster.client(id).methods);
    await Promise.all(clients.map((m) => m.kvPut({ clusterId: cluster.clusterId, key: key(0), value: VALUE }, { timeoutMs: 10_000 }))); // channels connected before the clock starts
    const cpu = selfCpuMeter();
    const r = await closedLoop(c, SECONDS, async () => {
      const i = n++;
      const r = await clients[i % clients.length]!.kvPut({ clusterId: cluster.clusterId, key: key(i), value: VALUE }, { timeoutMs: 10_000 });
      if (!r.succeeded) throw new Error("put did not succeed");
    });
    return { ...r, cpuPct: cpu() };
  } finally {
    await cluster.stop();
  }
}

async function runEtcdOnce(c: number): Promise<Run> {
  const etcd = await startEtcd(23890); // not bench/failover's ports: the two can run side by side
  try {
    const client = await etcdKvClient(etcd); // connections open before the clock starts, as pgraft's channels are
    try {
      const cpu = selfCpuMeter();
      const r = await runEtcd(client, c, SECONDS, VALUE, key);
      return { ...r, cpuPct: cpu() };
    } finally {
      client.close();
    }
  } finally {
    await etcd.stop();
  }
}

const rate = (r: RunResult): number => r.committed / r.seconds;
function row(c: string, name: string, rs: Run[]): string {
  const t = spread(rs.map(rate));
  const med = (f: (r: Run) => number): number => spread(rs.map(f)).median;
  const cpu = spread(rs.map((r) => r.cpuPct));
  return `${c.padEnd(9)}${name.padEnd(8)}${`${fmt(t.median)} (${fmt(t.min)}-${fmt(t.max)})`.padEnd(22)}${fmt(med((r) => percentile(r.latenciesMs, 50)), 2).padEnd(8)}${fmt(med((r) => percentile(r.latenciesMs, 99)), 2).padEnd(8)}${fmt(cpu.min)}-${fmt(cpu.max)}`;
}

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/kv: 3 nodes each, 8-byte keys, ${VALUE.length}-byte values, ${SECONDS}s per run, closed-loop clients over all members, ${REPS} repetitions per level (pgraft and etcd alternate which runs first)`);
  console.log("both through their gRPC client APIs from this one process (pgraft: @grpc/grpc-js to the sidecars; etcd: the etcd3 client); generator cpu = this process, % of one core");
  console.log(`both clients are created and connected before the clock starts (pgraft: one put per member's channel; etcd: ${WARM_PUTS} puts, the etcd3 client picks a member per call)`);
  if (!haveEtcd) console.log("etcd not found (apt-get install etcd-server, or ETCD_BIN=...): the etcd rows are skipped");
  console.log(`load average before: ${loadAverageChecked()} (${machineNote()})`);
  console.log("");
  console.log("clients  system  puts/s median (min-max) p50 ms  p99 ms  generator cpu % (min-max)");
  const systems: System[] = haveEtcd ? ["pgraft", "etcd"] : ["pgraft"];
  for (const c of CLIENTS) {
    const runs: Record<System, Run[]> = { pgraft: [], etcd: [] };
    for (let rep = 0; rep < REPS; rep++) {
      const order = alternate<System>(rep, "pgraft", "etcd").filter((s) => systems.includes(s));
      for (const s of order) runs[s].push(s === "pgraft" ? await runPgraft(c) : await runEtcdOnce(c));
    }
    console.log(row(String(c), "pgraft", runs.pgraft));
    if (haveEtcd) {
      console.log(row("", "etcd", runs.etcd));
      const ratios = runs.pgraft.map((p, i) => rate(p) / rate(runs.etcd[i]!));
      console.log(`${"".padEnd(9)}puts/s pgraft/etcd, per repetition: ${fmtSpread(ratios)}`);
    }
    const saturated = systems.filter((s) => runs[s].some((r) => r.cpuPct >= SATURATED_PCT));
    if (saturated.length) {
      console.log(`${"".padEnd(9)}the load generator reached ${SATURATED_PCT}% of a core (${saturated.join(", ")}): higher levels are not run`);
      break;
    }
  }
  console.log("");
  console.log("p50/p99: the median over the repetitions of each run's figure");
  console.log(`load average after: ${loadAverageChecked()}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
