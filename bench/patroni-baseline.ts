// The baseline a user would pick instead for PostgreSQL failover: a 3-node
// Patroni 3 cluster (Debian's `patroni`) of PostgreSQL 15 servers on
// loopback, with a 3-member etcd (bench/etcd-baseline) as its DCS through
// Patroni's etcd3 (v3 API) client. Asynchronous streaming replication, as
// Patroni sets up by default; use_pg_rewind with both remove_data_directory_*
// options so that a killed primary always comes back as a replica (rewound,
// or copied again when rewinding fails).
//
// We are root and PostgreSQL refuses to run as root, so Patroni (and with it
// every PostgreSQL program it runs) runs as the `postgres` OS user, on
// directories that user owns, in one temp dir (deleted on stop unless
// BENCH_KEEP=1). Each node's Patroni log (with its PostgreSQL's output) is
// p<i>.log there. Ports are taken below the kernel's ephemeral range.
//
// Nothing is left running: stop() SIGKILLs every Patroni (each in its own
// process group, with whatever it was running: pg_rewind, pg_basebackup,
// postgres --single) and every process whose command line names the temp dir
// (the postmasters, which Patroni starts in their own session) with their
// process groups (the backends), then stops etcd. The same happens
// synchronously on process exit, and on SIGINT/SIGTERM (then the process
// exits with 130/143). Only a SIGKILL of the benchmark itself skips that.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { stringify } from "yaml";
import { startEtcd, type EtcdCluster } from "./etcd-baseline.js";
import { tailFile } from "./pgraft-cluster.js";
import { killAndWait } from "./processes.js";
import { abandon, multiHost, restPrimary, type ConnectionPath, type HostPort, type PathOptions } from "./write-probe.js";
import { findPostgresBinaries } from "../src/postgres/binaries.js";
import { serverOsUser } from "../src/postgres/os-user.js";

/**
 * Patroni's failover timing (seconds), all three dynamic settings.
 *
 * Patroni's docs (dynamic configuration, https://patroni.readthedocs.io/en/latest/dynamic_configuration.html):
 * loop_wait default 10, minimum 1; ttl default 30, minimum 20; retry_timeout
 * default 10, minimum 3; and the rule loop_wait + 2 * retry_timeout <= ttl.
 * Patroni's own validation (Config._validate_and_adjust_timeouts in
 * patroni/config.py, Patroni 3.1 and later) raises values below those minimums
 * to them with a warning, and lowers loop_wait (then retry_timeout) to keep
 * the rule. Debian 12's Patroni 3.0.2 does not check yet, but the documented
 * minimums are the tightest *supported* timing: ttl 20, loop_wait 1,
 * retry_timeout 3 (1 + 2 * 3 = 7 <= 20).
 */
export interface PatroniTiming {
  name: string;
  ttl: number;
  loopWait: number;
  retryTimeout: number;
}

export const PATRONI_DEFAULT: PatroniTiming = { name: "default", ttl: 30, loopWait: 10, retryTimeout: 10 };
export const PATRONI_TIGHTEST: PatroniTiming = { name: "tightest", ttl: 20, loopWait: 1, retryTimeout: 3 };

export const PATRONI = process.env.PATRONI_BIN ?? "/usr/bin/patroni";
const ETCD = process.env.ETCD_BIN ?? "/usr/bin/etcd";

/**
 * Installs Debian's `patroni` and `etcd-server` when either is missing and we
 * may (root, apt-get): as `make bench` does for etcd. Returns undefined when
 * both are there afterwards, else why not.
 */
export function ensurePatroniInstalled(): string | undefined {
  const missing = (): string[] => [PATRONI, ETCD].filter((p) => !existsSync(p));
  if (missing().length === 0) return undefined;
  if (process.getuid?.() !== 0) return `${missing().join(" and ")} missing, and we are not root to apt-get install patroni etcd-server (or set PATRONI_BIN / ETCD_BIN)`;
  try {
    console.log("installing Debian's patroni and etcd-server (apt-get)...");
    execFileSync("apt-get", ["update", "-qq"], { stdio: ["ignore", "ignore", "inherit"] });
    execFileSync("apt-get", ["install", "-y", "-qq", "patroni", "etcd-server"], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  } catch (e) {
    return `apt-get install patroni etcd-server failed: ${(e as Error).message}`;
  }
  return missing().length ? `${missing().join(" and ")} still missing after apt-get install` : undefined;
}

// ------------------------------------------------------------------ ports

function ephemeralLow(): number {
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low && low > 12_000) return low;
  } catch {
    // not Linux
  }
  return 32_768;
}

