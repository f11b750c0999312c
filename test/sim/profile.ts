// Per-seed parameters: each seed draws its own timing, fault rates, core
// options and operation mix, so a few thousand short histories cover many
// corners (tiny messages and windows, heavy loss, long reorderings, ...).
import type { NetworkFaults } from "./network.js";
import type { NodeParams } from "./node.js";
import type { Rng } from "./rng.js";
import type { WorkloadProfile } from "./workload.js";

export interface SimProfile {
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
  const tickMs = 10;
  const electionTick = rng.pick([10, 10, 6]);
  const heartbeatTick = electionTick >= 10 ? rng.pick([1, 1, 3]) : 1;
  const maxDelay = rng.pick([2, 8, 25]);
  return {
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
      },
      restartMinMs: 5,
      restartMaxMs: rng.pick([50, 300, 800]),
      partitionMinMs: 20,
      partitionMaxMs: rng.pick([200, 800]),
      maxVoters: 5,
      maxMembers: Math.max(6, nodes + 1),
      removeLeaderRate: 0.15,
    },
    randomPhaseMs: rng.int(60, 241) * tickMs,
    livenessTimeouts: 200,
    maxEvents: 400_000,
  };
}

export function describeProfile(p: SimProfile): string {
  const n = p.params;
  const f = p.faults;
  const w = p.workload;
  return [
    `election=${n.electionTick} heartbeat=${n.heartbeatTick} ticks of ${p.tickMs}ms (drift ±${p.drift * 100}%)`,
    `preVote=${n.preVote} checkQuorum=${n.checkQuorum} maxSizePerMsg=${n.maxSizePerMsg} maxInflight=${n.maxInflightMsgs} ` +
      `maxUncommitted=${n.maxUncommittedEntriesSize} maxCommittedPerReady=${n.maxCommittedSizePerReady}`,
    `fsync ${n.fsyncMin}-${n.fsyncMax}ms interleave=${n.interleave}`,
    `net drop=${f.dropRate} dup=${f.dupRate} delay ${f.minDelay}-${f.maxDelay}ms long=${f.longDelayRate}`,
    `ops every ~${w.opGapMs}ms ${Object.entries(w.weights).map(([k, v]) => `${k}:${v}`).join(" ")}`,
    `chaos for ${p.randomPhaseMs}ms`,
  ].join("; ");
}
