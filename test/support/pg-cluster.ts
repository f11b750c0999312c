// A pgraft cluster as the SQL user sees it, for the test/sql tests: N
// throwaway PostgreSQL 15 servers (started in parallel) and a real `pgraft
// sidecar` beside each (the built CLI from dist/, bootstrapped with
// --initial-cluster, plaintext, fast timing), each sidecar given its
// server's superuser DSN (--postgres-dsn) so it installs the SQL shim there,
// and an explicit free port for its PostgreSQL-wire endpoint (--sql-listen).
//
// startPgCluster() resolves once a leader exists and every node's shim
// answers `SELECT pgraft_is_leader()`. destroy() kills the sidecars, then
// stops the servers and removes the temp dir, whatever state the test left
// them in; on a crash of the test process the harness's and postgres.ts's
// watchdogs do the same.
import { join } from "node:path";
import pg from "pg";
import { SidecarProcess, errorText, sleep } from "../integration/harness.js";
import { freePorts } from "./ports.js";
import { runProcess, type RunOutput } from "./run.js";
import { makeTestDir, removeTestDir, startTestPostgres, type TestPostgres } from "./postgres.js";
import { waitFor } from "./wait.js";

export const PSQL = "/usr/lib/postgresql/15/bin/psql";

export type { RunOutput };

export interface PgClusterOptions {
  /** Founding members, ids 1..nodes (default 3). */
  nodes?: number;
  /** Names the cluster id and temp dir. */
  name?: string;
  heartbeatMs?: number;
  electionMs?: number;
  /** Extra environment of every sidecar (e.g. PGPASSFILE). */
  sidecarEnv?: Record<string, string>;
  /** One superuser password for every server (a client that the proxy moves between nodes logs in on each); default: one each. */
  password?: string;
}

/** One PostgreSQL + sidecar pair. */
export interface PgNode {
  /** The sidecar's node id (1-based); nodes[i].id === i + 1. */
  readonly id: number;
  readonly pg: TestPostgres;
  /** The current sidecar process (replaced by rejoin()). */
  sidecar: SidecarProcess;
  readonly raftPort: number;
  readonly httpPort: number;
  readonly sqlPort: number;
  /** The sidecar's read-write proxy port (to the write leader) and read-only proxy port. */
  readonly proxyPort: number;
  readonly proxyReadOnlyPort: number;
  /** A statement through this node's pooled pg client (superuser); the full result, `fields` included. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /** A dedicated session (superuser unless `user`/`password` are given); the caller end()s it. */
  connect(opts?: { user?: string; password?: string }): Promise<pg.Client>;
  /** libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) that points psql at this server. */
  pgEnv(): Record<string, string>;
  /** Real psql (`-X`, no psqlrc) against this server with `args`; `input` goes to its stdin. */
  psql(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<RunOutput>;
  /** A bash script with this server's libpq environment (and PATH holding psql 15). */
  bash(script: string, opts?: { env?: Record<string, string>; timeoutMs?: number }): Promise<RunOutput>;
}

export interface PgCluster {
  readonly nodes: PgNode[];
  readonly clusterId: string;
  readonly dir: string;
  readonly electionMs: number;
  node(id: number): PgNode;
  /** The index in `nodes` of the leader every running node agrees on (waits up to `timeoutMs`). */
  leaderIndex(timeoutMs?: number): Promise<number>;
  leader(timeoutMs?: number): Promise<PgNode>;
  /** A running follower (not the leader). */
  follower(timeoutMs?: number): Promise<PgNode>;
  /** Ids whose sidecar is running (not paused or stopped). */
  live(): number[];
  /** Wait until `SELECT pgraft_is_leader()` answers on node `id`. */
  waitShim(id: number, timeoutMs?: number): Promise<void>;
  killSidecar(id: number): Promise<void>;
  /** SIGTERM (graceful) and wait for the exit. */
  stopSidecar(id: number): Promise<void>;
  pauseSidecar(id: number): void;
  resumeSidecar(id: number): void;
  /** Start a stopped sidecar again on its data dir and ports; waits until its shim answers. */
  restartSidecar(id: number): Promise<void>;
  /**
   * Replace node `id`'s (stopped) sidecar with a new one on a fresh data dir
   * that --join's the cluster through the other nodes, on the same ports (so
   * the same raft address: add it first with pgraft_add_node). Waits until it
   * serves HTTP; the shim is re-pointed at it by its PostgresLink.
   */
  rejoin(id: number): Promise<void>;
  /** Every sidecar's and server's log tail, for failure messages. */
  tails(lines?: number): string;
  destroy(): Promise<void>;
}

const run = (cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number }): Promise<RunOutput> => runProcess(cmd, args, { ...opts, input: opts.input ?? "" });

