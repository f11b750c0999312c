// The coordinator of a part: moves the parting node P through PART_START →
// PARTING → PART_CATCHUP → PARTED (each a Raft command) as the remaining
// nodes report in the KV store (part-member.ts):
//
//   PART_START    → PARTING at once.
//   PARTING       while P can be reached, every remaining node drains what it
//                 can get from P directly; → PART_CATCHUP once all report
//                 (after PART_DRAIN_TIMEOUT_MS without, too: the catch-up
//                 covers whoever is behind).
//   PART_CATCHUP  every remaining node stops receiving from P and reports its
//                 progress for P. Once they all have (they must be a majority
//                 of the nodes that stay: otherwise the part says so and
//                 waits), the plan: the node with the most of P's changes is
//                 the source, a marker written on it is the end of its stream;
//                 every node behind it catches up from it. Once all report
//                 caught up → PARTED (each node then drops P's slots and
//                 origin).
//
// Only as a last resort, after LAST_RESORT_MS, a remaining node that does not
// report is left out — and only when its database cannot be reached either
// (never one that can): loudly, since any of P's changes it lacks are lost to
// it.
//
// The Raft leader's node coordinates when it is one of the remaining nodes
// (the seed: the leader finds the node with the most recent changes), else
// the remaining node with the lowest sequence number; should it be down, the
// next one steps in once the part has not moved for TAKEOVER_MS (times its
// rank), and goes on coordinating it. Should the plan's source stop
// answering, a node that has caught up from it becomes the source. Every step reads its inputs from the catalog and the KV
// store and is safe to repeat, so two coordinators at once only repeat each
// other, and a new one continues where the last stopped.
import type { Logger } from "pino";
import type { DataNode } from "../cluster/node-groups.js";
import { connectClient, destroyClient } from "../slots/connection.js";
import { captureEndLsn } from "../slots/index.js";
import { parseLsn } from "../slots/lsn.js";
import { within } from "../slots/types.js";
import { caughtUpKey, drainedKey, parseRecord, planKey, statusKey, stoppedKey, type CaughtUpRecord, type PartPlan, type PartStatusRecord, type StoppedRecord } from "./part-keys.js";
import type { PartKv } from "./part-member.js";

/** PARTING waits this long for every remaining node to drain P directly. */
export const PART_DRAIN_TIMEOUT_MS = 30_000;
/** A remaining node that does not report for this long, and whose database cannot be reached, is left out. */
export const LAST_RESORT_MS = 60_000;
/** The next remaining node coordinates once the part has not moved for this long (times its rank). */
export const TAKEOVER_MS = 15_000;
/** How long a reachability probe of a silent node's database may take. */
const PROBE_TIMEOUT_MS = 3_000;
/** A status that stays the same is logged again this often. */
const REPEAT_LOG_MS = 15_000;

export interface PartCoordinatorDeps extends PartKv {
  /** Run a pgd.* command through the leader. */
  pgd: (cmd: Record<string, unknown>) => Promise<unknown>;
  log: Logger;
  /** For tests: the clock, the timeouts, and the two questions asked of other nodes' databases. */
  now?: () => number;
  timeouts?: { drainMs?: number; lastResortMs?: number; takeoverMs?: number };
  /** Whether a node's database answers (default: connect to its DSN). */
  reachable?: (n: DataNode) => Promise<boolean>;
  /** Write the end marker on the catch-up source (default: captureEndLsn over its DSN). */
  markEnd?: (source: DataNode, label: string) => Promise<string>;
}

export class PartCoordinator {
  /** When this coordinator first saw each part in each phase (timeouts count from there). */
  private readonly seen = new Map<string, number>();
  /** The part's last visible state and since when (for the takeover). */
  private readonly watch = new Map<string, { sig: string; at: number }>();
  private readonly said = new Map<string, { message: string; at: number }>();
  /** Parts this node took over from a coordinator that seemed down: it goes on coordinating them. */
  private readonly tookOver = new Set<string>();
  /** What each part waits for now, in words (empty once it moved on). */
  readonly status = new Map<string, string>();
  private readonly now: () => number;
  private readonly drainMs: number;
  private readonly lastResortMs: number;
  private readonly takeoverMs: number;

