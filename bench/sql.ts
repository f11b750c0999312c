// bench/sql: the SQL shim's overhead as a ratio. pgraft_kv_put and
// pgraft_kv_get called through pgbench custom scripts (psql's protocol: one
// simple-query per call, one connection per client) against the same
// operations through the gRPC client, on the same node of a 3-node `pgraft
// demo` cluster (real PostgreSQL 15 + sidecars, fsync on, loopback), at 1 and
// 16 clients, first on the leader and then on a follower (which forwards
// writes and ReadIndex rounds to the leader). Each point (node, op, clients)
// runs BENCH_REPS (3) times, SQL and gRPC back to back, alternating which goes
// first (point by point and repetition by repetition); the ratios sql/grpc
// are printed as min/median/max over the repetitions.
//
// What is compared: the same operation, keys and values on the same node,
// each through its own client path, with each load generator's CPU printed:
// pgbench (C, one connection and one thread per client) and this process
// (Node, one HTTP/2 channel) are different generators, so a level where
// either one reached BENCH_SATURATED_PCT (90) % of a core is the last one run
// for that node and op.
//
// The SQL path: pgbench -> PostgreSQL backend -> pgraft_kv_*() (plpgsql,
// SECURITY DEFINER) -> dblink_send_query on the session's connection to the
// sidecar's PostgreSQL-wire endpoint, awaited in pg_sleep(0.001) steps -> the
// Cluster service in-process. The gRPC path: this process -> the sidecar's
// gRPC server (one HTTP/2 channel per node, calls multiplexed on it).
//
// What the ratio can and cannot mean: both paths end at the same sidecar, so
// the shim cannot make an operation cheaper there; but the baseline is the
// gRPC path *as this load generator drives it* (one Node process, one
// channel, on the cores the sidecars and PostgreSQL also use). A ratio near
// or above 1 (ops/s) means the shim's cost is below what separates the two
// generators, not that SQL is faster; it is an upper bound on the shim's
// overhead only where the gRPC generator is not itself the limit. A point
// whose ratio's min-max spans 1.0 is flagged "within noise".
//
// Keys: 8 bytes (`k0000042`), drawn uniformly from BENCH_KEYS (1000) keys
// written before the runs; values: 256 bytes of JSON text. Latency of the SQL
// side comes from pgbench's per-transaction logs (-l); each client's first
// transaction, which also opens the dblink connection to the sidecar (SCRAM),
// is left out of the percentiles but counted in ops/s. "client cpu" is the
// load generator's own CPU (pgbench's from /proc/self/stat once it is reaped;
// this process's for gRPC), in % of one core: on a small machine the load
// generator competes with the sidecars for the same cores.
//
//   make build && node dist/bench/sql.js     (BENCH_SECONDS=5 BENCH_CLIENTS=1,16 BENCH_KEYS=1000 BENCH_REPS=3)
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { startDemo, type DemoNodeInfo, type RunningDemo } from "../src/demo/local-cluster.js";
import * as pb from "../src/gen/pgraft/v1/client_pb.js";
import { createClient, type TypedClient } from "../src/transport/grpc-service.js";
import { MAIN } from "./pgraft-cluster.js";
import { reachableTempDir, requirePgbench } from "./pgbench.js";
import { closedLoop, percentile } from "./stats.js";
import { alternate, fmt, fmtSpread, loadAverageChecked, machineNote, reapedChildrenCpu, repetitions, SATURATED_PCT, spread } from "./report.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = (process.env.BENCH_CLIENTS ?? "1,16").split(",").map(Number);
const KEYS = Number(process.env.BENCH_KEYS ?? 1000);
const REPS = repetitions();
const CLUSTER_ID = "pgraft-demo";
const VALUE = JSON.stringify("x".repeat(254)); // 256 bytes of JSON text
const key = (n: number): string => `k${String(n).padStart(7, "0")}`; // 8 bytes
const randomKey = (): number => 1 + Math.floor(Math.random() * KEYS);

type Op = "put" | "get";
type Client = TypedClient<(typeof pb.Cluster)["method"]>;

