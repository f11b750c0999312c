// The write leader of each data group, decided on the Raft leader's sidecar
// (the only one that runs this controller at a time; routing.set is a
// compare-and-set on the group's epoch, so a deposed leader's late decision
// fails instead of overwriting a newer one).
//
// Every tick, for every group:
//  - the group's ACTIVE data nodes are probed (node-probe.ts: a real query
//    over each node's interface DSN, bounded) and their sidecars' Raft
//    contact is read: a node is healthy when both answer;
//  - no write leader, or one no longer ACTIVE: the healthy node that holds the
//    most of the old leader's changes (else the first healthy by creation)
//    becomes it;
//  - the write leader unhealthy for failover_timeout (and failover_enabled):
//    failover to the healthy node with the most progress of the old
//    leader's origin. Origin progress only grows in the leader's LSN order, so
//    that node lacks none of the old leader's changes any other survivor has;
//    with commit scope majority every acknowledged commit is on a majority, so
//    on it (see commit-scope.ts);
//  - the read nodes (the read-only proxy's choice) are the healthy others,
//    least lag first; rewritten only when the set changes or the order is
//    clearly wrong (no Raft write per tick).
// A switchover in progress (switchover.ts) is left alone, unless it has been
// in progress for so long that whoever ran it is gone.
import type { Logger } from "pino";
import type { DataNode } from "../cluster/node-groups.js";
import { routable, type GroupRouting } from "../cluster/routing.js";
import type { ClusterState } from "../cluster/state.js";
import { Role, type RaftStatus } from "../consensus/types.js";
import { originName } from "../slots/naming.js";
import { NodeProbe } from "./node-probe.js";

/** A switchover not finished after this long is abandoned (its runner is gone). */
export const SWITCHOVER_STALE_MS = 5 * 60_000;
/** Readers are reordered when the first lags the best by more than this (less would reorder them under every burst of writes). */
const READER_REORDER_BYTES = 64n * 1024n * 1024n;

export interface WriteLeaderDeps {
  selfId: number;
  state: ClusterState;
  status: () => RaftStatus;
  /** Raft tick length (ms), to turn a follower's ticks since contact into time. */
  tickMs: () => number;
  /** Run a routing.* command through the leader (here: this node). */
  propose: (cmd: Record<string, unknown>) => Promise<unknown>;
  log: Logger;
  now?: () => number;
  /** Probes for tests (default: NodeProbe over the node's DSN). */
  probe?: (n: DataNode) => ProbeLike;
}

/**
 * A write leader whose PostgreSQL takes connections but does not answer
 * within the probe's bound, its sidecar in contact, is failed over after this
 * many failover_timeouts: that is an overloaded host as often as a frozen
 * server, and a failover closes every client connection. Refused or reset
 * connections, a server shutting down, or a silent sidecar count after one.
 */
export const SLOW_FAILOVER_FACTOR = 3;

/** What the controller needs of a probe (NodeProbe, or a test's). */
export interface ProbeLike {
  readonly dsn: string;
  readonly last: NodeProbe["last"];
  readonly downSince: number | undefined;
  /** While down, only timeouts (see NodeProbe.timedOutOnly); absent: not known, counted as a hard failure. */
  readonly timedOutOnly?: boolean;
  start(): void;
  stop(): void;
}

export interface NodeHealth {
  healthy: boolean;
  /** Since when it has been unhealthy without a break (undefined while healthy). */
  since?: number;
  why?: string;
  /** Unhealthy only because its PostgreSQL does not answer in time (its sidecar is in contact): a failover waits SLOW_FAILOVER_FACTOR times longer. */
  slow?: boolean;
}

export class WriteLeaderController {
  private readonly probes = new Map<string, ProbeLike>();
  /** When this controller first saw each node unhealthy (a new Raft leader counts from its own first look). */
  private readonly sidecarDownSince = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly said = new Map<string, string>();
  /** A switchover in progress as first seen by this controller, per group (abandoned once stale). */
  private readonly switchSeen = new Map<string, { target: string; epoch: number; at: number }>();

  constructor(private readonly d: WriteLeaderDeps) {}

  private now(): number {
    return this.d.now?.() ?? Date.now();
  }

  start(intervalMs = 100): void {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      this.tick()
        .catch((e: unknown) => this.say("tick", `write leader: ${e instanceof Error ? e.message : String(e)}`, "warn"))
        .finally(() => (this.busy = false));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    while (this.busy) await new Promise((r) => setTimeout(r, 10));
    this.stopProbes();
  }

  private stopProbes(): void {
    for (const p of this.probes.values()) p.stop();
    this.probes.clear();
    this.sidecarDownSince.clear();
  }

  /** Log a line once per change of what it says, under a topic. */
  private say(topic: string, line: string, level: "info" | "warn" = "info"): void {
    if (this.said.get(topic) === line) return;
    this.said.set(topic, line);
    this.d.log[level](line);
  }

