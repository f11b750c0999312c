// One control loop per sidecar, in the manner of Patroni's ha.py: each cycle
// looks at the replicated state and this node's role, takes at most a few
// actions, and ends in a one-line decision. The line is logged at info when it
// changes (so operators can read the loop from the log) and at debug otherwise.
import type { LevelWithSilent, Logger } from "pino";
import type { SidecarConfig } from "../config/sidecar-config.js";
import type { RaftNode } from "../consensus/driver.js";
import { encodeCommand } from "../cluster/commands.js";
import { parseDurationMs } from "../cluster/config-registry.js";
import type { ClusterState } from "../cluster/state.js";
import { Role } from "../consensus/types.js";
import type { GrpcPeerTransport } from "../transport/peer-transport.js";
import { effectiveLogLevel } from "./logger.js";
import type { PostgresAddressPublisher } from "./postgres-address.js";
import { autoPromoteKey, INTERNAL_PREFIX, StaleKeySweeper, staleInternalKeys } from "./internal-keys.js";

export interface ControlLoopDeps {
  cfg: SidecarConfig;
  node: RaftNode;
  state: ClusterState;
  transport: GrpcPeerTransport;
  log: Logger;
  /** Sets the level of every logger of this sidecar (log_level / debug at run time). */
  setLogLevel?(level: LevelWithSilent): void;
  /** The level this sidecar logs at now. */
  currentLogLevel?(): LevelWithSilent;
  /** Records this node's PostgreSQL address in the store (a sidecar with --postgres-dsn). */
  postgresAddress?: PostgresAddressPublisher;
}

/** A learner this close to the leader's log is caught up enough to vote. */
const CAUGHT_UP_ENTRIES = 100;

export class ControlLoop {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private lastDecision = "";
  private timing: { heartbeatMs: number; electionMs: number };
  private logLevel: LevelWithSilent;
  /** Internal keys whose subject is gone, deleted once stale this long (twice a client request's bound, over a join's put-then-add). */
  private readonly sweeper: StaleKeySweeper;
  /** A write of this node's PostgreSQL address in flight (never awaited by a cycle: it may wait for a leader). */
  private publishing: Promise<void> | undefined;

  constructor(private readonly d: ControlLoopDeps) {
    this.timing = { heartbeatMs: d.cfg.heartbeatMs, electionMs: d.cfg.electionMs };
    this.logLevel = d.cfg.logLevel;
    this.sweeper = new StaleKeySweeper(2 * Math.max(5000, 5 * d.cfg.electionMs));
  }

