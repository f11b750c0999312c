// bench/proxy: what the client proxy (src/routing/proxy.ts) adds to a
// PostgreSQL client's latency. pgbench's select-only script (-S: one primary
// key lookup per transaction, simple query protocol) runs against one
// PostgreSQL 15 server (pgbench -i -s BENCH_PROXY_SCALE, fsync off: nothing is
// written during the runs) directly and through a ClientProxy in this process
// whose target is that server. Each repetition runs both, alternating which
// goes first (BENCH_REPS, default 3), each for BENCH_PROXY_SECONDS with
// BENCH_PROXY_CLIENTS clients on BENCH_PROXY_THREADS pgbench threads.
//
// Printed per run: pgbench's average latency and tps (without the initial
// connections), the proxy's CPU (this process's, in % of one core: the proxy
// is all it runs meanwhile) and pgbench's; then the ratio proxy/direct of the
// average latency per repetition as min/median/max, against the issue's
// target (the proxy adds at most 10 %). The cores are shared with pgbench, the
// backends and whatever else runs on the machine: at a fixed client count
// the proxy's CPU is taken from the same cores, so the ratio is what a client
// sees on such a machine, an upper bound of the proxy's own cost.
//
//   make build && node dist/bench/proxy.js   (BENCH_REPS=3 BENCH_PROXY_CLIENTS=4 BENCH_PROXY_THREADS=2
//   BENCH_PROXY_SECONDS=10 BENCH_PROXY_SCALE=1)
import { spawn, type ChildProcess } from "node:child_process";
import { rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { pino } from "pino";
import { LocalPostgres } from "../src/postgres/index.js";
import { ClientProxy } from "../src/routing/proxy.js";
import { reachableTempDir, requirePgbench } from "./pgbench.js";
import { killAndWait } from "./processes.js";
import { alternate, fmt, fmtSpread, loadAverageChecked, machineNote, reapedChildrenCpu, repetitions, selfCpuMeter, spread } from "./report.js";

const REPS = repetitions();
const CLIENTS = Number(process.env.BENCH_PROXY_CLIENTS ?? 4);
const THREADS = Number(process.env.BENCH_PROXY_THREADS ?? 2);
const SECONDS = Number(process.env.BENCH_PROXY_SECONDS ?? 10);
const SCALE = Number(process.env.BENCH_PROXY_SCALE ?? 1);
const WARMUP_SECONDS = 2;
/** The bound: the proxy adds at most this to the select-only latency. */
const TARGET_RATIO = 1.1;

let interrupted = false;
const children = new Set<ChildProcess>();

function checkInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Run a program to completion; its stdout and stderr together; throws on a non-zero exit. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(p);
    let output = "";
    p.stdout.on("data", (b: Buffer) => (output += b.toString()));
    p.stderr.on("data", (b: Buffer) => (output += b.toString()));
    p.once("error", (e) => {
      children.delete(p);
      reject(e);
    });
    p.once("close", (code) => {
      children.delete(p);
      if (code === 0) resolve(output);
      else reject(new Error(`${what} failed (${cmd} ${args.join(" ")}: exit code ${code}):\n${output.trim()}`));
    });
  });
}

interface Measured {
  latencyMs: number;
  tps: number;
  /** This process's CPU (the proxy's, when it carries the run), % of one core. */
  selfCpu: number;
  /** pgbench's CPU, % of one core. */
  pgbenchCpu: number;
}

