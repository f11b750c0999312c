// The one metrics registry of the sidecar. Gauges that mirror Raft state are
// read at scrape time from a MetricsSource; event metrics (proposals, fsyncs,
// leader changes) are recorded by the daemon as they happen.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { DriverObserver } from "../consensus/driver.js";
import { MessageType, Role, type RaftStatus } from "../consensus/types.js";
import type { PostgresHealth } from "../postgres/monitor.js";

export interface TransportCounters {
  sent: Record<string, number>;
  received: Record<string, number>;
  dropped: Record<string, number>;
  refused: Record<string, number>;
}

export interface MetricsSource {
  status(): RaftStatus;
  storage(): { fsyncs: number; bytesWritten: number; segments: number };
  transport?(): TransportCounters;
  /** Milliseconds since each peer last answered the leader, when known. */
  lastContactMs?(): Map<number, number>;
  /** The local PostgreSQL's last probe; absent when the sidecar has none (its metrics are then not exported). */
  postgres?(): PostgresHealth;
}

/** The role label values of pgraft_raft_role, one series each (1 for the role held, 0 for the others). */
export const ROLE_LABELS: Readonly<Record<Role, string>> = { [Role.Follower]: "follower", [Role.PreCandidate]: "pre-candidate", [Role.Candidate]: "candidate", [Role.Leader]: "leader" };

/** What pgraft_node_info says about the node. */
export interface NodeInfo {
  nodeId: number;
  clusterId: string;
  version: string;
  nodeName?: string;
}

export class PgraftMetrics {
  readonly registry = new Registry();
  readonly proposals: Counter<"result">;
  readonly proposalSeconds: Histogram;
  readonly fsyncSeconds: Histogram;
  readonly leaderChanges: Counter;
  private readonly counterState = new Map<string, number>();

  constructor(
    private readonly source: MetricsSource,
    info?: NodeInfo,
  ) {
    const r = this.registry;
    // Standard names (process_*, nodejs_*) so stock dashboards and alerts work.
    collectDefaultMetrics({ register: r });
    const gauge = (name: string, help: string, read: (s: RaftStatus) => number): void => {
      new Gauge({ name, help, registers: [r], collect() { this.set(read(source.status())); } });
    };
    gauge("pgraft_raft_term", "Current Raft term", (s) => s.term);
    // The Prometheus way for a state: one series per role, 1 for the one held.
    new Gauge({
      name: "pgraft_raft_role",
      help: "This node's Raft role: 1 for the role it holds (label role: leader, follower, candidate, pre-candidate), 0 for the others",
      labelNames: ["role"],
      registers: [r],
      collect() {
        const role = source.status().role;
        for (const [k, label] of Object.entries(ROLE_LABELS) as [Role, string][]) this.set({ role: label }, k === role ? 1 : 0);
      },
    });
    if (info) {
      const labels = { node_id: String(info.nodeId), cluster_id: info.clusterId, version: info.version, node_name: info.nodeName ?? "" };
      new Gauge({
        name: "pgraft_node_info",
        help: "Always 1; the labels say which node this is: node_id, node_name, cluster_id and the sidecar's version",
        labelNames: Object.keys(labels),
        registers: [r],
        collect() {
          this.set(labels, 1);
        },
      });
    }
    gauge("pgraft_raft_is_leader", "1 on the leader, 0 elsewhere", (s) => (s.role === Role.Leader ? 1 : 0));
    gauge("pgraft_raft_leader_id", "Id of the leader this node knows (0: none)", (s) => s.leader);
    gauge("pgraft_raft_commit_index", "Highest log index known committed", (s) => s.commit);
    gauge("pgraft_raft_applied_index", "Highest log index applied to the state machine", (s) => s.applied);
    gauge("pgraft_raft_log_entries", "Entries held in the log since the last snapshot", (s) => s.lastIndex - s.firstIndex + 1);
    gauge("pgraft_raft_voters", "Voting members", (s) => s.conf.voters.length);
    gauge("pgraft_raft_learners", "Non-voting members", (s) => s.conf.learners.length);

    new Gauge({
      name: "pgraft_wal_bytes",
      help: "Bytes written to the write-ahead log",
      registers: [r],
      collect() {
        this.set(source.storage().bytesWritten);
      },
    });
    new Gauge({
      name: "pgraft_wal_segments",
      help: "WAL segment files on disk",
      registers: [r],
      collect() {
        this.set(source.storage().segments);
      },
    });
    const perPeer = (name: string, help: string, read: (s: RaftStatus) => Iterable<[number, number]>): void => {
      new Gauge({
        name,
        help,
        labelNames: ["peer"],
        registers: [r],
        collect() {
          this.reset();
          for (const [peer, v] of read(source.status())) this.set({ peer: String(peer) }, v);
        },
      });
    };
    const followers = (s: RaftStatus) => [...s.progress].filter(([id]) => id !== s.id);
    perPeer("pgraft_peer_match_index", "Leader's view of each peer's matched log index", (s) => followers(s).map(([id, p]) => [id, p.match]));
    perPeer("pgraft_peer_lag_entries", "Entries each peer is behind the leader's last index", (s) =>
      followers(s).map(([id, p]) => [id, Math.max(0, s.lastIndex - p.match)]),
    );
    perPeer("pgraft_peer_last_contact_seconds", "Seconds since each peer last answered the leader", () =>
      [...(source.lastContactMs?.() ?? new Map<number, number>())].map(([id, ms]) => [id, ms / 1000]),
    );

    // Monotonic numbers kept elsewhere become counters by adding the difference at scrape.
    const seen = this.counterState;
    const counterFrom = (name: string, help: string, labelNames: string[], read: () => Record<string, number>): void => {
      new Counter({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          for (const [label, v] of Object.entries(read())) {
            const key = `${name}|${label}`;
            const prev = seen.get(key) ?? 0;
            if (v > prev) {
              if (labelNames.length) this.inc({ [labelNames[0]!]: label }, v - prev);
              else this.inc(v - prev);
            }
            seen.set(key, Math.max(prev, v));
          }
        },
      });
    };
    counterFrom("pgraft_raft_elections_total", "Elections this node started (as a candidate; pre-vote rounds not counted)", [], () => ({ all: source.status().electionsStarted }));
    counterFrom("pgraft_raft_rejected_messages_total", "Raft messages dropped without effect, by reason", ["reason"], () => ({
      ...(source.status().rejected),
    }));
    counterFrom("pgraft_wal_fsyncs_total", "fsync calls made by the write-ahead log", [], () => ({ all: source.storage().fsyncs }));
    counterFrom("pgraft_messages_sent_total", "Raft messages sent, by type", ["type"], () => source.transport?.().sent ?? {});
    counterFrom("pgraft_messages_received_total", "Raft messages received, by type", ["type"], () => source.transport?.().received ?? {});
    counterFrom("pgraft_messages_dropped_total", "Raft messages dropped before sending (queue full, peer down, fault), by type", ["type"], () => source.transport?.().dropped ?? {});
    counterFrom("pgraft_transport_refused_total", "Peer connections or batches refused, by reason", ["reason"], () => source.transport?.().refused ?? {});