/** The SQL a pgbench client runs per transaction: the same key and value shapes as the gRPC side. */
const SCRIPTS: Record<Op, string> = {
  put: `\\set k random(1, ${KEYS})\nSELECT pgraft_kv_put('k' || lpad(:k::text, 7, '0'), '${VALUE}'::jsonb);\n`,
  get: `\\set k random(1, ${KEYS})\nSELECT pgraft_kv_get('k' || lpad(:k::text, 7, '0'));\n`,
};

interface Measured {
  opsPerSec: number;
  avgMs: number;
  p50: number;
  p99: number;
  ops: number;
  /** CPU the load generator used (user + system), in % of one core over the run. */
  clientCpu: number;
}

let interrupted = false;
let pgbenchChild: ChildProcess | undefined;
const checkInterrupted = (): void => {
  if (interrupted) throw new Error("interrupted");
};

/** One pgbench run of `script` on `node` with `clients` connections; figures from its summary and per-transaction logs. */
async function runPgbench(pgbench: string, node: DemoNodeInfo, op: Op, clients: number, workDir: string, tag: string): Promise<Measured> {
  const dir = join(workDir, tag);
  await mkdir(dir, { recursive: true });
  const script = join(dir, `${op}.sql`);
  await writeFile(script, SCRIPTS[op]);
  const u = new URL(node.dsn);
  const env = {
    ...process.env,
    PGHOST: u.hostname,
    PGPORT: u.port,
    PGUSER: decodeURIComponent(u.username),
    PGPASSWORD: decodeURIComponent(u.password),
    PGDATABASE: decodeURIComponent(u.pathname.slice(1)),
    PGAPPNAME: "pgraft-bench-sql",
  };
  const args = ["-n", "-f", script, "-c", String(clients), "-j", String(clients), "-T", String(SECONDS), "-l", `--log-prefix=${join(dir, "log")}`];
  const cpu0 = reapedChildrenCpu();
  const t0 = performance.now();
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const p = spawn(pgbench, args, { env, cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    pgbenchChild = p;
    let output = "";
    p.stdout.on("data", (b: Buffer) => (output += b.toString()));
    p.stderr.on("data", (b: Buffer) => (output += b.toString()));
    p.once("error", reject);
    p.once("close", (c) => resolve({ code: c, output }));
  }).finally(() => (pgbenchChild = undefined));
  const clientCpu = (100 * (reapedChildrenCpu() - cpu0)) / ((performance.now() - t0) / 1000);
  checkInterrupted();
  if (code !== 0) throw new Error(`pgbench ${args.join(" ")} on node ${node.id} failed (exit code ${code}):\n${output.trim()}`);
  const tps = /^tps = ([\d.]+)/m.exec(output);
  const avg = /^latency average = ([\d.]+) ms/m.exec(output);
  const failed = /^number of failed transactions: (\d+)/m.exec(output);
  if (!tps || !avg) throw new Error(`could not read pgbench's summary:\n${output.trim()}`);
  if (failed && Number(failed[1]) > 0) throw new Error(`pgbench reported failed transactions:\n${output.trim()}`);
  // Per-transaction log lines: client_id transaction_no (from 1) time_us script_no epoch epoch_us.
  const latenciesMs: number[] = [];
  let ops = 0;
  for (const f of await readdir(dir)) {
    if (!f.startsWith("log.")) continue;
    for (const line of (await readFile(join(dir, f), "utf8")).split("\n")) {
      const [, txNo, us] = line.split(" ");
      if (txNo === undefined || us === undefined || !/^\d+$/.test(us)) continue;
      ops++;
      if (txNo !== "1") latenciesMs.push(Number(us) / 1000);
    }
  }
  latenciesMs.sort((a, b) => a - b);
  return { opsPerSec: Number(tps[1]), avgMs: Number(avg[1]), p50: percentile(latenciesMs, 50), p99: percentile(latenciesMs, 99), ops, clientCpu };
}

