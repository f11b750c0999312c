// bench/proxy: what the client proxy (src/routing/proxy.ts) adds to a
// PostgreSQL client's latency, beside what a user would put in front of
// PostgreSQL instead: HAProxy in TCP mode (as Patroni's users do). pgbench's
// select-only script (-S: one primary key lookup per transaction, simple query
// protocol) runs against one PostgreSQL 15 server (pgbench -i -s
// BENCH_PROXY_SCALE, fsync off: nothing is written during the runs) three
// ways: directly, through a ClientProxy in this process whose target is that
// server, and through an HAProxy child process (haproxy -db -f <temp
// dir>/haproxy.cfg: mode tcp, one frontend on a free loopback port, one
// backend server = the same PostgreSQL, no health checks, nbthread 1 so that
// it runs one thread like Node's event loop; HAProxy's default is a thread per
// core). Each repetition runs the three, rotating which goes first
// (BENCH_REPS, default 3), each for BENCH_PROXY_SECONDS with
// BENCH_PROXY_CLIENTS clients on BENCH_PROXY_THREADS pgbench threads.
//
// HAProxy is HAPROXY_BIN, else `haproxy` on the PATH or in /usr/sbin; when it
// is missing and we are root with apt-get, it is installed from Debian's
// packages (so does `make bench`); otherwise its column is skipped and said
// so. It is killed when the bench ends, fails or is interrupted (SIGINT,
// SIGTERM), and on this process's exit.
//
// Printed per run: pgbench's average latency and tps (without the initial
// connections), the proxy's CPU in % of one core (pgraft's: this process's,
// the proxy is all it runs meanwhile; HAProxy's: its /proc/<pid>/stat) and
// pgbench's; then per repetition, as min/median/max, the latency ratios
// pgraft-proxy/direct (against the target: the proxy adds at most
// 10 %), haproxy/direct and pgraft-proxy/haproxy, the tps ratios, each proxy's
// CPU per transaction and the latency each adds. The cores are shared with
// pgbench, the backends and whatever else runs on the machine: at a fixed
// client count a proxy's CPU is taken from the same cores, so a ratio is what
// a client sees on such a machine, an upper bound of the proxy's own cost.
//
//   make build && node dist/bench/proxy.js   (BENCH_REPS=3 BENCH_PROXY_CLIENTS=4 BENCH_PROXY_THREADS=2
//   BENCH_PROXY_SECONDS=10 BENCH_PROXY_SCALE=1 HAPROXY_BIN=)
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:fs";
import { access, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type AddressInfo } from "node:net";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { pino } from "pino";
import { LocalPostgres } from "../src/postgres/index.js";
import { ClientProxy } from "../src/routing/proxy.js";
import { reachableTempDir, requirePgbench } from "./pgbench.js";
import { readStat } from "./proc-cpu.js";
import { killAndWait } from "./processes.js";
import { fmt, fmtSpread, loadAverageChecked, machineNote, reapedChildrenCpu, repetitions, selfCpuMeter, spread } from "./report.js";

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

type Via = "direct" | "pgraft" | "haproxy";

interface Measured {
  latencyMs: number;
  tps: number;
  /** The proxy's CPU (user + system), % of one core: this process's for pgraft's, HAProxy's own for HAProxy; NaN for direct. */
  proxyCpu: number;
  /** pgbench's CPU, % of one core. */
  pgbenchCpu: number;
}

const execFileP = promisify(execFile);

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function findHaproxy(): Promise<string | undefined> {
  if (process.env.HAPROXY_BIN) return process.env.HAPROXY_BIN;
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), "/usr/sbin", "/usr/local/sbin"];
  for (const d of dirs) if (await executable(join(d, "haproxy"))) return join(d, "haproxy");
  return undefined;
}

