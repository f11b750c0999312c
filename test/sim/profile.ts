// Per-seed parameters: each seed draws its own timing, fault rates, core
// options and operation mix, so a few thousand short histories cover many
// corners (tiny messages and windows, heavy loss, long reorderings, ...).
// About a third of the seeds draw the "leader" family: faults aimed at leaders
// right after their election and their first commit, one entry per App and
// windows of one or two, so that logs of different terms diverge and a new
// leader is cut off while it still brings followers up to date (the Figure 8
// histories that only the own-term commit rule survives; the simulation's
// self-test breaks that rule and expects a violation within a few dozen seeds).
import type { NetworkFaults } from "./network.js";
import type { NodeParams } from "./node.js";
import type { Rng } from "./rng.js";
import type { LeaderFaults, WorkloadProfile } from "./workload.js";

export interface SimProfile {
  /**
   * "mixed": every kind of fault at random times. "leader": faults aimed at
   * leaders (see LeaderFaults) with tiny messages and windows, so that logs of
   * different terms diverge and leaders are cut off halfway through catching
   * followers up.
   */
  family: "mixed" | "leader";
  tickMs: number;
  /** Relative clock-rate spread of the nodes' tick timers. */
  drift: number;
  params: NodeParams;
  faults: NetworkFaults;
  /** The network of the healing phase: no loss, short delays. */
  calm: NetworkFaults;
  workload: WorkloadProfile;
  randomPhaseMs: number;
  /** The healing phase must end within this many election timeouts. */
  livenessTimeouts: number;
  /** A history with more events than this fails (runaway message loops). */
  maxEvents: number;
}

export function makeProfile(rng: Rng, nodes: number): SimProfile {
  const family = rng.chance(LEADER_FAMILY_RATE) ? "leader" : "mixed";
  return family === "leader" ? leaderProfile(rng, nodes) : mixedProfile(rng, nodes);
}

/** Share of the seeds that draw the "leader" family. */
const LEADER_FAMILY_RATE = 0.35;

const NO_LEADER_FAULTS: LeaderFaults = { newLeaderRate: 0, firstCommitRate: 0, maxDelayMs: 1, commitDelayMs: 1, isolateRate: 0.5, isolateMinMs: 20, isolateMaxMs: 200, restartMinMs: 5, restartMaxMs: 100 };

function mixedProfile(rng: Rng, nodes: number): SimProfile {
  const tickMs = 10;
  const electionTick = rng.pick([10, 10, 6]);
  const heartbeatTick = electionTick >= 10 ? rng.pick([1, 1, 3]) : 1;
  const maxDelay = rng.pick([2, 8, 25]);
  return {
    family: "mixed",
    tickMs,
    drift: rng.pick([0, 0.05, 0.2]),
    params: {
      clusterId: "sim",
      electionTick,
      heartbeatTick,
      preVote: rng.chance(0.8),
      checkQuorum: rng.chance(0.8),
      maxSizePerMsg: rng.pick([1 << 20, 1 << 20, 64]),
      maxInflightMsgs: rng.pick([256, 4, 1]),
      maxUncommittedEntriesSize: rng.pick([1 << 26, 1 << 26, 40]),
      maxCommittedSizePerReady: rng.pick([1 << 23, 1 << 23, 64]),
      fsyncMin: rng.pick([0, 1]),
      fsyncMax: rng.pick([1, 5, 20]),
      interleave: rng.chance(0.85),
    },
    faults: {
      dropRate: rng.pick([0, 0.02, 0.1, 0.25]),
      dupRate: rng.pick([0, 0.02, 0.1]),
      minDelay: 1,
      maxDelay,
      longDelayRate: rng.pick([0, 0.01, 0.05]),
      longDelayMax: 300,
      reportUnreachableRate: 0.3,
    },
    calm: { dropRate: 0, dupRate: 0, minDelay: 1, maxDelay: 10, longDelayRate: 0, longDelayMax: 0, reportUnreachableRate: 0 },
    workload: {
      opGapMs: rng.pick([3, 8, 20]),
      weights: {
        propose: 40,
        read: 8,
        crash: rng.pick([0, 2, 8]),
        partition: rng.pick([0, 1, 3]),
        conf: rng.pick([0, 3, 8]),
        transfer: rng.pick([0, 1, 3]),
        compact: rng.pick([1, 4, 10]),
        campaign: 1,
        leaderFault: rng.pick([0, 0, 1]),
      },
      restartMinMs: 5,
      restartMaxMs: rng.pick([50, 300, 800]),
      partitionMinMs: 20,
      partitionMaxMs: rng.pick([200, 800]),
      maxVoters: 5,
      maxMembers: Math.max(6, nodes + 1),
      removeLeaderRate: 0.15,
      leaderFaults: NO_LEADER_FAULTS,
    },
    randomPhaseMs: rng.int(60, 241) * tickMs,
    livenessTimeouts: 200,
    maxEvents: 400_000,
  };
}

