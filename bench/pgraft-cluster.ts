// A 3-node cluster of real `pgraft sidecar` processes on loopback, for the
// benchmarks: started from dist/ (run `make build` first), torn down on stop.
// Each sidecar's stdout and stderr go to n<id>.log in the cluster's temp dir
// (appended to across restarts; --log-level BENCH_LOG_LEVEL, default warn); a
// readiness failure quotes the last lines of every node's log. The temp dir is
// deleted on stop unless BENCH_KEEP=1 (then its path is printed).
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { killAndWait } from "./processes.js";
import * as pb from "../src/gen/pgraft/v1/client_pb.js";
import { createClient, type TypedClient } from "../src/transport/grpc-service.js";

export const MAIN = join(import.meta.dirname, "..", "src", "cli", "main.js");

export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve) => {
          const s = createServer();
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** The last `n` lines of a log file, each indented, or a note that it is empty or unreadable. */
export function tailFile(path: string, n = 20): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    return `    (cannot read ${path}: ${(e as Error).message})`;
  }
  const lines = text.split("\n").filter((l) => l.length > 0);
  if (lines.length === 0) return "    (empty)";
  return lines
    .slice(-n)
    .map((l) => `    ${l.length > 400 ? `${l.slice(0, 400)}...` : l}`)
    .join("\n");
}

export interface PgraftCluster {
  clusterId: string;
  ids: number[];
  /** The temp dir: data dirs n<id>/ and logs n<id>.log. */
  dir: string;
  /** Every node's last `lines` log lines, and whether its process is running or how it ended. */
  logTails(lines?: number): string;
  endpoint(id: number): string;
  client(id: number): TypedClient<(typeof pb.Cluster)["method"]>;
  /** Wait until one node reports leadership; returns its id (default 60 s: a loaded small machine starts Node processes slowly). */
  leader(timeoutMs?: number): Promise<number>;
  /** Wait until every running node answers and knows the leader. */
  ready(timeoutMs?: number): Promise<void>;
  kill9(id: number): void;
  /** Start a killed node again with the same data dir and ports, once the killed process has exited. */
  restart(id: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startPgraft(opts: { heartbeat?: string; election?: string; nodes?: number } = {}): Promise<PgraftCluster> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\` first`);
  const n = opts.nodes ?? 3;
  const dir = await mkdtemp(join(tmpdir(), "pgraft-bench-cluster-"));
  const ports = await freePorts(2 * n);
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const grpcPort = (id: number) => ports[id - 1]!;
  const initial = ids.map((id) => `${id}=127.0.0.1:${grpcPort(id)}`).join(",");
  const procs = new Map<number, ChildProcess>();
  /** Processes killed by kill9, until restart has seen them exit (they may hold the ports and the data dir a moment longer). */
  const killed = new Map<number, ChildProcess>();
  /** How each node's last process ended, when it ended on its own (not by kill9/stop). */
  const ended = new Map<number, string>();
  const logOf = (id: number): string => join(dir, `n${id}.log`);
  const launch = (id: number): void => {
    const fd = openSync(logOf(id), "a");
    ended.delete(id);
    const p = spawn(
      process.execPath,
      [
        MAIN,
        "sidecar",
        "--node-id", String(id),
        "--cluster-id", "bench",
        "--data-dir", join(dir, `n${id}`),
        "--plaintext",
        "--listen", `127.0.0.1:${grpcPort(id)}`,
        "--http-listen", `127.0.0.1:${ports[n + id - 1]}`,
        "--initial-cluster", initial,
        "--heartbeat-interval", opts.heartbeat ?? "100ms",
        "--election-timeout", opts.election ?? "1000ms",
        "--log-level", process.env.BENCH_LOG_LEVEL ?? "warn",
      ],
      { stdio: ["ignore", fd, fd] },
    );
    closeSync(fd); // the child has its own copy
    p.once("exit", (code, signal) => {
      if (procs.get(id) === p) ended.set(id, `exited on its own (${signal ?? `code ${code}`})`);
    });
    procs.set(id, p);
  };
  const logTails = (lines = 20): string =>
    ids
      .map((id) => {
        const state = procs.has(id) ? (ended.get(id) ?? "running") : "killed (kill9), not restarted";
        return `  node ${id} (${state}), last ${lines} lines of ${logOf(id)}:\n${tailFile(logOf(id), lines)}`;
      })
      .join("\n");
  for (const id of ids) launch(id);
  const clients = new Map<number, TypedClient<(typeof pb.Cluster)["method"]>>();
  const client = (id: number) => {
    let c = clients.get(id);
    if (!c) {
      c = createClient(pb.Cluster, `127.0.0.1:${grpcPort(id)}`, grpc.credentials.createInsecure());
      clients.set(id, c);
    }
    return c;
  };
  const cluster: PgraftCluster = {
    clusterId: "bench",
    ids,
    dir,
    logTails,
    endpoint: (id) => `127.0.0.1:${grpcPort(id)}`,
    client,
    async leader(timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      while (Date.now() < end) {
        for (const id of ids) {
          if (!procs.has(id)) continue;
          try {
            const st = await client(id).methods.status({ clusterId: "bench" }, { timeoutMs: 500 });
            if (st.state === pb.RaftState.LEADER) return id;
          } catch {
            /* not up yet */
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`no leader within ${timeoutMs / 1000} s\n${logTails()}`);
    },
    async ready(timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      for (const id of ids) {
        for (;;) {
          if (!procs.has(id)) break;
          if (ended.has(id)) throw new Error(`node ${id} ${ended.get(id)} before it came up with a known leader\n${logTails()}`);
          try {
            const st = await client(id).methods.status({ clusterId: "bench" }, { timeoutMs: 500 });
            if (st.leaderId !== 0) break;
          } catch {
            /* not up yet */
          }
          if (Date.now() > end) throw new Error(`node ${id} did not come up with a known leader within ${timeoutMs / 1000} s\n${logTails()}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    },
    kill9(id) {
      const p = procs.get(id);
      procs.delete(id);
      if (p) killed.set(id, p);
      p?.kill("SIGKILL");
      clients.get(id)?.close();
      clients.delete(id);
    },
    async restart(id) {
      if (procs.has(id)) return;
      const old = killed.get(id);
      killed.delete(id);
      if (old) await killAndWait([old]);
      launch(id);
    },
    async stop() {
      for (const c of clients.values()) c.close();
      const all = [...procs.values(), ...killed.values()];
      procs.clear();
      killed.clear();
      await killAndWait(all);
      if (process.env.BENCH_KEEP) console.log(`kept ${dir} (sidecars stopped; logs in n*.log)`);
      else await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
