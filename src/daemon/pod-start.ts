// A founding pod (ordinal < --initial-replicas) with an empty data dir: found
// the cluster, or has it been founded already? The pods start together at
// install, so nobody answers then and the founders bootstrap. Later, an empty
// data dir means the pod's volume was replaced: ask the other founders first.
//   - no running cluster answers            → bootstrap (the first start)
//   - the cluster does not list this node   → join it (it was removed: it comes back as a new member)
//   - it lists this node, which never ran   → bootstrap (a late founder of the first start)
//   - it lists this node, which ran before (the leader's match index for it > 0, or its PostgreSQL
//     address recorded in the catalog: that survives leader changes)
//                                           → refuse: this node's log is lost, and a voter that forgot
//                                             what it acknowledged can break Raft's guarantees. The
//                                             operator removes it (pgraft remove-node), and the next
//                                             restart joins.
import type * as grpc from "@grpc/grpc-js";
import { status as Status } from "@grpc/grpc-js";
import { formatHostPort, type HostPort } from "../config/address.js";
import type { SidecarConfig } from "../config/sidecar-config.js";
import * as pb from "../gen/pgraft/v1/client_pb.js";
import { createClient, isServiceError } from "../transport/grpc-service.js";
import { internalCall, POSTGRES_ADDRESS_PREFIX } from "./internal-keys.js";

export type FounderStart = { action: "bootstrap"; why: string } | { action: "join"; through: HostPort[]; why: string };

/** How long each other founder is given to answer, and how many rounds while one is slow to. */
const ASK_TIMEOUT_MS = 3_000;
const ROUNDS = 3;

interface Answer {
  members: pb.Member[];
  /** This node's PostgreSQL address as the catalog recorded it: it ran before. */
  recorded: boolean;
}

export async function founderStart(cfg: SidecarConfig, creds: grpc.ChannelCredentials): Promise<FounderStart> {
  const pod = cfg.pod!;
  const others = [...pod.founders].filter(([id]) => id !== cfg.nodeId).map(([, a]) => a);
  let running: Answer[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    let slow = false;
    const answers = await Promise.allSettled(
      others.map(async (a): Promise<Answer> => {
        const c = createClient(pb.Cluster, formatHostPort(a), creds);
        try {
          const r = await c.methods.members({ clusterId: cfg.clusterId, fromLeader: true }, { timeoutMs: ASK_TIMEOUT_MS });
          const kv = await c.methods.kvGet({ clusterId: cfg.clusterId, key: `${POSTGRES_ADDRESS_PREFIX}${cfg.nodeId}` }, { timeoutMs: ASK_TIMEOUT_MS, ...internalCall() });
          return { members: r.members, recorded: kv.kv !== undefined };
        } catch (e) {
          if (isServiceError(e) && e.code === Status.DEADLINE_EXCEEDED) slow = true;
          throw e;
        } finally {
          c.close();
        }
      }),
    );
    running = answers.flatMap((r) => (r.status === "fulfilled" && r.value.members.some((m) => m.isLeader) ? [r.value] : []));
    if (running.length > 0 || !slow) break;
  }
  if (running.length === 0) return { action: "bootstrap", why: "no running cluster answered" };
  const me = running.flatMap((r) => r.members).find((m) => m.id === cfg.nodeId);
  if (!me) return { action: "join", through: others, why: `the running cluster does not list node ${cfg.nodeId}` };
  const ranBefore = me.matchIndex > 0n || running.some((r) => r.recorded);
  if (ranBefore) {
    throw new Error(
      `pod ${pod.podName}: node ${cfg.nodeId} is a member of the running cluster and ran before (${me.matchIndex > 0n ? `match index ${me.matchIndex}` : "its PostgreSQL address is recorded"}), ` +
        `but the data dir ${cfg.dataDir} is empty (a lost or replaced volume?): remove the node first ` +
        `(pgraft remove-node ${cfg.nodeId}, through any other member), then restart this pod: it joins as a new member`,
    );
  }
  return { action: "bootstrap", why: `the running cluster lists node ${cfg.nodeId} but it never ran` };
}