    const pg = source.postgres?.bind(source);
    if (pg) {
      new Gauge({
        name: "pgraft_postgres_up",
        help: "1 while this node's PostgreSQL answers the sidecar's probe (SELECT 1 every heartbeat), 0 while it does not or before the first probe",
        registers: [r],
        collect() {
          this.set(pg().state === "up" ? 1 : 0);
        },
      });
      new Gauge({
        name: "pgraft_postgres_probe_seconds",
        help: "How long the last probe of this node's PostgreSQL took (connect when needed + SELECT 1; a failed probe counts too)",
        registers: [r],
        collect() {
          const s = pg().probeSeconds;
          if (s !== undefined) this.set(s);
        },
      });
    }

    this.proposals = new Counter({
      name: "pgraft_proposals_total",
      help: "Proposals made on this node (commands and membership changes), by result: applied, or the error (not_leader, timeout, no_quorum, proposal_dropped, ...)",
      labelNames: ["result"],
      registers: [r],
    });
    this.proposalSeconds = new Histogram({
      name: "pgraft_proposal_duration_seconds",
      help: "Time from proposal to apply on this node, of the proposals applied",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.fsyncSeconds = new Histogram({
      name: "pgraft_wal_fsync_duration_seconds",
      help: "Duration of each WAL write + fsync",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [r],
    });
    this.leaderChanges = new Counter({ name: "pgraft_raft_leader_changes_total", help: "Times the known leader changed", registers: [r] });
  }

  /** The driver's events this registry records: fsyncs, leader changes, proposals. */
  readonly events: Required<Pick<DriverObserver, "onPersist" | "onLeaderChange" | "onProposal">> = {
    onPersist: (seconds) => this.fsyncSeconds.observe(seconds),
    onLeaderChange: () => this.leaderChanges.inc(),
    onProposal: (result, seconds) => this.recordProposal(result, seconds),
  };

  /** One proposal settled (the driver's onProposal): counted by result, timed when applied. */
  recordProposal(result: string, seconds: number): void {
    this.proposals.inc({ result });
    if (result === "applied") this.proposalSeconds.observe(seconds);
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Message type names as used in labels ("App", "Heartbeat", ...). */
export const messageTypeLabel = (t: MessageType): string => MessageType[t] ?? String(t);
