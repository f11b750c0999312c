// Every member's PostgreSQL, as pgraft_health_check shows it on any node. Each
// sidecar probes only its own PostgreSQL (src/postgres/monitor.ts) and reports
// it in its Status answer; the health check asks each member's sidecar for it
// directly (not through the leader), all at once, each call bounded. A member
// whose sidecar does not answer is "unknown", never ok. Why asked and not
// replicated: see docs/ARCHITECTURE.md ("Is each node's PostgreSQL alive?").
import type { MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import type { ClusterState } from "../cluster/state.js";
import * as pb from "../gen/pgraft/v1/client_pb.js";
import { NOT_CONFIGURED_TEXT, type PostgresHealth, type PostgresState } from "../postgres/monitor.js";
import { callErrorText } from "../transport/grpc-error-text.js";
import { createClient, type TypedClient } from "../transport/grpc-service.js";

/** How long the health check waits for another sidecar's Status. */
export const PEER_STATUS_TIMEOUT_MS = 2_000;

const TO_PB: Record<PostgresState, pb.PostgresState> = {
  up: pb.PostgresState.UP,
  down: pb.PostgresState.DOWN,
  unknown: pb.PostgresState.UNKNOWN,
  not_configured: pb.PostgresState.NOT_CONFIGURED,
};

export function postgresHealthMessage(h: PostgresHealth): MessageInitShape<typeof pb.PostgresHealthSchema> {
  return {
    state: TO_PB[h.state],
    sinceUnixMs: BigInt(h.sinceMs ?? 0),
    error: h.error ?? "",
    checkedUnixMs: BigInt(h.checkedMs ?? 0),
  };
}

/** The health a Status answer carries; undefined when the sidecar does not report it (an older version). */
export function postgresHealthFrom(m: pb.PostgresHealth | undefined): PostgresHealth | undefined {
  if (!m) return undefined;
  const state: PostgresState | undefined =
    m.state === pb.PostgresState.UP ? "up" : m.state === pb.PostgresState.DOWN ? "down" : m.state === pb.PostgresState.UNKNOWN ? "unknown" : m.state === pb.PostgresState.NOT_CONFIGURED ? "not_configured" : undefined;
  if (!state) return undefined;
  return {
    state,
    ...(m.sinceUnixMs > 0n ? { sinceMs: Number(m.sinceUnixMs) } : {}),
    ...(state === "down" ? { error: m.error } : {}),
    ...(m.checkedUnixMs > 0n ? { checkedMs: Number(m.checkedUnixMs) } : {}),
  };
}

/** One member's PostgreSQL: its sidecar's report, or why there is none. */
export interface MemberPostgres {
  id: number;
  health?: PostgresHealth;
  /** Set when `health` is missing: why its sidecar could not say. */
  unknown?: string;
}

export interface ClusterPostgresDeps {
  clusterId: string;
  selfId: number;
  state: ClusterState;
  /** This node's own (no call to itself). */
  local: () => PostgresHealth;
  credentials: grpc.ChannelCredentials;
  timeoutMs?: number;
}


export class ClusterPostgres {
  private readonly clients = new Map<string, TypedClient<(typeof pb.Cluster)["method"]>>();
  private closed = false;

  constructor(private readonly d: ClusterPostgresDeps) {}

  /** Every member of the catalog (voters and learners), in id order. */
  async members(): Promise<MemberPostgres[]> {
    const members = [...this.d.state.members()].sort((a, b) => a.id - b.id);
    return Promise.all(
      members.map(async (m): Promise<MemberPostgres> => {
        if (m.id === this.d.selfId) return { id: m.id, health: this.d.local() };
        if (!m.raftAddress) return { id: m.id, unknown: "its address is not known" };
        try {
          const r = await this.client(m.raftAddress).methods.status({ clusterId: this.d.clusterId }, { timeoutMs: this.d.timeoutMs ?? PEER_STATUS_TIMEOUT_MS });
          if (r.nodeId !== m.id) return { id: m.id, unknown: `node ${r.nodeId} answers at ${m.raftAddress}` };
          const health = postgresHealthFrom(r.postgres);
          return health ? { id: m.id, health } : { id: m.id, unknown: `its sidecar (pgraft ${r.version || "?"}) does not report it` };
        } catch (e) {
          const text = callErrorText(e, "its sidecar");
          return { id: m.id, unknown: text.startsWith("its sidecar") ? text : `its sidecar did not answer: ${text}` };
        }
      }),
    );
  }

  private client(address: string): TypedClient<(typeof pb.Cluster)["method"]> {
    if (this.closed) throw new Error("stopped");
    let c = this.clients.get(address);
    if (!c) {
      c = createClient(pb.Cluster, address, this.d.credentials);
      this.clients.set(address, c);
    }
    return c;
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/**
 * The health check's `postgres_nodes` row: critical when any member's
 * PostgreSQL is down, warning when any member's state is unknown (its sidecar
 * did not answer, or it has not probed yet), ok otherwise.
 */
export function postgresNodesCheck(members: MemberPostgres[]): { severity: "ok" | "warning" | "critical"; detail: string } {
  const down = members.filter((m) => m.health?.state === "down");
  const unknown = members.filter((m) => !m.health || m.health.state === "unknown");
  const up = members.filter((m) => m.health?.state === "up");
  const none = members.filter((m) => m.health?.state === "not_configured");
  const parts: string[] = [];
  for (const m of down) {
    const h = m.health!;
    parts.push(`PostgreSQL down on node ${m.id}${h.sinceMs ? ` since ${new Date(h.sinceMs).toISOString()}` : ""}: ${h.error || "no error reported"}`);
  }
  for (const m of unknown) parts.push(`PostgreSQL state unknown on node ${m.id}: ${m.unknown ?? "not probed yet"}`);
  if (up.length) parts.push(`up on node ${up.map((m) => m.id).join(", node ")}`);
  if (none.length) parts.push(`${NOT_CONFIGURED_TEXT} on node ${none.map((m) => m.id).join(", node ")}`);
  const severity = down.length ? "critical" : unknown.length ? "warning" : "ok";
  return { severity, detail: parts.join("; ") || "no members known" };
}
