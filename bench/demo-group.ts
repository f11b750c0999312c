// What the benchmarks that run a node group on a `pgraft demo` share
// (bench/replication, bench/multi-writer): a server of the demo as they reach
// it (SQL, pgbench's environment, CPU), the group created and joined through
// the SQL API (bdr.create_node_group / bdr.join_node_group: the product path),
// programs run to completion, polls with a deadline, and Ctrl-C stopping
// whatever of those is under way.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import pg from "pg";
import type { DemoNodeInfo, RunningDemo } from "../src/demo/local-cluster.js";
import { keyValueDsn, uriDsn, type ConnectionParams } from "../src/postgres/index.js";
import { postmasterPid, treeCpuSeconds } from "./proc-cpu.js";

/** The database the benchmarks' node group replicates. */
export const GROUP_DB = "postgres";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const ql = (s: string): string => `'${s.replace(/'/g, "''")}'`;

let interrupted = false;
const children = new Set<ChildProcess>();

/** Ctrl-C / SIGTERM: every poll and program run here stops (the programs get SIGINT). */
export function interrupt(): void {
  interrupted = true;
  for (const c of children) c.kill("SIGINT");
}

export const wasInterrupted = (): boolean => interrupted;

export function checkInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}

/** One server of the demo, as a benchmark reaches it. */
export class Server {
  readonly params: ConnectionParams;
  constructor(
    readonly info: DemoNodeInfo,
    readonly dataDir: string,
    readonly name: string,
    /** application_name of its connections and of the programs run with env(). */
    readonly appName = "pgraft_bench_replication",
  ) {
    const u = new URL(info.dsn);
    this.params = { host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), database: decodeURIComponent(u.pathname.slice(1)) };
  }

  kv(db: string): string {
    return keyValueDsn({ ...this.params, database: db });
  }

  /** An interface DSN for create_node / join_node_group: no password (it is replicated), the node's passfile instead. */
  iface(db: string): string {
    const { password: _pw, ...params } = this.params;
    return keyValueDsn({ ...params, database: db, passfile: this.info.passfile });
  }

  async connect(db: string): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: uriDsn({ ...this.params, database: db }), application_name: this.appName });
    c.on("error", () => {});
    await c.connect();
    return c;
  }

  async query<R extends pg.QueryResultRow = Record<string, unknown>>(db: string, sql: string, params?: unknown[]): Promise<R[]> {
    const c = await this.connect(db);
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  env(db: string): NodeJS.ProcessEnv {
    return { ...process.env, PGHOST: this.params.host, PGPORT: String(this.params.port), PGUSER: this.params.user, PGPASSWORD: this.params.password, PGDATABASE: db, PGAPPNAME: this.appName };
  }

  /** Core-seconds used so far by this server's whole process tree. */
  cpu(): number {
    return treeCpuSeconds(postmasterPid(this.dataDir));
  }
}

/** Run a program to completion (Ctrl-C kills it); its stdout + stderr. Several may run at once. */
export async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string, cwd?: string): Promise<string> {
  let child: ChildProcess | undefined;
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const p = spawn(cmd, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    child = p;
    children.add(p);
    let output = "";
    p.stdout.on("data", (b: Buffer) => (output += b.toString()));
    p.stderr.on("data", (b: Buffer) => (output += b.toString()));
    p.once("error", reject);
    p.once("close", (c) => resolve({ code: c, output }));
  }).finally(() => child && children.delete(child));
  checkInterrupted();
  if (code !== 0) throw new Error(`${what} failed (${cmd} ${args.join(" ")}: exit code ${code}):\n${output.trim()}`);
  return output;
}

/** Poll `f` every `everyMs` until it returns something truthy (errors are retried; the last one is in the timeout's message). */
export async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    checkInterrupted();
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
    await sleep(everyMs);
  }
}

/** The node's join/part state in the group database (ACTIVE, JOINING, …); undefined when it is no data node. */
export const nodeState = async (s: Server): Promise<string | undefined> => (await s.query<{ st: string }>(GROUP_DB, "SELECT peer_state_name AS st FROM pgraft.local_node_summary"))[0]?.st;

/** `s` becomes a data node and creates the node group `group` in GROUP_DB; resolves once it is ACTIVE. */
export async function createGroup(s: Server, group: string): Promise<void> {
  await s.query(GROUP_DB, "SELECT bdr.create_node($1, $2)", [s.name, s.iface(GROUP_DB)]);
  await s.query(GROUP_DB, `SELECT bdr.create_node_group(${ql(group)})`);
  await until(`node ${s.name} to be ACTIVE`, async () => (await nodeState(s)) === "ACTIVE", 30_000);
}

/**
 * `joiner` (already a data node: bdr.create_node) joins the group of
 * `upstream` through bdr.join_node_group; resolves once it is ACTIVE (schema,
 * snapshot copy, catch-up). A timeout names its last state and its sidecar log.
 */
export async function joinGroup(joiner: Server, upstream: Server, timeoutMs: number): Promise<void> {
  await joiner.query(GROUP_DB, "SELECT bdr.join_node_group($1, wait_for_completion := false)", [upstream.iface(GROUP_DB)]);
  let last = "";
  await until(
    `node ${joiner.name} to be ACTIVE (join)`,
    async () => {
      last = (await nodeState(joiner)) ?? "no node";
      return last === "ACTIVE";
    },
    timeoutMs,
  ).catch((e: unknown) => {
    throw new Error(`${e instanceof Error ? e.message : String(e)}; last state ${last}; see ${joiner.info.sidecarLog}`);
  });
}

/** The last `lines` lines of a log file (or why it cannot be read). */
export async function tail(file: string, lines: number): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
  } catch (e) {
    return `(unreadable: ${e instanceof Error ? e.message : String(e)})`;
  }
}

/** After a benchmark failed (not after Ctrl-C): the ends of every node's logs, which go with the temp dir. */
export async function printLogTails(demo: RunningDemo | undefined): Promise<void> {
  for (const n of wasInterrupted() ? [] : (demo?.nodes ?? [])) {
    for (const f of [n.sidecarLog, n.postgresLog]) console.error(`--- last lines of ${f}:\n${await tail(f, 25)}`);
  }
}

/** Stop the demo and remove its temp dir (BENCH_KEEP=1 keeps it and says where). */
export async function stopDemo(demo: RunningDemo | undefined, baseDir: string): Promise<void> {
  await demo?.stop().catch((e: unknown) => console.error("stopping the demo:", e));
  if (process.env.BENCH_KEEP) console.log(`kept ${baseDir} (servers stopped; logs in node*/)`);
  else await rm(baseDir, { recursive: true, force: true });
}
