// `pgraft demo`: start (or restart) a local cluster of PostgreSQL + sidecars
// and print how to reach each node. In the foreground it runs until Ctrl-C
// (or SIGTERM), then stops everything and removes nothing; --detach runs the
// same foreground process in the background and returns once it is ready;
// --stop asks that background process to stop.
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { openSync, closeSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { reachableTempDir } from "../postgres/index.js";
import { demoExists, recordOwner, startDemo, stopDetachedDemo, type DemoNodeInfo } from "../demo/local-cluster.js";

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

function describe(baseDir: string, nodes: DemoNodeInfo[]): string {
  const lines = [`pgraft demo: ${nodes.length} nodes ready (PostgreSQL + sidecar each), data in ${baseDir}`, ""];
  for (const n of nodes) {
    lines.push(`node ${n.id}:`);
    lines.push(`  psql:     ${n.psql}`);
    lines.push(`  metrics:  ${n.metrics}   (health: ${n.http}/health, routing: ${n.http}/primary, ${n.http}/replica)`);
    lines.push(`  gRPC:     ${n.grpc}   (pgraft status --endpoint ${n.grpc} --cluster-id pgraft-demo --plaintext)`);
    lines.push(`  logs:     ${n.sidecarLog}, ${n.postgresLog}`);
  }
  lines.push("", "try:  SELECT * FROM pgraft_get_nodes();   SELECT pgraft_kv_put('k', '{\"a\": 1}');   SELECT pgraft_kv_get('k');");
  const [a, b] = nodes;
  if (a && b) {
    // Interface DSNs are replicated to every node: no password in them, the node's pgpass file instead.
    lines.push(
      "",
      "node groups (interface DSNs carry no password: passfile= names each node's 0600 pgpass file):",
      `  on node ${a.id}:  SELECT bdr.create_node('node${a.id}', ${sqlLiteral(a.interfaceDsn)});  SELECT bdr.create_node_group('demo');`,
      `  on node ${b.id}:  SELECT bdr.create_node('node${b.id}', ${sqlLiteral(b.interfaceDsn)});  SELECT bdr.join_node_group(${sqlLiteral(a.interfaceDsn)});`,
      "           SELECT * FROM bdr.node_summary;",
    );
  }
  return lines.join("\n");
}

export async function runDemoCommand(o: DemoCliOptions): Promise<void> {
  if (o.stop) {
    if (!o.baseDir) throw new Error("--stop needs --base-dir DIR (the dir the demo was started with)");
    const pid = await stopDetachedDemo(resolve(o.baseDir));
    out(pid ? `stopped the demo in ${o.baseDir} (process ${pid}); its data is kept there` : `no demo is running in ${o.baseDir}`);
    return;
  }
  let baseDir: string;
  if (o.baseDir) baseDir = resolve(o.baseDir);
  else baseDir = await reachableTempDir("pgraft-demo-");
  if (o.detach) return detach(o, baseDir);

  const progress = o.json || o.background ? () => {} : (l: string) => process.stderr.write(`  ${l}\n`);
  if (!o.json && !o.background) process.stderr.write(`pgraft demo: ${demoExists(baseDir) ? "restarting" : "starting"} ${o.nodes} nodes in ${baseDir}\n`);
  const demo = await startDemo({ nodes: o.nodes, baseDir, mainJs: MAIN_JS, progress });
  await recordOwner(baseDir, process.pid);
  if (o.background) {
    await writeFile(join(baseDir, READY_FILE), JSON.stringify({ baseDir, nodes: demo.nodes }, null, 2) + "\n", { mode: 0o600 });
  } else if (o.json) out(JSON.stringify({ baseDir, nodes: demo.nodes }, null, 2));
  else out(describe(baseDir, demo.nodes) + "\n\nCtrl-C stops the cluster (nothing is removed).");

  const why = await new Promise<string>((resolveWhy) => {
    const onSignal = (sig: string) => resolveWhy(`received ${sig}`);
    process.once("SIGINT", () => onSignal("SIGINT"));
    process.once("SIGTERM", () => onSignal("SIGTERM"));
    demo.unexpectedExit.then(resolveWhy, () => {});
  });
  if (!o.json && !o.background) process.stderr.write(`pgraft demo: ${why}; stopping the sidecars and PostgreSQL servers\n`);
  await demo.stop();
  await recordOwner(baseDir, undefined);
  if (!o.json && !o.background) process.stderr.write(`pgraft demo: stopped; data kept in ${baseDir} (run again with --base-dir ${baseDir}, or rm -rf it)\n`);
  if (!why.startsWith("received")) process.exitCode = 1;
  process.exit();
}

/** Start the foreground demo as a background process and wait until it is ready. */
async function detach(o: DemoCliOptions, baseDir: string): Promise<void> {
  await mkdir(baseDir, { recursive: true });
  await rm(join(baseDir, READY_FILE), { force: true });
  const logPath = join(baseDir, "demo.log");
  const fd = openSync(logPath, "a");
  const child = spawn(process.execPath, [MAIN_JS, "demo", "--nodes", String(o.nodes), "--base-dir", baseDir, "--background"], {
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  child.unref();
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const ready = JSON.parse(await readFile(join(baseDir, READY_FILE), "utf8")) as { baseDir: string; nodes: DemoNodeInfo[] };
      if (o.json) out(JSON.stringify(ready, null, 2));
      else out(describe(baseDir, ready.nodes) + `\n\nrunning in the background (process ${child.pid}); stop it with: pgraft demo --stop --base-dir ${baseDir}`);
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
