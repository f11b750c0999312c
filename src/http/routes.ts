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
//   /primary  200 only on the write leader's node of its data group, while
//             its PostgreSQL answers (src/routing/); in a cluster whose node
//             is in no data group: on the Raft leader, as before groups
//   /leader   200 only on the Raft leader, whatever its PostgreSQL's state
//   /replica  200 only on a healthy ACTIVE data node that is not the write
//             leader (knows the Raft leader, not far behind, its PostgreSQL
//             answers); never on a node outside every group (parted, not
//             joined) once the cluster has a routed group; in a cluster with
//             no routed group: a healthy non-Raft-leader
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
  /** This node in its data group's routing (undefined: no data group routes anything and this node is in none). */
  routeRole?(): "write-leader" | "read-node" | "outside" | undefined;
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
    case "/primary": {
      const role = view.routeRole?.();
      const primary = role === undefined ? isLeader : role === "write-leader";
      return { code: primary && pgUp ? 200 : 503, body: { ...base, route_role: role ?? null } };
    }
    case "/leader":
      return { code: isLeader ? 200 : 503, body: base };
    case "/replica": {
      const lag = s.commit - s.applied;
      const role = view.routeRole?.();
      const replica = role === undefined ? !isLeader : role === "read-node";
      const healthy = replica && member && s.leader !== 0 && lag <= view.maxReplicaLagEntries && pgUp;
      return { code: healthy ? 200 : 503, body: { ...base, lag_entries: lag, route_role: role ?? null } };
    }
    default:
      return undefined;
  }
}
