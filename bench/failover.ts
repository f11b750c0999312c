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
// member answers a status call and names a leader. Before each kill, both
// have a client per survivor that has answered one call (pgraft: a status
// call on its cached channel; etcd: a get on a client made for that member),
// so neither opens its connections after the kill. BENCH_REPS (3) rounds per
// timing, each a fresh cluster of each system (alternating which goes first)
// and BENCH_TRIALS (7) kills; the pooled percentiles are over all trials of a
// system (p90 of 21 is the 19th smallest; below 10 trials p90 is not
// printed, it would be the maximum), the ratio per round is p50 pgraft / p50
// etcd over that round's trials.
//
// A round whose cluster fails (does not start, a restarted member is not ready
// in READY_TIMEOUT_MS, no write is acknowledged in GIVE_UP_MS) is printed as
// failed with the last lines of every member's log, and the run goes on: its
// completed trials stay in the pooled figures, the per-round ratio leaves the
// round out, and the exit code is 1 at the end. Each timing's figures are
// printed as soon as it finishes. The sidecars' and etcd's logs are in the
// clusters' temp dirs; BENCH_KEEP=1 keeps them. BENCH_READY_TIMEOUT_MS
// (60000) sets the readiness timeout.
//
//   make bench      (BENCH_REPS=3 BENCH_TRIALS=7)
import { existsSync } from "node:fs";
import { noop } from "cockatiel";
import { Etcd3 } from "etcd3";
import { startEtcd, type EtcdCluster } from "./etcd-baseline.js";
import { startPgraft, type PgraftCluster } from "./pgraft-cluster.js";
import { alternate, fmt, loadAverageChecked, machineNote, repetitions, spread } from "./report.js";
import { percentile } from "./stats.js";

const REPS = repetitions();
const TRIALS = Math.max(1, Number(process.env.BENCH_TRIALS ?? 7));
const WRITE_EVERY_MS = 10;
const GIVE_UP_MS = 30_000;
/** How long a cluster may take to be ready again after a restart (the same for both; a loaded 2-core machine is slow). */
const READY_TIMEOUT_MS = Number(process.env.BENCH_READY_TIMEOUT_MS ?? 60_000);
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

/** A round's trials (the kills whose first ack was measured) and, if it failed, why. */
interface Round {
  trials: number[];
  error?: string;
}

/** One more log excerpt unless the message already has them (errors from ready()/leader() carry them). */
const withLogs = (msg: string, logs: () => string): string => (msg.includes("\n") ? msg : `${msg}\n${logs()}`);

/** Call `f` until it succeeds (at most `tries` times, 100 ms apart). */
async function retry<T>(tries: number, f: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i >= tries) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function pgraftRound(heartbeat: number, election: number): Promise<Round> {
  const out: number[] = [];
  let where = "starting the cluster";
  let c: PgraftCluster | undefined;
  try {
    c = await startPgraft({ heartbeat: `${heartbeat}ms`, election: `${election}ms` });
    await c.ready(READY_TIMEOUT_MS);
    for (let t = 0; t < TRIALS; t++) {
      where = `trial ${t + 1}/${TRIALS}, finding the leader`;
      const leader = await c.leader(READY_TIMEOUT_MS);
      const others = c.ids.filter((id) => id !== leader);
      where = `trial ${t + 1}/${TRIALS}, warming the survivors' clients`;
      const cl = c;
      await Promise.all(others.map((id) => retry(50, () => cl.client(id).methods.status({ clusterId: cl.clusterId }, { timeoutMs: 1_000 }))));
      where = `trial ${t + 1}/${TRIALS}, waiting for the first acknowledged write after the kill`;
      c.kill9(leader);
      const t0 = performance.now();
      out.push(
        await firstAck(t0, async (i) => {
          const id = others[i % others.length]!;
          const r = await cl.client(id).methods.kvPut({ clusterId: cl.clusterId, key: "failover", value: String(t) }, { timeoutMs: GIVE_UP_MS });
          return r.succeeded;
        }),
      );
      where = `trial ${t + 1}/${TRIALS}, restarting node ${leader} and waiting until all are ready`;
      await c.restart(leader);
      await c.ready(READY_TIMEOUT_MS);
    }
    return { trials: out };
  } catch (e) {
    const cl = c;
    const msg = `${where}: ${(e as Error).message}`;
    return { trials: out, error: cl ? withLogs(msg, () => cl.logTails()) : msg };
  } finally {
    await c?.stop();
  }
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
    if (Date.now() > end) throw new Error(`etcd did not come up with a known leader within ${timeoutMs / 1000} s\n${e.logTails()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function etcdRound(heartbeat: number, election: number): Promise<Round> {
  const out: number[] = [];
  let where = "starting the cluster";
  let e: EtcdCluster | undefined;
  try {
    e = await startEtcd(23790, { heartbeat, election });
    let leader = await etcdReady(e);
    for (let t = 0; t < TRIALS; t++) {
      where = `trial ${t + 1}/${TRIALS}, warming the survivors' clients`;
      const clients = e.endpoints.filter((_, i) => i !== leader).map(etcdClient);
      try {
        // One successful call on each survivor's client before the kill, as pgraft's cached channels have had.
        await Promise.all(clients.map((c) => retry(50, () => c.get("failover").string())));
        where = `trial ${t + 1}/${TRIALS}, waiting for the first acknowledged write after the kill`;
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
      where = `trial ${t + 1}/${TRIALS}, restarting member ${leader + 1} and waiting until all are ready`;
      await e.restart(leader);
      leader = await etcdReady(e);
    }
    return { trials: out };
  } catch (err) {
    const cl = e;
    const msg = `${where}: ${(err as Error).message}`;
    return { trials: out, error: cl ? withLogs(msg, () => cl.logTails()) : msg };
  } finally {
    await e?.stop();
  }
}

