// The replicated routing of each data group (PGD 5's write leader, on stock
// PostgreSQL): which ACTIVE data node takes the group's writes, which nodes
// serve reads, a switchover in flight, and the group's commit scope.
//
// Every change is a Raft command (routing.set / routing.scope), so every
// sidecar's proxy routes to the same node. routing.set is a compare-and-set on
// the group's epoch: a decision taken on a view that has since changed (two
// controllers at once, a switchover racing a failover) fails instead of
// overwriting the newer one. Deciding who leads is src/routing/'s job; here
// only the rules every node checks the same way on apply.
import { ClusterError } from "./errors.js";
import type { DataNode, NodeGroupCatalog } from "./node-groups.js";

export const COMMIT_SCOPES = ["local", "majority"] as const;
export type CommitScope = (typeof COMMIT_SCOPES)[number];

/** How a switchover moves the write leader (src/routing/switchover.ts): strict waits until the target has every write, fast does not. */
export const TRANSFER_METHODS = ["strict", "fast"] as const;
export type TransferMethod = (typeof TRANSFER_METHODS)[number];

/** Longest reason text kept with a routing change. */
export const MAX_REASON_BYTES = 500;

export interface GroupRouting {
  group: string;
  /** The write leader's node name ("" = none). */
  leader: string;
  /** The write leader before this one ("" = none). */
  previous: string;
  /** Bumped by every routing.set: the compare-and-set token. */
  epoch: number;
  /** A switchover to this node is in progress: proxies hold new connections ("" = none). */
  switchingTo: string;
  /** Healthy nodes other than the leader, least lag first (the read-only proxy's choice). */
  readers: string[];
  /** Why the leader last changed, in words. */
  reason: string;
  /** The leader's clock when the write leader last changed (ms since the epoch; 0 = never). */
  changedAtMs: number;
  /** How many times the write leader changed (a first choice, failovers, switchovers). */
  leaderChanges: number;
  commitScope: CommitScope;
}

const empty = (group: string): GroupRouting => ({ group, leader: "", previous: "", epoch: 0, switchingTo: "", readers: [], reason: "", changedAtMs: 0, leaderChanges: 0, commitScope: "local" });

/** A node that may lead or serve the group: an ACTIVE data node in it. */
export function routable(n: DataNode | undefined, group: string): n is DataNode {
  return n !== undefined && n.group === group && n.kind === "data" && n.state === "ACTIVE";
}

export class RoutingCatalog {
  private readonly groups = new Map<string, GroupRouting>();

  get(group: string): GroupRouting {
    const r = this.groups.get(group);
    return r ? { ...r, readers: [...r.readers] } : empty(group);
  }

  all(): GroupRouting[] {
    return [...this.groups.keys()].sort().map((g) => this.get(g));
  }

  set(
    c: { group: string; epoch: number; leader: string; switchingTo: string; readers: string[]; reason: string; nowMs: number },
    pgd: NodeGroupCatalog,
  ): GroupRouting {
    if (!pgd.group(c.group)) throw new ClusterError("NOT_FOUND", `node group ${JSON.stringify(c.group)} does not exist`);
    const cur = this.get(c.group);
    if (c.epoch !== cur.epoch) {
      throw new ClusterError("CAS_FAILED", `the routing of group ${JSON.stringify(c.group)} changed meanwhile (epoch ${cur.epoch}, this change was decided at ${c.epoch}); decide again`);
    }
    const check = (what: string, name: string): void => {
      if (name !== "" && !routable(pgd.node(name), c.group)) {
        const n = pgd.node(name);
        const why = !n ? "does not exist" : n.group !== c.group ? `is not in group ${JSON.stringify(c.group)}` : n.kind !== "data" ? `is a ${n.kind} node` : `is ${n.state}, not ACTIVE`;
        throw new ClusterError(n ? "INVALID" : "NOT_FOUND", `${what} ${JSON.stringify(name)} ${why}`);
      }
    };
    check("write leader", c.leader);
    check("switchover target", c.switchingTo);
    if (c.switchingTo !== "" && c.switchingTo === c.leader) throw new ClusterError("INVALID", `node ${JSON.stringify(c.leader)} is already the write leader`);
    for (const r of c.readers) check("read node", r);
    if (new TextEncoder().encode(c.reason).byteLength > MAX_REASON_BYTES) throw new ClusterError("TOO_LARGE", `routing reason is longer than ${MAX_REASON_BYTES} bytes`);
    const next: GroupRouting = {
      ...cur,
      epoch: cur.epoch + 1,
      leader: c.leader,
      switchingTo: c.switchingTo,
      readers: c.readers.filter((r) => r !== c.leader),
    };
    if (c.leader !== cur.leader) {
      next.previous = cur.leader;
      next.reason = c.reason;
      next.changedAtMs = c.nowMs;
      if (c.leader !== "") next.leaderChanges = cur.leaderChanges + 1;
    }
    this.groups.set(c.group, next);
    return this.get(c.group);
  }

  setScope(c: { group: string; scope: string }, pgd: NodeGroupCatalog): GroupRouting {
    if (!pgd.group(c.group)) throw new ClusterError("NOT_FOUND", `node group ${JSON.stringify(c.group)} does not exist`);
    if (!(COMMIT_SCOPES as readonly string[]).includes(c.scope)) {
      throw new ClusterError("INVALID_VALUE", `commit scope ${JSON.stringify(c.scope)} does not exist (known: ${COMMIT_SCOPES.join(", ")})`);
    }
    const cur = this.get(c.group);
    this.groups.set(c.group, { ...cur, commitScope: c.scope as CommitScope });
    return this.get(c.group);
  }

  /** The group is gone: so is its routing. */
  drop(group: string): void {
    this.groups.delete(group);
  }

  dump(): GroupRouting[] {
    return this.all();
  }

  /** Undefined = a snapshot from before routing existed. Throws CORRUPT_SNAPSHOT for anything malformed. */
  static load(v: unknown): RoutingCatalog {
    const c = new RoutingCatalog();
    if (v === undefined) return c;
    const bad = (why: string): ClusterError => new ClusterError("CORRUPT_SNAPSHOT", `snapshot: routing: ${why}`);
    if (!Array.isArray(v)) throw bad("not an array");
    for (const raw of v as unknown[]) {
      const r = { ...(raw as GroupRouting) };
      // Snapshots from before the count: none counted.
      if ((r as { leaderChanges?: number }).leaderChanges === undefined) r.leaderChanges = 0;
      const ok =
        typeof r?.group === "string" &&
        typeof r.leader === "string" &&
        typeof r.previous === "string" &&
        Number.isSafeInteger(r.epoch) &&
        typeof r.switchingTo === "string" &&
        Array.isArray(r.readers) &&
        r.readers.every((x) => typeof x === "string") &&
        typeof r.reason === "string" &&
        Number.isSafeInteger(r.changedAtMs) &&
        Number.isSafeInteger(r.leaderChanges) &&
        (COMMIT_SCOPES as readonly string[]).includes(r.commitScope);
      if (!ok) throw bad("malformed group routing");
      if (c.groups.has(r.group)) throw bad(`duplicate group ${r.group}`);
      c.groups.set(r.group, { ...r, readers: [...r.readers] });
    }
    return c;
  }
}