/** HAProxy's binary: found, else installed from Debian's packages when we are root with apt-get; undefined (and why) otherwise. */
async function requireHaproxy(): Promise<{ bin: string } | { missing: string }> {
  const found = await findHaproxy();
  if (found) return { bin: found };
  if (process.getuid?.() !== 0 || !(await executable("/usr/bin/apt-get"))) return { missing: "haproxy not found (install Debian's haproxy package or set HAPROXY_BIN)" };
  console.log("  installing haproxy from Debian's packages (apt-get install -y haproxy)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  try {
    await execFileP("apt-get", ["update", "-qq"], { env });
    await execFileP("apt-get", ["install", "-y", "-qq", "haproxy"], { env });
  } catch (e) {
    return { missing: `apt-get install haproxy failed: ${(e as Error).message.split("\n")[0]}` };
  }
  const installed = await findHaproxy();
  return installed ? { bin: installed } : { missing: "haproxy still not found after apt-get install" };
}

/** A minimal TCP-mode configuration: one frontend, one backend server (the PostgreSQL), no health checks, one thread. */
function haproxyConfig(listenPort: number, pgPort: number): string {
  return [
    "global",
    "  nbthread 1", // one thread, as Node's event loop (HAProxy's default: one per core)
    "  maxconn 1024",
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    "  timeout client 30m", // as Patroni's example haproxy.cfg
    "  timeout server 30m",
    "frontend pg",
    `  bind 127.0.0.1:${listenPort}`,
    "  default_backend pg",
    "backend pg",
    `  server pg1 127.0.0.1:${pgPort}`,
    "",
  ].join("\n");
}

interface Haproxy {
  port: number;
  pid: number;
  process: ChildProcess;
}

