// bench/failover-app: write-leader failover as an application sees it
// (issue 12 §5), pgraft beside Patroni in one run. bench/failover compares
// Raft-leader failover (KV puts) with etcd; this one is about PostgreSQL.
//
// The fault, the same for both: kill -9 of the primary's PostgreSQL (the
// postmaster and its backends at once: bench/patroni-baseline's
// killPostmasterAndChildren), under a steady write load from
// bench/write-probe (one numbered INSERT about every 10 ms, one at a time,
// each abandoned after 2 s). Measured from the client's side:
//   - time to next ack: from the kill to the acknowledgement of the first
//     write *sent* after it, through the application's connection path;
//   - acknowledged writes lost: acknowledged numbers missing on a node once
//     the cluster converged.
//
// pgraft: a 3-node `pgraft demo` (src/demo/local-cluster.ts) at its default
// timing (heartbeat 100 ms, election 1 s, failover_timeout 1 s), one node
// group g (bdr.create_node_group / bdr.join_node_group) with
// default_commit_scope `majority`. The connection path is the read-write
// proxy port of a sidecar on a node that is *not* the write leader at the
// kill: in Kubernetes the read-write Service spreads connections over every
// pod's proxy, and the connections that matter are those that must move to
// another node. Before each kill the probe is pointed at such a survivor's
// proxy (its old connection dropped, steady writes again before the kill).
// The demo restarts the killed postmaster after its backoff (1 s, doubling
// when it died again within a minute); the next kill waits until the group is
// whole again: three ACTIVE nodes, every node naming the same write leader
// and both others as read nodes, and the leader waiting for ANY 1 standby.
// Each demo node has its own superuser password; the proxy moves a client
// between nodes, so the probe logs in as a role created with one password on
// every node before the group exists (CREATE ROLE is not replicated).
//
// Patroni: bench/failover-patroni's runPatroniTiming (3 Patroni + etcd,
// asynchronous replication, libpq-style host=a,b,c
// target_session_attrs=read-write) at Patroni's default timing and its
// tightest, each on a fresh cluster. Its kill is the same as pgraft's
// (BENCH_PATRONI_KILL=postgres, the default here): Patroni, still holding
// the leader key, starts PostgreSQL again in place at its next loop; with
// BENCH_PATRONI_KILL=node the primary's Patroni dies too (a crashed host)
// and a replica takes over after the leader key's ttl.
//
// BENCH_TRIALS (10) kills per system and timing; BENCH_REPS (1) repetitions,
// each a fresh pgraft cluster and fresh Patroni clusters, alternating which
// system goes first; the ratio pgraft/Patroni is per repetition (min/median/
// max over repetitions), the percentiles over every trial of a system
// (p99 of fewer than 100 trials is the maximum). BENCH_KEEP=1 keeps pgraft's
// temp dir (sidecar and PostgreSQL logs in node*/). A trial slower than 2.5 s
// prints the survivors' sidecar log lines about the routing from the kill on.
// BENCH_SYSTEMS=pgraft (or patroni) runs one side only.
//
//   make build && BENCH_TRIALS=10 node dist/bench/failover-app.js
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type pg from "pg";
import { logSize, readLogFrom, startDemo, type RunningDemo } from "../src/demo/local-cluster.js";
import { GROUP_DB, Server, createGroup, interrupt, joinGroup, nodeState, printLogTails, ql, sleep, stopDemo, until } from "./demo-group.js";
import { printPatroniSummary, runPatroniTiming, type PatroniTimingResult } from "./failover-patroni.js";
import { ensurePatroniInstalled, killPostmasterAndChildren, PATRONI_DEFAULT, PATRONI_TIGHTEST, type KillWhat } from "./patroni-baseline.js";
import { MAIN } from "./pgraft-cluster.js";
import { reachableTempDir } from "./pgbench.js";
import { alternate, fmt, fmtSpread, loadAverageChecked, machineNote, repetitions } from "./report.js";
import { percentile } from "./stats.js";
import { abandon, createProbeTable, singleHost, WriteProbe, type ConnectionPath, type HostPort, type PathOptions } from "./write-probe.js";

