// bench/consensus: the Raft engine alone — committed entries per second,
// the leader's fsyncs per committed entry (its own WAL only: the followers'
// fsyncs are not counted) and commit latency of a 3-node pgraft cluster
// inside this one process (RaftNode with its real WAL on disk and fsync, a
// state machine that only counts entries, proposers calling the leader's
// propose() in-process), at 1, 16 and 256 concurrent proposers; once with
// in-memory messages between the nodes, once with Raft messages over gRPC on
// loopback. Not a test: it asserts nothing, it reports.
//
// What is compared: pgraft's engine with itself (memory vs gRPC wiring), and
// nothing else. There is no etcd column: etcd's engine-level load generator
// (its `benchmark` tool) is not in any package registry, and etcd driven
// through its client over gRPC into its real KV store is not the same work as
// an in-process propose() into a counting state machine. bench/kv compares
// the two systems like with like (both through their client APIs).
// The proposers share this process with the three nodes, so "cpu %" (this
// process, user + system, in % of one core) is the cluster and its load
// generator together, and all of them run on one Node.js event loop (one
// core): the figures are bounded by that core, not by what three separate
// processes on three cores would do.
//
//   make bench                   (BENCH_SECONDS=5 BENCH_CONCURRENCY=1,16,256 BENCH_REPS=3)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo, type Server } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { RaftNode, type StateMachine, type Transport } from "../src/consensus/driver.js";
import { GrpcPeerTransport, PEER_SERVER_OPTIONS } from "../src/transport/peer-transport.js";
import { MemoryNetwork } from "../src/consensus/memory-transport.js";
import { Role } from "../src/consensus/types.js";
import { alternate, fmt, fmtSpread, loadAverageChecked, machineNote, repetitions, selfCpuMeter, spread } from "./report.js";
import { closedLoop, percentile, type RunResult } from "./stats.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LEVELS = (process.env.BENCH_CONCURRENCY ?? "1,16,256").split(",").map(Number);
const VALUE = Buffer.alloc(128, 0x61);
const REPS = repetitions();

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

type Run = RunResult & { cpuPct?: number };

async function runPgraft(concurrency: number, wiring: Wiring): Promise<Run> {
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
    const cpu = selfCpuMeter();
    const r: Run = await closedLoop(concurrency, SECONDS, () => l.propose(VALUE));
    r.cpuPct = cpu();
    r.fsyncsPerEntry = (l.storageStats().fsyncs - before) / r.committed; // the leader's WAL only
    return r;
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const t of grpcTransports) t.close();
    for (const s of servers) s.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  }
}

const NAME: Record<Wiring, string> = { memory: "pgraft (mem) ", grpc: "pgraft (grpc)" };

async function main(): Promise<void> {
  console.log(`bench/consensus: the Raft engine alone, 3 nodes in one process, ${VALUE.length}-byte entries, ${SECONDS}s per run, closed-loop in-process proposers, ${REPS} repetitions per level (mem and grpc alternate which runs first)`);
  console.log("pgraft (mem): in-memory messages between the nodes; pgraft (grpc): Raft messages over gRPC on loopback; both with the real WAL and fsync");
  console.log("all three nodes and the proposers share this one Node.js event loop (one core): every figure is bounded by that core");
  console.log("leader fsyncs/entry: the leader's own WAL fsyncs per committed entry; the two followers' fsyncs are not counted");
  console.log("no etcd column and no ratio against etcd: this is not the path etcd's client takes (bench/kv compares both systems through their client APIs)");
  console.log(`load average before: ${loadAverageChecked()} (${machineNote()})`);
  console.log("");
  console.log("proposers  wiring         entries/s median (min-max)   p50 ms  p99 ms  leader fsyncs/entry  cpu % (process)");
  for (const c of LEVELS) {
    const runs: Record<Wiring, Run[]> = { memory: [], grpc: [] };
    for (let rep = 0; rep < REPS; rep++) for (const w of alternate<Wiring>(rep, "memory", "grpc")) runs[w].push(await runPgraft(c, w));
    (["memory", "grpc"] as const).forEach((w, i) => {
      const rs = runs[w];
      const rate = spread(rs.map((r) => r.committed / r.seconds));
      const med = (f: (r: Run) => number): number => spread(rs.map(f)).median;
      console.log(
        `${(i === 0 ? String(c) : "").padEnd(11)}${NAME[w]}  ${`${fmt(rate.median)} (${fmt(rate.min)}-${fmt(rate.max)})`.padEnd(29)}${fmt(med((r) => percentile(r.latenciesMs, 50)), 2).padEnd(8)}${fmt(med((r) => percentile(r.latenciesMs, 99)), 2).padEnd(8)}${fmt(med((r) => r.fsyncsPerEntry ?? NaN), 3).padEnd(21)}${fmt(med((r) => r.cpuPct ?? NaN))}`,
      );
    });
    const ratios = runs.grpc.map((g, i) => g.committed / g.seconds / (runs.memory[i]!.committed / runs.memory[i]!.seconds));
    console.log(`${"".padEnd(11)}entries/s grpc/mem, per repetition: ${fmtSpread(ratios)}`);
  }
  console.log("");
  console.log("p50/p99/leader fsyncs/cpu: the median over the repetitions of each run's figure");
  console.log(`load average after: ${loadAverageChecked()}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
