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
import { randomBytes } from "node:crypto";
import { existsSync, openSync, closeSync } from "node:fs";
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
  grpc: string;
  http: string;
  metrics: string;
  sql: string;
  postgresLog: string;
  sidecarLog: string;
}

interface NodePorts {
  pg: number;
  grpc: number;
  http: number;
  sql: number;
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
  /** Stop the sidecars (SIGTERM), then the PostgreSQL servers (fast shutdown). Removes nothing. */
  stop(): Promise<void>;
  /** Resolves when a sidecar or a server exits on its own (the demo then stops). */
  unexpectedExit: Promise<string>;
}

export interface StartDemoOptions {
  nodes: number;
  baseDir: string;
  mainJs: string;
  progress: (line: string) => void;
  readyTimeoutMs?: number;
}

export async function startDemo(o: StartDemoOptions): Promise<RunningDemo> {
  let bins: PostgresBinaries;
  try {
    bins = await findPostgresBinaries();
  } catch (e) {
    throw new Error(`pgraft demo needs the PostgreSQL server binaries: ${e instanceof Error ? e.message : String(e)}`);
  }
  await mkdir(o.baseDir, { recursive: true, mode: 0o755 });
  let state = await loadState(o.baseDir);
  if (state && state.nodes.length !== o.nodes) {
    throw new Error(`${o.baseDir} holds a ${state.nodes.length}-node demo; run it with --nodes ${state.nodes.length}, or choose another --base-dir`);
  }
  if (!state) {
    const nodes: DemoState["nodes"] = [];
    for (let id = 1; id <= o.nodes; id++) {
      nodes.push({ id, ports: { pg: await freePort(), grpc: await freePort(), http: await freePort(), sql: await freePort() }, password: randomBytes(12).toString("hex") });
    }
    state = { version: 1, nodes };
    await saveState(o.baseDir, state);
  }
  const st = state;

  const servers: LocalPostgres[] = [];
  const children: ChildProcess[] = [];
  let stopping = false;
  let reportExit: (why: string) => void = () => {};
  const unexpectedExit = new Promise<string>((resolve) => (reportExit = resolve));

  const stop = async (): Promise<void> => {
    stopping = true;
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const force = setTimeout(() => c.kill("SIGKILL"), 10_000);
            c.once("exit", () => {
              clearTimeout(force);
              resolve();
            });
            c.kill("SIGTERM");
          }),
      ),
    );
    await Promise.all(servers.map((s) => s.stop({ mode: "fast" }).catch(() => undefined)));
  };

  try {
    // 1. PostgreSQL servers, in parallel.
    await Promise.all(
      st.nodes.map(async (n) => {
        const nodeDir = join(o.baseDir, `node${n.id}`);
        await mkdir(nodeDir, { recursive: true, mode: 0o755 });
        const server = new LocalPostgres({
          dataDir: join(nodeDir, "pg", "data"),
          port: n.ports.pg,
          password: n.password,
          binaries: bins,
          keepProcessAlive: true,
          onExit: (x) => {
            if (!stopping) reportExit(`PostgreSQL of node ${n.id} exited (${JSON.stringify(x)}); see ${server.logFile}`);
          },
        });
        servers.push(server);
        if (!server.isInitialized()) {
          o.progress(`node ${n.id}: initdb ${server.dataDir}`);
          await server.initdb();
        }
        await server.start();
        o.progress(`node ${n.id}: PostgreSQL ${bins.version ?? ""} on 127.0.0.1:${n.ports.pg}`);
      }),
    );
    // 2. Sidecars.
    const initial = st.nodes.map((n) => `${n.id}=127.0.0.1:${n.ports.grpc}`).join(",");
    for (const n of st.nodes) {
      const nodeDir = join(o.baseDir, `node${n.id}`);
      const server = servers.find((s) => s.port === n.ports.pg)!;
      const logPath = join(nodeDir, "sidecar.log");
      const fd = openSync(logPath, "a", 0o600);
      let child: ChildProcess;
      try {
        child = spawn(
          process.execPath,
          [
            o.mainJs,
            "sidecar",
            "--node-id", String(n.id),
            "--cluster-id", "pgraft-demo",
            "--data-dir", join(nodeDir, "raft"),
            "--plaintext",
            "--listen", `127.0.0.1:${n.ports.grpc}`,
            "--http-listen", `127.0.0.1:${n.ports.http}`,
            "--sql-listen", `127.0.0.1:${n.ports.sql}`,
            "--initial-cluster", initial,
          ],
          // The DSN holds the password: the environment, not the command line.
          { stdio: ["ignore", fd, fd], env: { ...process.env, PGRAFT_POSTGRES_DSN: server.dsn() } },
        );
      } finally {
        closeSync(fd);
      }
      children.push(child);
      child.once("exit", (code, signal) => {
        if (!stopping) reportExit(`the sidecar of node ${n.id} exited (code ${code}, signal ${signal}); see ${logPath}`);
      });
      o.progress(`node ${n.id}: sidecar gRPC 127.0.0.1:${n.ports.grpc}, HTTP 127.0.0.1:${n.ports.http}, log ${logPath}`);
    }
    // 3. Ready when every node's shim answers and agrees on a leader.
    const deadline = Date.now() + (o.readyTimeoutMs ?? 90_000);
    for (const [i, n] of st.nodes.entries()) {
      const server = servers.find((s) => s.port === n.ports.pg)!;
      let last = "";
      for (;;) {
        if (stopping) throw new Error("stopped while starting");
        const c = new pg.Client({ ...server.clientConfig(), connectionTimeoutMillis: 2_000 });
        c.on("error", () => {});
        try {
          await c.connect();
          const r = await c.query<{ leader: number | null }>("SELECT pgraft_get_leader() AS leader");
          if (r.rows[0]?.leader) {
            o.progress(`node ${n.id}: shim installed; leader is node ${r.rows[0].leader}`);
            break;
          }
          last = "no leader yet";
        } catch (e) {
          last = e instanceof Error ? e.message : String(e);
        } finally {
          await c.end().catch(() => undefined);
        }
        if (Date.now() > deadline) throw new Error(`node ${n.id} was not ready in time (last: ${last}); see ${join(o.baseDir, `node${n.id}`, "sidecar.log")}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      void i;
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const nodes: DemoNodeInfo[] = st.nodes.map((n) => {
    const server = servers.find((s) => s.port === n.ports.pg)!;
    return {
      id: n.id,
      dsn: server.dsn(),
      interfaceDsn: server.passfileDsn(),
      passfile: server.passfile,
      psql: server.psqlCommand(),
      grpc: `127.0.0.1:${n.ports.grpc}`,
      http: `http://127.0.0.1:${n.ports.http}`,
      metrics: `http://127.0.0.1:${n.ports.http}/metrics`,
      sql: `127.0.0.1:${n.ports.sql}`,
      postgresLog: server.logFile,
      sidecarLog: join(o.baseDir, `node${n.id}`, "sidecar.log"),
    };
  });
  return { baseDir: o.baseDir, nodes, stop, unexpectedExit };
}

/** `pgraft demo --stop --base-dir DIR`: ask the demo process that owns DIR to stop, and wait for it. */
export async function stopDetachedDemo(baseDir: string, timeoutMs = 60_000): Promise<number | undefined> {
  const st = await loadState(baseDir);
  if (!st) throw new Error(`${baseDir} holds no pgraft demo (no ${STATE_FILE})`);
  const pid = st.pid;
  if (!pid || !alive(pid)) return undefined;
  process.kill(pid, "SIGTERM");
  const end = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > end) throw new Error(`the demo process ${pid} did not stop within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return pid;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function recordOwner(baseDir: string, pid: number | undefined): Promise<void> {
  const st = await loadState(baseDir);
  if (!st) return;
  if (pid === undefined) delete st.pid;
  else st.pid = pid;
  await saveState(baseDir, st);
}

export const demoExists = (baseDir: string): boolean => existsSync(join(baseDir, STATE_FILE));