/** The same operation through the gRPC client, closed loop, `clients` concurrent calls on one channel to the node. */
async function runGrpc(client: Client, op: Op, clients: number): Promise<Measured> {
  const call =
    op === "put"
      ? async () => {
          const r = await client.methods.kvPut({ clusterId: CLUSTER_ID, key: key(randomKey()), value: VALUE }, { timeoutMs: 10_000 });
          if (!r.succeeded) throw new Error("put did not succeed");
        }
      : async () => {
          const r = await client.methods.kvGet({ clusterId: CLUSTER_ID, key: key(randomKey()) }, { timeoutMs: 10_000 });
          if (!r.kv) throw new Error("get found no value for a prefilled key");
        };
  await call(); // the channel is connected before the clock starts
  const cpu0 = process.cpuUsage();
  const r = await closedLoop(clients, SECONDS, call);
  const cpu = process.cpuUsage(cpu0);
  checkInterrupted();
  const sum = r.latenciesMs.reduce((a, b) => a + b, 0);
  return { opsPerSec: r.committed / r.seconds, avgMs: sum / r.latenciesMs.length, p50: percentile(r.latenciesMs, 50), p99: percentile(r.latenciesMs, 99), ops: r.committed, clientCpu: (cpu.user + cpu.system) / 1e4 / r.seconds };
}

const HEADER = `${"node".padEnd(15)}${"op".padEnd(5)}${"clients".padEnd(9)}${"via".padEnd(6)}${"ops/s median (min-max)".padEnd(24)}${"p50 ms".padEnd(9)}${"p99 ms".padEnd(9)}client cpu % (min-max)`;
function row(node: string, op: string, clients: string, via: string, ms: Measured[]): string {
  const t = spread(ms.map((m) => m.opsPerSec));
  const med = (f: (m: Measured) => number): number => spread(ms.map(f)).median;
  const cpu = spread(ms.map((m) => m.clientCpu));
  return `${node.padEnd(15)}${op.padEnd(5)}${clients.padEnd(9)}${via.padEnd(6)}${`${fmt(t.median)} (${fmt(t.min)}-${fmt(t.max)})`.padEnd(24)}${fmt(med((m) => m.p50), 2).padEnd(9)}${fmt(med((m) => m.p99), 2).padEnd(9)}${fmt(cpu.min)}-${fmt(cpu.max)}`;
}

