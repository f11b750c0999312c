// bench/consensus: committed entries per second, fsyncs per committed entry
// and commit latency of a 3-node pgraft cluster (in-process, real WAL on disk),
// at 1, 16 and 256 concurrent proposers — beside a 3-member etcd cluster
// measured in the same run. Not a test: it asserts nothing, it reports.
//
//   make bench                   (BENCH_SECONDS=5 BENCH_CONCURRENCY=1,16,256)
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo, type Server } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { RaftNode, type StateMachine, type Transport } from "../src/consensus/driver.js";
import { GrpcPeerTransport, PEER_SERVER_OPTIONS } from "../src/transport/peer-transport.js";
import { MemoryNetwork } from "../src/consensus/memory-transport.js";
import { Role } from "../src/consensus/types.js";
import { runEtcd, startEtcd } from "./etcd-baseline.js";
import { closedLoop, percentile, type RunResult } from "./stats.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LEVELS = (process.env.BENCH_CONCURRENCY ?? "1,16,256").split(",").map(Number);
const VALUE = Buffer.alloc(128, 0x61);

class CountingSm implements StateMachine {
  applied = 0;
  apply(): number {
    return ++this.applied;
  }
  snapshot(): Uint8Array {
    return new Uint8Array(8);
  }
  restore(): void {}
}

type Wiring = "memory" | "grpc";

/** Free loopback ports, found by binding port 0. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<Server>((resolve) => { const s = createServer(); s.listen(0, "127.0.0.1", () => resolve(s)); })),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function runPgraft(concurrency: number, wiring: Wiring): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), "pgraft-bench-"));
  const net = new MemoryNetwork();
  const ids = [1, 2, 3];
  const ports = await freePorts(3);
  const refs = new Map<number, RaftNode>();
  const grpcTransports: GrpcPeerTransport[] = [];
  const servers: grpc.Server[] = [];
  const transportFor = (id: number): Transport => {
    if (wiring === "memory") return net.transportFor(id);
    const t = new GrpcPeerTransport({
      selfId: id,
      clusterId: "bench",
      peers: ids.filter((p) => p !== id).map((p) => [p, `127.0.0.1:${ports[p - 1]}`] as const),
      credentials: grpc.credentials.createInsecure(),
      onReceive: (m) => refs.get(id)?.receive(m),
      onUnreachable: (p) => refs.get(id)?.reportUnreachable(p),
      onSnapshotStatus: (p, ok) => refs.get(id)?.reportSnapshot(p, ok),
    });
    grpcTransports.push(t);
    const server = new grpc.Server(PEER_SERVER_OPTIONS);
    t.register(server);
    servers.push(server);
    return t;
  };
  const nodes = await Promise.all(
    ids.map((id) =>
      RaftNode.open({
        id,
        clusterId: "bench",
        dataDir: join(dir, `n${id}`),
        transport: transportFor(id),
        stateMachine: new CountingSm(),
        bootstrap: { voters: ids, learners: [] },
        tickMs: 100,
        snapshotEntries: 50_000,
      }),
    ),
  );
  try {
    await Promise.all(
      servers.map((s, i) => new Promise<number>((res, rej) => s.bindAsync(`127.0.0.1:${ports[i]}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))))),
    );
    for (const n of nodes) {
      refs.set(n.id, n);
      if (wiring === "memory") net.attach(n);
      n.start();
    }
    nodes[0]!.campaign();
    let leader: RaftNode | undefined;
    for (let i = 0; i < 300 && !leader; i++) {
      leader = nodes.find((n) => n.status().role === Role.Leader);
      if (!leader) await new Promise((r) => setTimeout(r, 10));
    }
    if (!leader) throw new Error("no leader elected");
    const l = leader;
    const before = l.storageStats().fsyncs;
    const r = await closedLoop(concurrency, SECONDS, () => l.propose(VALUE));
    r.fsyncsPerEntry = (l.storageStats().fsyncs - before) / r.committed;
    return r;
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const t of grpcTransports) t.close();
    for (const s of servers) s.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  }
}

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/consensus: 3 nodes, ${VALUE.length}-byte entries, ${SECONDS}s per level, closed-loop proposers`);
  console.log("pgraft (mem): 3 nodes in one process, in-memory messages; pgraft (grpc): same, Raft messages over gRPC on loopback");
  console.log("both with the real WAL and fsync; etcd 3.x: 3 processes on loopback, written through its gRPC client");
  if (!haveEtcd) console.log("etcd not found (apt-get install etcd-server, or ETCD_BIN=...): the etcd columns are skipped");
  console.log("");
  console.log("proposers  system         entries/s  p50 ms  p99 ms  fsyncs/entry(leader)  throughput ratio vs etcd");
  for (const c of LEVELS) {
    const rows: [string, RunResult][] = [];
    for (const w of ["memory", "grpc"] as const) rows.push([w === "memory" ? "pgraft (mem) " : "pgraft (grpc)", await runPgraft(c, w)]);
    let e: RunResult | undefined;
    if (haveEtcd) {
      const cluster = await startEtcd(23790);
      try {
        e = await runEtcd(cluster, c, SECONDS, VALUE);
      } finally {
        await cluster.stop();
      }
    }
    const eRate = e ? e.committed / e.seconds : NaN;
    rows.forEach(([name, p], i) => {
      const pRate = p.committed / p.seconds;
      console.log(
        `${(i === 0 ? String(c) : "").padEnd(11)}${name}  ${fmt(pRate).padEnd(11)}${fmt(percentile(p.latenciesMs, 50), 2).padEnd(8)}${fmt(percentile(p.latenciesMs, 99), 2).padEnd(8)}${fmt(p.fsyncsPerEntry ?? NaN, 3).padEnd(22)}${fmt(pRate / eRate, 2)}`,
      );
    });
    if (e) {
      console.log(
        `${"".padEnd(11)}etcd           ${fmt(eRate).padEnd(11)}${fmt(percentile(e.latenciesMs, 50), 2).padEnd(8)}${fmt(percentile(e.latenciesMs, 99), 2).padEnd(8)}${"n/a".padEnd(22)}`,
      );
    }
  }
  console.log("");
  console.log("pgraft's proposers call the leader in-process; etcd's go through its gRPC client (bench/kv will compare client paths).");
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
