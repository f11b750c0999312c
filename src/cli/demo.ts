// `pgraft demo`: start (or restart) a local cluster of PostgreSQL + sidecars
// and print how to reach each node. In the foreground it runs until Ctrl-C
// (or SIGTERM), then stops everything and removes nothing; --detach runs the
// same foreground process in the background and returns once it is ready
// (what happens later goes to DIR/demo.log); --stop stops every process of
// the directory, however it was left. A sidecar or PostgreSQL that exits on
// its own is reported (with the last error in its log) and restarted after a
// backoff; the others keep running. A restart keeps the saved ports and
// refuses to start, naming them, while another program holds one.
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { chmodSync, closeSync, existsSync, openSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { reachableTempDir } from "../postgres/index.js";
import {
  DEMO_CLUSTER_ID,
  DemoRunningError,
  PortsTakenError,
  demoExists,
  recordOwner,
  runningProcesses,
  startDemo,
  stopDemoDir,
  takenPorts,
  type DemoNodeInfo,
  type DemoPids,
} from "../demo/local-cluster.js";

export interface DemoCliOptions {
  nodes: number;
  baseDir?: string;
  json: boolean;
  detach: boolean;
  stop: boolean;
  /** Internal: the background half of --detach (writes ready.json instead of printing). */
  background?: boolean;
}

const MAIN_JS = join(fileURLToPath(new URL(".", import.meta.url)), "main.js");
const READY_FILE = "ready.json";
const out = (s: string): void => void process.stdout.write(s + "\n");
const sqlLiteral = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/**
 * How to run pgraft from where the user is: the `./pgraft` wrapper at the
 * repository root (relative when we are there, else its absolute path), or
 * `node <main.js>` when there is no wrapper (an installed copy).
 */
export function pgraftCommand(mainJs = MAIN_JS, cwd = process.cwd()): string {
  const root = resolve(mainJs, "..", "..", "..", "..");
  const wrapper = join(root, "pgraft");
  if (!existsSync(wrapper)) return `node ${mainJs}`;
  const rel = relative(cwd, wrapper);
  return rel === "pgraft" ? "./pgraft" : wrapper;
}

/** One node in what --json prints: snake_case keys, like every --json document of the CLI. */
export interface DemoNodeJson {
  id: number;
  dsn: string;
  interface_dsn: string;
  passfile: string;
  psql: string;
  postgres: string;
  grpc: string;
  http: string;
  metrics: string;
  sql: string;
  /** The sidecar's read-write proxy (to the write leader of its group) and read-only proxy. */
  proxy: string;
  proxy_read_only: string;
  postgres_log: string;
  sidecar_log: string;
  sidecar_pid: number | null;
  postgres_pid: number | null;
}

/** What --json prints (and --detach reads back from DIR/ready.json); documented in docs/cli-json.md. */
export interface DemoJson {
  cluster_id: string;
  base_dir: string;
  supervisor_pid: number;
  nodes: DemoNodeJson[];
}

function demoJson(baseDir: string, nodes: DemoNodeInfo[], pids: DemoPids): DemoJson {
  return {
    cluster_id: DEMO_CLUSTER_ID,
    base_dir: baseDir,
    supervisor_pid: pids.supervisor,
    nodes: nodes.map((n) => {
      const p = pids.nodes.find((x) => x.id === n.id);
      return {
        id: n.id,
        dsn: n.dsn,
        interface_dsn: n.interfaceDsn,
        passfile: n.passfile,
        psql: n.psql,
        postgres: n.postgres,
        grpc: n.grpc,
        http: n.http,
        metrics: n.metrics,
        sql: n.sql,
        proxy: n.proxy,
        proxy_read_only: n.proxyReadOnly,
        postgres_log: n.postgresLog,
        sidecar_log: n.sidecarLog,
        sidecar_pid: p?.sidecar ?? null,
        postgres_pid: p?.postgres ?? null,
      };
    }),
  };
}

/** The node's psql command, pointed at its read-write proxy (its pgpass file has a line for the proxy ports). */
function proxyPsql(n: DemoNodeJson): string {
  const pgPort = n.postgres.slice(n.postgres.lastIndexOf(":") + 1);
  const proxyPort = n.proxy.slice(n.proxy.lastIndexOf(":") + 1);
  return n.psql.replace(`port=${pgPort}`, `port=${proxyPort}`);
}

export function describe(doc: DemoJson, cmd = pgraftCommand()): string {
  const { nodes } = doc;
  const lines = [`pgraft demo: ${nodes.length} nodes ready (PostgreSQL + sidecar each), cluster ${doc.cluster_id}, data in ${doc.base_dir}`, ""];
  for (const n of nodes) {
    lines.push(`node ${n.id}:`);
    lines.push(`  psql:     ${n.psql}`);
    lines.push(`  metrics:  ${n.metrics}`);
    lines.push(`  proxy:    read-write ${n.proxy}, read-only ${n.proxy_read_only}  (psql there: ${proxyPsql(n)})`);
    lines.push(`  HTTP:     ${n.http}/health  ${n.http}/ready  ${n.http}/leader  ${n.http}/primary  ${n.http}/replica`);
    lines.push(`  gRPC:     ${n.grpc}   (${cmd} status --endpoint ${n.grpc} --cluster-id ${doc.cluster_id} --plaintext)`);
    lines.push(`  logs:     ${n.sidecar_log}, ${n.postgres_log}`);
    lines.push(`  PGDATA:   ${join(doc.base_dir, `node${n.id}`, "pg", "data")}`);
    lines.push(`  pids:     sidecar ${n.sidecar_pid ?? "-"}, PostgreSQL ${n.postgres_pid ?? "-"}`);
  }
  lines.push("", "try:  SELECT * FROM pgraft_get_nodes();   SELECT pgraft_kv_put('k', '{\"a\": 1}');   SELECT pgraft_kv_get('k');");
  const [a, b] = nodes;
  if (a && b) {
    // Interface DSNs are replicated to every node: no password in them, the node's pgpass file instead.
    lines.push(
      "",
      "node groups (interface DSNs carry no password: passfile= names each node's 0600 pgpass file):",
      `  on node ${a.id}:  SELECT bdr.create_node('node${a.id}', ${sqlLiteral(a.interface_dsn)});  SELECT bdr.create_node_group('demo');`,
      ...nodes
        .slice(1)
        .map((x) => `  on node ${x.id}:  SELECT bdr.create_node('node${x.id}', ${sqlLiteral(x.interface_dsn)});  SELECT bdr.join_node_group(${sqlLiteral(a.interface_dsn)});`),
      "           SELECT * FROM bdr.node_summary;",
      "  then: SELECT * FROM pgraft.node_group_routing_summary;  (the write leader: every node's read-write proxy sends writes there)",
    );
  }
  lines.push(
    "",
    `failover: kill -9 a sidecar or a postmaster (pids above); the others keep running, the exit is reported and the process restarted after a backoff (1s doubling to 30s). In a node group, kill the write leader's postmaster: within about a second the proxies send writes to another node.`,
  );
  return lines.join("\n");
}

const logEvent = (line: string): void => void process.stderr.write(`${new Date().toISOString()} pgraft demo: ${line}\n`);

export async function runDemoCommand(o: DemoCliOptions): Promise<void> {
  const cmd = pgraftCommand();
  if (o.stop) {
    if (!o.baseDir) throw new Error(`--stop needs --base-dir DIR (the dir the demo was started with)`);
    const dir = resolve(o.baseDir);
    const stopped = await stopDemoDir(dir);
    out(
      stopped.length
        ? `stopped the demo in ${dir} (${stopped.map((p) => `${p.what}: pid ${p.pid}`).join(", ")}); its data is kept there`
        : `no process of the demo in ${dir} is running; its data is kept there`,
    );
    return;
  }
  let baseDir: string;
  if (o.baseDir) baseDir = resolve(o.baseDir);
  else baseDir = await reachableTempDir("pgraft-demo-");
  if (o.detach) return detach(o, baseDir, cmd);
  if (!o.background) {
    const running = await runningProcesses(baseDir);
    if (running.length) throw new DemoRunningError(baseDir, running, cmd);
  }

  const progress = o.json || o.background ? () => {} : (l: string) => process.stderr.write(`  ${l}\n`);
  if (!o.json && !o.background) process.stderr.write(`pgraft demo: ${demoExists(baseDir) ? "restarting" : "starting"} ${o.nodes} nodes in ${baseDir}\n`);
  const demo = await startDemo({ nodes: o.nodes, baseDir, mainJs: MAIN_JS, progress, event: logEvent });
  await recordOwner(baseDir, process.pid);
  const doc = demoJson(baseDir, demo.nodes, demo.pids());
  if (o.background) {
    logEvent(`ready: ${demo.nodes.length} nodes (supervisor pid ${process.pid})`);
    await writeFile(join(baseDir, READY_FILE), JSON.stringify(doc, null, 2) + "\n", { mode: 0o600 });
  } else if (o.json) out(JSON.stringify(doc, null, 2));
  else out(describe(doc, cmd) + "\n\nCtrl-C stops the cluster (nothing is removed).");

  const why = await new Promise<string>((resolveWhy) => {
    process.once("SIGINT", () => resolveWhy("received SIGINT"));
    process.once("SIGTERM", () => resolveWhy("received SIGTERM"));
  });
  if (!o.json) logEvent(`${why}; stopping the sidecars and PostgreSQL servers`);
  await demo.stop();
  await recordOwner(baseDir, undefined);
  if (!o.json) logEvent(`stopped; data kept in ${baseDir} (run again with --base-dir ${baseDir}, or rm -rf it)`);
  process.exit();
}

/** Start the foreground demo as a background process and wait until it is ready. */
async function detach(o: DemoCliOptions, baseDir: string, cmd: string): Promise<void> {
  await mkdir(baseDir, { recursive: true });
  const running = await runningProcesses(baseDir);
  if (running.length) throw new DemoRunningError(baseDir, running, cmd);
  const taken = await takenPorts(baseDir);
  if (taken.length) throw new PortsTakenError(baseDir, taken);
  await rm(join(baseDir, READY_FILE), { force: true });
  const logPath = join(baseDir, "demo.log");
  const fd = openSync(logPath, "a", 0o600);
  chmodSync(logPath, 0o600); // the supervisor's log quotes its processes' errors: the owner's only
  const child = spawn(process.execPath, [MAIN_JS, "demo", "--nodes", String(o.nodes), "--base-dir", baseDir, "--background"], {
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  child.unref();
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const ready = JSON.parse(await readFile(join(baseDir, READY_FILE), "utf8")) as DemoJson;
      if (o.json) out(JSON.stringify(ready, null, 2));
      else out(describe(ready, cmd) + `\n\nrunning in the background (process ${child.pid}; what happens goes to ${logPath}); stop it with: ${cmd} demo --stop --base-dir ${baseDir}`);
      return;
    } catch {
      // not ready yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = await readFile(logPath, "utf8").catch(() => "");
      throw new Error(`the background demo did not become ready${child.exitCode !== null ? ` (it exited with code ${child.exitCode})` : ""}; its log ${logPath} ends with:\n${log.split("\n").slice(-15).join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
