// bench/failover: kill -9 the leader of a 3-node cluster and measure the time
// until the next write is acknowledged (from the client's side: the data, not
// log lines), for pgraft (real sidecar processes) and a 3-member etcd, at the
// default timing (heartbeat 100 ms, election 1000 ms) and a tight one
// (50 ms / 300 ms), in one run.
//
// What is compared, measured the same way for both: from the kill, a put is
// sent every 10 ms to the surviving members in turn, without waiting for the
// previous one (pgraft: kvPut over @grpc/grpc-js; etcd: put over the etcd3
// client with its retries and circuit breaker off, so each put is one call);
// the earliest acknowledgement counts. A put that a follower rejects at once
// and one that hangs through the election are treated alike: neither is
// abandoned or retried, the next one simply goes out 10 ms later. After the
// killed member is started again, both wait for the same readiness: every
// member answers a status call and names a leader. BENCH_REPS (3) rounds per
// timing, each a fresh cluster of each system (alternating which goes first)
// and BENCH_TRIALS (7) kills; the percentiles are over all trials of a
// system (p90 of 21 is the 19th smallest; below 10 trials p90 is not
// printed, it would be the maximum), the ratio per round is p50 pgraft / p50
// etcd over that round's trials.
//
//   make bench      (BENCH_REPS=3 BENCH_TRIALS=7)
import { existsSync } from "node:fs";
import { noop } from "cockatiel";
import { Etcd3 } from "etcd3";
import { startEtcd, type EtcdCluster } from "./etcd-baseline.js";
import { startPgraft, type PgraftCluster } from "./pgraft-cluster.js";
import { alternate, fmt, fmtSpread, loadAverage, machineNote, repetitions } from "./report.js";
import { percentile } from "./stats.js";

const REPS = repetitions();
const TRIALS = Math.max(1, Number(process.env.BENCH_TRIALS ?? 7));
const WRITE_EVERY_MS = 10;
const GIVE_UP_MS = 30_000;
/** How long a cluster may take to be ready again after a restart (the same for both; a loaded 2-core machine is slow). */
const READY_TIMEOUT_MS = 60_000;
const TIMINGS = [
  { name: "default", heartbeat: 100, election: 1000 },
  { name: "tight", heartbeat: 50, election: 300 },
];
type System = "pgraft" | "etcd";

/**
 * From `t0`, send `write(i)` every WRITE_EVERY_MS without awaiting it; resolves
 * with the time from `t0` to the earliest acknowledgement. Writes still in
 * flight then are left to settle (their callers close the clients).
 */
function firstAck(t0: number, write: (i: number) => Promise<boolean>): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let done = false;
    let i = 0;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(giveUp);
      f();
    };
    const send = (): void => {
      const at = i++;
      write(at).then(
        (ok) => {
          if (ok) {
            const ms = performance.now() - t0;
            finish(() => resolve(ms));
          }
        },
        () => {
          /* rejected: no leader, forwarding failed; the next write is already on its way */
        },
      );
    };
    const timer = setInterval(send, WRITE_EVERY_MS);
    const giveUp = setTimeout(() => finish(() => reject(new Error(`no write was acknowledged within ${GIVE_UP_MS / 1000} s of the kill`))), GIVE_UP_MS);
    send();
  });
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
        await firstAck(t0, async (i) => {
          const id = others[i % others.length]!;
          const r = await c.client(id).methods.kvPut({ clusterId: c.clusterId, key: "failover", value: String(t) }, { timeoutMs: GIVE_UP_MS });
          return r.succeeded;
        }),
      );
      c.restart(leader);
      await c.ready(READY_TIMEOUT_MS);
    }
  } finally {
    await c.stop();
  }
  return out;
}

/** A client of one member only, each call one attempt (no retries, no circuit breaker): like the pgraft side. */
const etcdClient = (host: string): Etcd3 => new Etcd3({ hosts: host, faultHandling: { host: () => noop, global: noop } });