/** Start `nodes` PostgreSQL servers and sidecars; resolves once there is a leader and every shim answers. */
export async function startPgCluster(opts: PgClusterOptions = {}): Promise<PgCluster> {
  const n = opts.nodes ?? 3;
  const heartbeatMs = opts.heartbeatMs ?? 50;
  const electionMs = opts.electionMs ?? 500;
  const name = opts.name ?? "sql";
  const clusterId = `pgc-${name}`;
  const dir = makeTestDir("pgc-");
  const pools: pg.Pool[] = [];
  const sidecars = new Map<number, SidecarProcess>();
  const servers: TestPostgres[] = [];
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    // Sidecars first (their PostgresLink holds a connection to each server), then the pools, then the servers.
    await Promise.all(
      [...sidecars.values()].map(async (s) => {
        if (s.state === "stopped" || !s.child) return;
        try {
          s.child.kill("SIGCONT");
          s.child.kill("SIGKILL");
        } catch {
          // already gone
        }
        await s.waitExit(10_000).catch(() => undefined);
      }),
    );
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
    await Promise.all(servers.map((s) => s.destroy().catch(() => undefined)));
    removeTestDir(dir);
  };

  try {
    const started = await Promise.allSettled(Array.from({ length: n }, () => startTestPostgres(opts.password ? { password: opts.password } : {})));
    for (const r of started) if (r.status === "fulfilled") servers.push(r.value);
    for (const r of started) if (r.status === "rejected") throw r.reason;

    const ports = await freePorts(5 * n);
    const raftPort = (i: number): number => ports[5 * i]!;
    const httpPort = (i: number): number => ports[5 * i + 1]!;
    const sqlPort = (i: number): number => ports[5 * i + 2]!;
    const proxyPort = (i: number): number => ports[5 * i + 3]!;
    const proxyReadOnlyPort = (i: number): number => ports[5 * i + 4]!;
    const initial = Array.from({ length: n }, (_, i) => `${i + 1}=127.0.0.1:${raftPort(i)}`).join(",");
    const common = { clusterId, heartbeat: `${heartbeatMs}ms`, election: `${electionMs}ms`, env: opts.sidecarEnv ?? {} };
    const pgArgs = (i: number): string[] => [
      "--postgres-dsn",
      servers[i]!.server.dsn(),
      "--sql-listen",
      `127.0.0.1:${sqlPort(i)}`,
      "--proxy-listen",
      `127.0.0.1:${proxyPort(i)}`,
      "--proxy-read-only-listen",
      `127.0.0.1:${proxyReadOnlyPort(i)}`,
    ];
    const rejoins = new Map<number, number>();

    const makeSidecar = (i: number, mode: string[], dataDir: string, logName: string): SidecarProcess =>
      new SidecarProcess(i + 1, raftPort(i), httpPort(i), dataDir, join(dir, logName), [...mode, ...pgArgs(i)], common);

    for (let i = 0; i < n; i++) sidecars.set(i + 1, makeSidecar(i, ["--initial-cluster", initial], join(dir, `node${i + 1}`), `node${i + 1}.log`));

    const nodes: PgNode[] = servers.map((t, i) => {
      const server = t.server;
      const pool = new pg.Pool({ ...server.clientConfig(), max: 4, idleTimeoutMillis: 0, connectionTimeoutMillis: 10_000 });
      pool.on("error", () => undefined); // an idle client lost (a server restart): the next query gets a fresh one
      pools.push(pool);
      const pgEnv = (): Record<string, string> => ({
        PGHOST: "127.0.0.1",
        PGPORT: String(server.port),
        PGUSER: server.superuser,
        PGPASSWORD: server.password,
        PGDATABASE: "postgres",
        PGCONNECT_TIMEOUT: "10",
      });
      const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
        const e: NodeJS.ProcessEnv = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) e[k] = v;
        return { ...e, PATH: `/usr/lib/postgresql/15/bin:${process.env.PATH ?? "/usr/bin:/bin"}`, ...pgEnv(), ...extra };
      };
      const node: PgNode = {
        id: i + 1,
        pg: t,
        get sidecar(): SidecarProcess {
          return sidecars.get(i + 1)!;
        },
        set sidecar(s: SidecarProcess) {
          sidecars.set(i + 1, s);
        },
        raftPort: raftPort(i),
        httpPort: httpPort(i),
        sqlPort: sqlPort(i),
        proxyPort: proxyPort(i),
        proxyReadOnlyPort: proxyReadOnlyPort(i),
        query: <R extends pg.QueryResultRow>(sql: string, params?: unknown[]) => pool.query<R>(sql, params),
        connect: async (o = {}) => {
          const c = new pg.Client({ ...server.clientConfig(), ...(o.user ? { user: o.user } : {}), ...(o.password !== undefined ? { password: o.password } : {}) });
          c.on("error", () => undefined);
          try {
            await c.connect();
          } catch (e) {
            await c.end().catch(() => undefined);
            throw e;
          }
          return c;
        },
        pgEnv,
        psql: (args, o = {}) => run(PSQL, ["-X", ...args], { env: env(), ...o }),
        bash: (script, o = {}) => run("bash", ["-c", script], { env: env(o.env), ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) }),
      };
      return node;
    });

    const node = (id: number): PgNode => {
      const x = nodes[id - 1];
      if (!x) throw new Error(`no node ${id} (nodes 1..${nodes.length})`);
      return x;
    };
    const live = (): number[] => nodes.filter((x) => x.sidecar.state === "running").map((x) => x.id);
    const tails = (lines = 30): string =>
      nodes
        .map((x) => `----- sidecar ${x.id} (${x.sidecar.state}) ${x.sidecar.logPath}\n${x.sidecar.tail(lines)}\n----- postgres ${x.id} ${x.pg.server.logFile}\n${x.pg.server.logTail(10)}`)
        .join("\n");

    const waitShim = async (id: number, timeoutMs = 30_000): Promise<void> => {
      const end = Date.now() + timeoutMs;
      let last = "";
      for (;;) {
        try {
          await node(id).query("SELECT pgraft_is_leader()");
          return;
        } catch (e) {
          last = errorText(e);
        }
        if (Date.now() > end) throw new Error(`node ${id}'s shim did not answer within ${timeoutMs} ms (last error: ${last})\n${tails()}`);
        await sleep(100);
      }
    };

    /** Wait until node `id` knows a leader (a restarted sidecar answers before it has heard from one). */
    const waitKnowsLeader = async (id: number, timeoutMs = 20_000): Promise<void> => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        try {
          if ((await node(id).query<{ l: number | null }>("SELECT pgraft_get_leader() AS l")).rows[0]?.l) return;
        } catch {
          // not yet
        }
        if (Date.now() > end) throw new Error(`node ${id} knows no leader after ${timeoutMs} ms\n${tails()}`);
        await sleep(50);
      }
    };

    const leaderIndex = async (timeoutMs = 20_000): Promise<number> => {
      const end = Date.now() + timeoutMs;
      let last = "";
      for (;;) {
        try {
          const ids = live();
          const seen = await Promise.all(ids.map(async (id) => (await node(id).query<{ l: number | null }>("SELECT pgraft_get_leader() AS l")).rows[0]?.l ?? null));
          const l = seen[0];
          if (l && seen.every((x) => x === l) && ids.includes(l)) {
            const isLeader = (await node(l).query<{ b: boolean }>("SELECT pgraft_is_leader() AS b")).rows[0]?.b;
            if (isLeader) return l - 1;
          }
          last = `leaders seen by nodes ${ids.join(",")}: ${seen.join(",")}`;
        } catch (e) {
          last = errorText(e);
        }
        if (Date.now() > end) throw new Error(`no leader all running nodes agree on within ${timeoutMs} ms (${last})\n${tails()}`);
        await sleep(100);
      }
    };

    const restartSidecar = async (id: number): Promise<void> => {
      const s = node(id).sidecar;
      for (let attempt = 1; ; attempt++) {
        s.spawn();
        try {
          await s.waitReady(20_000);
          break;
        } catch (e) {
          if (s.state === "running") {
            s.signal("SIGKILL");
            await s.waitExit(10_000);
          }
          if (!/EADDRINUSE/.test(s.tail(5)) || attempt >= 20) throw new Error(`restarting sidecar ${id} failed: ${errorText(e)}\n${tails()}`);
          await sleep(250);
        }
      }
      await waitShim(id);
      await waitKnowsLeader(id);
    };

    const cluster: PgCluster = {
      nodes,
      clusterId,
      dir,
      electionMs,
      node,
      live,
      tails,
      waitShim,
      leaderIndex,
      leader: async (timeoutMs) => nodes[await leaderIndex(timeoutMs)]!,
      follower: async (timeoutMs) => {
        const l = await leaderIndex(timeoutMs);
        const f = nodes.find((x, i) => i !== l && x.sidecar.state === "running");
        if (!f) throw new Error("no running follower");
        return f;
      },
      killSidecar: async (id) => {
        const s = node(id).sidecar;
        if (s.state === "stopped") return;
        if (s.state === "paused") s.signal("SIGCONT");
        s.signal("SIGKILL");
        await s.waitExit(10_000);
      },
      stopSidecar: async (id) => {
        const s = node(id).sidecar;
        if (s.state === "stopped") return;
        if (s.state === "paused") {
          s.signal("SIGCONT");
          s.state = "running";
        }
        s.signal("SIGTERM");
        await s.waitExit(20_000);
      },
      pauseSidecar: (id) => {
        const s = node(id).sidecar;
        s.signal("SIGSTOP");
        s.state = "paused";
      },
      resumeSidecar: (id) => {
        const s = node(id).sidecar;
        if (s.state !== "paused") throw new Error(`sidecar ${id} is not paused`);
        s.signal("SIGCONT");
        s.state = "running";
      },
      restartSidecar,
      rejoin: async (id) => {
        const old = node(id).sidecar;
        if (old.state !== "stopped") throw new Error(`sidecar ${id} is ${old.state}: stop it before rejoin()`);
        const k = (rejoins.get(id) ?? 0) + 1;
        rejoins.set(id, k);
        const via = nodes.filter((x) => x.id !== id).map((x) => `127.0.0.1:${x.raftPort}`).join(",");
        const s = makeSidecar(id - 1, ["--join", via], join(dir, `node${id}-rejoin${k}`), `node${id}-rejoin${k}.log`);
        node(id).sidecar = s;
        s.spawn();
        await s.waitReady(20_000);
      },
      destroy,
    };

    for (const s of sidecars.values()) s.spawn();
    await Promise.all([...sidecars.values()].map((s) => s.waitReady(20_000)));
    await Promise.all(nodes.map((x) => waitShim(x.id)));
    await leaderIndex();
    // Each sidecar records its PostgreSQL address through Raft once a leader exists: wait for those writes,
    // so that a test counting KV revisions does not see them.
    await waitFor(
      "every member's PostgreSQL address recorded",
      async () => Number((await nodes[0]!.query<{ n: string }>("SELECT count(postgres_address)::text AS n FROM pgraft_get_nodes()")).rows[0]?.n) === n,
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    return cluster;
  } catch (e) {
    const logs = [...sidecars.values()].map((s) => `----- sidecar ${s.id}\n${s.tail(30)}`).join("\n");
    await destroy();
    throw new Error(`starting the ${n}-node PostgreSQL + sidecar cluster failed: ${errorText(e)}\n${logs}`);
  }
}