async function leaderOf(clients: Map<number, Client>): Promise<number> {
  const end = Date.now() + 30_000;
  for (;;) {
    for (const c of clients.values()) {
      try {
        const st = await c.methods.status({ clusterId: CLUSTER_ID }, { timeoutMs: 1_000 });
        if (st.leaderId !== 0) return st.leaderId;
      } catch {
        /* try the next node */
      }
    }
    if (Date.now() > end) throw new Error("no node knows a leader");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const { bins, pgbench } = await requirePgbench();

  const onSignal = (): void => {
    interrupted = true;
    pgbenchChild?.kill("SIGINT");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const baseDir = await reachableTempDir("pgraft-bench-sql-");
  const workDir = join(baseDir, "pgbench");
  const clients = new Map<number, Client>();
  let demo: RunningDemo | undefined;
  let died: string | undefined;
  try {
    console.log(`bench/sql: 3-node pgraft demo (PostgreSQL ${bins.version} + sidecars, fsync on), 8-byte keys over ${KEYS} prefilled keys, ${VALUE.length}-byte values, ${SECONDS}s per run`);
    console.log(`  sql = pgbench custom script (simple query, one connection per client) -> pgraft_kv_*() -> dblink -> sidecar; grpc = in-process closed loop, one channel`);
    console.log(`  ${REPS} repetitions per point, sql and grpc alternating which runs first; client cpu = the load generator's own CPU, % of one core (pgbench for sql, this process for grpc)`);
    console.log("  both paths end at the same sidecar, so SQL cannot be cheaper there: the gRPC baseline includes its own load generator (one Node process, one channel, sharing the cores),");
    console.log("  so a ratio near or above 1 says the shim's cost is within what separates the two generators, not that SQL is faster; ratios whose min-max spans 1.0 are marked \"within noise\"");
    console.log(`  load average before: ${loadAverageChecked()} (${machineNote()})`);
    const started = Date.now();
    demo = await startDemo({ nodes: 3, baseDir, mainJs: MAIN, progress: (l) => void (process.env.BENCH_VERBOSE ? process.stderr.write(`  ${l}\n`) : undefined) });
    void demo.unexpectedExit.then((why) => (died = why));
    console.log(`  cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    for (const n of demo.nodes) clients.set(n.id, createClient(pb.Cluster, n.grpc, grpc.credentials.createInsecure()));
    checkInterrupted();

    const leader = await leaderOf(clients);
    const follower = demo.nodes.find((n) => n.id !== leader)!.id;
    // Prefill the keys the gets read (and the puts overwrite), 16 at a time through the leader.
    let next = 1;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next <= KEYS) {
          const k = next++;
          await clients.get(leader)!.methods.kvPut({ clusterId: CLUSTER_ID, key: key(k), value: VALUE }, { timeoutMs: 10_000 });
        }
      }),
    );
    checkInterrupted();
    console.log("");
    console.log(HEADER);

    let point = 0;
    for (const [role, id] of [["leader", leader], ["follower", follower]] as const) {
      const node = demo.nodes.find((n) => n.id === id)!;
      for (const op of ["put", "get"] as const) {
        for (const c of CLIENTS) {
          const g: Measured[] = [];
          const s: Measured[] = [];
          for (let rep = 0; rep < REPS; rep++) {
            for (const via of alternate(point + rep, "grpc", "sql")) {
              if (via === "grpc") g.push(await runGrpc(clients.get(id)!, op, c));
              else s.push(await runPgbench(pgbench, node, op, c, workDir, `${role}-${op}-${c}-${rep}`));
              if (died) throw new Error(died);
            }
          }
          point++;
          const now = await leaderOf(clients);
          const label = `${role} (n${id})${now === leader ? "" : "*"}`;
          console.log(row(label, op, String(c), "grpc", g));
          console.log(row("", "", "", "sql", s));
          const opsRatio = s.map((m, i) => m.opsPerSec / g[i]!.opsPerSec);
          const p50Ratio = s.map((m, i) => m.p50 / g[i]!.p50);
          console.log(`${"".padEnd(29)}sql/grpc per repetition: ops/s ${fmtSpread(opsRatio)}; p50 ${fmtSpread(p50Ratio)}`);
          const spans1 = (xs: number[]): boolean => {
            const sp = spread(xs);
            return sp.n > 0 && sp.min <= 1 && sp.max >= 1;
          };
          const noisy = [...(spans1(opsRatio) ? ["ops/s"] : []), ...(spans1(p50Ratio) ? ["p50"] : [])];
          if (noisy.length) console.log(`${"".padEnd(29)}warning: the ${noisy.join(" and ")} ratio's min-max spans 1.0: within noise, no difference between sql and grpc shown here`);
          if (now !== leader) console.log(`  * the leader moved from node ${leader} to node ${now} during these runs`);
          const saturated = [...(g.some((m) => m.clientCpu >= SATURATED_PCT) ? ["grpc"] : []), ...(s.some((m) => m.clientCpu >= SATURATED_PCT) ? ["sql (pgbench)"] : [])];
          if (saturated.length) {
            console.log(`  the ${saturated.join(" and ")} load generator reached ${SATURATED_PCT}% of a core: no higher client count for ${role} ${op}`);
            break;
          }
        }
      }
    }
    console.log("");
    console.log(`load average after: ${loadAverageChecked()}`);
    console.log("ratios: ops/s sql/grpc < 1 and p50 sql/grpc > 1 are the shim's cost; p50/p99 are the median over the repetitions; the SQL p50/p99 leave out each client's first call (dblink connect)");
  } finally {
    for (const c of clients.values()) c.close();
    await demo?.stop().catch((e: unknown) => console.error("stopping the demo:", e));
    await rm(baseDir, { recursive: true, force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