function canBind(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => res(true)));
  });
}

/** `n` consecutive free ports on 127.0.0.1, below the ephemeral range (a restarted server must be able to bind its port again). */
async function portBlock(n: number): Promise<number> {
  const low = 10_000;
  const high = ephemeralLow() - n;
  for (let tries = 0; tries < 500; tries++) {
    const base = low + Math.floor(Math.random() * (high - low));
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = await canBind(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${n} consecutive free ports between ${low} and ${high}`);
}

// ------------------------------------------------------------------ processes left behind

/**
 * Marks of running clusters: every process whose command line contains one is
 * ours (a cluster's temp dir; its etcd members' exact client URL options).
 */
const liveDirs = new Set<string>();
const liveClusters = new Set<PatroniCluster>();

/** pid -> process group, for every process whose command line contains `dir` (Linux /proc). */
function processesNaming(dir: string): { pid: number; pgid: number }[] {
  const out: { pid: number; pgid: number }[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.includes(dir)) continue;
      const st = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      if (f[0] === "Z") continue;
      out.push({ pid, pgid: Number(f[2]) });
    } catch {
      // gone
    }
  }
  return out;
}

/** The process group of `pid` (Linux /proc), or undefined. */
function processGroup(pid: number): number | undefined {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    const pgid = Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[2]);
    return Number.isInteger(pgid) ? pgid : undefined;
  } catch {
    return undefined;
  }
}

/** The pids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, "utf8");
      if (Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

const signal = (pid: number, sig: NodeJS.Signals): void => {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
};

/**
 * A postmaster and its backends at once, as a crash of the host would end
 * them: a backend outliving its postmaster for a moment can still commit and
 * acknowledge a write. Every PostgreSQL child process calls setsid() (its own
 * process group), so no group signal reaches them all: the postmaster is
 * stopped first (it forks no more), then its children, then all are killed.
 */
export function killPostmasterAndChildren(pm: number): void {
  signal(pm, "SIGSTOP");
  const kids = childrenOf(pm);
  for (const k of kids) signal(k, "SIGSTOP");
  for (const k of [pm, ...kids]) signal(k, "SIGKILL");
}

/** This process's own group (etcd's members share it): never signalled as a group. */
const ownGroup = (): number => processGroup(process.pid) ?? process.pid;

/** SIGKILL every process naming `dir`, and its process group (a postmaster's backends); returns how many were found. */
function killNaming(dir: string): number {
  const ps = processesNaming(dir);
  for (const p of ps) {
    for (const target of [p.pgid > 1 && p.pgid !== ownGroup() ? -p.pgid : 0, p.pid]) {
      if (!target) continue;
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  return ps.length;
}

async function killAllNaming(dir: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (killNaming(dir) > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
}

let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", () => {
    for (const d of liveDirs) killNaming(d);
  });
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: stopping the Patroni clusters...`);
      void Promise.allSettled([...liveClusters].map((c) => c.stop())).finally(() => process.exit(code));
    });
  }
}

// ------------------------------------------------------------------ the cluster

export interface PatroniNode {
  name: string;
  pg: HostPort;
  /** http://127.0.0.1:<port> */
  rest: string;
  dataDir: string;
  log: string;
}

export type KillWhat = "node" | "postgres";

