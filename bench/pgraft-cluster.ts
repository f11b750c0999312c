// A 3-node cluster of real `pgraft sidecar` processes on loopback, for the
// benchmarks: started from dist/ (run `make build` first), torn down on stop.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
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

export interface PgraftCluster {
  clusterId: string;
  ids: number[];
  endpoint(id: number): string;
  client(id: number): TypedClient<(typeof pb.Cluster)["method"]>;
  /** Wait until one node reports leadership; returns its id (default 60 s: a loaded small machine starts Node processes slowly). */
  leader(timeoutMs?: number): Promise<number>;
  /** Wait until every running node answers and knows the leader. */
  ready(timeoutMs?: number): Promise<void>;
  kill9(id: number): void;
  /** Start a killed node again with the same data dir and ports. */
  restart(id: number): void;
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
  const launch = (id: number): void => {
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
        "--log-level", "warn",
      ],
      { stdio: "ignore" },
    );
    procs.set(id, p);
  };
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
      throw new Error("no leader within the timeout");
    },
    async ready(timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      for (const id of ids) {
        for (;;) {
          if (!procs.has(id)) break;
          try {
            const st = await client(id).methods.status({ clusterId: "bench" }, { timeoutMs: 500 });
            if (st.leaderId !== 0) break;
          } catch {
            /* not up yet */
          }
          if (Date.now() > end) throw new Error(`node ${id} did not come up with a known leader in time`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    },
    kill9(id) {
      procs.get(id)?.kill("SIGKILL");
      procs.delete(id);
      clients.get(id)?.close();
      clients.delete(id);
    },
    restart(id) {
      if (!procs.has(id)) launch(id);
    },
    async stop() {
      for (const c of clients.values()) c.close();
      await killAndWait(procs.values());
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
