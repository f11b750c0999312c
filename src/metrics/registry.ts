// The one metrics registry of the sidecar. Gauges that mirror Raft state are
// read at scrape time from a MetricsSource; event metrics (proposals, fsyncs,
// leader changes) are recorded by the daemon as they happen.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
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

const ROLE_VALUE: Record<Role, number> = { [Role.Follower]: 0, [Role.PreCandidate]: 1, [Role.Candidate]: 2, [Role.Leader]: 3 };

export class PgraftMetrics {
  readonly registry = new Registry();
  readonly proposals: Counter<"result">;
  readonly proposalSeconds: Histogram;
  readonly fsyncSeconds: Histogram;
  readonly leaderChanges: Counter;
  private readonly counterState = new Map<string, number>();

  constructor(private readonly source: MetricsSource) {
    const r = this.registry;
    // Standard names (process_*, nodejs_*) so stock dashboards and alerts work.
    collectDefaultMetrics({ register: r });
    const gauge = (name: string, help: string, read: (s: RaftStatus) => number): void => {
      new Gauge({ name, help, registers: [r], collect() { this.set(read(source.status())); } });
    };
    gauge("pgraft_raft_term", "Current Raft term", (s) => s.term);
    gauge("pgraft_raft_role", "Role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader", (s) => ROLE_VALUE[s.role]);
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

    this.proposals = new Counter({ name: "pgraft_proposals_total", help: "Proposals by outcome", labelNames: ["result"], registers: [r] });
    this.proposalSeconds = new Histogram({
      name: "pgraft_proposal_duration_seconds",
      help: "Time from proposal to apply on this node",
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

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Message type names as used in labels ("App", "Heartbeat", ...). */
export const messageTypeLabel = (t: MessageType): string => MessageType[t] ?? String(t);
