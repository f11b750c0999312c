// The random operations of the chaos phase: client writes and reads, crashes
// and restarts, partitions and heals, membership changes, leadership
// transfers, forced elections and log compaction, plus faults aimed at leaders
// (crash or isolate a leader at random, or soon after its election or its
// first commit).
import type { ConfChange } from "../../src/consensus/confchange.js";
import { isRaftError } from "../../src/consensus/errors.js";
import type { NodeId } from "../../src/consensus/types.js";
import type { Cluster } from "./cluster.js";
import { isMember } from "./cluster.js";
import type { Network } from "./network.js";
import type { SimNode } from "./node.js";
import type { Rng } from "./rng.js";
import type { Scheduler } from "./scheduler.js";

export type OpKind = "propose" | "read" | "crash" | "partition" | "conf" | "transfer" | "compact" | "campaign" | "leaderFault";

/**
 * Faults aimed at leaders. Uncommitted entries of different terms pile up on
 * different nodes when leaders are cut off right after their election (their
 * first entry stays local) or while they accept writes; cutting a leader off
 * while it is still bringing a follower up to date leaves a quorum holding its
 * older-term entries without its own, the situation of the Raft paper's
 * Figure 8 in which only the own-term commit rule keeps the log safe.
 */
export interface LeaderFaults {
  /** Probability that a newly elected leader is crashed or isolated soon after. */
  newLeaderRate: number;
  /** Probability that a leader is crashed or isolated soon after its first commit in its term. */
  firstCommitRate: number;
  /** The fault strikes after [0, maxDelayMs) ms of the election, or [0, commitDelayMs) of the first commit. */
  maxDelayMs: number;
  commitDelayMs: number;
  /** Share of isolations (partitioned alone, still accepting writes) among those faults. */
  isolateRate: number;
  isolateMinMs: number;
  isolateMaxMs: number;
  /** A crashed leader restarts after [restartMinMs, restartMaxMs) ms. */
  restartMinMs: number;
  restartMaxMs: number;
}

export interface WorkloadProfile {
  /** Mean gap between two operations, ms. */
  opGapMs: number;
  weights: Record<OpKind, number>;
  /** Crashed nodes come back after [min, max) ms (or only in the healing phase). */
  restartMinMs: number;
  restartMaxMs: number;
  partitionMinMs: number;
  partitionMaxMs: number;
  maxVoters: number;
  maxMembers: number;
  /** Probability that a removal picks the leader itself. */
  removeLeaderRate: number;
  /** Used by new leaders and the "leaderFault" operation. */
  leaderFaults: LeaderFaults;
}

const EXPECTED_ERRORS = ["NOT_LEADER", "PROPOSAL_DROPPED", "REMOVED", "INVALID_ARGUMENT"] as const;

export class Workload {
  active = true;
  private seq = 0;
  private partitionGen = 0;
  readonly stats = {
    proposals: 0,
    proposalsRejected: 0,
    reads: 0,
    crashes: 0,
    partitions: 0,
    confChanges: 0,
    transfers: 0,
    compactions: 0,
    campaigns: 0,
    leaderFaults: 0,
  };
  private readonly kinds: (readonly [OpKind, number])[];

  constructor(
    private readonly sched: Scheduler,
    private readonly rng: Rng,
    private readonly cluster: Cluster,
    private readonly net: Network,
    private readonly profile: WorkloadProfile,
    private readonly trace: (line: () => string) => void,
  ) {
    this.kinds = Object.entries(profile.weights) as [OpKind, number][];
  }

  start(): void {
    this.cluster.onLeaderEvent = (n, term, what) => this.leaderEvent(n, term, what);
    this.scheduleNext();
  }

  stop(): void {
    this.active = false;
    this.cluster.onLeaderEvent = undefined;
  }

  private scheduleNext(): void {
    if (!this.active) return;
    const kind = this.rng.weighted(this.kinds);
    this.sched.after(this.rng.int(1, 2 * this.profile.opGapMs), () => `op ${kind}`, () => {
      if (!this.active) return;
      this.run(kind);
      this.cluster.reapRemoved(this.trace);
      this.scheduleNext();
    });
  }