const p50 = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);

async function main(): Promise<void> {
  const haveEtcd = existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd");
  console.log(`bench/failover: kill -9 the leader of 3 nodes, time to the earliest acknowledged write (a put every ${WRITE_EVERY_MS} ms to the survivors, none awaited before the next)`);
  console.log(`  ${REPS} rounds per timing (a fresh cluster each, pgraft and etcd alternating which goes first) x ${TRIALS} kills = ${REPS * TRIALS} trials per system and timing (BENCH_REPS, BENCH_TRIALS)`);
  console.log("  before each kill, every survivor's client has answered one call (both systems); after each restart, both wait until every member answers a status call and names a leader");
  console.log(`  a round whose cluster fails is reported and skipped (its completed trials are kept); logs are in the clusters' temp dirs, BENCH_KEEP=1 keeps them`);
  if (!haveEtcd) console.log("etcd not found (apt-get install etcd-server, or ETCD_BIN=...): the etcd rows are skipped");
  console.log(`load average before: ${loadAverageChecked()} (${machineNote()})`);
  const systems: System[] = haveEtcd ? ["pgraft", "etcd"] : ["pgraft"];
  const failures: string[] = [];
  for (const tm of TIMINGS) {
    const label = `${tm.name} (${tm.heartbeat}/${tm.election} ms)`;
    console.log("");
    console.log(`${label}:`);
    const rounds: Record<System, Round[]> = { pgraft: [], etcd: [] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const s of alternate<System>(rep, "pgraft", "etcd").filter((x) => systems.includes(x))) {
        const r = s === "pgraft" ? await pgraftRound(tm.heartbeat, tm.election) : await etcdRound(tm.heartbeat, tm.election);
        rounds[s].push(r);
        const what = `round ${rep + 1}/${REPS} ${s}`;
        if (r.error) {
          failures.push(`${label} ${what}`);
          console.log(`  ${what}: FAILED after ${r.trials.length} of ${TRIALS} trials; timing ${label}, round ${rep + 1}, ${r.error.replace(/\n/g, "\n  ")}`);
        } else {
          console.log(`  ${what}: ${r.trials.length} trials, p50 ${fmt(p50(r.trials))} ms`);
        }
      }
    }
    const counts = [...new Set(systems.map((s) => rounds[s].flatMap((r) => r.trials).length))];
    console.log(`  pooled over ${counts.length === 1 ? `${counts[0]} trials` : "each system's trials (see trials)"} per system (a failed round's completed trials included):`);
    console.log(`    system  trials  p50 ms  p90 ms  max ms  rounds failed`);
    for (const s of systems) {
      const all = rounds[s].flatMap((r) => r.trials).sort((a, b) => a - b);
      const failed = rounds[s].filter((r) => r.error).length;
      console.log(`    ${s.padEnd(8)}${String(all.length).padEnd(8)}${fmt(percentile(all, 50)).padEnd(8)}${(all.length >= 10 ? fmt(percentile(all, 90)) : "n/a").padEnd(8)}${fmt(all[all.length - 1] ?? NaN).padEnd(8)}${failed} of ${rounds[s].length}`);
    }
    if (haveEtcd) {
      const ratios: number[] = [];
      rounds.pgraft.forEach((p, i) => {
        const e = rounds.etcd[i]!;
        if (!p.error && !e.error) ratios.push(p50(p.trials) / p50(e.trials));
      });
      const sp = spread(ratios);
      const left = rounds.pgraft.length - ratios.length;
      console.log(
        `  per round (n=${sp.n}): min/median/max of pgraft p50 / etcd p50: ${sp.n ? `${fmt(sp.min, 2)} / ${fmt(sp.median, 2)} / ${fmt(sp.max, 2)}` : "n/a"}${left ? ` (${left} round${left > 1 ? "s" : ""} left out: a side failed)` : ""}; below 1: pgraft recovers sooner`,
      );
      const pooled = (s: System): number => p50(rounds[s].flatMap((r) => r.trials));
      console.log(
        `  pooled p50 pgraft/etcd ${fmt(pooled("pgraft") / pooled("etcd"), 2)}; with ${TRIALS} kill${TRIALS > 1 ? "s" : ""} per round and ${REPS} round${REPS > 1 ? "s" : ""}, differences within the per-round min-max spread are noise${sp.n && sp.min <= 1 && sp.max >= 1 ? " (here the spread includes 1.0: no difference shown)" : ""}`,
      );
    }
  }
  console.log("");
  if (failures.length) console.log(`${failures.length} round${failures.length > 1 ? "s" : ""} failed: ${failures.join("; ")}`);
  console.log(`load average after: ${loadAverageChecked()}`);
  if (failures.length) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