const TRIALS = Math.max(1, Number(process.env.BENCH_TRIALS ?? 10));
const REPS = repetitions(1);
const PATRONI_KILL: KillWhat = process.env.BENCH_PATRONI_KILL === "node" ? "node" : "postgres";
const WRITE_TIMEOUT_MS = Number(process.env.BENCH_WRITE_TIMEOUT_MS ?? 2_000);
const WRITE_EVERY_MS = 10;
const GIVE_UP_MS = 120_000;
/** Steady writes through the chosen proxy before each kill. */
const STEADY_MS = 2_000;
/** A trial slower than this prints the survivors' sidecar log lines about the routing. */
const SLOW_MS = 2_500;
const GROUP = "g";
const NAMES = ["alpha", "beta", "gamma"];
const PROBE_USER = "pgraft_bench_probe";
/** BENCH_SYSTEMS=pgraft (or patroni) runs one side only, for a quick look; the comparison needs both. */
const SYSTEMS = (process.env.BENCH_SYSTEMS ?? "pgraft,patroni").split(",").map((s) => s.trim());

// ------------------------------------------------------------------ pgraft

/** A connection path whose target can change: retarget() drops the connections handed out so far. */
class MovablePath implements ConnectionPath {
  private path: ConnectionPath;
  private readonly open = new Set<pg.Client>();
  constructor(
    private target: HostPort,
    private readonly o: PathOptions,
  ) {
    this.path = singleHost(target, o);
  }
  get name(): string {
    return `pgraft read-write proxy ${this.target.host}:${this.target.port}`;
  }
  async connect(): Promise<pg.Client> {
    const c = await this.path.connect();
    this.open.add(c);
    c.once("end", () => this.open.delete(c));
    return c;
  }
  /** Point at `h`; returns whether it changed (then the probe's connection is dropped and it reconnects). */
  retarget(h: HostPort): boolean {
    if (h.host === this.target.host && h.port === this.target.port) return false;
    this.target = h;
    this.path = singleHost(h, this.o);
    for (const c of this.open) abandon(c);
    this.open.clear();
    return true;
  }
}

const hostPort = (s: string): HostPort => {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};

interface Routing {
  write_lead: string | null;
  read_nodes: string[] | null;
  change_reason: string | null;
  changed_at: string | null;
}

const routing = async (s: Server): Promise<Routing | undefined> =>
  (await s.query<Routing>(GROUP_DB, "SELECT write_lead, read_nodes, change_reason, changed_at FROM pgraft.node_group_routing_summary WHERE node_group_name = $1", [GROUP]))[0];