  constructor(private readonly d: PartCoordinatorDeps) {
    this.now = d.now ?? Date.now;
    this.drainMs = d.timeouts?.drainMs ?? PART_DRAIN_TIMEOUT_MS;
    this.lastResortMs = d.timeouts?.lastResortMs ?? LAST_RESORT_MS;
    this.takeoverMs = d.timeouts?.takeoverMs ?? TAKEOVER_MS;
  }

  /**
   * One tick for parting node `p`. `remaining`: the group's members that stay
   * (past JOINING, not parting), `me` among them or not; `leaderMemberId`:
   * the Raft leader's member id, as this node knows it (0: none).
   */
  async step(me: DataNode, p: DataNode, remaining: DataNode[], leaderMemberId = 0): Promise<void> {
    const byRank = rankCoordinators(remaining, leaderMemberId);
    if (!(await this.acting(me, p, byRank))) return;
    if (p.state === "PART_START") {
      await this.move(p, "PARTING");
    } else if (p.state === "PARTING") {
      await this.parting(me, p, byRank);
    } else if (p.state === "PART_CATCHUP") {
      await this.catchup(me, p, byRank);
    }
  }

  /** Whether this node coordinates `p` now: the first by rank does; the others once the part is stuck for a while. */
  private async acting(me: DataNode, p: DataNode, byRank: DataNode[]): Promise<boolean> {
    const rank = byRank.findIndex((n) => n.name === me.name);
    if (rank < 0) return false;
    if (rank === 0 || this.tookOver.has(tag(p))) return true;
    const reads = await Promise.all(
      byRank.flatMap((n) => [drainedKey(p, n.name), stoppedKey(p, n.name), caughtUpKey(p, n.name)]).concat(planKey(p)).map((k) => this.d.kvGet(k)),
    );
    const sig = `${p.state}:${reads.map((r) => (r ? 1 : 0)).join("")}`;
    const key = tag(p);
    const w = this.watch.get(key);
    if (!w || w.sig !== sig) {
      this.watch.set(key, { sig, at: this.now() });
      return false;
    }
    const stuck = this.now() - w.at;
    if (stuck < rank * this.takeoverMs) return false;
    this.tookOver.add(tag(p));
    this.say(p, me, `the part has not moved for ${Math.round(stuck / 1000)} s: ${me.name} coordinates it (its coordinator ${byRank[0]!.name} seems down)`, "warn");
    return true;
  }

  private async parting(me: DataNode, p: DataNode, remaining: DataNode[]): Promise<void> {
    const since = this.since(p, "PARTING");
    const drained = await Promise.all(remaining.map((n) => this.d.kvGet(drainedKey(p, n.name))));
    const waiting = remaining.filter((_, i) => !drained[i]).map((n) => n.name);
    if (waiting.length && this.now() - since < this.drainMs) {
      this.say(p, me, `waiting for ${waiting.join(", ")} to apply what they can still get from ${p.name} directly`, "info");
      return;
    }
    if (waiting.length) {
      this.d.log.warn({ node: p.name, waiting }, `part of ${p.name}: ${waiting.join(", ")} did not drain it directly within ${this.drainMs / 1000} s; the catch-up brings them up to the most advanced node`);
    }
    await this.move(p, "PART_CATCHUP");
  }

