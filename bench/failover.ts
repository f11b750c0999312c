// bench/failover: kill -9 the leader and measure the time until the next write
// is acknowledged (from the client's side: the data, not log lines), over
// BENCH_TRIALS trials (default 20), for pgraft at the default timing (heartbeat
// 100 ms, election 1000 ms) and a tight one (50 ms / 300 ms), beside a 3-member
// etcd with the same timings, in one run.
//
//   make bench      (BENCH_TRIALS=20)
import { existsSync } from "node:fs";
import { Etcd3 } from "etcd3";
import { startEtcd, type EtcdCluster } from "./etcd-baseline.js";
import { startPgraft, type PgraftCluster } from "./pgraft-cluster.js";
import { percentile } from "./stats.js";

const TRIALS = Number(process.env.BENCH_TRIALS ?? 20);
const TIMINGS = [
  { name: "default", heartbeat: 100, election: 1000 },
  { name: "tight", heartbeat: 50, election: 300 },
];

/** Retry a write until one is acknowledged; returns the time since `from`. */
async function firstAckAfter(from: number, write: (attempt: number) => Promise<boolean>): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    if (performance.now() - from > 30_000) throw new Error("no write was acknowledged within 30 s of the kill");
    try {
      if (await write(attempt)) return performance.now() - from;
    } catch {
      /* not yet: no leader, forwarding failed, timeout */
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function pgraftTrials(heartbeat: number, election: number): Promise<number[]> {
  const c: PgraftCluster = await startPgraft({ heartbeat: `${heartbeat}ms`, election: `${election}ms` });
  const out: number[] = [];
  try {
    await c.ready();
    for (let t = 0; t < TRIALS; t++) {
      const leader = await c.leader();
      const others = c.ids.filter((id) => id !== leader);
      c.kill9(leader);
      const t0 = performance.now();
      out.push(
        await firstAckAfter(t0, async (a) => {
          const id = others[a % others.length]!;
          const r = await c.client(id).methods.kvPut({ clusterId: c.clusterId, key: "failover", value: String(t) }, { timeoutMs: 250 });
          return r.succeeded;
        }),
      );
      c.restart(leader);
      await c.ready(30_000);
    }
  } finally {
    await c.stop();
  }
  return out;
}

async function etcdLeader(e: EtcdCluster): Promise<number> {
  for (let i = 0; i < e.endpoints.length; i++) {
    const c = new Etcd3({ hosts: e.endpoints[i]! });
    try {
      const s = await c.maintenance.status();
      if (s.leader === s.header.member_id) return i;
    } catch {
      /* down or starting */
    } finally {
      c.close();
    }
  }
  throw new Error("no etcd leader");
}

async function etcdTrials(heartbeat: number, election: number): Promise<number[]> {
  const e = await startEtcd(23790, { heartbeat, election });
  const out: number[] = [];
  try {
    for (let t = 0; t < TRIALS; t++) {
      let leader = -1;
      for (let i = 0; i < 200 && leader < 0; i++) {
        try {
          leader = await etcdLeader(e);
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const others = e.endpoints.filter((_, i) => i !== leader);
      const clients = others.map((h) => new Etcd3({ hosts: h }));
      try {
        e.kill9(leader);
        const t0 = performance.now();
        out.push(
          await firstAckAfter(t0, async (a) => {
            const c = clients[a % clients.length]!;
            await Promise.race([
              c.put("failover").value(String(t)).exec(),
              new Promise((_, rej) => setTimeout(() => rej(new Error("timeout")), 250)),
            ]);
            return true;
          }),
        );
      } finally {
        for (const c of clients) c.close();
      }
      e.restart(leader);
      await new Promise((r) => setTimeout(r, 3 * election));
    }
  } finally {
    await e.stop();
  }
  return out;
}

const fmt = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : "n/a");

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/failover: kill -9 the leader of 3 nodes, time to the next acknowledged write, ${TRIALS} trials each`);
  console.log("");
  console.log("timing                      system  p50 ms  p99 ms  max ms  ratio p99 pgraft/etcd");
  for (const tm of TIMINGS) {
    const p = (await pgraftTrials(tm.heartbeat, tm.election)).sort((a, b) => a - b);
    const e = haveEtcd ? (await etcdTrials(tm.heartbeat, tm.election)).sort((a, b) => a - b) : [];
    const label = `${tm.name} (${tm.heartbeat}/${tm.election} ms)`.padEnd(28);
    const ratio = e.length ? (percentile(p, 99) / percentile(e, 99)).toFixed(2) : "n/a";
    console.log(`${label}pgraft  ${fmt(percentile(p, 50)).padEnd(8)}${fmt(percentile(p, 99)).padEnd(8)}${fmt(p[p.length - 1]!).padEnd(8)}${ratio}`);
    if (e.length) console.log(`${"".padEnd(28)}etcd    ${fmt(percentile(e, 50)).padEnd(8)}${fmt(percentile(e, 99)).padEnd(8)}${fmt(e[e.length - 1]!)}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