/** The group whole: three ACTIVE nodes agreeing on the write leader and on both others as read nodes; the leader waits for ANY 1. Its leader. */
async function whole(servers: Server[], timeoutMs = GIVE_UP_MS): Promise<Server> {
  let last = "";
  return until(
    "the group to be whole (3 ACTIVE, one write leader, both others read nodes, ANY 1)",
    async () => {
      let lead: string | undefined;
      for (const s of servers) {
        const st = await nodeState(s);
        if (st !== "ACTIVE") return void (last = `${s.name} is ${st ?? "no node"}`);
        const r = await routing(s);
        if (!r?.write_lead) return void (last = `${s.name} sees no write leader`);
        if (lead !== undefined && r.write_lead !== lead) return void (last = `${s.name} sees ${r.write_lead}, another ${lead}`);
        lead = r.write_lead;
        const others = servers.filter((x) => x.name !== lead).map((x) => x.name);
        if (!others.every((o) => r.read_nodes?.includes(o))) return void (last = `${s.name}: read nodes ${JSON.stringify(r.read_nodes)}`);
      }
      const leader = servers.find((s) => s.name === lead)!;
      const ssn = (await leader.query<{ s: string }>(GROUP_DB, "SELECT current_setting('synchronous_standby_names') AS s"))[0]?.s ?? "";
      if (!ssn.startsWith("ANY 1")) return void (last = `${leader.name}: synchronous_standby_names '${ssn}'`);
      return leader;
    },
    timeoutMs,
    200,
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; last: ${last}`);
  });
}

export interface PgraftTrial {
  ackMs: number;
  wholeMs: number;
  /** Acknowledged numbers missing on the new write leader once whole again (after up to 30 s for them to arrive). */
  missing: number;
}

export interface PgraftResult {
  trials: PgraftTrial[];
  acked: number;
  failedWrites: number;
  /** Per node, acknowledged numbers missing once converged (after all trials). */
  lostByNode: Record<string, number>;
  error?: string;
}

/** Routing-related lines the survivors' sidecars logged since `from` (offsets per log). */
function routingLines(servers: Server[], from: Map<string, number>, max = 12): string[] {
  const out: string[] = [];
  for (const s of servers) {
    const lines = readLogFrom(s.info.sidecarLog, from.get(s.name) ?? 0)
      .split("\n")
      .filter((l) => /write.?leader|failover|routing|proxy|switchover|unhealthy|postgres/i.test(l));
    for (const l of lines.slice(0, max)) out.push(`      ${s.name}: ${l.length > 400 ? `${l.slice(0, 400)}…` : l}`);
  }
  return out;
}

async function setUpGroup(servers: Server[], password: string): Promise<void> {
  for (const s of servers) await s.query(GROUP_DB, `CREATE ROLE ${PROBE_USER} LOGIN SUPERUSER PASSWORD ${ql(password)}`);
  const [a, ...rest] = servers as [Server, ...Server[]];
  const c = await a.connect(GROUP_DB);
  try {
    await createProbeTable(c);
  } finally {
    await c.end().catch(() => undefined);
  }
  await createGroup(a, GROUP);
  for (const s of rest) {
    await s.query(GROUP_DB, "SELECT bdr.create_node($1, $2)", [s.name, s.iface(GROUP_DB)]);
    await joinGroup(s, a, GIVE_UP_MS);
  }
  await a.query(GROUP_DB, `SELECT bdr.alter_node_group_option(${ql(GROUP)}, 'default_commit_scope', 'majority')`);
  for (const s of servers) {
    await until(`${s.name} to wait for a majority (synchronous_standby_names ANY 1)`, async () => ((await s.query<{ s: string }>(GROUP_DB, "SELECT current_setting('synchronous_standby_names') AS s"))[0]?.s ?? "").startsWith("ANY 1"), 60_000, 200);
  }
}

export async function runPgraft(trials = TRIALS, log: (s: string) => void = console.log): Promise<PgraftResult> {
  const baseDir = await reachableTempDir("pgraft-bench-failover-app-");
  const out: PgraftTrial[] = [];
  let demo: RunningDemo | undefined;
  let probe: WriteProbe | undefined;
  let where = "starting the demo";
  const events: string[] = [];
  try {
    demo = await startDemo({ nodes: 3, baseDir, mainJs: MAIN, progress: () => undefined, event: (l) => events.push(`${new Date().toISOString()} ${l}`) });
    const servers = demo.nodes.map((n, i) => new Server(n, join(baseDir, `node${n.id}`, "pg", "data"), NAMES[i]!, "pgraft_bench_failover_app"));
    const password = randomBytes(12).toString("hex");
    where = "creating group g (commit scope majority)";
    await setUpGroup(servers, password);
    let leader = await whole(servers);
    const survivorOf = (l: Server): Server => servers[(servers.indexOf(l) + 1) % servers.length]!;
    const path = new MovablePath(hostPort(survivorOf(leader).info.proxy), { user: PROBE_USER, password, database: GROUP_DB, timeoutMs: WRITE_TIMEOUT_MS });
    probe = new WriteProbe(path, { intervalMs: WRITE_EVERY_MS, timeoutMs: WRITE_TIMEOUT_MS });
    probe.start();
    for (let t = 0; t < trials; t++) {
      const tag = `trial ${t + 1}/${trials}`;
      where = `${tag}, waiting for a whole group and steady writes`;
      let via: Server;
      for (;;) {
        leader = await whole(servers);
        via = survivorOf(leader);
        path.retarget(hostPort(via.info.proxy));
        await probe.timeToAckAfter(performance.now(), GIVE_UP_MS);
        await sleep(STEADY_MS);
        if ((await whole(servers)) === leader) break; // the leader moved meanwhile: choose again
      }
      const pid = demo.pids().nodes.find((n) => n.id === leader.info.id)?.postgres;
      if (!pid) throw new Error(`${tag}: no postmaster pid for ${leader.name}`);
      const logFrom = new Map(servers.map((s) => [s.name, logSize(s.info.sidecarLog)] as const));
      where = `${tag}, kill -9 of ${leader.name}'s PostgreSQL (pid ${pid}), waiting for the next acknowledged write through ${via.name}'s proxy`;
      const t0 = performance.now();
      const killedAt = Date.now();
      killPostmasterAndChildren(pid);
      const ackMs = await probe.timeToAckAfter(t0, GIVE_UP_MS);
      where = `${tag}, waiting for the group to be whole again (${leader.name} back as a read node)`;
      const newLeader = await whole(servers);
      const wholeMs = performance.now() - t0;
      const r = await routing(newLeader);
      const reason = r?.change_reason ?? "";
      // When the replicated routing named the new leader (wall clock, the same machine): detection + Raft commit.
      const changedMs = r?.changed_at ? Date.parse(r.changed_at) - killedAt : NaN;
      where = `${tag}, counting acknowledged writes missing on the new write leader`;
      const want = probe.acknowledged();
      let missing: number[] = [];
      await until(
        `every acknowledged write on ${newLeader.name}`,
        async () => {
          const c = await newLeader.connect(GROUP_DB);
          try {
            missing = await probe!.missingOn(c, want);
          } finally {
            abandon(c);
          }
          return missing.length === 0;
        },
        30_000,
        500,
      ).catch(() => undefined);
      out.push({ ackMs, wholeMs, missing: missing.length });
      log(
        `    ${tag}: killed ${leader.name}'s PostgreSQL (pid ${pid}) at ${new Date(killedAt).toISOString()}, writes through ${via.name}'s proxy ${via.info.proxy}; next ack after ${fmt(ackMs / 1000, 2)} s; new write leader ${newLeader.name}${newLeader === leader ? " (the same: no failover)" : ""}${Number.isFinite(changedMs) ? ` named ${fmt(changedMs / 1000, 2)} s after the kill` : ""}${reason ? ` (${reason})` : ""}; whole again after ${fmt(wholeMs / 1000, 1)} s; acknowledged writes missing on the new leader ${missing.length}${missing.length ? ` (n=${missing.slice(0, 10).join(",")}; acknowledged by ${probe.ackedBy(missing)})` : ""}`,
      );
      if (ackMs > SLOW_MS || missing.length) {
        log(`    ${tag}: slower than ${SLOW_MS / 1000} s or writes missing; the sidecars' routing lines since the kill:`);
        for (const l of routingLines(servers, logFrom)) log(l);
      }
    }
    where = "after the trials: checking every acknowledged write on every node";
    await probe.stop();
    await whole(servers);
    const want = probe.acknowledged();
    const lostByNode: Record<string, number> = {};
    for (const s of servers) {
      let missing: number[] = [];
      await until(
        `every acknowledged write on ${s.name}`,
        async () => {
          const c = await s.connect(GROUP_DB);
          try {
            missing = await probe!.missingOn(c, want);
          } finally {
            abandon(c);
          }
          return missing.length === 0;
        },
        60_000,
        500,
      ).catch(() => undefined);
      lostByNode[s.name] = missing.length;
      if (missing.length) log(`    ${s.name} lacks ${missing.length} acknowledged writes after 60 s: n=${missing.slice(0, 20).join(",")}${missing.length > 20 ? ",..." : ""} (acknowledged by ${probe.ackedBy(missing)})`);
    }
    log(`    demo events: ${events.length ? `\n      ${events.join("\n      ")}` : "none"}`);
    return { trials: out, acked: probe.ackCount, failedWrites: probe.failures, lostByNode };
  } catch (e) {
    await probe?.stop();
    await printLogTails(demo);
    log(`    demo events: ${events.join("; ") || "none"}`);
    return { trials: out, acked: probe?.ackCount ?? 0, failedWrites: probe?.failures ?? 0, lostByNode: {}, error: `${where}: ${(e as Error).message}` };
  } finally {
    await stopDemo(demo, baseDir);
  }
}

