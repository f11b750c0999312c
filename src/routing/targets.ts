// Where this sidecar's proxies send clients, read from the replicated routing
// (so every sidecar sends them to the same node): the read-write port to the
// group's write leader, the read-only port to its first read node (least lag)
// or, with none, to the write leader. During a switchover the read-write port
// has no target: new clients wait for the new leader (proxy.ts).
//
// The group: the one this sidecar's own data node belongs to; a sidecar with
// no data node of its own (a witness host, a sidecar beside a database not in
// any group) routes for the only group that has a write leader, if there is
// exactly one.
import { parseHostPort } from "../config/address.js";
import type { DataNode } from "../cluster/node-groups.js";
import type { GroupRouting } from "../cluster/routing.js";
import type { ClusterState } from "../cluster/state.js";
import { recordedPostgresAddress } from "../daemon/postgres-address.js";
import { dsnAddress } from "../postgres/dsn.js";
import type { ProxyTarget } from "./proxy.js";

/** The routing this sidecar follows (undefined: no group to route for). */
export function routingFor(state: ClusterState, selfId: number): GroupRouting | undefined {
  const mine = state.dataNodes().find((n) => n.raftMemberId === selfId && n.group !== "" && n.state !== "PARTED");
  if (mine) return state.routing(mine.group);
  const led = state.routings().filter((r) => r.leader !== "");
  return led.length === 1 ? led[0] : undefined;
}

/** A data node's PostgreSQL as clients reach it: its sidecar's recorded address, else its interface DSN's host and port. */
export function nodeAddress(state: ClusterState, n: DataNode): ProxyTarget | undefined {
  const raw = (n.raftMemberId ? recordedPostgresAddress(state, n.raftMemberId) : undefined) ?? safeDsnAddress(n.dsn);
  if (!raw) return undefined;
  const hp = parseHostPort(raw);
  if (typeof hp === "string") return undefined;
  return { host: hp.host.replace(/^\[|\]$/g, ""), port: hp.port, nodeId: n.nodeId, name: n.name };
}

function safeDsnAddress(dsn: string): string | undefined {
  try {
    return dsnAddress(dsn);
  } catch {
    return undefined;
  }
}

function byName(state: ClusterState, name: string): DataNode | undefined {
  return name ? state.dataNodes().find((n) => n.name === name) : undefined;
}

export function writeTarget(state: ClusterState, selfId: number): ProxyTarget | undefined {
  const r = routingFor(state, selfId);
  if (!r || r.switchingTo) return undefined;
  const n = byName(state, r.leader);
  return n ? nodeAddress(state, n) : undefined;
}

export function readTarget(state: ClusterState, selfId: number): ProxyTarget | undefined {
  const r = routingFor(state, selfId);
  if (!r) return undefined;
  for (const name of r.readers) {
    const n = byName(state, name);
    const t = n ? nodeAddress(state, n) : undefined;
    if (t) return t;
  }
  const leader = byName(state, r.leader);
  return leader ? nodeAddress(state, leader) : undefined;
}

/** Whether this sidecar's own data node is its group's write leader (undefined: it has no data node in a group). */
export function isWriteLeader(state: ClusterState, selfId: number): boolean | undefined {
  const mine = state.dataNodes().find((n) => n.raftMemberId === selfId && n.group !== "" && n.state !== "PARTED");
  if (!mine) return undefined;
  const r = state.routing(mine.group);
  return r.leader === mine.name && r.switchingTo === "";
}

/** What this node is for HTTP routing: its group's write leader, a read node, or outside every group (in a cluster that has groups). */
export type RouteRole = "write-leader" | "read-node" | "outside";

/** This node's role (undefined: the cluster has no data group with a write leader and this node is in none: Raft's meaning applies). */
export function routeRole(state: ClusterState, selfId: number): RouteRole | undefined {
  const mine = state.dataNodes().find((n) => n.raftMemberId === selfId && n.group !== "" && n.state !== "PARTED");
  if (!mine) return state.routings().some((r) => r.leader !== "") ? "outside" : undefined;
  const r = state.routing(mine.group);
  if (r.leader === mine.name && r.switchingTo === "") return "write-leader";
  return mine.kind === "data" && mine.state === "ACTIVE" ? "read-node" : "outside";
}
