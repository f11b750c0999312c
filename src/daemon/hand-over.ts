// Whom a leader hands over to (graceful stop, TransferLeader without a target,
// removing itself): the voter with the most of the log among those that answer
// us — the most up-to-date voter may be down and would never take over.
import { RaftError } from "../consensus/errors.js";
import type { NodeId, RaftStatus } from "../consensus/types.js";

export function handOverTarget(st: RaftStatus, selfId: NodeId): NodeId {
  const others = st.conf.voters.filter((id) => id !== selfId);
  if (others.length === 0) throw new RaftError("INVALID_ARGUMENT", "there is no other voter to hand leadership to");
  const active = others.filter((id) => st.progress.get(id)?.recentActive);
  const match = (id: NodeId): number => st.progress.get(id)?.match ?? 0;
  return (active.length ? active : others).reduce((best, id) => (match(id) > match(best) ? id : best));
}