// ------------------------------------------------------------------ report

const sorted = (v: number[]): number[] => [...v].sort((a, b) => a - b);
const p = (ms: number[], q: number): number => percentile(sorted(ms), q);
const s2 = (ms: number): string => fmt(ms / 1000, 2);

function printPgraftSummary(r: PgraftResult, log: (s: string) => void = console.log): void {
  const acks = r.trials.map((x) => x.ackMs);
  const lost = Object.values(r.lostByNode);
  log(`  pgraft (demo defaults: heartbeat 100 ms, election 1 s, failover_timeout 1 s; commit scope majority): ${r.trials.length} trials${r.error ? " (FAILED, see above)" : ""}`);
  log(`    time to next acknowledged write: p50 ${s2(p(acks, 50))} s, p99 ${s2(p(acks, 99))} s, max ${s2(p(acks, 100))} s${acks.length < 100 ? ` (p99 of ${acks.length} trials is the maximum)` : ""}`);
  log(`    kill to whole again (the killed node a read node again, ANY 1; includes the demo's restart backoff, 1 s doubling while a node dies again within a minute): p50 ${s2(p(r.trials.map((x) => x.wholeMs), 50))} s, max ${s2(p(r.trials.map((x) => x.wholeMs), 100))} s`);
  log(
    `    acknowledged writes lost (missing once converged, per node): ${Object.entries(r.lostByNode).map(([k, v]) => `${k} ${v}`).join(", ") || "n/a"}; ${lost.length ? Math.max(...lost) : "n/a"} at most; writes acknowledged ${r.acked}, failed or abandoned ${r.failedWrites}`,
  );
}