  async tick(): Promise<void> {
    const st = this.d.status();
    if (st.role !== Role.Leader) {
      if (this.probes.size) this.stopProbes();
      return;
    }
    const nodes = this.d.state.dataNodes();
    const want = new Set<string>();
    for (const g of this.d.state.nodeGroups()) {
      const active = nodes.filter((n) => routable(n, g.name));
      for (const n of active) want.add(n.name);
      this.ensureProbes(active);
      if (!active.length) {
        const r = this.d.state.routing(g.name);
        if (r.leader || r.switchingTo || r.readers.length) await this.set(r, { leader: "", switchingTo: "", readers: [], reason: "no ACTIVE data node left in the group" });
        continue;
      }
      await this.decide(this.d.state.routing(g.name), active, st);
    }
    for (const [name, p] of this.probes) {
      if (!want.has(name)) {
        p.stop();
        this.probes.delete(name);
        this.sidecarDownSince.delete(name);
      }
    }
  }

  private ensureProbes(active: DataNode[]): void {
    for (const n of active) {
      const have = this.probes.get(n.name);
      if (have && have.dsn === n.dsn) continue;
      have?.stop();
      const p =
        this.d.probe?.(n) ??
        new NodeProbe(n.dsn, {
          // Ten probes per timeout (100 ms at the default; one query on a kept connection), each bounded by half
          // of it: a dead or frozen server is seen within a tenth of the timeout.
          intervalMs: () => Math.max(50, Math.min(500, Math.floor(this.d.state.settings().failoverTimeoutMs / 10))),
          timeoutMs: () => Math.max(100, Math.floor(this.d.state.settings().failoverTimeoutMs / 2)),
        });
      p.start();
      this.probes.set(n.name, p);
    }
  }

  /** How a node looks now: its PostgreSQL answers and its sidecar is in contact. */
  health(n: DataNode, st: RaftStatus): NodeHealth {
    const now = this.now();
    const p = this.probes.get(n.name);
    const last = p?.last;
    let since: number | undefined;
    let why: string | undefined;
    if (!last) {
      since = now;
      why = "not probed yet";
    } else if (!last.ok) {
      since = p.downSince ?? last.at;
      why = `its PostgreSQL does not answer: ${last.error ?? "unknown error"}`;
    }
    let slow = since !== undefined && last !== undefined && !last.ok && p?.timedOutOnly === true;
    const member = n.raftMemberId;
    if (member && member !== this.d.selfId) {
      const pr = st.progress.get(member);
      const silentMs = pr ? pr.ticksSinceActive * this.d.tickMs() : Infinity;
      // Counted from when this controller first saw it silent, at the latest from now: a new Raft leader starts afresh.
      if (!pr || silentMs >= this.d.tickMs() * 2) {
        const first = this.sidecarDownSince.get(n.name) ?? now;
        this.sidecarDownSince.set(n.name, first);
        const s = Math.max(now - silentMs, first);
        if (since === undefined || s < since) since = s;
        why = [why, `its sidecar (member ${member}) has not answered Raft for ${Number.isFinite(silentMs) ? `${silentMs} ms` : "ever"}`].filter(Boolean).join("; ");
        slow = false;
      } else this.sidecarDownSince.delete(n.name);
    }
    return since === undefined ? { healthy: true } : { healthy: false, since, why: why!, ...(slow ? { slow } : {}) };
  }

  private progressOf(n: DataNode, origin: string): bigint {
    return this.probes.get(n.name)?.last?.progress?.get(origin) ?? -1n;
  }