  private run(kind: OpKind): void {
    switch (kind) {
      case "propose":
        return this.propose();
      case "read":
        return this.read();
      case "crash":
        return this.crash();
      case "partition":
        return this.partition();
      case "conf":
        return this.confChange();
      case "transfer":
        return this.transfer();
      case "compact":
        return this.compact();
      case "campaign":
        return this.campaign();
      case "leaderFault": {
        const leaders = this.cluster.leaders();
        if (leaders.length > 0) this.leaderFault(this.rng.pick(leaders));
        return;
      }
    }
  }

  /** Run a client call; the core's documented refusals are part of the game. */
  private attempt(what: string, fn: () => string | void): boolean {
    try {
      const r = fn();
      this.trace(() => `  ${what}${r ? `: ${r}` : ""}`);
      return true;
    } catch (e) {
      if (EXPECTED_ERRORS.some((c) => isRaftError(e, c))) {
        this.trace(() => `  ${what}: refused (${(e as Error).message})`);
        return false;
      }
      throw e;
    }
  }

  private propose(): void {
    const leaders = this.cluster.leaders();
    const live = this.cluster.live();
    if (live.length === 0) return;
    const n = leaders.length > 0 && !this.rng.chance(0.1) ? this.rng.pick(leaders) : this.rng.pick(live);
    const data = `c${++this.seq}`;
    this.stats.proposals++;
    if (
      !this.attempt(`propose "${data}" on node ${n.id}`, () => {
        const r = n.propose(data);
        return `${r.index}@${r.term}`;
      })
    ) {
      this.stats.proposalsRejected++;
    }
  }

  private read(): void {
    const live = this.cluster.live();
    if (live.length === 0) return;
    const n = this.rng.pick(live);
    const ctx = `r${++this.seq}`;
    this.stats.reads++;
    this.attempt(`readIndex "${ctx}" on node ${n.id}`, () => n.readIndex(ctx));
  }

  private crash(): void {
    const live = this.cluster.live();
    if (live.length === 0) return;
    // Crashes in the middle of an fsync are the interesting ones: favour them.
    const syncing = live.filter((n) => n.syncing);
    const n = syncing.length > 0 && this.rng.chance(0.7) ? this.rng.pick(syncing) : this.rng.pick(live);
    this.stats.crashes++;
    n.crash();
    if (this.rng.chance(0.85)) {
      const inc = n.incarnation;
      this.sched.after(this.rng.int(this.profile.restartMinMs, this.profile.restartMaxMs), () => `restart ${n.id}`, () => {
        if (n.incarnation === inc) n.start();
      });
    }
  }

  private leaderEvent(n: SimNode, term: number, what: "elected" | "committed"): void {
    const f = this.profile.leaderFaults;
    if (!this.active || !this.rng.chance(what === "elected" ? f.newLeaderRate : f.firstCommitRate)) return;
    const inc = n.incarnation;
    const delay = this.rng.int(0, what === "elected" ? f.maxDelayMs : f.commitDelayMs);
    this.sched.after(delay, () => `leader fault on ${n.id} (leader of term ${term}, ${what})`, () => {
      if (this.active && n.incarnation === inc && n.isLeader && n.lastStatus!.term === term) this.leaderFault(n);
    });
  }

  /** Crash the leader (quick restart) or cut it off from everyone while it keeps taking writes. */
  private leaderFault(n: SimNode): void {
    const f = this.profile.leaderFaults;
    this.stats.leaderFaults++;
    if (this.rng.chance(f.isolateRate)) {
      this.net.partition([[n.id]]);
      this.stats.partitions++;
      this.trace(() => `  leader ${n.id} isolated: ${this.net.describePartition()}`);
      const gen = ++this.partitionGen;
      this.sched.after(this.rng.int(f.isolateMinMs, f.isolateMaxMs), () => "heal partition", () => {
        if (gen !== this.partitionGen || !this.net.partitioned) return;
        this.net.heal();
        this.trace(() => "  network healed");
      });
      return;
    }
    this.stats.crashes++;
    n.crash();
    const inc = n.incarnation;
    this.sched.after(this.rng.int(f.restartMinMs, f.restartMaxMs), () => `restart ${n.id}`, () => {
      if (n.incarnation === inc) n.start();
    });
  }

