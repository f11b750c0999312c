// Health and routing endpoints in the style of Patroni, so HAProxy or a
// Kubernetes probe can route with no custom code:
//   /health   200 while the sidecar process is up (its own liveness: an
//             orchestrator must not restart a healthy sidecar because its
//             database is down); the body says how the local PostgreSQL is
//   /live     200 while the sidecar process serves requests: the Kubernetes
//             liveness probe (nothing outside the process counts, so a pod is
//             never restarted for its database or its peers)
//   /ready    200 when this pod may take traffic: it is a member of a cluster
//             with a known leader, has applied what it knows committed (to
//             within maxReplicaLagEntries) and its PostgreSQL answers; the body's
//             `waiting_for` lists what is missing (the readiness probe)
//   /primary  200 only on the leader, while its PostgreSQL answers
//   /leader   200 only on the Raft leader, whatever its PostgreSQL's state
//   /replica  200 only on a healthy non-leader (knows the leader, not far
//             behind, its PostgreSQL answers)
// A sidecar without a local PostgreSQL (no --postgres-dsn) answers on Raft
// state alone.
import { Role, type RaftStatus } from "../consensus/types.js";
import { postgresJson, type PostgresHealth } from "../postgres/monitor.js";

export interface HealthView {
  status(): RaftStatus;
  /** Entries a replica may lag behind the commit index and still be "healthy". */
  maxReplicaLagEntries: number;
  /** The local PostgreSQL's last probe; absent when the sidecar has none. */
  postgres?(): PostgresHealth;
}

export interface RouteAnswer {
  code: number;
  body: Record<string, unknown>;
}

function summary(s: RaftStatus): Record<string, unknown> {
  return { node_id: s.id, role: s.role, term: s.term, leader_id: s.leader || null, commit_index: s.commit, applied_index: s.applied };
}

export function answerRoute(path: string, view: HealthView): RouteAnswer | undefined {
  const s = view.status();
  const member = s.conf.voters.includes(s.id) || s.conf.learners.includes(s.id);
  const isLeader = s.role === Role.Leader;
  const pg = view.postgres?.() ?? { state: "not_configured" };
  // Without a local PostgreSQL there is nothing to be down.
  const pgUp = pg.state === "up" || pg.state === "not_configured";
  const base = { ...summary(s), postgres: postgresJson(pg) };
  switch (path) {
    case "/health":
      return { code: 200, body: { status: "up", ...base } };
    case "/live":
      return { code: 200, body: { live: true, node_id: s.id } };
    case "/ready": {
      const lag = s.commit - s.applied;
      const waitingFor = [
        ...(member ? [] : ["membership"]),
        ...(s.leader !== 0 ? [] : ["a leader"]),
        ...(lag <= view.maxReplicaLagEntries ? [] : [`applying ${lag} entries`]),
        ...(pgUp ? [] : ["PostgreSQL"]),
      ];
      const ready = waitingFor.length === 0;
      return { code: ready ? 200 : 503, body: { ready, member, ...(ready ? {} : { waiting_for: waitingFor }), ...base } };
    }
    case "/primary":
      return { code: isLeader && pgUp ? 200 : 503, body: base };
    case "/leader":
      return { code: isLeader ? 200 : 503, body: base };
    case "/replica": {
      const lag = s.commit - s.applied;
      const healthy = !isLeader && member && s.leader !== 0 && lag <= view.maxReplicaLagEntries && pgUp;
      return { code: healthy ? 200 : 503, body: { ...base, lag_entries: lag } };
    }
    default:
      return undefined;
  }
}