/** The SQLSTATE and message of a rejected query (throws when it was not a PostgreSQL error). */
export function pgError(e: unknown): { code: string; message: string; hint?: string; detail?: string; where?: string } {
  if (e instanceof pg.DatabaseError || (e instanceof Error && typeof (e as { code?: unknown }).code === "string")) {
    const d = e as pg.DatabaseError;
    return { code: d.code ?? "", message: d.message, ...(d.hint ? { hint: d.hint } : {}), ...(d.detail ? { detail: d.detail } : {}), ...(d.where ? { where: d.where } : {}) };
  }
  throw e;
}

/** Run `f`, which must fail with a PostgreSQL error; returns it. */
export async function sqlFails(f: () => Promise<unknown>): Promise<{ code: string; message: string; hint?: string; detail?: string; where?: string }> {
  try {
    await f();
  } catch (e) {
    return pgError(e);
  }
  throw new Error("expected the statement to fail, but it succeeded");
}

/**
 * One statement in a session of its own bounded by statement_timeout, so a
 * join or a part that cannot finish fails (and the test shows the logs)
 * instead of hanging the run. Returns the first column of the first row as text.
 */
export async function boundedCall(n: PgNode, sql: string, params: unknown[] = [], seconds = 90): Promise<string> {
  const s = await n.connect();
  try {
    await s.query(`SET statement_timeout = '${seconds}s'`);
    const r = await s.query<Record<string, unknown>>(sql, params);
    return String(Object.values(r.rows[0] ?? {})[0]);
  } finally {
    await s.end();
  }
}

/**
 * A node group over the cluster's nodes, as a user makes one: node i gets data node `names[i]` (its
 * interface DSN: the server's passfile DSN); the first creates `group`, the others join through it.
 */
export async function formGroup(c: PgCluster, group: string, names: readonly string[]): Promise<void> {
  const dsn = (n: PgNode): string => n.pg.server.passfileDsn();
  const first = c.nodes[0]!;
  await first.query("SELECT pgraft.create_node($1, $2)", [names[0], dsn(first)]);
  await first.query("SELECT bdr.create_node_group($1)", [group]);
  for (const [i, n] of c.nodes.slice(1, names.length).entries()) {
    await n.query("SELECT bdr.create_node($1, $2)", [names[i + 1], dsn(n)]);
    await boundedCall(n, "SELECT bdr.join_node_group($1)", [dsn(first)], 60);
  }
}