  private async catchup(me: DataNode, p: DataNode, remaining: DataNode[]): Promise<void> {
    const since = this.since(p, "PART_CATCHUP");
    let plan = parseRecord<PartPlan>(await this.d.kvGet(planKey(p)));
    if (!plan) {
      plan = await this.makePlan(me, p, remaining, since);
      if (!plan) return;
    }
    const planSince = this.since(p, "plan");
    const planned = remaining.filter((n) => plan.progress[n.name] !== undefined);
    const done = await Promise.all(planned.map((n) => this.d.kvGet(caughtUpKey(p, n.name))));
    const waiting = planned.filter((_, i) => !done[i]);
    if (waiting.length) {
      const names = waiting.map((n) => n.name).join(", ");
      if (this.now() - planSince < this.lastResortMs) {
        this.say(p, me, `waiting for ${names} to catch up on ${p.name}'s changes from ${plan.source} (up to ${plan.target})`, "info");
        return;
      }
      if (await this.replan(me, p, plan, planned, done)) return;
      const reachable = await this.reachableOf(waiting);
      if (reachable.length) {
        this.say(p, me, `waiting for ${names} to catch up on ${p.name}'s changes from ${plan.source}; ${reachable.map((n) => n.name).join(", ")} can be reached, so the part waits for them`, "warn");
        return;
      }
      this.d.log.warn(
        { node: p.name, left_out: waiting.map((n) => n.name) },
        `LAST RESORT: part of ${p.name} goes on without ${names}: they have not reported catching up for ${this.lastResortMs / 1000} s and their databases cannot be reached; any of ${p.name}'s changes they lack are lost to them`,
      );
    }
    await this.move(p, "PARTED");
    this.d.log.info({ node: p.name, source: plan.source }, `node ${p.name} parted from group ${p.group}`);
  }

  /**
   * The plan's source no longer answers: a node that has caught up from it
   * holds the same changes of P (applied under P's origin, so in its WAL the
   * same way) and becomes the source. True when the plan changed.
   */
  private async replan(me: DataNode, p: DataNode, plan: PartPlan, planned: DataNode[], done: (string | undefined)[]): Promise<boolean> {
    const source = planned.find((n) => n.name === plan.source);
    if (source && (await this.reachableOf([source])).length) return false;
    const target = parseLsn(plan.target);
    const ready = planned.filter((n, i) => n.name !== plan.source && parseLsn(parseRecord<CaughtUpRecord>(done[i])?.progress ?? "0/0") >= target);
    const next = (await this.reachableOf(ready))[0];
    if (!next) return false;
    let endLsn: string;
    try {
      endLsn = await this.markEndOn(next, p);
    } catch {
      return false;
    }
    const replanned: PartPlan = { ...plan, source: next.name, endLsn };
    await this.d.kvPut(planKey(p), JSON.stringify(replanned));
    this.seen.delete(`${tag(p)}/plan`);
    this.d.log.warn({ node: p.name, from: plan.source, to: next.name }, `part of ${p.name}: its catch-up source ${plan.source} cannot be reached; ${next.name} has caught up from it and is the source now`);
    return true;
  }

  private markEndOn(source: DataNode, p: DataNode): Promise<string> {
    return (this.d.markEnd ?? ((n: DataNode, label: string) => captureEndLsn(n.dsn, label)))(source, `part of ${p.name}`);
  }