interface Rep {
  pgraft: PgraftResult;
  patroni: PatroniTimingResult[];
}

async function runPatroniBoth(): Promise<PatroniTimingResult[]> {
  const out: PatroniTimingResult[] = [];
  for (const t of [PATRONI_DEFAULT, PATRONI_TIGHTEST]) {
    console.log(`  Patroni ${t.name} (ttl ${t.ttl} s, loop_wait ${t.loopWait} s, retry_timeout ${t.retryTimeout} s):`);
    const r = await runPatroniTiming(t, TRIALS, console.log, PATRONI_KILL);
    if (r.error) console.log(`    FAILED after ${r.trials.length} of ${TRIALS} trials: ${r.error.replace(/\n/g, "\n    ")}`);
    out.push(r);
  }
  return out;
}

async function main(): Promise<void> {
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  const noPatroni = SYSTEMS.includes("patroni") ? ensurePatroniInstalled() : "not in BENCH_SYSTEMS";
  console.log("bench/failover-app: kill -9 of the primary's PostgreSQL (postmaster and backends) under a steady write load, pgraft and Patroni in one run");
  console.log(`  writer: one numbered INSERT every ${WRITE_EVERY_MS} ms, one at a time, each abandoned after ${WRITE_TIMEOUT_MS} ms; time to next ack = from the kill to the ack of the first write sent after it`);
  console.log("  pgraft: 3-node demo, group g, commit scope majority; writes through the read-write proxy port of a node that is not the write leader at the kill");
  console.log(`  Patroni: 3 Patroni + etcd, asynchronous replication, libpq-style host=a,b,c target_session_attrs=read-write; kill: ${PATRONI_KILL === "node" ? "its whole node (Patroni too)" : "its PostgreSQL only, as pgraft's"} (BENCH_PATRONI_KILL)`);
  console.log(`  ${TRIALS} kills per system and timing (BENCH_TRIALS), ${REPS} repetition(s) (BENCH_REPS), alternating which system goes first`);
  console.log(`load average before: ${loadAverageChecked()} (${machineNote()})`);
  if (noPatroni) console.log(`  Patroni skipped: ${noPatroni}`);
  const reps: Rep[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    console.log("");
    console.log(`repetition ${rep + 1}/${REPS}:`);
    let pgraft: PgraftResult | undefined;
    let patroni: PatroniTimingResult[] = [];
    for (const which of alternate(rep, "pgraft", "patroni")) {
      if (which === "pgraft" && SYSTEMS.includes("pgraft")) {
        console.log("  pgraft:");
        pgraft = await runPgraft();
        if (pgraft.error) console.log(`    FAILED after ${pgraft.trials.length} of ${TRIALS} trials: ${pgraft.error}`);
      } else if (which === "patroni" && !noPatroni) patroni = await runPatroniBoth();
    }
    reps.push({ pgraft: pgraft ?? { trials: [], acked: 0, failedWrites: 0, lostByNode: {} }, patroni });
    console.log(`  load average: ${loadAverageChecked()}`);
  }

  const all = <T>(f: (r: Rep) => T[]): T[] => reps.flatMap(f);
  const pooledPgraft: PgraftResult = {
    trials: all((r) => r.pgraft.trials),
    acked: reps.reduce((a, r) => a + r.pgraft.acked, 0),
    failedWrites: reps.reduce((a, r) => a + r.pgraft.failedWrites, 0),
    lostByNode: reps.reduce<Record<string, number>>((acc, r) => {
      for (const [k, v] of Object.entries(r.pgraft.lostByNode)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {}),
    error: reps.find((r) => r.pgraft.error)?.pgraft.error,
  };
  console.log("");
  console.log(`summary (all trials of all ${REPS} repetition(s) pooled):`);
  const ranPgraft = SYSTEMS.includes("pgraft");
  if (ranPgraft) printPgraftSummary(pooledPgraft);
  const pgAcks = pooledPgraft.trials.map((x) => x.ackMs);
  const targets: string[] = [];
  if (ranPgraft) {
    targets.push(`pgraft p99 < 2.5 s: ${p(pgAcks, 99) < 2_500 ? "met" : "NOT met"} (${s2(p(pgAcks, 99))} s)`);
    const maxLost = Math.max(0, ...Object.values(pooledPgraft.lostByNode), ...pooledPgraft.trials.map((x) => x.missing));
    const checked = !pooledPgraft.error && Object.keys(pooledPgraft.lostByNode).length > 0;
    targets.push(`0 acknowledged writes lost with majority: ${maxLost === 0 && checked ? "met" : checked ? "NOT met" : "not checked (the run failed)"} (${maxLost})`);
  }
  if (noPatroni && ranPgraft) targets.push(`pgraft >= 10x faster than Patroni default: not measured (${noPatroni})`);
  for (const t of noPatroni ? [] : [PATRONI_DEFAULT, PATRONI_TIGHTEST]) {
    const results = reps.map((r) => r.patroni.find((x) => x.timing.name === t.name)).filter((x): x is PatroniTimingResult => !!x);
    const pooled: PatroniTimingResult = { timing: t, trials: results.flatMap((x) => x.trials), acked: results.reduce((a, x) => a + x.acked, 0), failedWrites: results.reduce((a, x) => a + x.failedWrites, 0), error: results.find((x) => x.error)?.error };
    printPatroniSummary(pooled);
    const paAcks = pooled.trials.map((x) => x.ackMs);
    const perRep = (q: number): number[] =>
      reps.flatMap((r) => {
        const x = r.patroni.find((y) => y.timing.name === t.name);
        if (!x?.trials.length || !r.pgraft.trials.length) return [];
        return [p(r.pgraft.trials.map((y) => y.ackMs), q) / p(x.trials.map((y) => y.ackMs), q)];
      });
    console.log(`  ratio pgraft/Patroni ${t.name}, time to next ack, per repetition: p50 ${fmtSpread(perRep(50), 3)}; p99 ${fmtSpread(perRep(99), 3)}`);
    console.log(`    pooled: p50 ${fmt(p(pgAcks, 50) / p(paAcks, 50), 3)} (Patroni ${fmt(p(paAcks, 50) / p(pgAcks, 50), 1)}x slower), p99 ${fmt(p(pgAcks, 99) / p(paAcks, 99), 3)} (Patroni ${fmt(p(paAcks, 99) / p(pgAcks, 99), 1)}x slower)`);
    if (t.name === "default" && ranPgraft) {
      const x = p(paAcks, 50) / p(pgAcks, 50);
      targets.push(`pgraft >= 10x faster than Patroni default (p50): ${x >= 10 ? "met" : "NOT met"} (${fmt(x, 1)}x)`);
    }
  }
  if (targets.length) console.log(`targets: ${targets.join("; ")}`);
  console.log(`load average after: ${loadAverageChecked()}`);
  if (pooledPgraft.error || reps.some((r) => r.patroni.some((x) => x.error))) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