  private async decide(r: GroupRouting, active: DataNode[], st: RaftStatus): Promise<void> {
    const now = this.now();
    const s = this.d.state.settings();
    const health = new Map(active.map((n) => [n.name, this.health(n, st)] as const));
    const healthy = active.filter((n) => health.get(n.name)!.healthy);
    const leader = active.find((n) => n.name === r.leader);

    if (r.switchingTo) {
      // Counted from when this controller first saw it (the routing records when the leader last changed, not when a switchover began).
      const seen = this.switchSeen.get(r.group);
      if (!seen || seen.target !== r.switchingTo || seen.epoch > r.epoch) this.switchSeen.set(r.group, { target: r.switchingTo, epoch: r.epoch, at: now });
      if (now - (this.switchSeen.get(r.group)?.at ?? now) < SWITCHOVER_STALE_MS) return;
      this.switchSeen.delete(r.group);
      await this.set(r, { switchingTo: "", reason: r.reason });
      this.say(`switch:${r.group}`, `group ${r.group}: a switchover to ${r.switchingTo} has been in progress for over ${SWITCHOVER_STALE_MS / 1000} s; abandoned`, "warn");
      return;
    }

    if (!leader) {
      const prev = r.leader ? this.d.state.dataNodes().find((n) => n.name === r.leader) : undefined;
      const pick = this.mostOf(healthy, prev);
      if (!pick) {
        this.say(`none:${r.group}`, `group ${r.group}: no write leader, and no healthy ACTIVE node to choose (${describeHealth(health)})`, "warn");
        return;
      }
      const reason = r.leader ? `the write leader ${r.leader} is no longer an ACTIVE data node of the group` : "the group had no write leader";
      await this.set(r, { leader: pick.name, readers: this.readers(healthy, pick), reason });
      this.d.log.info({ group: r.group, leader: pick.name }, `group ${r.group}: write leader ${pick.name} (${reason})`);
      return;
    }

    const lh = health.get(leader.name)!;
    if (!lh.healthy) {
      const downMs = now - lh.since!;
      if (!s.failoverEnabled) {
        this.say(`fo:${r.group}`, `group ${r.group}: write leader ${leader.name} is unhealthy (${lh.why}) but failover_enabled is off`, "warn");
        return;
      }
      if (downMs < (lh.slow ? SLOW_FAILOVER_FACTOR : 1) * s.failoverTimeoutMs) return;
      const pick = this.mostOf(healthy.filter((n) => n.name !== leader.name), leader);
      if (!pick) {
        this.say(`fo:${r.group}`, `group ${r.group}: write leader ${leader.name} is unhealthy (${lh.why}) and no other ACTIVE node is healthy (${describeHealth(health)})`, "warn");
        return;
      }
      const reason = `failover: ${leader.name} unhealthy for ${downMs} ms (${lh.why}); ${pick.name} holds the most of its changes`;
      await this.set(r, { leader: pick.name, readers: this.readers(healthy, pick), reason });
      this.d.log.warn({ group: r.group, from: leader.name, to: pick.name }, `group ${r.group}: ${reason}`);
      return;
    }

    // Read nodes change only after a node has been unhealthy for failover_timeout (or healthy again): a probe
    // that times out once on a loaded host must not cost a Raft write, nor move every read-only client.
    const steady = active.filter((n) => {
      const h = health.get(n.name)!;
      return h.healthy || now - h.since! < s.failoverTimeoutMs ? r.readers.includes(n.name) || h.healthy : false;
    });
    const readers = this.readers(steady, leader);
    if (!sameReaders(r.readers, readers, (name) => this.lagOf(name, leader))) await this.set(r, { readers, reason: r.reason });
  }

  /** Bytes a node lags behind the leader's WAL (its progress for the leader's origin). */
  private lagOf(name: string, leader: DataNode): bigint {
    const n = this.d.state.dataNodes().find((x) => x.name === name);
    const wal = this.probes.get(leader.name)?.last?.walLsn;
    if (!n || wal === undefined) return 0n;
    const p = this.progressOf(n, originName(leader.dbname, leader.group, leader.name));
    return p < 0n ? wal : wal > p ? wal - p : 0n;
  }

  private readers(healthy: DataNode[], leader: DataNode): string[] {
    return healthy
      .filter((n) => n.name !== leader.name)
      .map((n) => ({ n, lag: this.lagOf(n.name, leader) }))
      .sort((a, b) => (a.lag < b.lag ? -1 : a.lag > b.lag ? 1 : a.n.seqId - b.n.seqId))
      .map((x) => x.n.name);
  }

  /** The node among `from` holding the most progress of `old`'s origin (ties: first created); without `old`, the first created. */
  private mostOf(from: DataNode[], old: DataNode | undefined): DataNode | undefined {
    if (!from.length) return undefined;
    const sorted = [...from].sort((a, b) => a.seqId - b.seqId);
    if (!old) return sorted[0];
    const origin = originName(old.dbname, old.group, old.name);
    let best = sorted[0]!;
    for (const n of sorted) if (this.progressOf(n, origin) > this.progressOf(best, origin)) best = n;
    return best;
  }

  private async set(r: GroupRouting, c: Partial<Pick<GroupRouting, "leader" | "switchingTo" | "readers" | "reason">>): Promise<void> {
    await this.d.propose({
      op: "routing.set",
      group: r.group,
      epoch: r.epoch,
      leader: c.leader ?? r.leader,
      switchingTo: c.switchingTo ?? r.switchingTo,
      readers: c.readers ?? r.readers,
      reason: c.reason ?? r.reason,
      nowMs: this.now(),
    });
  }
}

/** The same readers, or an order that is still good enough (the first is not clearly behind the best). */
function sameReaders(have: string[], want: string[], lag: (name: string) => bigint): boolean {
  if (have.length !== want.length || [...have].sort().join("\0") !== [...want].sort().join("\0")) return false;
  if (!have.length) return true;
  return lag(have[0]!) - lag(want[0]!) <= READER_REORDER_BYTES;
}

function describeHealth(h: Map<string, NodeHealth>): string {
  return [...h].map(([name, x]) => `${name}: ${x.healthy ? "healthy" : x.why}`).join("; ");
}