export interface PatroniCluster {
  timing: PatroniTiming;
  dir: string;
  nodes: PatroniNode[];
  etcd: EtcdCluster;
  /** A superuser connection to node i (no retry; the caller ends it). */
  connect(i: number, timeoutMs?: number): Promise<pg.Client>;
  /**
   * Waits until the cluster is whole: one leader that accepts writes with
   * `replicas` (default all the others) streaming from it through their
   * replication slots, and every node's REST API answering; returns the
   * leader's index.
   */
  healthy(timeoutMs?: number, replicas?: number): Promise<number>;
  /**
   * kill -9 node i. "node" (default): its Patroni and its whole PostgreSQL
   * (postmaster and backends, stopped first so that none can acknowledge
   * anything after the kill), a crashed host; the others fail over once the
   * leader key expires (ttl). "postgres": the postmaster and its backends
   * only; Patroni lives on and starts PostgreSQL again in place (no failover
   * while it comes back within primary_start_timeout). Returns once the
   * killed processes are gone.
   */
  kill(i: number, what?: KillWhat): Promise<void>;
  /** Start node i's Patroni again (after kill(i, "node")). */
  restart(i: number): void;
  /** libpq `host=...,... target_session_attrs=read-write`, over every node. */
  multiHostPath(o?: PathOptions): ConnectionPath;
  /** HAProxy's way: the node whose REST /primary answers 200. */
  restPath(o?: PathOptions): ConnectionPath;
  logTails(lines?: number): string;
  stop(): Promise<void>;
}

export interface PatroniOptions {
  /** PostgreSQL fsync (default on, PostgreSQL's default; BENCH_PG_FSYNC=off turns it off). */
  fsync?: boolean;
}

const SUPERUSER = "postgres";
const SUPERPASS = "bench-super";

async function fetchJson(url: string, timeoutMs = 1_000): Promise<{ status: number; body: unknown }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await r.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body };
}