async function runPgbench(pgbench: string, port: number, env: NodeJS.ProcessEnv, seconds: number, what: string): Promise<Measured> {
  const self = selfCpuMeter();
  const reaped0 = reapedChildrenCpu();
  const t0 = performance.now();
  const out = await run(pgbench, ["-n", "-S", "-c", String(CLIENTS), "-j", String(THREADS), "-T", String(seconds), "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "postgres"], env, what);
  const wall = (performance.now() - t0) / 1000;
  const selfCpu = self();
  const pgbenchCpu = (100 * (reapedChildrenCpu() - reaped0)) / wall;
  checkInterrupted();
  const lat = /^latency average = ([\d.]+) ms/m.exec(out);
  const tps = /^tps = ([\d.]+) \(without initial connection time\)/m.exec(out);
  if (!lat || !tps) throw new Error(`could not read pgbench's summary (${what}):\n${out.trim()}`);
  return { latencyMs: Number(lat[1]), tps: Number(tps[1]), selfCpu, pgbenchCpu };
}

const row = (label: string, m: Measured[]): string => {
  const med = (f: (x: Measured) => number): number => spread(m.map(f)).median;
  return `  ${label.padEnd(7)} latency avg ms ${m.map((x) => fmt(x.latencyMs, 3)).join(" ")}   tps ${m.map((x) => fmt(x.tps, 0)).join(" ")}   this process cpu % (median) ${fmt(med((x) => x.selfCpu), 0)}   pgbench cpu % (median) ${fmt(med((x) => x.pgbenchCpu), 0)}`;
};

async function main(): Promise<void> {
  const { bins, pgbench } = await requirePgbench();
  const onSignal = (): void => {
    interrupted = true;
    for (const c of children) c.kill("SIGINT");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const baseDir = await reachableTempDir("pgraft-bench-proxy-");
  let server: LocalPostgres | undefined;
  let proxy: ClientProxy | undefined;
  try {
    console.log(`bench/proxy: pgbench -n -S (select-only, simple query) -c ${CLIENTS} -j ${THREADS} -T ${SECONDS}, scale ${SCALE}, PostgreSQL ${bins.version} (fsync off), loopback TCP`);
    console.log(`  direct = pgbench -> PostgreSQL; proxy = pgbench -> ClientProxy (this Node process) -> PostgreSQL; ${REPS} repetitions, alternating which runs first`);
    console.log(`  load average before: ${loadAverageChecked()} (${machineNote()})`);
    server = await LocalPostgres.initdb({ dataDir: join(baseDir, "data"), port: await freePort(), password: `pw-${Math.random().toString(36).slice(2)}`, binaries: bins, fsync: false, noSync: true });
    await server.start();
    const env = { ...process.env, PGPASSWORD: server.password, PGSSLMODE: "disable", PGAPPNAME: "pgraft_bench_proxy" };
    await run(pgbench, ["-i", "-q", "-s", String(SCALE), "-h", "127.0.0.1", "-p", String(server.port), "-U", "postgres", "postgres"], env, "pgbench -i");
    const target = { host: "127.0.0.1", port: server.port, nodeId: 1 };
    proxy = new ClientProxy({ name: "read-write", listen: { host: "127.0.0.1", port: 0 }, target: () => target, logger: pino({ level: "silent" }) });
    const { port: proxyPort } = await proxy.start();
    const ports = { direct: server.port, proxy: proxyPort };
    // Warm the caches and both paths once, not counted.
    for (const via of ["direct", "proxy"] as const) await runPgbench(pgbench, ports[via], env, WARMUP_SECONDS, `warm-up ${via}`);

    const got: Record<"direct" | "proxy", Measured[]> = { direct: [], proxy: [] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const via of alternate<"direct" | "proxy">(rep, "direct", "proxy")) got[via].push(await runPgbench(pgbench, ports[via], env, SECONDS, `${via} ${rep + 1}`));
    }
    const ratios = got.proxy.map((p, i) => p.latencyMs / got.direct[i]!.latencyMs);
    const tpsRatios = got.proxy.map((p, i) => p.tps / got.direct[i]!.tps);
    console.log("");
    console.log(row("direct", got.direct));
    console.log(row("proxy", got.proxy));
    console.log(`  latency proxy/direct per repetition: ${fmtSpread(ratios, 3)}   target ≤ ${TARGET_RATIO}: ${spread(ratios).median <= TARGET_RATIO ? "met (median)" : "NOT met (median)"}`);
    console.log(`  tps proxy/direct per repetition:     ${fmtSpread(tpsRatios, 3)}`);
    // % of a core / tps = core-seconds per transaction, in µs.
    const cpuUs = got.proxy.map((p) => (p.selfCpu * 1e4) / p.tps);
    console.log(`  proxy cpu per transaction, µs:       ${fmtSpread(cpuUs, 0)} (this process, user + system: mostly the kernel's loopback TCP in its writes)`);
    const addedUs = got.proxy.map((p, i) => 1000 * (p.latencyMs - got.direct[i]!.latencyMs));
    console.log(`  latency added per transaction, µs:   ${fmtSpread(addedUs, 0)}`);
    const s = proxy.stats();
    console.log(`  proxy: ${s.accepted} connections accepted, ${s.refused} refused, ${s.failedUpstream + s.failedNoTarget} answered with an error`);
    console.log("");
    console.log(`load average after: ${loadAverageChecked()}`);
    console.log("the cores are shared with pgbench, the backends and the rest of the machine: figures are noisy, compare ratios within one run only");
  } finally {
    await killAndWait(children);
    await proxy?.close();
    await server?.stop({ mode: "fast" }).catch((e: unknown) => console.error("stopping the server:", e));
    if (process.env.BENCH_KEEP === "1") console.log(`kept ${baseDir}`);
    else await rm(baseDir, { recursive: true, force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
