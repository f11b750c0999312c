// bench/kv: put throughput and latency through the client API, one load
// generator, against a 3-node pgraft cluster (real sidecar processes) and a
// 3-member etcd cluster, both on loopback with fsync on, in the same run.
// 8-byte keys, 256-byte values, 1/16/64 concurrent clients spread over every
// member (writes to a follower are forwarded, as etcd's are).
//
//   make bench      (BENCH_SECONDS=5 BENCH_CLIENTS=1,16,64)
import { existsSync } from "node:fs";
import { runEtcd, startEtcd } from "./etcd-baseline.js";
import { startPgraft } from "./pgraft-cluster.js";
import { closedLoop, percentile, type RunResult } from "./stats.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = (process.env.BENCH_CLIENTS ?? "1,16,64").split(",").map(Number);
const VALUE = JSON.stringify("x".repeat(254)); // 256 bytes of JSON text
const key = (n: number): string => `k${String(n % 1_000_000).padStart(7, "0")}`; // 8 bytes

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
const row = (c: string, name: string, r: RunResult, ratio?: number): string =>
  `${c.padEnd(9)}${name.padEnd(8)}${fmt(r.committed / r.seconds).padEnd(11)}${fmt(percentile(r.latenciesMs, 50), 2).padEnd(8)}${fmt(percentile(r.latenciesMs, 99), 2).padEnd(8)}${ratio === undefined ? "" : fmt(ratio, 2)}`;

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/kv: 3 nodes each, 8-byte keys, ${VALUE.length}-byte values, ${SECONDS}s per level, closed-loop clients over all members`);
  if (!haveEtcd) console.log("etcd not found (apt-get install etcd-server, or ETCD_BIN=...): the etcd rows are skipped");
  console.log("");
  console.log("clients  system  puts/s     p50 ms  p99 ms  ratio pgraft/etcd");
  for (const c of CLIENTS) {
    const cluster = await startPgraft();
    let p: RunResult;
    try {
      await cluster.ready();
      let n = 0;
      const clients = cluster.ids.map((id) => cluster.client(id).methods);
      p = await closedLoop(c, SECONDS, async () => {
        const i = n++;
        const r = await clients[i % clients.length]!.kvPut({ clusterId: cluster.clusterId, key: key(i), value: VALUE }, { timeoutMs: 10_000 });
        if (!r.succeeded) throw new Error("put did not succeed");
      });
    } finally {
      await cluster.stop();
    }
    let e: RunResult | undefined;
    if (haveEtcd) {
      const etcd = await startEtcd(23790);
      try {
        e = await runEtcd(etcd, c, SECONDS, VALUE, key);
      } finally {
        await etcd.stop();
      }
    }
    console.log(row(String(c), "pgraft", p, e ? p.committed / p.seconds / (e.committed / e.seconds) : undefined));
    if (e) console.log(row("", "etcd", e));
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