export async function startPatroni(timing: PatroniTiming, opts: PatroniOptions = {}): Promise<PatroniCluster> {
  const why = ensurePatroniInstalled();
  if (why) throw new Error(why);
  const bins = await findPostgresBinaries();
  const user = serverOsUser();
  installExitHandlers();
  const fsync = opts.fsync ?? process.env.BENCH_PG_FSYNC !== "off";

  const dir = await mkdtemp(join(tmpdir(), "pgraft-bench-patroni-"));
  await chmod(dir, 0o755); // postgres must reach inside
  liveDirs.add(dir);
  const base = await portBlock(12); // etcd 6, PostgreSQL 3, REST 3
  // etcd's members, should this process exit without stop(): `--listen-client-urls=<url>` then the NUL ending the argument.
  const etcdMarks = [0, 1, 2].map((i) => `--listen-client-urls=http://127.0.0.1:${base + 2 * i}\0`);
  for (const m of etcdMarks) liveDirs.add(m);
  let etcd: EtcdCluster;
  try {
    etcd = await startEtcd(base);
  } catch (e) {
    liveDirs.delete(dir);
    for (const m of etcdMarks) liveDirs.delete(m);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  const nodes: PatroniNode[] = [1, 2, 3].map((k, i) => ({
    name: `p${k}`,
    pg: { host: "127.0.0.1", port: base + 6 + i },
    rest: `http://127.0.0.1:${base + 9 + i}`,
    dataDir: join(dir, `p${k}`, "data"),
    log: join(dir, `p${k}.log`),
  }));
  const hba = ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"];
  for (const [i, n] of nodes.entries()) {
    const home = join(dir, n.name);
    mkdirSync(home, { mode: 0o700 });
    if (user) chownSync(home, user.uid, user.gid);
    const restPort = base + 9 + i;
    const config = {
      scope: "pgraft-bench",
      namespace: "/pgraft-bench/",
      name: n.name,
      log: { level: "INFO" },
      restapi: { listen: `127.0.0.1:${restPort}`, connect_address: `127.0.0.1:${restPort}` },
      etcd3: { hosts: etcd.endpoints.map((e) => e.replace(/^https?:\/\//, "")) },
      bootstrap: {
        dcs: {
          ttl: timing.ttl,
          loop_wait: timing.loopWait,
          retry_timeout: timing.retryTimeout,
          maximum_lag_on_failover: 1048576,
          postgresql: {
            use_pg_rewind: true,
            use_slots: true,
            // wal_level etc. are Patroni's defaults; wal_log_hints is needed by pg_rewind.
            parameters: { wal_log_hints: "on", hot_standby: "on", max_wal_senders: 10, max_replication_slots: 10, wal_keep_size: "128MB" },
          },
        },
        initdb: [{ encoding: "UTF8" }, { locale: "C" }],
      },
      postgresql: {
        listen: `127.0.0.1:${n.pg.port}`,
        connect_address: `127.0.0.1:${n.pg.port}`,
        data_dir: n.dataDir,
        bin_dir: bins.binDir,
        pgpass: join(home, "pgpass"),
        authentication: {
          superuser: { username: SUPERUSER, password: SUPERPASS },
          replication: { username: "replicator", password: "bench-repl" },
          rewind: { username: SUPERUSER, password: SUPERPASS },
        },
        // A killed primary always comes back as a replica: rewound, or copied again if pg_rewind cannot.
        remove_data_directory_on_rewind_failure: true,
        remove_data_directory_on_diverged_timelines: true,
        use_unix_socket: false,
        pg_hba: hba,
        parameters: {
          unix_socket_directories: home,
          shared_buffers: "32MB",
          max_connections: 40,
          fsync: fsync ? "on" : "off",
          logging_collector: "off",
        },
      },
      tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
    };
    const cfgFile = join(home, "patroni.yml");
    writeFileSync(cfgFile, stringify(config));
    if (user) chownSync(cfgFile, user.uid, user.gid);
  }

  const procs: (ChildProcess | undefined)[] = [undefined, undefined, undefined];
  const launch = (i: number): void => {
    const n = nodes[i]!;
    const home = join(dir, n.name);
    const fd = openSync(n.log, "a");
    if (user) chownSync(n.log, user.uid, user.gid);
    procs[i] = spawn(PATRONI, [join(home, "patroni.yml")], {
      stdio: ["ignore", fd, fd],
      detached: true, // its own process group: kill(-pid) takes whatever it runs with it; a terminal's Ctrl-C reaches us, not it
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, LANG: "C.UTF-8", PYTHONUNBUFFERED: "1" },
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    closeSync(fd);
  };

  const logTails = (lines = 25): string =>
    [...nodes.map((n) => `  ${n.name}, last ${lines} lines of ${n.log}:\n${tailFile(n.log, lines)}`), etcd.logTails(5)].join("\n");

  const connect = async (i: number, timeoutMs = 2_000): Promise<pg.Client> => {
    const n = nodes[i]!;
    const c = new pg.Client({ host: n.pg.host, port: n.pg.port, user: SUPERUSER, password: SUPERPASS, database: "postgres", connectionTimeoutMillis: timeoutMs, statement_timeout: timeoutMs });
    c.on("error", () => undefined);
    try {
      await c.connect();
      return c;
    } catch (e) {
      abandon(c);
      throw e;
    }
  };

  /** One look: the leader's index if the cluster is whole, else why not. */
  const check = async (replicas: number): Promise<number | string> => {
    // Only the nodes started so far (the first one bootstraps alone).
    const views = await Promise.all(
      nodes.map((n, i) =>
        procs[i]
          ? fetchJson(`${n.rest}/patroni`).catch((e: unknown) => ({ status: 0, body: (e as Error).message }))
          : Promise.resolve({ status: -1, body: {} }),
      ),
    );
    const down = nodes.filter((_, i) => views[i]!.status === 0).map((n) => n.name);
    if (down.length) return `REST API not answering on ${down.join(", ")}`;
    const leaders = nodes.map((_, i) => i).filter((i) => (views[i]!.body as { role?: string }).role === "master" || (views[i]!.body as { role?: string }).role === "primary");
    if (leaders.length !== 1) return `${leaders.length} nodes say they are the primary`;
    const li = leaders[0]!;
    let c: pg.Client | undefined;
    try {
      c = await connect(li);
      const ro = await c.query<{ transaction_read_only: string }>("SHOW transaction_read_only");
      if (ro.rows[0]?.transaction_read_only !== "off") return `${nodes[li]!.name} is read-only`;
      // Streaming, and through their slots (use_slots: Patroni makes the leader's slots for its members at its next
      // loop; until then a replica cannot start streaming and falls behind).
      const r = await c.query<{ s: string; a: string }>(
        "SELECT (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming') AS s, (SELECT count(*) FROM pg_replication_slots WHERE active AND slot_type = 'physical') AS a",
      );
      const streaming = Number(r.rows[0]?.s ?? 0);
      const slots = Number(r.rows[0]?.a ?? 0);
      if (streaming < replicas || slots < replicas) return `${streaming} of ${replicas} replicas streaming from ${nodes[li]!.name}, ${slots} through a slot`;
      return li;
    } catch (e) {
      return `${nodes[li]!.name}: ${(e as Error).message}`;
    } finally {
      if (c) abandon(c);
    }
  };

  const healthy = async (timeoutMs = 180_000, replicas = nodes.length - 1): Promise<number> => {
    const end = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      const r = await check(replicas);
      if (typeof r === "number") return r;
      last = r;
      if (Date.now() > end) throw new Error(`the Patroni cluster was not whole within ${timeoutMs / 1000} s: ${last}\n${logTails()}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  };

  const postmasterPid = (i: number): number | undefined => {
    try {
      const pid = Number(readFileSync(join(nodes[i]!.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      if (!pid) return undefined;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      return cmd.includes(nodes[i]!.dataDir) ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const gone = (pid: number): boolean => {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, "utf8");
      return st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3) === "Z";
    } catch {
      return true;
    }
  };

  const kill = async (i: number, what: KillWhat = "node"): Promise<void> => {
    const pm = postmasterPid(i);
    const p = procs[i];
    if (!pm) throw new Error(`${nodes[i]!.name} has no running postmaster to kill`);
    if (what === "node") {
      // Patroni first (its whole group), then PostgreSQL: no window for Patroni to see its postgres gone.
      if (p?.pid) {
        try {
          process.kill(-p.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      killPostmasterAndChildren(pm);
      if (p) await killAndWait([p]);
      // Anything else of this node (its data dir on the command line), e.g. a pg_rewind in flight.
      await killAllNaming(nodes[i]!.dataDir, 5_000);
    } else {
      killPostmasterAndChildren(pm);
    }
    const end = Date.now() + 10_000;
    while (!gone(pm) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  };

  let stopped = false;
  const cluster: PatroniCluster = {
    timing,
    dir,
    nodes,
    etcd,
    connect,
    healthy,
    kill,
    restart: (i) => {
      const p = procs[i];
      if (p && p.exitCode === null && p.signalCode === null) throw new Error(`${nodes[i]!.name}'s Patroni is still running`);
      launch(i);
    },
    multiHostPath: (o = {}) => multiHost(
      nodes.map((n) => n.pg),
      { user: SUPERUSER, password: SUPERPASS, ...o },
    ),
    restPath: (o = {}) => restPrimary(
      nodes.map((n) => ({ rest: n.rest, pg: n.pg })),
      { user: SUPERUSER, password: SUPERPASS, ...o },
    ),
    logTails,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const p of procs) {
        if (p?.pid && p.exitCode === null && p.signalCode === null) {
          try {
            process.kill(-p.pid, "SIGKILL");
          } catch {
            // already gone
          }
        }
      }
      await killAndWait(procs.filter((p): p is ChildProcess => p !== undefined));
      await killAllNaming(dir);
      await etcd.stop();
      liveDirs.delete(dir);
      for (const m of etcdMarks) liveDirs.delete(m);
      liveClusters.delete(cluster);
      if (process.env.BENCH_KEEP) console.log(`kept ${dir} (Patroni and PostgreSQL stopped; logs in p*.log)`);
      else await rm(dir, { recursive: true, force: true });
    },
  };
  liveClusters.add(cluster);

  try {
    // The first node bootstraps (initdb) alone, so that it wins the initialize race; the others then copy it.
    launch(0);
    await healthy(180_000, 0);
    launch(1);
    launch(2);
    await healthy();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
