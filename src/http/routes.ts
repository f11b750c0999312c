// Health and routing endpoints in the style of Patroni, so HAProxy or a
// Kubernetes probe can route with no custom code:
//   /health   200 while the process is up
//   /ready    200 when this node is a member of a cluster with a known leader
//   /primary, /leader   200 only on the leader
//   /replica  200 only on a healthy non-leader (knows the leader, not far behind)
import { Role, type RaftStatus } from "../consensus/types.js";

export interface HealthView {
  status(): RaftStatus;
  /** Entries a replica may lag behind the commit index and still be "healthy". */
  maxReplicaLagEntries: number;
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
  switch (path) {
    case "/health":
      return { code: 200, body: { status: "up", ...summary(s) } };
    case "/ready": {
      const ready = member && s.leader !== 0;
      return { code: ready ? 200 : 503, body: { ready, member, ...summary(s) } };
    }
    case "/primary":
    case "/leader":
      return { code: isLeader ? 200 : 503, body: summary(s) };
    case "/replica": {
      const lag = s.commit - s.applied;
      const healthy = !isLeader && member && s.leader !== 0 && lag <= view.maxReplicaLagEntries;
      return { code: healthy ? 200 : 503, body: { ...summary(s), lag_entries: lag } };
    }
    default:
      return undefined;
  }
}
