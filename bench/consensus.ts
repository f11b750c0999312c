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
import { RaftNode, type StateMachine } from "../src/consensus/driver.js";
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

async function runPgraft(concurrency: number): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), "pgraft-bench-"));
  const net = new MemoryNetwork();
  const ids = [1, 2, 3];
  const nodes = await Promise.all(
    ids.map((id) =>
      RaftNode.open({
        id,
        clusterId: "bench",
        dataDir: join(dir, `n${id}`),
        transport: net.transportFor(id),
        stateMachine: new CountingSm(),
        bootstrap: { voters: ids, learners: [] },
        tickMs: 100,
        snapshotEntries: 50_000,
      }),
    ),
  );
  try {
    for (const n of nodes) {
      net.attach(n);
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
    await rm(dir, { recursive: true, force: true });
  }
}

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/consensus: 3 nodes, ${VALUE.length}-byte entries, ${SECONDS}s per level, closed-loop proposers`);
  console.log("pgraft: in-process transport, real WAL with fsync; etcd 3.x: 3 processes on loopback, gRPC client");
  if (!haveEtcd) console.log("etcd not found (apt-get install etcd-server, or ETCD_BIN=...): the etcd columns are skipped");
  console.log("");
  console.log("proposers  system  entries/s  p50 ms  p99 ms  fsyncs/entry(leader)  throughput ratio pgraft/etcd");
  for (const c of LEVELS) {
    const p = await runPgraft(c);
    const pRate = p.committed / p.seconds;
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
    console.log(
      `${String(c).padEnd(11)}pgraft  ${fmt(pRate).padEnd(11)}${fmt(percentile(p.latenciesMs, 50), 2).padEnd(8)}${fmt(percentile(p.latenciesMs, 99), 2).padEnd(8)}${fmt(p.fsyncsPerEntry ?? NaN, 3).padEnd(22)}${fmt(pRate / eRate, 2)}`,
    );
    if (e) {
      console.log(
        `${"".padEnd(11)}etcd    ${fmt(eRate).padEnd(11)}${fmt(percentile(e.latenciesMs, 50), 2).padEnd(8)}${fmt(percentile(e.latenciesMs, 99), 2).padEnd(8)}${"n/a".padEnd(22)}`,
      );
    }
  }
  console.log("");
  console.log("Caveat: pgraft's figures exclude the network (in-process messages); etcd's include gRPC on loopback.");
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
