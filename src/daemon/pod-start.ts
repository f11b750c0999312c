// A founding pod (ordinal < --initial-replicas) with an empty data dir: found
// the cluster, or has it been founded already? The pods start together at
// install, so nobody answers then and the founders bootstrap. Later, an empty
// data dir means the pod's volume was replaced: ask the other founders first.
//   - no running cluster answers            → bootstrap (the first start)
//   - the cluster does not list this node   → join it (it was removed: it comes back as a new member)
//   - it lists this node, never heard from  → bootstrap (a late founder of the first start)
//   - it lists this node and holds entries this node stored (match index > 0)
//                                           → refuse: this node's log is lost, and a voter that forgot
//                                             what it acknowledged can break Raft's guarantees. The
//                                             operator removes it (pgraft remove-node), and the next
//                                             restart joins.
import type * as grpc from "@grpc/grpc-js";
import { formatHostPort, type HostPort } from "../config/address.js";
import type { SidecarConfig } from "../config/sidecar-config.js";
import * as pb from "../gen/pgraft/v1/client_pb.js";
import { createClient } from "../transport/grpc-service.js";

export type FounderStart = { action: "bootstrap"; why: string } | { action: "join"; through: HostPort[]; why: string };

/** How long each other founder is given to answer. */
const ASK_TIMEOUT_MS = 2_000;

export async function founderStart(cfg: SidecarConfig, creds: grpc.ChannelCredentials): Promise<FounderStart> {
  const pod = cfg.pod!;
  const others = [...pod.founders].filter(([id]) => id !== cfg.nodeId).map(([, a]) => a);
  const answers = await Promise.allSettled(
    others.map(async (a) => {
      const c = createClient(pb.Cluster, formatHostPort(a), creds);
      try {
        return await c.methods.members({ clusterId: cfg.clusterId, fromLeader: true }, { timeoutMs: ASK_TIMEOUT_MS });
      } finally {
        c.close();
      }
    }),
  );
  const running = answers.flatMap((r) => (r.status === "fulfilled" && r.value.members.some((m) => m.isLeader) ? [r.value] : []));
  if (running.length === 0) return { action: "bootstrap", why: "no running cluster answered" };
  const me = running.flatMap((r) => r.members).find((m) => m.id === cfg.nodeId);
  if (!me) return { action: "join", through: others, why: `the running cluster does not list node ${cfg.nodeId}` };
  if (me.matchIndex > 0n) {
    throw new Error(
      `pod ${pod.podName}: node ${cfg.nodeId} is a member of the running cluster and stored its log before (match index ${me.matchIndex}), ` +
        `but the data dir ${cfg.dataDir} is empty (a lost or replaced volume?): remove the node first ` +
        `(pgraft remove-node ${cfg.nodeId}, through any other member), then restart this pod: it joins as a new member`,
    );
  }
  return { action: "bootstrap", why: `the running cluster lists node ${cfg.nodeId} but never heard from it` };
}