  /** Once every remaining node (or a majority, as a last resort) reported its progress: the plan, in the KV store. */
  private async makePlan(me: DataNode, p: DataNode, remaining: DataNode[], since: number): Promise<PartPlan | undefined> {
    const stopped = await Promise.all(remaining.map(async (n) => parseRecord<StoppedRecord>(await this.d.kvGet(stoppedKey(p, n.name)))));
    const answered = remaining.flatMap((n, i) => (stopped[i] ? [{ node: n, progress: stopped[i].has ?? stopped[i].progress }] : []));
    const missing = remaining.filter((_, i) => !stopped[i]);
    if (answered.length * 2 <= remaining.length) {
      this.say(
        p,
        me,
        `parting ${p.name} needs a majority of the nodes that stay: ${answered.length} of ${remaining.length} report (${missing.map((n) => n.name).join(", ")} do not); waiting`,
        "warn",
      );
      return undefined;
    }
    let skipped: DataNode[] = [];
    if (missing.length) {
      const names = missing.map((n) => n.name).join(", ");
      if (this.now() - since < this.lastResortMs) {
        this.say(p, me, `waiting for ${names} to stop receiving from ${p.name} and report their progress`, "info");
        return undefined;
      }
      const reachable = await this.reachableOf(missing);
      if (reachable.length) {
        this.say(p, me, `waiting for ${names} to report their progress for ${p.name}; ${reachable.map((n) => n.name).join(", ")} can be reached, so the part waits for them`, "warn");
        return undefined;
      }
      skipped = missing;
      this.d.log.warn(
        { node: p.name, left_out: skipped.map((n) => n.name) },
        `LAST RESORT: part of ${p.name} goes on without ${names}: they have not reported for ${this.lastResortMs / 1000} s and their databases cannot be reached; any of ${p.name}'s changes they lack are lost to them`,
      );
    }
    // The source: the most of p's changes; ties go to the lowest sequence number (remaining is in that order).
    const best = answered.reduce((x, y) => (parseLsn(y.progress) > parseLsn(x.progress) ? y : x));
    let endLsn: string;
    try {
      endLsn = await this.markEndOn(best.node, p);
    } catch (e) {
      this.say(p, me, `cannot reach ${best.node.name}, the node with the most of ${p.name}'s changes, to start the catch-up: ${e instanceof Error ? e.message : String(e)}; retrying`, "warn");
      return undefined;
    }
    const plan: PartPlan = {
      source: best.node.name,
      endLsn,
      target: best.progress,
      progress: Object.fromEntries(answered.map((a) => [a.node.name, a.progress])),
      skipped: skipped.map((n) => n.name),
    };
    // Another coordinator may have been quicker: its plan stands.
    const other = parseRecord<PartPlan>(await this.d.kvGet(planKey(p)));
    if (other) return other;
    await this.d.kvPut(planKey(p), JSON.stringify(plan));
    this.d.log.info({ node: p.name, ...plan }, `part of ${p.name}: ${plan.source} has the most of its changes (up to ${plan.target}); the others catch up from it`);
    return plan;
  }

  private async move(p: DataNode, state: string): Promise<void> {
    await this.d.pgd({ op: "pgd.node.state", name: p.name, state });
    this.status.delete(p.name);
    this.d.log.info({ node: p.name }, `part of ${p.name}: ${state}`);
  }

  private since(p: DataNode, phase: string): number {
    const key = `${tag(p)}/${phase}`;
    let t = this.seen.get(key);
    if (t === undefined) this.seen.set(key, (t = this.now()));
    return t;
  }

  /** The nodes among `nodes` whose databases answer now. */
  private async reachableOf(nodes: DataNode[]): Promise<DataNode[]> {
    const answers = await Promise.all(nodes.map((n) => (this.d.reachable ?? probe)(n)));
    return nodes.filter((_, i) => answers[i]);
  }

  /** Record what the part waits for: in the log (again every so often), here, and (when it changed) in the KV store. */
  private say(p: DataNode, me: DataNode, message: string, level: "info" | "warn"): void {
    this.status.set(p.name, message);
    const last = this.said.get(p.name);
    const now = this.now();
    if (last?.message === message && now - last.at < REPEAT_LOG_MS) return;
    this.said.set(p.name, { message, at: now });
    this.d.log[level]({ node: p.name }, `part of ${p.name}: ${message}`);
    if (last?.message !== message) {
      const rec: PartStatusRecord = { by: me.name, message };
      this.d.kvPut(statusKey(p), JSON.stringify(rec)).catch(() => undefined);
    }
  }
}

const tag = (p: DataNode): string => `${p.name}@${p.seqId}`;

/** Who coordinates first, second, …: the Raft leader's node if it stays, then by sequence number. */
export function rankCoordinators(remaining: DataNode[], leaderMemberId: number): DataNode[] {
  const rank = (n: DataNode): number => (leaderMemberId !== 0 && n.raftMemberId === leaderMemberId ? 0 : 1);
  return [...remaining].sort((x, y) => rank(x) - rank(y) || x.seqId - y.seqId);
}

/** Whether a node's database answers now (a sidecar that does not report may have a database that does). */
async function probe(n: DataNode): Promise<boolean> {
  try {
    const c = await connectClient(n.dsn, "pgraft_part_probe", () => undefined, { connectionTimeoutMillis: PROBE_TIMEOUT_MS });
    await within(c.end(), 1_000);
    destroyClient(c);
    return true;
  } catch {
    return false;
  }
}
