// One simulated history per (seed, cluster size): a chaos phase of random
// operations and faults with every invariant checked after every event, then
// a healing phase (network healed, everyone restarted, no more faults) in
// which a leader must be elected and a fresh write must be applied by every
// voter within a bounded simulated time.
import { isRaftError } from "../../src/consensus/errors.js";
import { SafetyChecker, SafetyViolation } from "./checker.js";
import { Cluster } from "./cluster.js";
import { Network } from "./network.js";
import type { DriverBug, SimNode } from "./node.js";
import { describeProfile, makeProfile, type SimProfile } from "./profile.js";
import { buggyRawNodeFactory, rawNodeFactory, type CoreBug, type RaftFactory } from "./raft.js";
import { Rng } from "./rng.js";
import { Scheduler, type SimEvent } from "./scheduler.js";
import { Workload } from "./workload.js";

export interface SimOptions {
  seed: number;
  nodes: number;
  factory?: RaftFactory;
  /** Receives every line of the event trace (replay mode). */
  trace?: (line: string) => void;
  /** Inject a driver or core bug (for the simulator's own tests). */
  bug?: DriverBug | CoreBug;
  /** Adjust the drawn profile (for the simulator's own tests). */
  tweak?: (p: SimProfile) => void;
}

export interface SimReport {
  seed: number;
  nodes: number;
  family: SimProfile["family"];
  events: number;
  chaosMs: number;
  /** Time from the end of the chaos phase to the fresh write being applied by every voter. */
  recoveryMs: number;
  leaders: number;
  applied: number;
  acked: number;
  reads: number;
  readsAnswered: number;
  snapshotsInstalled: number;
  snapshotsCreated: number;
  crashes: number;
  confChanges: number;
  finalVoters: number[];
}

export const replayCommand = (seed: number, nodes: number): string =>
  `PGRAFT_SIM_SEED=${seed} PGRAFT_SIM_NODES=${nodes} node --import tsx --test test/consensus/simulation.test.ts`;

export class SimulationFailure extends Error {
  constructor(
    readonly seed: number,
    readonly nodes: number,
    readonly error: unknown,
    detail: string,
  ) {
    super(detail);
    this.name = "SimulationFailure";
  }
}

class LivenessFailure extends Error {
  override name = "LivenessFailure";
}

const RECENT = 40;

export function runSimulation(opts: SimOptions): SimReport {
  const { seed, nodes } = opts;
  const rng = new Rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(nodes, 0x85ebca77)) >>> 0);
  const profile = makeProfile(rng, nodes);
  opts.tweak?.(profile);
  let factory = opts.factory ?? rawNodeFactory;
  if (opts.bug === "old-term-commit") factory = buggyRawNodeFactory(opts.bug);
  else if (opts.bug) profile.params.bug = opts.bug;
  const sched = new Scheduler();
  const checker = new SafetyChecker(() => sched.now);
  const out = opts.trace;
  const trace: (line: () => string) => void = out ? (line) => out(line()) : () => {};

  const cluster = new Cluster(
    sched,
    rng,
    checker,
    { sched, checker, rng, factory, params: profile.params, trace },
    profile.tickMs,
    profile.drift,
  );
  const net = new Network(sched, rng, cluster, profile.faults, trace);
  cluster.net = net;
  const workload = new Workload(sched, rng, cluster, net, profile.workload, trace);

  const recent: SimEvent[] = [];
  sched.beforeEach = (ev) => {
    if (recent.length >= RECENT) recent.shift();
    recent.push(ev);
    if (out) out(`t=${ev.time} [${sched.executed}] ${ev.describe()}`);
  };
  sched.afterEach = () => {
    cluster.checkTouched();
    if (sched.executed > profile.maxEvents) {
      throw new LivenessFailure(`the history exceeded ${profile.maxEvents} events (a message storm?)`);
    }
  };

  let phase = "bootstrap";
  let recoveryMs = 0;
  let finalVoters: number[] = [];
  try {
    out?.(`seed ${seed}, ${nodes} nodes: ${describeProfile(profile)}`);
    cluster.bootstrap(nodes);
    cluster.checkTouched();
    phase = "chaos";
    workload.start();
    sched.runUntil(profile.randomPhaseMs);

    phase = "healing";
    workload.stop();
    net.heal();
    net.faults = { ...profile.calm };
    out?.(`t=${sched.now} === healing: network healed, faults off, restarting ${cluster.down().map((n) => n.id).join(",") || "nobody"}`);
    for (const n of cluster.down()) n.start();
    cluster.checkTouched();
    const healStart = sched.now;
    const deadline = healStart + profile.livenessTimeouts * profile.params.electionTick * profile.tickMs;
    const probe = new LivenessProbe(cluster, checker, trace);
    const loop = (): void => {
      sched.after(profile.tickMs, () => "liveness probe", () => {
        probe.run();
        if (!probe.done) loop();
      });
    };
    loop();
    sched.runUntil(deadline, () => probe.done);
    if (!probe.done) {
      throw new LivenessFailure(
        `no fresh write was applied by every voter within ${profile.livenessTimeouts} election timeouts (${deadline - healStart}ms) of healing: ${probe.describe()}`,
      );
    }
    recoveryMs = sched.now - healStart;
    finalVoters = probe.voters;
    phase = "final checks";
    checker.checkAcknowledgedSurvive(finalVoters, probe.index);
  } catch (e) {
    throw new SimulationFailure(seed, nodes, e, failureReport(e, { seed, nodes, phase, sched, recent, cluster, profile, net }));
  }

  const nodesList = [...cluster.nodes.values()];
  return {
    seed,
    nodes,
    family: profile.family,
    events: sched.executed,
    chaosMs: profile.randomPhaseMs,
    recoveryMs,
    leaders: checker.stats.leaders,
    applied: checker.stats.applied,
    acked: checker.stats.acked,
    reads: checker.stats.readsIssued,
    readsAnswered: checker.stats.readsAnswered,
    snapshotsInstalled: checker.stats.snapshotsInstalled,
    snapshotsCreated: nodesList.reduce((s, n) => s + n.stats.snapshotsCreated, 0),
    crashes: nodesList.reduce((s, n) => s + n.stats.crashes, 0),
    confChanges: workload.stats.confChanges,
    finalVoters,
  };
}