  start(): void {
    const every = Math.max(100, Math.min(1000, 2 * this.d.cfg.heartbeatMs));
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = true;
      this.cycle()
        .then((decision) => this.report(decision))
        .catch((e: unknown) => this.d.log.warn(`control loop cycle failed: ${e instanceof Error ? e.message : String(e)}`))
        .finally(() => (this.running = false));
    }, every);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private report(decision: string): void {
    if (decision === this.lastDecision) this.d.log.debug(decision);
    else this.d.log.info(decision);
    this.lastDecision = decision;
  }

  /** One cycle; returns its decision line. */
  async cycle(): Promise<string> {
    const actions: string[] = [];
    this.syncPeers();
    const t = this.applyTiming();
    if (t) actions.push(t);
    actions.push(...this.applySettings());
    const st = this.d.node.status();
    this.publishPostgresAddress(st.leader !== 0);
    if (st.role !== Role.Leader) {
      this.sweeper.forget();
      const base = st.leader ? `no action: following leader ${st.leader} (term ${st.term})` : `no action: no leader known (term ${st.term}, ${st.role})`;
      return actions.length ? `${actions.join("; ")}; ${base}` : base;
    }
    const expired = this.d.state.expiredLeases(Date.now());
    if (expired.length) {
      await this.d.node.propose(encodeCommand({ op: "lease.expire", leaseIds: expired, nowMs: Date.now() }));
      actions.push(`expired leases ${expired.join(",")}`);
    }
    for (const id of st.conf.learners) {
      if (!this.d.state.kvGet(autoPromoteKey(id))) continue;
      const p = st.progress.get(id);
      // It must have acknowledged the log (replicate state), not merely be near a short one.
      if (!p || !p.recentActive || p.state !== "replicate" || p.match === 0 || st.lastIndex - p.match > CAUGHT_UP_ENTRIES) continue;
      await this.d.node.proposeConfChange({ type: "addVoter", nodeId: id });
      await this.d.node.propose(encodeCommand({ op: "kv.delete", key: autoPromoteKey(id) }));
      actions.push(`promoted learner ${id} to voter (caught up to ${p.match}/${st.lastIndex})`);
    }
    const swept = await this.sweepInternalKeys(new Set([...st.conf.voters, ...st.conf.learners]));
    if (swept.length) actions.push(`deleted stale internal keys ${swept.join(", ")}`);
    return actions.length ? actions.join("; ") : `no action: I am the leader (term ${st.term}, ${st.conf.voters.length} voters)`;
  }

  private publishPostgresAddress(hasLeader: boolean): void {
    const p = this.d.postgresAddress;
    if (!p || this.publishing) return;
    this.publishing = p
      .publish(this.d.state, hasLeader)
      .then((done) => {
        if (done) this.d.log.info(done);
      })
      .finally(() => (this.publishing = undefined));
  }

  /** Delete pgraft's own keys about removed members and dropped data nodes (see internal-keys.ts). */
  private async sweepInternalKeys(members: ReadonlySet<number>): Promise<string[]> {
    const keys = this.d.state.kvList(INTERNAL_PREFIX).kvs.map((kv) => kv.key);
    const due = this.sweeper.due(staleInternalKeys(keys, members, this.d.state.dataNodes()), Date.now());
    for (const key of due) await this.d.node.propose(encodeCommand({ op: "kv.delete", key }));
    return due;
  }

  /** The transport dials every member at the address the catalog has for it. */
  private syncPeers(): void {
    const want = new Map<number, string>();
    for (const m of this.d.state.members()) if (m.id !== this.d.cfg.nodeId && m.raftAddress) want.set(m.id, m.raftAddress);
    const have = this.d.transport.peers();
    for (const [id, addr] of want) if (have.get(id) !== addr) this.d.transport.setPeer(id, addr);
    // Keep dialling the founders until the catalog knows them (a joiner's first moments).
    if (want.size === 0) return;
    for (const id of have.keys()) if (!want.has(id)) this.d.transport.removePeer(id);
  }

  /** snapshot_interval, log_level and debug as the replicated settings say (every node, within a cycle). */
  applySettings(): string[] {
    const done: string[] = [];
    const every = this.d.state.settings().snapshotInterval;
    if (every !== this.d.node.snapshotEvery) {
      this.d.node.setSnapshotEntries(every);
      done.push(`applied snapshot_interval: a snapshot every ${every} entries`);
    }
    const level = effectiveLogLevel(this.d.state, this.d.cfg.logLevel);
    // Against the level in force, not the last one this loop set: pgraft_set_debug on this node sets the
    // level directly, and a debug switched on and off again between two cycles must not leave it at debug.
    const current = this.d.currentLogLevel?.() ?? this.logLevel;
    if (level !== current && this.d.setLogLevel) {
      this.d.setLogLevel(level);
      this.logLevel = level;
      done.push(`applied log level ${level}`);
    }
    return done;
  }

  /** Runtime heartbeat_interval / election_timeout, once set through Raft, win over the flags. */
  private applyTiming(): string | undefined {
    const { heartbeatMs, electionMs } = effectiveTiming(this.d.state, this.d.cfg);
    if (heartbeatMs === this.timing.heartbeatMs && electionMs === this.timing.electionMs) return undefined;
    // One setting overridden and the other from this node's flags may not fit together:
    // keep the timing in force (and the rest of the cycle running) rather than fail every cycle.
    if (electionMs < 2 * heartbeatMs) {
      return `not applying timing: election timeout ${electionMs}ms is under twice the heartbeat ${heartbeatMs}ms; keeping heartbeat ${this.timing.heartbeatMs}ms, election timeout ${this.timing.electionMs}ms`;
    }
    this.d.node.setTiming(heartbeatMs, electionMs);
    this.timing = { heartbeatMs, electionMs };
    return `applied timing: heartbeat ${heartbeatMs}ms, election timeout ${electionMs}ms`;
  }
}

/**
 * The heartbeat and election timeout a node runs with: a runtime override
 * (set through Raft) wins over the node's own flags. `change` previews a
 * ConfigSet of one of the two (its value already normalized).
 */
export function effectiveTiming(
  state: ClusterState,
  flags: { heartbeatMs: number; electionMs: number },
  change?: { name: string; value: string },
): { heartbeatMs: number; electionMs: number } {
  const rows = state.config();
  const s = state.settings();
  let heartbeatMs = rows.find((r) => r.name === "heartbeat_interval")?.overridden ? s.heartbeatIntervalMs : flags.heartbeatMs;
  let electionMs = rows.find((r) => r.name === "election_timeout")?.overridden ? s.electionTimeoutMs : flags.electionMs;
  const v = change ? parseDurationMs(change.value) : undefined;
  if (change?.name === "heartbeat_interval" && v !== undefined) heartbeatMs = v;
  if (change?.name === "election_timeout" && v !== undefined) electionMs = v;
  return { heartbeatMs, electionMs };
}
