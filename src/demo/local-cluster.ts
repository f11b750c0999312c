// `pgraft demo`: a local cluster a new user starts first (like `cockroach
// demo`). N PostgreSQL servers initdb'd with the settings pgraft needs, a
// sidecar process beside each, the cluster formed and the shim installed; then
// one ready-to-paste psql command and metrics URL per node.
//
// Everything lives under the base dir: node<i>/pg (the PostgreSQL cluster and
// its log), node<i>/pg/pgpass (the superuser's password for libpq, mode 0600),
// node<i>/raft (the sidecar's data dir), node<i>/sidecar.log and demo.json
// (ports and passwords, mode 0600, so a second run on the same dir restarts
// the same cluster). Nothing is ever removed by the demo.
//
// No password is ever on a command line (`ps` shows those to every local
// user): a sidecar gets its PostgreSQL DSN in $PGRAFT_POSTGRES_DSN, and the
// DSNs the demo prints (psql, interface DSNs for create_node) name the node's
// pgpass file instead (`passfile=`), which psql, pg_dump and the sidecars read.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { findPostgresBinaries, LocalPostgres, type PostgresBinaries } from "../postgres/index.js";

export interface DemoNodeInfo {
  id: number;
  /** postgresql://postgres:<password>@127.0.0.1:<port>/postgres, for programs (not for command lines). */
  dsn: string;
  /** key=value with `passfile=` and no password: for create_node / join_node_group, psql, pg_dump. */
  interfaceDsn: string;
  /** The node's password file (mode 0600). */
  passfile: string;
  psql: string;
  /** The node's PostgreSQL, host:port. */
  postgres: string;
  grpc: string;
  http: string;
  metrics: string;
  sql: string;
  /** The sidecar's client proxy: read-write (to the write leader) and read-only. */
  proxy: string;
  proxyReadOnly: string;
  postgresLog: string;
  sidecarLog: string;
}

interface NodePorts {
  pg: number;
  grpc: number;
  http: number;
  sql: number;
  /** The client proxy's read-write and read-only ports (absent in a demo dir saved before the proxy existed: added on its next start). */
  proxy?: number;
  proxyReadOnly?: number;
}

interface DemoState {
  version: 1;
  nodes: { id: number; ports: NodePorts; password: string }[];
  /** The foreground demo process that owns the cluster (for --stop). */
  pid?: number;
}

export const STATE_FILE = "demo.json";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const a = s.address();
      s.close(() => (a && typeof a === "object" ? resolve(a.port) : reject(new Error("no free port"))));
    });
  });
}

/** Whether nothing listens on 127.0.0.1:`port` (we can bind it ourselves). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** The lowest port the system hands out on its own (connect, listen on 0): Linux's ip_local_port_range. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

/**
 * A free port for the demo, below the ephemeral range: a port the system
 * picked (listen on 0) is one it may hand to any program's next connection
 * before the demo's process binds it, or on a later start; below the range
 * only a program that asks for that very port can take it. Falls back to a
 * port the system picks when that range is too small.
 */
async function demoPort(used: Set<number>): Promise<number> {
  const low = 20_000;
  const high = ephemeralLow() - 1;
  for (let i = 0; high - low >= 1_000 && i < 200; i++) {
    const port = low + randomInt(high - low + 1);
    if (!used.has(port) && (await portFree(port))) {
      used.add(port);
      return port;
    }
  }
  return freePort();
}

const PORT_ROLES: readonly [keyof NodePorts, string][] = [
  ["pg", "PostgreSQL"],
  ["grpc", "sidecar gRPC (Raft)"],
  ["http", "sidecar HTTP"],
  ["sql", "sidecar SQL"],
  ["proxy", "read-write proxy"],
  ["proxyReadOnly", "read-only proxy"],
];

/**
 * The saved ports of the demo in `baseDir` that another program holds now
 * ("node 2: sidecar HTTP port 41234"). The ports are chosen once and kept,
 * since the Raft members and node-group DSNs record them, so on a later start
 * one may be taken (most likely in a demo made before demoPort chose them
 * below the ephemeral range).
 */