function leaderProfile(rng: Rng, nodes: number): SimProfile {
  const tickMs = 10;
  const electionTick = rng.pick([5, 6, 6, 10]);
  const heartbeatTick = 1;
  const maxDelay = rng.pick([2, 8, 15]);
  return {
    family: "leader",
    tickMs,
    drift: rng.pick([0, 0.05, 0.2]),
    params: {
      clusterId: "sim",
      electionTick,
      heartbeatTick,
      preVote: rng.chance(0.7),
      checkQuorum: rng.chance(0.7),
      // One or two entries per App and a tiny window: catching a follower up takes many round trips.
      maxSizePerMsg: rng.pick([1, 1, 64]),
      maxInflightMsgs: rng.pick([1, 2]),
      maxUncommittedEntriesSize: 1 << 26,
      maxCommittedSizePerReady: rng.pick([1 << 23, 64]),
      fsyncMin: rng.pick([0, 1]),
      fsyncMax: rng.pick([1, 5, 10]),
      interleave: rng.chance(0.85),
    },
    faults: {
      dropRate: rng.pick([0, 0, 0.02, 0.1]),
      dupRate: rng.pick([0, 0.02]),
      minDelay: 1,
      maxDelay,
      longDelayRate: rng.pick([0, 0.01]),
      longDelayMax: 200,
      reportUnreachableRate: 0.3,
    },
    calm: { dropRate: 0, dupRate: 0, minDelay: 1, maxDelay: 10, longDelayRate: 0, longDelayMax: 0, reportUnreachableRate: 0 },
    workload: {
      opGapMs: rng.pick([3, 6, 12]),
      weights: {
        propose: 40,
        read: 4,
        crash: rng.pick([0, 0, 2]),
        partition: rng.pick([0, 1, 2]),
        conf: rng.pick([0, 0, 2]),
        transfer: rng.pick([0, 1]),
        compact: rng.pick([0, 1, 4]),
        campaign: rng.pick([1, 3]),
        leaderFault: rng.pick([1, 3, 6]),
      },
      restartMinMs: 5,
      restartMaxMs: rng.pick([50, 150, 400]),
      partitionMinMs: 20,
      partitionMaxMs: rng.pick([100, 300]),
      maxVoters: 5,
      maxMembers: Math.max(6, nodes + 1),
      removeLeaderRate: 0.1,
      leaderFaults: {
        newLeaderRate: rng.pick([0.5, 0.7]),
        firstCommitRate: rng.pick([0.3, 0.6]),
        maxDelayMs: rng.pick([10, 40]),
        commitDelayMs: rng.pick([1, 5]),
        isolateRate: rng.pick([0.5, 0.8, 0.8]),
        isolateMinMs: 10,
        isolateMaxMs: rng.pick([300, 600]),
        restartMinMs: 5,
        restartMaxMs: rng.pick([30, 100, 300]),
      },
    },
    randomPhaseMs: rng.int(100, 301) * tickMs,
    livenessTimeouts: 200,
    maxEvents: 400_000,
  };
}

export function describeProfile(p: SimProfile): string {
  const n = p.params;
  const f = p.faults;
  const w = p.workload;
  const lf = w.leaderFaults;
  return [
    `${p.family} family`,
    `election=${n.electionTick} heartbeat=${n.heartbeatTick} ticks of ${p.tickMs}ms (drift ±${p.drift * 100}%)`,
    `preVote=${n.preVote} checkQuorum=${n.checkQuorum} maxSizePerMsg=${n.maxSizePerMsg} maxInflight=${n.maxInflightMsgs} ` +
      `maxUncommitted=${n.maxUncommittedEntriesSize} maxCommittedPerReady=${n.maxCommittedSizePerReady}`,
    `fsync ${n.fsyncMin}-${n.fsyncMax}ms interleave=${n.interleave}`,
    `net drop=${f.dropRate} dup=${f.dupRate} delay ${f.minDelay}-${f.maxDelay}ms long=${f.longDelayRate}`,
    `ops every ~${w.opGapMs}ms ${Object.entries(w.weights).map(([k, v]) => `${k}:${v}`).join(" ")}`,
    ...(lf.newLeaderRate > 0 || w.weights.leaderFault > 0
      ? [
          `leader faults: ${lf.newLeaderRate * 100}% of new leaders within ${lf.maxDelayMs}ms, ${lf.firstCommitRate * 100}% within ${lf.commitDelayMs}ms of their first commit, ${lf.isolateRate * 100}% isolated for ${lf.isolateMinMs}-${lf.isolateMaxMs}ms, ` +
            `else crashed for ${lf.restartMinMs}-${lf.restartMaxMs}ms`,
        ]
      : []),
    `chaos for ${p.randomPhaseMs}ms`,
  ].join("; ");
}
