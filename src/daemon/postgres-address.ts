// Each node's PostgreSQL address, for pgraft_get_nodes on any node. A sidecar
// knows only its own (--postgres-advertise, or the host and port of
// --postgres-dsn); it records it in the replicated KV store under one of
// pgraft's internal keys, so every node can show every member's address — a
// member that is down included — without asking it. The key is rewritten only
// when the address differs from what the store holds, and deleted by the
// leader's sweep once the member is gone (internal-keys.ts).
import { POSTGRES_ADDRESS_PREFIX } from "./internal-keys.js";
import type { ClusterState } from "../cluster/state.js";

export const postgresAddressKey = (id: number): string => `${POSTGRES_ADDRESS_PREFIX}${id}`;

/** The PostgreSQL address recorded for member `id` (undefined when it never recorded one). */
export function recordedPostgresAddress(state: ClusterState, id: number): string | undefined {
  const kv = state.kvGet(postgresAddressKey(id));
  if (!kv) return undefined;
  try {
    const v: unknown = JSON.parse(kv.value);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** How long to wait before trying again after a failed write (no leader, a timeout). */
const RETRY_MS = 5_000;

/** Records this node's PostgreSQL address when the store lacks it or holds another. */
export class PostgresAddressPublisher {
  private failedAt = -Infinity;

  constructor(
    private readonly selfId: number,
    private readonly address: string,
    private readonly put: (key: string, value: string) => Promise<void>,
  ) {}

  /** One look; returns what it did, or undefined when nothing was due. */
  async publish(state: ClusterState, hasLeader: boolean, nowMs: number = Date.now()): Promise<string | undefined> {
    if (!hasLeader || recordedPostgresAddress(state, this.selfId) === this.address) return undefined;
    if (nowMs - this.failedAt < RETRY_MS) return undefined;
    try {
      await this.put(postgresAddressKey(this.selfId), JSON.stringify(this.address));
      return `recorded this node's PostgreSQL address ${this.address}`;
    } catch (e) {
      this.failedAt = nowMs;
      return `could not record this node's PostgreSQL address ${this.address} (will retry): ${e instanceof Error ? e.message : String(e)}`;
    }
  }
}