export async function takenPorts(baseDir: string): Promise<string[]> {
  const st = await loadState(baseDir);
  const taken: string[] = [];
  for (const n of st?.nodes ?? []) {
    for (const [role, what] of PORT_ROLES) if (n.ports[role] !== undefined && !(await portFree(n.ports[role]))) taken.push(`node ${n.id}: ${what} port ${n.ports[role]}`);
  }
  return taken;
}

export class PortsTakenError extends Error {
  constructor(
    readonly baseDir: string,
    readonly taken: readonly string[],
  ) {
    super(
      `a port this demo saved (in ${join(baseDir, STATE_FILE)}) is in use by another program: ${taken.join("; ")}. ` +
        `The demo keeps its ports (the cluster's members and node-group DSNs record them): stop what holds it (ss -ltnp shows it) and start again, or start a new demo with another --base-dir`,
    );
  }
}

/** At most this much of a line of a process's log goes into an exit report. */
export const CAUSE_MAX_CHARS = 200;
const LOG_TAIL_BYTES = 64 * 1024;

/** What `path` holds from byte `from` on (at most its last LOG_TAIL_BYTES); "" when it cannot be read. */
export function readLogFrom(path: string, from = 0): string {
  let fd: number | undefined;
  try {
    const size = statSync(path).size;
    const start = Math.max(from <= size ? from : 0, size - LOG_TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    fd = openSync(path, "r");
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export const logSize = (path: string): number => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

/** A sidecar's JSON log line (pino) as "msg: err.message" when its level is error or fatal. */
function jsonLogError(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const o = JSON.parse(line) as { level?: unknown; msg?: unknown; err?: { message?: unknown } };
    if (o.level !== "error" && o.level !== "fatal") return undefined;
    const msg = typeof o.msg === "string" ? o.msg : "";
    const err = typeof o.err?.message === "string" ? o.err.message : "";
    return [msg, err].filter((x) => x !== "").join(": ") || line;
  } catch {
    return undefined;
  }
}

/** Signals another process sends: the exit's cause is the sender, not the log. */
const EXTERNAL_SIGNALS = new Set<string>(["SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP"]);
const SIDECAR_ERROR = /(^pgraft: )|\b[A-Z][A-Za-z]*Error\b|\bE[A-Z]{4,}\b/;
const POSTGRES_ERROR = /\b(FATAL|PANIC):|Address already in use/;

/**
 * Why a process most likely exited, from the end of what it wrote to its log:
 * for a sidecar the last error among its last 20 lines (the CLI's fatal
 * "pgraft: ..." line, a JSON line at level error/fatal, an exception); for
 * PostgreSQL the last two FATAL/PANIC or "Address already in use" lines among
 * its last 10. Control characters become spaces; cut to CAUSE_MAX_CHARS.
 * Undefined when those lines show no error (a kill -9 leaves none). The demo's
 * own "=== pgraft: ..." markers and stack frames do not count as lines.
 */
export function exitCause(logText: string, kind: "sidecar" | "postgres"): string | undefined {
  const lines = logText
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("=== pgraft:") && !l.startsWith("at "))
    .slice(kind === "sidecar" ? -20 : -10);
  const found: string[] = [];
  for (const line of lines) {
    const hit = kind === "sidecar" ? (jsonLogError(line) ?? (!line.startsWith("{") && SIDECAR_ERROR.test(line) ? line : undefined)) : POSTGRES_ERROR.test(line) ? line : undefined;
    if (hit !== undefined) found.push(hit);
  }
  if (!found.length) return undefined;
  // eslint-disable-next-line no-control-regex
  const text = found.slice(kind === "sidecar" ? -1 : -2).join(" / ").replace(/[\u0000-\u001f\u007f]/g, " ");
  return text.length > CAUSE_MAX_CHARS ? text.slice(0, CAUSE_MAX_CHARS - 1) + "…" : text;
}

/** The part of PostgreSQL's log written since the last start the demo marked ("=== pgraft: starting ..."). */
function lastStartOf(logText: string): string {
  const i = logText.lastIndexOf("=== pgraft: starting ");
  return i < 0 ? logText : logText.slice(i);
}

/** "; last error in its log: ..." for an exit report, or "" when the log shows none. */
const causeSuffix = (cause: string | undefined): string => (cause ? `; last error in its log: ${cause}` : "");

async function loadState(baseDir: string): Promise<DemoState | undefined> {
  try {
    return JSON.parse(await readFile(join(baseDir, STATE_FILE), "utf8")) as DemoState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`${join(baseDir, STATE_FILE)} is unreadable: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export async function saveState(baseDir: string, st: DemoState): Promise<void> {
  await writeFile(join(baseDir, STATE_FILE), JSON.stringify(st, null, 2) + "\n", { mode: 0o600 });
}

export interface RunningDemo {
  baseDir: string;
  nodes: DemoNodeInfo[];
  /** The process ids now (they change when a process is restarted; pids.json in the base dir follows them). */
  pids(): DemoPids;
  /** Stop the sidecars (SIGTERM), then the PostgreSQL servers (fast shutdown). Removes nothing. */
  stop(): Promise<void>;
  /** Resolves at the first exit the demo did not ask for (the demo restarts the process; a benchmark stops on it). */
  unexpectedExit: Promise<string>;
}

export interface DemoPids {
  /** The demo process that supervises the others (`pgraft demo`, or its background half with --detach). */
  supervisor: number;
  nodes: { id: number; sidecar: number | null; postgres: number | null }[];
}

export interface StartDemoOptions {
  nodes: number;
  baseDir: string;
  mainJs: string;
  progress: (line: string) => void;
  /**
   * What happens after the start: a process exited on its own, is restarted,
   * is back. The demo keeps the other processes running and restarts the dead
   * one after a backoff (1 s doubling to 30 s; back to 1 s once it stayed up a minute).
   */
  event?: (line: string) => void;
  readyTimeoutMs?: number;
}

export const PIDS_FILE = "pids.json";
export const DEMO_CLUSTER_ID = "pgraft-demo";
const FIRST_RESTART_DELAY_MS = 1_000;
const MAX_RESTART_DELAY_MS = 30_000;
const STABLE_AFTER_MS = 60_000;

/** The next restart delay: doubled, capped; the first again once the process had stayed up a while. */
export function nextRestartDelay(previousMs: number, upForMs: number): number {
  if (previousMs === 0 || upForMs >= STABLE_AFTER_MS) return FIRST_RESTART_DELAY_MS;
  return Math.min(previousMs * 2, MAX_RESTART_DELAY_MS);
}

interface Supervised {
  id: number;
  server: LocalPostgres;
  sidecar: ChildProcess | undefined;
  sidecarLog: string;
  /** Where the sidecar log ended when the running sidecar was started (its own lines come after). */
  sidecarLogFrom: number;
  sidecarSince: number;
  sidecarDelay: number;
  /** The postmaster is being (re)started: its exits are start() attempts, not crashes. */
  pgStarting: boolean;
  pgSince: number;
  pgDelay: number;
}

export async function startDemo(o: StartDemoOptions): Promise<RunningDemo> {
  let bins: PostgresBinaries;
  try {
    bins = await findPostgresBinaries();
  } catch (e) {
    throw new Error(`pgraft demo needs the PostgreSQL server binaries: ${e instanceof Error ? e.message : String(e)}`);
  }
  await mkdir(o.baseDir, { recursive: true, mode: 0o755 });
  const running = await runningProcesses(o.baseDir);
  if (running.length) throw new DemoRunningError(o.baseDir, running);
  let state = await loadState(o.baseDir);
  if (state && state.nodes.length !== o.nodes) {
    throw new Error(`${o.baseDir} holds a ${state.nodes.length}-node demo; run it with --nodes ${state.nodes.length}, or choose another --base-dir`);
  }
  if (!state) {
    const nodes: DemoState["nodes"] = [];
    const used = new Set<number>();
    // One superuser password for every node: a client the read-write proxy moves from node to node logs in on each.
    const password = randomBytes(12).toString("hex");
    for (let id = 1; id <= o.nodes; id++) {
      const ports = { pg: await demoPort(used), grpc: await demoPort(used), http: await demoPort(used), sql: await demoPort(used) };
      nodes.push({ id, ports: { ...ports, proxy: await demoPort(used), proxyReadOnly: await demoPort(used) }, password });
    }
    state = { version: 1, nodes };
    await saveState(o.baseDir, state);
  } else if (state.nodes.some((n) => n.ports.proxy === undefined || n.ports.proxyReadOnly === undefined)) {
    // A demo dir from before the proxy: give it proxy ports once.
    const used = new Set(state.nodes.flatMap((n) => Object.values(n.ports).filter((p): p is number => p !== undefined)));
    for (const n of state.nodes) {
      n.ports.proxy ??= await demoPort(used);
      n.ports.proxyReadOnly ??= await demoPort(used);
    }
    await saveState(o.baseDir, state);
  }
  const st = state;
  const taken = await takenPorts(o.baseDir);
  if (taken.length) throw new PortsTakenError(o.baseDir, taken);

  const supervised: Supervised[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const restarts = new Set<Promise<void>>();
  let stopping = false;
  let firstExit: (why: string) => void = () => {};
  const unexpectedExit = new Promise<string>((resolve) => (firstExit = resolve));
  const event = (line: string): void => {
    if (/ exited /.test(line)) firstExit(line);
    (o.event ?? (() => {}))(line);
  };

  const pids = (): DemoPids => ({
    supervisor: process.pid,
    nodes: supervised.map((s) => ({ id: s.id, sidecar: s.sidecar?.pid ?? null, postgres: s.server.pid ?? null })),
  });
  const writePids = (): void => {
    try {
      writeFileSync(join(o.baseDir, PIDS_FILE), JSON.stringify(pids(), null, 2) + "\n", { mode: 0o600 });
    } catch {
      // the base dir is gone: nothing to record
    }
  };
  const later = (ms: number, f: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopping) f();
    }, ms);
    timers.add(t);
  };
  const track = (p: Promise<void>): void => {
    restarts.add(p);
    void p.finally(() => restarts.delete(p));
  };

  const initial = st.nodes.map((n) => `${n.id}=127.0.0.1:${n.ports.grpc}`).join(",");
  const spawnSidecar = (s: Supervised): void => {
    const n = st.nodes.find((x) => x.id === s.id)!;
    const nodeDir = join(o.baseDir, `node${n.id}`);
    s.sidecarLogFrom = logSize(s.sidecarLog);
    const fd = openSync(s.sidecarLog, "a", 0o600);
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        [
          o.mainJs,
          "sidecar",
          "--node-id", String(n.id),
          "--cluster-id", DEMO_CLUSTER_ID,
          "--data-dir", join(nodeDir, "raft"),
          "--plaintext",
          "--listen", `127.0.0.1:${n.ports.grpc}`,
          "--http-listen", `127.0.0.1:${n.ports.http}`,
          "--sql-listen", `127.0.0.1:${n.ports.sql}`,
          "--proxy-listen", `127.0.0.1:${n.ports.proxy!}`,
          "--proxy-read-only-listen", `127.0.0.1:${n.ports.proxyReadOnly!}`,
          "--initial-cluster", initial,
        ],
        // The DSN holds the password: the environment, not the command line.
        { stdio: ["ignore", fd, fd], env: { ...process.env, PGRAFT_POSTGRES_DSN: s.server.dsn() } },
      );
    } finally {
      closeSync(fd);
    }
    s.sidecar = child;
    s.sidecarSince = Date.now();
    writePids();
    child.once("error", () => {}); // a failed spawn also ends in "exit"
    child.once("exit", (code, signal) => {
      if (s.sidecar === child) s.sidecar = undefined;
      writePids();
      if (stopping) return;
      s.sidecarDelay = nextRestartDelay(s.sidecarDelay, Date.now() - s.sidecarSince);
      // Killed by a signal: whatever its log says last is not why.
      const cause = signal ? "" : causeSuffix(exitCause(readLogFrom(s.sidecarLog, s.sidecarLogFrom), "sidecar"));
      event(`node ${s.id}: the sidecar (pid ${child.pid}) exited (${signal ? `signal ${signal}` : `code ${code}`}${cause}); the other processes keep running; restarting it in ${s.sidecarDelay / 1000}s (log ${s.sidecarLog})`);
      later(s.sidecarDelay, () => {
        spawnSidecar(s);
        event(`node ${s.id}: sidecar restarted (pid ${s.sidecar?.pid})`);
      });
    });
  };

  const restartPostgres = (s: Supervised): void => {
    later(s.pgDelay, () => {
      s.pgStarting = true;
      track(
        s.server.start().then(
          async () => {
            s.pgStarting = false;
            s.pgSince = Date.now();
            writePids();
            if (stopping) {
              await s.server.stop({ mode: "fast" }).catch(() => undefined);
              return;
            }
            event(`node ${s.id}: PostgreSQL restarted (pid ${s.server.pid})`);
          },
          (e: unknown) => {
            s.pgStarting = false;
            if (stopping) return;
            s.pgDelay = nextRestartDelay(s.pgDelay, 0);
            const why = e instanceof Error ? e.message : String(e);
            const cause = causeSuffix(exitCause(lastStartOf(readLogFrom(s.server.logFile)), "postgres"));
            event(`node ${s.id}: PostgreSQL did not start again (${why.split("\n")[0]}${cause}); trying again in ${s.pgDelay / 1000}s`);
            restartPostgres(s);
          },
        ),
      );
    });
  };

  const stop = async (): Promise<void> => {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    await Promise.all([...restarts]);
    await Promise.all(
      supervised.map(
        (s) =>
          new Promise<void>((resolve) => {
            const c = s.sidecar;
            if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
            const force = setTimeout(() => c.kill("SIGKILL"), 10_000);
            c.once("exit", () => {
              clearTimeout(force);
              resolve();
            });
            c.kill("SIGTERM");
          }),
      ),
    );
    await Promise.all(supervised.map((s) => s.server.stop({ mode: "fast" }).catch(() => undefined)));
    writePids();
  };

  try {
    // 1. PostgreSQL servers, in parallel.
    await Promise.all(
      st.nodes.map(async (n) => {
        const nodeDir = join(o.baseDir, `node${n.id}`);
        await mkdir(nodeDir, { recursive: true, mode: 0o755 });
        const s: Supervised = {
          id: n.id,
          server: undefined as unknown as LocalPostgres,
          sidecar: undefined,
          sidecarLog: join(nodeDir, "sidecar.log"),
          sidecarLogFrom: 0,
          sidecarSince: 0,
          sidecarDelay: 0,
          pgStarting: true,
          pgSince: 0,
          pgDelay: 0,
        };
        s.server = new LocalPostgres({
          dataDir: join(nodeDir, "pg", "data"),
          port: n.ports.pg,
          password: n.password,
          // The proxies reach it too: with one password for every node (demos made since the proxy), its pgpass file serves them all.
          alsoReachedAt: st.nodes.filter((x) => x.password === n.password).flatMap((x) => [x.ports.proxy!, x.ports.proxyReadOnly!]),
          binaries: bins,
          keepProcessAlive: true,
          onSpawn: () => writePids(),
          onExit: (x) => {
            writePids();
            if (stopping || s.pgStarting) return;
            s.pgDelay = nextRestartDelay(s.pgDelay, Date.now() - s.pgSince);
            const how = x.signal ? `signal ${x.signal}` : `code ${x.code}`;
            // Killed from outside (kill -9, a stop): its backends' last words are not why; a crash (SIGABRT, SIGSEGV) may be in the log.
            const cause = x.signal && EXTERNAL_SIGNALS.has(x.signal) ? "" : causeSuffix(exitCause(lastStartOf(readLogFrom(s.server.logFile)), "postgres"));
            event(`node ${n.id}: PostgreSQL exited (${how}${cause}); the other processes keep running; restarting it in ${s.pgDelay / 1000}s (log ${s.server.logFile})`);
            restartPostgres(s);
          },
        });
        supervised.push(s);
        if (!s.server.isInitialized()) {
          o.progress(`node ${n.id}: initdb ${s.server.dataDir}`);
          await s.server.initdb();
        }
        await s.server.start();
        s.pgStarting = false;
        s.pgSince = Date.now();
        o.progress(`node ${n.id}: PostgreSQL ${bins.version ?? ""} on 127.0.0.1:${n.ports.pg}`);
      }),
    );
    supervised.sort((a, b) => a.id - b.id);
    // 2. Sidecars.
    for (const s of supervised) {
      spawnSidecar(s);
      const n = st.nodes.find((x) => x.id === s.id)!;
      o.progress(`node ${n.id}: sidecar gRPC 127.0.0.1:${n.ports.grpc}, HTTP 127.0.0.1:${n.ports.http}, log ${s.sidecarLog}`);
    }
    // 3. Ready when every node's shim answers and agrees on a leader.
    const deadline = Date.now() + (o.readyTimeoutMs ?? 90_000);
    for (const s of supervised) {
      let last = "";
      for (;;) {
        if (stopping) throw new Error("stopped while starting");
        const c = new pg.Client({ ...s.server.clientConfig(), connectionTimeoutMillis: 2_000 });
        c.on("error", () => {});
        try {
          await c.connect();
          const r = await c.query<{ leader: number | null }>("SELECT pgraft_get_leader() AS leader");
          if (r.rows[0]?.leader) {
            o.progress(`node ${s.id}: shim installed; leader is node ${r.rows[0].leader}`);
            break;
          }
          last = "no leader yet";
        } catch (e) {
          last = e instanceof Error ? e.message : String(e);
        } finally {
          await c.end().catch(() => undefined);
        }
        if (Date.now() > deadline) throw new Error(`node ${s.id} was not ready in time (last: ${last}); see ${s.sidecarLog}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const nodes: DemoNodeInfo[] = supervised.map((s) => {
    const n = st.nodes.find((x) => x.id === s.id)!;
    return {
      id: n.id,
      dsn: s.server.dsn(),
      interfaceDsn: s.server.passfileDsn(),
      passfile: s.server.passfile,
      psql: s.server.psqlCommand(),
      postgres: `127.0.0.1:${n.ports.pg}`,
      grpc: `127.0.0.1:${n.ports.grpc}`,
      http: `http://127.0.0.1:${n.ports.http}`,
      metrics: `http://127.0.0.1:${n.ports.http}/metrics`,
      sql: `127.0.0.1:${n.ports.sql}`,
      proxy: `127.0.0.1:${n.ports.proxy!}`,
      proxyReadOnly: `127.0.0.1:${n.ports.proxyReadOnly!}`,
      postgresLog: s.server.logFile,
      sidecarLog: s.sidecarLog,
    };
  });
  return { baseDir: o.baseDir, nodes, pids, stop, unexpectedExit };
}

// ---------------------------------------------------------------- the processes of a base dir

/** A process that belongs to the demo in a base dir. */
export interface DemoProcess {
  pid: number;
  kind: "supervisor" | "sidecar" | "postgres";
  /** "the demo supervisor", "node 2's sidecar", "node 2's PostgreSQL". */
  what: string;
}

export class DemoRunningError extends Error {
  constructor(
    readonly baseDir: string,
    readonly processes: DemoProcess[],
    pgraftCommand = "pgraft",
  ) {
    super(
      `a demo is running here (${processes.map((p) => `${p.what}: pid ${p.pid}`).join(", ")}): use --stop (${pgraftCommand} demo --stop --base-dir ${baseDir})`,
    );
  }
}

/** Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return !existsSync("/proc/self/stat"); // no /proc: the signal said it is there
  }
}

/** A process's arguments (Linux /proc); undefined when it cannot be read. */
function cmdline(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
  } catch {
    return undefined;
  }
}

const HAVE_PROC = existsSync("/proc/self/cmdline");

function readPids(baseDir: string): Partial<DemoPids> {
  try {
    return JSON.parse(readFileSync(join(baseDir, PIDS_FILE), "utf8")) as Partial<DemoPids>;
  } catch {
    return {};
  }
}

/**
 * Every live process of the demo in `baseDir`, however it was left (the
 * supervisor killed, a sidecar orphaned): the supervisor recorded in
 * pids.json (or demo.json); each node's sidecar — found by its --data-dir
 * among all processes (Linux), else by pids.json — and each node's
 * postmaster, by its data dir's postmaster.pid. The calling process is never
 * one of them.
 */
export async function runningProcesses(baseDir: string): Promise<DemoProcess[]> {
  const st = await loadState(baseDir);
  if (!st) return [];
  const found: DemoProcess[] = [];
  const recorded = readPids(baseDir);
  const isOurs = (pid: number, needle: string): boolean => {
    if (pid === process.pid || !alive(pid)) return false;
    if (!HAVE_PROC) return true;
    const args = cmdline(pid);
    return args !== undefined && args.some((a) => a.includes(needle));
  };
  for (const pid of new Set([recorded.supervisor, st.pid].filter((p): p is number => typeof p === "number"))) {
    const args = HAVE_PROC ? cmdline(pid) : undefined;
    if (isOurs(pid, baseDir) && (!HAVE_PROC || args?.includes("demo"))) found.push({ pid, kind: "supervisor", what: "the demo supervisor" });
  }
  const raftDirs = new Map(st.nodes.map((n) => [join(baseDir, `node${n.id}`, "raft"), n.id]));
  const sidecars = new Map<number, number>();
  if (HAVE_PROC) {
    for (const entry of readdirSync("/proc")) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      const args = cmdline(pid);
      if (!args?.includes("sidecar")) continue;
      const i = args.indexOf("--data-dir");
      const id = i >= 0 ? raftDirs.get(args[i + 1] ?? "") : undefined;
      if (id !== undefined) sidecars.set(pid, id);
    }
  } else {
    for (const n of recorded.nodes ?? []) if (n.sidecar && alive(n.sidecar)) sidecars.set(n.sidecar, n.id);
  }
  for (const [pid, id] of sidecars) found.push({ pid, kind: "sidecar", what: `node ${id}'s sidecar` });
  for (const n of st.nodes) {
    const dataDir = join(baseDir, `node${n.id}`, "pg", "data");
    let pid: number;
    try {
      pid = Number((await readFile(join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) continue;
    if (HAVE_PROC) {
      const args = cmdline(pid);
      if (args && !args.some((a) => /postgres|postmaster/.test(a))) continue; // the pid was reused
    }
    found.push({ pid, kind: "postgres", what: `node ${n.id}'s PostgreSQL` });
  }
  return found;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** Signal `pid` with each of `steps` in turn until it is gone. */
async function stopProcess(pid: number, steps: readonly (readonly [NodeJS.Signals, number])[]): Promise<void> {
  for (const [signal, ms] of steps) {
    try {
      process.kill(pid, signal);
    } catch {
      return; // gone
    }
    if (await waitGone(pid, ms)) return;
  }
}

/**
 * `pgraft demo --stop --base-dir DIR`: stop every process of the demo in DIR.
 * The supervisor first (SIGTERM: it stops its sidecars and servers itself);
 * then whatever is left — sidecars (SIGTERM, then SIGKILL) and postmasters
 * (fast shutdown, then immediate, then SIGKILL). Returns what was running.
 */
export async function stopDemoDir(baseDir: string, timeoutMs = 60_000): Promise<DemoProcess[]> {
  const st = await loadState(baseDir);
  if (!st) throw new Error(`${baseDir} holds no pgraft demo (no ${STATE_FILE})`);
  const stopped: DemoProcess[] = [];
  const first = await runningProcesses(baseDir);
  for (const p of first.filter((x) => x.kind === "supervisor")) {
    stopped.push(p);
    await stopProcess(p.pid, [["SIGTERM", timeoutMs], ["SIGKILL", 5_000]]);
  }
  const rest = await runningProcesses(baseDir);
  await Promise.all(
    rest.map(async (p) => {
      stopped.push(p);
      if (p.kind === "postgres") await stopProcess(p.pid, [["SIGINT", 30_000], ["SIGQUIT", 10_000], ["SIGKILL", 5_000]]);
      else await stopProcess(p.pid, [["SIGTERM", 10_000], ["SIGKILL", 5_000]]);
    }),
  );
  await recordOwner(baseDir, undefined);
  return stopped;
}

export async function recordOwner(baseDir: string, pid: number | undefined): Promise<void> {
  const st = await loadState(baseDir);
  if (!st) return;
  if (pid === undefined) delete st.pid;
  else st.pid = pid;
  await saveState(baseDir, st);
}

export const demoExists = (baseDir: string): boolean => existsSync(join(baseDir, STATE_FILE));