/** haproxy in the foreground (-db) as a child; resolves once its port accepts a connection. */
async function startHaproxy(bin: string, dir: string, pgPort: number): Promise<Haproxy> {
  const port = await freePort();
  const cfg = join(dir, "haproxy.cfg");
  await writeFile(cfg, haproxyConfig(port, pgPort));
  await run(bin, ["-c", "-q", "-f", cfg], process.env, "haproxy -c (configuration check)");
  const p = spawn(bin, ["-db", "-f", cfg], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(p);
  let output = "";
  p.stdout.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-4000)));
  p.stderr.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-4000)));
  let exited = false;
  p.once("exit", (code, signal) => {
    exited = true;
    if (!interrupted && code !== 0 && signal !== "SIGKILL") console.error(`haproxy exited (code ${code}, signal ${signal}):\n${output.trim()}`);
  });
  p.once("error", (e) => console.error("haproxy:", e));
  const deadline = Date.now() + 10_000;
  for (;;) {
    checkInterrupted();
    if (exited || p.pid === undefined) throw new Error(`haproxy did not start:\n${output.trim()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect({ host: "127.0.0.1", port }, () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (ok) return { port, pid: p.pid, process: p };
    if (Date.now() > deadline) throw new Error(`haproxy did not accept a connection on 127.0.0.1:${port} within 10 s:\n${output.trim()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One pgbench run; `proxy` is whose CPU is the proxy's: this process's ("self"), a process id's (HAProxy's), or none (direct). */
async function runPgbench(pgbench: string, port: number, env: NodeJS.ProcessEnv, seconds: number, what: string, proxy: "self" | number | undefined): Promise<Measured> {
  const haproxyPid = typeof proxy === "number" ? proxy : undefined;
  const self = selfCpuMeter();
  const reaped0 = reapedChildrenCpu();
  const hap0 = haproxyPid === undefined ? NaN : (readStat(haproxyPid)?.self ?? NaN);
  const t0 = performance.now();
  const out = await run(pgbench, ["-n", "-S", "-c", String(CLIENTS), "-j", String(THREADS), "-T", String(seconds), "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "postgres"], env, what);
  const wall = (performance.now() - t0) / 1000;
  const selfCpu = self();
  const hap1 = haproxyPid === undefined ? NaN : (readStat(haproxyPid)?.self ?? NaN);
  const pgbenchCpu = (100 * (reapedChildrenCpu() - reaped0)) / wall;
  checkInterrupted();
  const lat = /^latency average = ([\d.]+) ms/m.exec(out);
  const tps = /^tps = ([\d.]+) \(without initial connection time\)/m.exec(out);
  if (!lat || !tps) throw new Error(`could not read pgbench's summary (${what}):\n${out.trim()}`);
  const proxyCpu = proxy === "self" ? selfCpu : haproxyPid !== undefined ? (100 * (hap1 - hap0)) / wall : NaN;
  return { latencyMs: Number(lat[1]), tps: Number(tps[1]), proxyCpu, pgbenchCpu };
}

/** Repetition `rep` (0-based) runs the sides rotated by `rep`: each goes first, second, … in turn. */
function rotate<T>(rep: number, sides: T[]): T[] {
  const k = rep % sides.length;
  return [...sides.slice(k), ...sides.slice(0, k)];
}

const row = (label: string, m: Measured[], cpuNote: string): string => {
  const med = (f: (x: Measured) => number): number => spread(m.map(f)).median;
  return `  ${label.padEnd(8)} latency avg ms ${m.map((x) => fmt(x.latencyMs, 3)).join(" ")}   tps ${m.map((x) => fmt(x.tps, 0)).join(" ")}   proxy cpu % (median) ${fmt(med((x) => x.proxyCpu), 0)}${cpuNote}   pgbench cpu % (median) ${fmt(med((x) => x.pgbenchCpu), 0)}`;
};

const ratiosOf = (a: Measured[], b: Measured[], f: (x: Measured) => number): number[] => a.map((x, i) => f(x) / f(b[i]!));

async function main(): Promise<void> {
  const { bins, pgbench } = await requirePgbench();
  const onSignal = (): void => {
    interrupted = true;
    for (const c of children) c.kill("SIGINT");
  };
  // Last resort: no haproxy left behind if this process exits without the finally below.
  const onExit = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", onExit);
  const baseDir = await reachableTempDir("pgraft-bench-proxy-");
  let server: LocalPostgres | undefined;
  let proxy: ClientProxy | undefined;
  try {
    console.log(`bench/proxy: pgbench -n -S (select-only, simple query) -c ${CLIENTS} -j ${THREADS} -T ${SECONDS}, scale ${SCALE}, PostgreSQL ${bins.version} (fsync off), loopback TCP`);
    const hap = await requireHaproxy();
    let haproxyVersion = "";
    if ("bin" in hap) haproxyVersion = (await run(hap.bin, ["-v"], process.env, "haproxy -v")).split("\n")[0]!.trim();
    console.log(`  direct = pgbench -> PostgreSQL; pgraft = pgbench -> ClientProxy (this Node process) -> PostgreSQL;`);
    if ("bin" in hap) console.log(`  haproxy = pgbench -> HAProxy (${haproxyVersion}; mode tcp, nbthread 1 like Node's one thread, no health checks) -> PostgreSQL`);
    else console.log(`  haproxy column skipped: ${hap.missing}`);
    console.log(`  ${REPS} repetitions, rotating which runs first`);
    console.log(`  load average before: ${loadAverageChecked()} (${machineNote()})`);
    server = await LocalPostgres.initdb({ dataDir: join(baseDir, "data"), port: await freePort(), password: `pw-${Math.random().toString(36).slice(2)}`, binaries: bins, fsync: false, noSync: true });
    await server.start();
    const env = { ...process.env, PGPASSWORD: server.password, PGSSLMODE: "disable", PGAPPNAME: "pgraft_bench_proxy" };
    await run(pgbench, ["-i", "-q", "-s", String(SCALE), "-h", "127.0.0.1", "-p", String(server.port), "-U", "postgres", "postgres"], env, "pgbench -i");
    const target = { host: "127.0.0.1", port: server.port, nodeId: 1 };
    proxy = new ClientProxy({ name: "read-write", listen: { host: "127.0.0.1", port: 0 }, target: () => target, logger: pino({ level: "silent" }) });
    const { port: proxyPort } = await proxy.start();
    const haproxy = "bin" in hap ? await startHaproxy(hap.bin, baseDir, server.port) : undefined;
    const sides: Via[] = haproxy ? ["direct", "pgraft", "haproxy"] : ["direct", "pgraft"];
    const ports: Record<Via, number> = { direct: server.port, pgraft: proxyPort, haproxy: haproxy?.port ?? NaN };
    const measure = (via: Via, seconds: number, what: string): Promise<Measured> => runPgbench(pgbench, ports[via], env, seconds, what, via === "pgraft" ? "self" : via === "haproxy" ? haproxy?.pid : undefined);
    // Warm the caches and every path once, not counted.
    for (const via of sides) await measure(via, WARMUP_SECONDS, `warm-up ${via}`);

    const got: Record<Via, Measured[]> = { direct: [], pgraft: [], haproxy: [] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const via of rotate(rep, sides)) got[via].push(await measure(via, SECONDS, `${via} ${rep + 1}`));
    }
    const latency = (x: Measured): number => x.latencyMs;
    const tpsOf = (x: Measured): number => x.tps;
    // % of a core / tps = core-seconds per transaction, in µs.
    const cpuUs = (m: Measured[]): number[] => m.map((x) => (x.proxyCpu * 1e4) / x.tps);
    const addedUs = (m: Measured[]): number[] => m.map((x, i) => 1000 * (x.latencyMs - got.direct[i]!.latencyMs));
    const pgraftRatios = ratiosOf(got.pgraft, got.direct, latency);
    console.log("");
    console.log(row("direct", got.direct, ""));
    console.log(row("pgraft", got.pgraft, " (this process)"));
    if (haproxy) console.log(row("haproxy", got.haproxy, " (haproxy's /proc stat)"));
    console.log(`  latency pgraft-proxy/direct per repetition:  ${fmtSpread(pgraftRatios, 3)}   target ≤ ${TARGET_RATIO}: ${spread(pgraftRatios).median <= TARGET_RATIO ? "met (median)" : "NOT met (median)"}`);
    if (haproxy) {
      const haproxyRatios = ratiosOf(got.haproxy, got.direct, latency);
      console.log(`  latency haproxy/direct per repetition:       ${fmtSpread(haproxyRatios, 3)}   (the same target: ${spread(haproxyRatios).median <= TARGET_RATIO ? "met" : "NOT met"} (median))`);
      console.log(`  latency pgraft-proxy/haproxy per repetition: ${fmtSpread(ratiosOf(got.pgraft, got.haproxy, latency), 3)}`);
    }
    console.log(`  tps pgraft-proxy/direct per repetition:      ${fmtSpread(ratiosOf(got.pgraft, got.direct, tpsOf), 3)}`);
    if (haproxy) {
      console.log(`  tps haproxy/direct per repetition:           ${fmtSpread(ratiosOf(got.haproxy, got.direct, tpsOf), 3)}`);
      console.log(`  tps pgraft-proxy/haproxy per repetition:     ${fmtSpread(ratiosOf(got.pgraft, got.haproxy, tpsOf), 3)}`);
    }
    console.log(`  pgraft proxy cpu per transaction, µs:        ${fmtSpread(cpuUs(got.pgraft), 0)} (this process, user + system: mostly the kernel's loopback TCP in its writes)`);
    if (haproxy) console.log(`  haproxy cpu per transaction, µs:             ${fmtSpread(cpuUs(got.haproxy), 0)} (haproxy's process, user + system)`);
    console.log(`  latency added by pgraft's proxy, µs:         ${fmtSpread(addedUs(got.pgraft), 0)}`);
    if (haproxy) console.log(`  latency added by haproxy, µs:                ${fmtSpread(addedUs(got.haproxy), 0)}`);
    const s = proxy.stats();
    console.log(`  pgraft proxy: ${s.accepted} connections accepted, ${s.refused} refused, ${s.failedUpstream + s.failedNoTarget} answered with an error`);
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
    process.off("exit", onExit);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
