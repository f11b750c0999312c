// pgraft's own KV keys, under `pgraft.internal/`: the promotion intent of a
// joining learner (promote/<id>), a join request (join/<node>, see
// src/join/group-controller.ts), a part's records (part/<node>@<seq>/…, see
// src/part/part-keys.ts), a member's PostgreSQL address (postgres/<id>, see
// postgres-address.ts).
//
// Users may neither read nor write them through the KV API (gRPC, CLI, SQL):
// a call without the internal marker below is refused with PERMISSION_DENIED
// (SQLSTATE 42501, as PostgreSQL refuses writes to its system catalogs), and a
// listing leaves them out. pgraft's own components mark their calls; the mark
// survives a follower's forwarding to the leader. It is a guard against
// mistakes, not an authorization boundary: whoever holds the cluster's gRPC
// credentials can already remove members.
//
// Keys go stale when what they describe is gone: a removed Raft member, a
// dropped data node. The leader deletes them right after the removal or drop
// it carried out, and its control loop sweeps the rest (a leader that crashed
// in between, keys left by older versions) once they have been stale for a
// grace period that covers a join's put-then-add.
import * as grpc from "@grpc/grpc-js";
import type { DataNode } from "../cluster/node-groups.js";
import { statusError } from "../transport/grpc-service.js";

export const INTERNAL_PREFIX = "pgraft.internal/";
/** Metadata that marks a call as pgraft's own (its internal keys are allowed). */
export const INTERNAL_HEADER = "pgraft-internal";

export const autoPromoteKey = (id: number): string => `${INTERNAL_PREFIX}promote/${id}`;
const JOIN_PREFIX = `${INTERNAL_PREFIX}join/`;
export const POSTGRES_ADDRESS_PREFIX = `${INTERNAL_PREFIX}postgres/`;
const PART_PREFIX = `${INTERNAL_PREFIX}part/`;
/** Every key of a data node's join (mirrors JOIN_KEY in src/join/group-controller.ts). */
export const joinKeyOf = (name: string): string => `${JOIN_PREFIX}${name}`;
/** The prefix of every record of a node's part (mirrors src/part/part-keys.ts). */
export const partPrefixOf = (n: Pick<DataNode, "name" | "seqId">): string => `${PART_PREFIX}${n.name}@${n.seqId}/`;

export const isInternalKey = (key: string): boolean => key.startsWith(INTERNAL_PREFIX);

/** Call options that mark a call as pgraft's own. */
export function internalCall(): { metadata: grpc.Metadata } {
  const metadata = new grpc.Metadata();
  metadata.set(INTERNAL_HEADER, "1");
  return { metadata };
}

export const isInternalCall = (md: grpc.Metadata): boolean => md.get(INTERNAL_HEADER).length > 0;

/** The refusal of a user's call on an internal key (or a listing inside the namespace). */
export function reservedKeyError(what: string): grpc.ServerErrorResponse {
  return statusError(
    grpc.status.PERMISSION_DENIED,
    `${what} is reserved: keys under "${INTERNAL_PREFIX}" are pgraft's own bookkeeping (promotions, joins, parts) and cannot be read or written through the KV API; use another prefix`,
  );
}

/**
 * The internal keys among `keys` whose subject is gone: promote/<id> and
 * postgres/<id> of a non-member, join/<name> of a node that does not exist, part/<name>@<seq>/…
 * of a node that does not exist with that sequence number. Keys of any other
 * shape are left alone.
 */
export function staleInternalKeys(keys: readonly string[], members: ReadonlySet<number>, nodes: readonly Pick<DataNode, "name" | "seqId">[]): string[] {
  const names = new Set(nodes.map((n) => n.name));
  const partPrefixes = nodes.map(partPrefixOf);
  const out: string[] = [];
  for (const k of keys) {
    const memberKey = [`${INTERNAL_PREFIX}promote/`, POSTGRES_ADDRESS_PREFIX].find((p) => k.startsWith(p));
    if (memberKey) {
      const id = k.slice(memberKey.length);
      if (/^\d+$/.test(id) && !members.has(Number(id))) out.push(k);
    } else if (k.startsWith(JOIN_PREFIX)) {
      if (!names.has(k.slice(JOIN_PREFIX.length))) out.push(k);
    } else if (k.startsWith(PART_PREFIX)) {
      if (/@\d+\//.test(k) && !partPrefixes.some((p) => k.startsWith(p))) out.push(k);
    }
  }
  return out;
}

/**
 * The leader's sweep: a key is due for deletion once it has been stale in
 * every look for `graceMs` (so a join's promote key, put just before the
 * learner is added, is never swept in between). Forgets everything when this
 * node is not the leader.
 */
export class StaleKeySweeper {
  private readonly since = new Map<string, number>();

  constructor(private readonly graceMs: number) {}

  /** Keys stale for at least the grace period, as of `nowMs`. */
  due(stale: readonly string[], nowMs: number): string[] {
    const now = new Set(stale);
    for (const k of this.since.keys()) if (!now.has(k)) this.since.delete(k);
    const out: string[] = [];
    for (const k of stale) {
      const first = this.since.get(k) ?? nowMs;
      this.since.set(k, first);
      if (nowMs - first >= this.graceMs) out.push(k);
    }
    return out;
  }

  forget(): void {
    this.since.clear();
  }
}