/** Healing phase: keep a fresh write in front of the current leader until every voter applied one. */
class LivenessProbe {
  done = false;
  voters: number[] = [];
  /** Index of the fresh write every voter applied. */
  index = 0;
  private k = 0;
  private readonly finals: { node: SimNode; incarnation: number; index: number; term: number; data: string }[] = [];
  private lastNote = "no leader was ever elected";

  constructor(
    private readonly cluster: Cluster,
    private readonly checker: SafetyChecker,
    private readonly trace: (line: () => string) => void,
  ) {}

  run(): void {
    this.cluster.reapRemoved(this.trace);
    const l = this.cluster.leader();
    if (!l) return;
    const term = l.lastStatus!.term;
    if (!this.finals.some((f) => f.node === l && f.incarnation === l.incarnation && f.term === term)) {
      const data = `final${++this.k}`;
      try {
        const r = l.propose(data);
        this.finals.push({ node: l, incarnation: l.incarnation, index: r.index, term: r.term, data });
        this.trace(() => `  liveness: proposed "${data}" on leader ${l.id} at ${r.index}@${r.term}`);
      } catch (e) {
        if (!isRaftError(e)) throw e;
        this.trace(() => `  liveness: leader ${l.id} refused a proposal (${e.message})`);
      }
    }
    const voters = l.lastStatus!.conf.voters;
    for (const f of this.finals) {
      const c = this.checker.committedAt(f.index);
      if (!c || c.term !== f.term || c.digest !== f.data) continue;
      const behind = voters.filter((v) => {
        const n = this.cluster.nodes.get(v);
        return !n || !n.alive || this.checker.appliedIndex(v) < f.index;
      });
      if (behind.length === 0) {
        this.done = true;
        this.voters = [...voters];
        this.index = f.index;
        this.trace(() => `  liveness: "${f.data}" at ${f.index}@${f.term} applied by every voter (${voters.join(",")})`);
        return;
      }
      this.lastNote = `"${f.data}" (${f.index}@${f.term}) committed but voters ${behind.join(",")} of {${voters.join(",")}} have not applied it`;
      return;
    }
    this.lastNote = `leader ${l.id} (term ${term}) has not committed any of the fresh writes ${this.finals.map((f) => `${f.index}@${f.term}`).join(", ")}`;
  }

  describe(): string {
    return this.lastNote;
  }
}

function failureReport(
  e: unknown,
  x: { seed: number; nodes: number; phase: string; sched: Scheduler; recent: SimEvent[]; cluster: Cluster; profile: SimProfile; net: Network },
): string {
  const kind = e instanceof SafetyViolation ? "SAFETY" : e instanceof LivenessFailure ? "LIVENESS" : "CRASH";
  const what = e instanceof SafetyViolation || e instanceof LivenessFailure ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
  let state: string;
  try {
    state = x.cluster.describe();
  } catch (err) {
    state = `    (could not describe the cluster: ${(err as Error).message})`;
  }
  const recent = x.recent.map((ev) => {
    let d: string;
    try {
      d = ev.describe();
    } catch {
      d = "?";
    }
    return `    t=${ev.time} ${d}`;
  });
  return [
    `${kind} failure in the Raft simulation (seed ${x.seed}, ${x.nodes} nodes, ${x.phase} phase, t=${x.sched.now}ms, event #${x.sched.executed}):`,
    `  ${what}`,
    `  profile: ${describeProfile(x.profile)}`,
    `  partition: ${x.net.describePartition()}`,
    `  nodes:`,
    state,
    `  last events:`,
    ...recent,
    `  replay with the full trace: ${replayCommand(x.seed, x.nodes)}`,
  ].join("\n");
}