/** Each member's view: its index if it is the leader, whether it names a leader at all. */
async function etcdStatuses(e: EtcdCluster): Promise<{ leader: number; allKnowLeader: boolean }> {
  let leader = -1;
  let all = true;
  for (let i = 0; i < e.endpoints.length; i++) {
    const c = etcdClient(e.endpoints[i]!);
    let timer: NodeJS.Timeout | undefined;
    try {
      const s = await Promise.race([c.maintenance.status(), new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error("status timeout")), 1_000)))]);
      if (s.leader === "0") all = false;
      if (s.leader === s.header.member_id) leader = i;
    } catch {
      all = false;
    } finally {
      clearTimeout(timer);
      c.close();
    }
  }
  return { leader, allKnowLeader: all };
}

/** The same readiness rule as PgraftCluster.ready(): every member answers and names a leader; returns the leader's index. */
async function etcdReady(e: EtcdCluster, timeoutMs = READY_TIMEOUT_MS): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await etcdStatuses(e);
    if (s.allKnowLeader && s.leader >= 0) return s.leader;
    if (Date.now() > end) throw new Error("etcd did not come up with a known leader in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function etcdTrials(heartbeat: number, election: number): Promise<number[]> {
  const e = await startEtcd(23790, { heartbeat, election });
  const out: number[] = [];
  try {
    let leader = await etcdReady(e);
    for (let t = 0; t < TRIALS; t++) {
      const clients = e.endpoints.filter((_, i) => i !== leader).map(etcdClient);
      try {
        e.kill9(leader);
        const t0 = performance.now();
        out.push(
          await firstAck(t0, async (i) => {
            await clients[i % clients.length]!.put("failover").value(String(t)).exec();
            return true;
          }),
        );
      } finally {
        for (const c of clients) c.close();
      }
      e.restart(leader);
      leader = await etcdReady(e);
    }
  } finally {
    await e.stop();
  }
  return out;
}

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/failover: kill -9 the leader of 3 nodes, time to the earliest acknowledged write (a put every ${WRITE_EVERY_MS} ms to the survivors, none awaited before the next)`);
  console.log(`  ${REPS} rounds per timing (a fresh cluster each, pgraft and etcd alternating which goes first) x ${TRIALS} kills = ${REPS * TRIALS} trials per system and timing`);
  console.log("  after each restart, both wait until every member answers a status call and names a leader");
  if (!haveEtcd) console.log("etcd not found (apt-get install etcd-server, or ETCD_BIN=...): the etcd rows are skipped");
  console.log(`load average before: ${loadAverage()} (${machineNote()})`);
  console.log("");
  console.log("timing                      system  trials  p50 ms  p90 ms  max ms");
  const systems: System[] = haveEtcd ? ["pgraft", "etcd"] : ["pgraft"];
  const ratioLines: string[] = [];
  for (const tm of TIMINGS) {
    const rounds: Record<System, number[][]> = { pgraft: [], etcd: [] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const s of alternate<System>(rep, "pgraft", "etcd").filter((x) => systems.includes(x))) {
        rounds[s].push(s === "pgraft" ? await pgraftTrials(tm.heartbeat, tm.election) : await etcdTrials(tm.heartbeat, tm.election));
      }
    }
    const label = `${tm.name} (${tm.heartbeat}/${tm.election} ms)`;
    systems.forEach((s, i) => {
      const all = rounds[s].flat().sort((a, b) => a - b);
      console.log(`${(i === 0 ? label : "").padEnd(28)}${s.padEnd(8)}${String(all.length).padEnd(8)}${fmt(percentile(all, 50)).padEnd(8)}${(all.length >= 10 ? fmt(percentile(all, 90)) : "n/a").padEnd(8)}${fmt(all[all.length - 1] ?? NaN)}`);
    });
    if (haveEtcd) {
      const p50 = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
      ratioLines.push(`  ${label}: p50 pgraft/etcd per round ${fmtSpread(rounds.pgraft.map((p, i) => p50(p) / p50(rounds.etcd[i]!)))}`);
    }
  }
  if (ratioLines.length) {
    console.log("");
    console.log("ratio (below 1: pgraft recovers sooner):");
    for (const l of ratioLines) console.log(l);
  }
  console.log("");
  console.log(`load average after: ${loadAverage()}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