  private partition(): void {
    if (this.net.partitioned) {
      this.net.heal();
      this.trace(() => "  network healed");
      return;
    }
    const ids = this.rng.shuffle(this.cluster.existing().map((n) => n.id));
    if (ids.length < 2) return;
    const cut = this.rng.int(1, ids.length);
    const groups = this.rng.chance(0.3) && ids.length >= 3 ? splitThree(ids, this.rng) : [ids.slice(0, cut), ids.slice(cut)];
    this.net.partition(groups);
    this.stats.partitions++;
    this.trace(() => `  partition ${this.net.describePartition()}`);
    const gen = ++this.partitionGen;
    this.sched.after(this.rng.int(this.profile.partitionMinMs, this.profile.partitionMaxMs), () => "heal partition", () => {
      if (gen !== this.partitionGen || !this.net.partitioned) return;
      this.net.heal();
      this.trace(() => "  network healed");
    });
  }

  private confChange(): void {
    const leaders = this.cluster.leaders();
    if (leaders.length === 0) return;
    const l = this.rng.pick(leaders);
    const conf = l.lastStatus!.conf;
    const members = conf.voters.length + conf.learners.length;
    const options: (() => void)[] = [];
    if (members < this.profile.maxMembers) options.push(() => this.addLearner(l));
    if (conf.learners.length > 0 && conf.voters.length < this.profile.maxVoters) {
      options.push(() => this.proposeConf(l, { type: "addVoter", nodeId: this.rng.pick(conf.learners) }));
    }
    if (conf.voters.length > 1 || conf.learners.length > 0) {
      options.push(() => {
        const candidates = [...(conf.voters.length > 1 ? conf.voters : []), ...conf.learners];
        const others = candidates.filter((id) => id !== l.id);
        // Removing the leader itself is allowed but rarer.
        const id = others.length > 0 && !this.rng.chance(this.profile.removeLeaderRate) ? this.rng.pick(others) : this.rng.pick(candidates);
        if (this.proposeConf(l, { type: "removeNode", nodeId: id })) this.cluster.removalProposed.add(id);
      });
    }
    if (options.length > 0) this.rng.pick(options)();
  }

  private addLearner(l: SimNode): void {
    const conf = l.lastStatus!.conf;
    // Reuse a node that was spawned for an add that never took effect; otherwise spawn one.
    const idle = this.cluster
      .existing()
      .filter((n) => !isMember(conf, n.id) && !this.cluster.removalProposed.has(n.id) && n.storage.snapshot().meta.index === 0 && n.storage.lastIndex() === 0);
    const target = idle.length > 0 ? this.rng.pick(idle) : undefined;
    if (target) {
      this.proposeConf(l, { type: "addLearner", nodeId: target.id });
      return;
    }
    const n = this.cluster.spawn();
    this.trace(() => `  spawned node ${n.id} (empty disk)`);
    this.proposeConf(l, { type: "addLearner", nodeId: n.id });
  }

  private proposeConf(l: SimNode, cc: ConfChange): boolean {
    this.stats.confChanges++;
    return this.attempt(`propose ${cc.type} ${cc.nodeId} on node ${l.id}`, () => {
      const r = l.proposeConfChange(cc);
      return `${r.index}@${r.term}`;
    });
  }

  private transfer(): void {
    const leaders = this.cluster.leaders();
    if (leaders.length === 0) return;
    const l = this.rng.pick(leaders);
    const targets = l.lastStatus!.conf.voters.filter((id: NodeId) => id !== l.id);
    if (targets.length === 0) return;
    const to = this.rng.pick(targets);
    this.stats.transfers++;
    this.attempt(`transfer leadership ${l.id} → ${to}`, () => l.transferLeader(to));
  }

  private compact(): void {
    const live = this.cluster.live();
    if (live.length === 0) return;
    const n = this.rng.pick(live);
    if (n.compact(this.rng.int(0, 4))) this.stats.compactions++;
  }

  private campaign(): void {
    const voters = this.cluster.live().filter((n) => n.lastStatus && n.lastStatus.conf.voters.includes(n.id));
    if (voters.length === 0) return;
    const n = this.rng.pick(voters);
    this.stats.campaigns++;
    this.attempt(`node ${n.id} campaigns`, () => n.campaign());
  }
}

function splitThree(ids: NodeId[], rng: Rng): NodeId[][] {
  const a = rng.int(1, ids.length - 1);
  const b = rng.int(a + 1, ids.length);
  return [ids.slice(0, a), ids.slice(a, b), ids.slice(b)];
}
