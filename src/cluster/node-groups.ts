// The replicated catalog of data nodes and node groups (seed 004): which
// PostgreSQL databases belong to which group, how other nodes reach them, and
// where each one is in its join or part. Every change is a Raft command, so a
// new leader sees exactly how far a join or part got and can continue it.
//
// Pure and deterministic like the rest of the state machine: ids are derived
// from names (FNV-1a), sequence numbers from a counter in the state.
import { ClusterError } from "./errors.js";

/** A node's place in its life cycle (the seed's join and part states). */
export const PEER_STATES = [
  "CREATED",
  "JOIN_START",
  "JOINING",
  "CATCHUP",
  "PROMOTE",
  "PROMOTING",
  "ACTIVE",
  "PART_START",
  "PARTING",
  "PART_CATCHUP",
  "PARTED",
] as const;
export type PeerState = (typeof PEER_STATES)[number];

export const NODE_KINDS = ["data", "witness", "standby", "subscriber-only"] as const;
export type NodeKind = (typeof NODE_KINDS)[number];

/** Allowed moves. A join that fails before PROMOTE may start over (back to CREATED). */
const NEXT: Readonly<Record<PeerState, readonly PeerState[]>> = {
  CREATED: ["JOIN_START", "ACTIVE"],
  JOIN_START: ["JOINING", "CREATED", "PART_START"],
  JOINING: ["CATCHUP", "CREATED", "PART_START"],
  CATCHUP: ["PROMOTE", "CREATED", "PART_START"],
  PROMOTE: ["PROMOTING", "PART_START"],
  PROMOTING: ["ACTIVE", "PART_START"],
  ACTIVE: ["PART_START"],
  PART_START: ["PARTING"],
  PARTING: ["PART_CATCHUP"],
  PART_CATCHUP: ["PARTED"],
  PARTED: [],
};

/** Longest node or group name (PostgreSQL identifiers are at most 63 bytes). */
export const MAX_NAME_BYTES = 63;
/** Longest interface DSN kept in the catalog. */
export const MAX_DSN_BYTES = 4096;

/**
 * Interface DSNs are replicated to every node (Raft WAL, snapshots): one with
 * a password is refused before it is proposed (by create_node and
 * alter_node_interface, and by the leader for any client), with this message
 * and hint. (Not on apply: a log written before the check must replay as it did.)
 */
export const INTERFACE_DSN_PASSWORD = "interface DSN must not contain a password: it would be stored in the replicated catalog in plaintext";
export const INTERFACE_DSN_PASSWORD_HINT =
  "put the password in a password file that every sidecar can read instead: passfile=/path/to/pgpass in the DSN, or PGPASSFILE, or ~/.pgpass of the user each sidecar runs as " +
  "(lines host:port:dbname:user:password, mode 0600); psql and pg_dump read the same file";

export interface DataNode {
  name: string;
  /** Stable 32-bit id derived from the name. */
  nodeId: number;
  /** Order of creation in this cluster, from 1. */
  seqId: number;
  kind: NodeKind;
  /** How the other nodes connect to this one (key=value or URI). */
  dsn: string;
  dbname: string;
  /** Empty until the node creates or joins a group. */
  group: string;
  state: PeerState;
  /** Where the node is headed (ACTIVE while joining, PARTED while parting). */
  targetState: PeerState;
  /** The Raft member of the sidecar beside this database (0 = unknown). */
  raftMemberId: number;
}

export interface NodeGroup {
  name: string;
  groupId: number;
  /** Empty for a top-level group. */
  parent: string;
  /** e.g. "global", "data", "subscriber-only"; empty when unspecified. */
  type: string;
}

/** FNV-1a over UTF-8, never 0 (0 means "none" in the views). */
export function nameId(kind: "node" | "group", name: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(`${kind}:${name}`)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h === 0 ? 1 : h;
}

const utf8Bytes = (s: string): number => new TextEncoder().encode(s).byteLength;

function checkName(what: string, name: string): void {
  if (name === "") throw new ClusterError("INVALID", `${what} name must not be empty`);
  if (utf8Bytes(name) > MAX_NAME_BYTES) throw new ClusterError("INVALID", `${what} name ${JSON.stringify(name.slice(0, 20))}… is longer than ${MAX_NAME_BYTES} bytes`);
  if ([...name].some((ch) => ch.charCodeAt(0) < 0x20)) throw new ClusterError("INVALID", `${what} name must not contain control characters`);
}

function checkDsn(dsn: string): void {
  if (dsn.trim() === "") throw new ClusterError("INVALID", "interface DSN must not be empty");
  if (utf8Bytes(dsn) > MAX_DSN_BYTES) throw new ClusterError("INVALID", `interface DSN is longer than ${MAX_DSN_BYTES} bytes`);
}

export class NodeGroupCatalog {
  private readonly nodes = new Map<string, DataNode>();
  private readonly groups = new Map<string, NodeGroup>();
  private nextSeq = 1;

  node(name: string): DataNode | undefined {
    const n = this.nodes.get(name);
    return n ? { ...n } : undefined;
  }

  group(name: string): NodeGroup | undefined {
    const g = this.groups.get(name);
    return g ? { ...g } : undefined;
  }

  /** Every node, by sequence number. */
  allNodes(): DataNode[] {
    return [...this.nodes.values()].sort((a, b) => a.seqId - b.seqId).map((n) => ({ ...n }));
  }

  allGroups(): NodeGroup[] {
    return [...this.groups.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((g) => ({ ...g }));
  }

  private must(name: string): DataNode {
    const n = this.nodes.get(name);
    if (!n) throw new ClusterError("NOT_FOUND", `node ${JSON.stringify(name)} does not exist`);
    return n;
  }

  createNode(c: { name: string; dsn: string; kind: string; dbname: string; raftMemberId: number }): DataNode {
    checkName("node", c.name);
    checkDsn(c.dsn);
    if (!(NODE_KINDS as readonly string[]).includes(c.kind)) throw new ClusterError("INVALID", `node kind ${JSON.stringify(c.kind)} is not one of ${NODE_KINDS.join(", ")}`);
    if (c.dbname === "") throw new ClusterError("INVALID", "node database name must not be empty");
    if (this.nodes.has(c.name)) throw new ClusterError("ALREADY_EXISTS", `node ${JSON.stringify(c.name)} already exists`);
    const nodeId = nameId("node", c.name);
    const clash = [...this.nodes.values()].find((n) => n.nodeId === nodeId);
    if (clash) throw new ClusterError("ALREADY_EXISTS", `node ${JSON.stringify(c.name)} would get the id of node ${JSON.stringify(clash.name)}; choose another name`);
    const n: DataNode = {
      name: c.name,
      nodeId,
      seqId: this.nextSeq++,
      kind: c.kind as NodeKind,
      dsn: c.dsn,
      dbname: c.dbname,
      group: "",
      state: "CREATED",
      targetState: "CREATED",
      raftMemberId: c.raftMemberId,
    };
    this.nodes.set(n.name, n);
    return { ...n };
  }

  createGroup(c: { name: string; parent: string; type: string; creator: string }): NodeGroup {
    checkName("node group", c.name);
    if (this.groups.has(c.name)) throw new ClusterError("ALREADY_EXISTS", `node group ${JSON.stringify(c.name)} already exists`);
    if (c.parent && !this.groups.has(c.parent)) throw new ClusterError("NOT_FOUND", `parent group ${JSON.stringify(c.parent)} does not exist`);
    const groupId = nameId("group", c.name);
    if ([...this.groups.values()].some((g) => g.groupId === groupId)) throw new ClusterError("ALREADY_EXISTS", `node group ${JSON.stringify(c.name)} would reuse an existing group id; choose another name`);
    // The creating node (if any) becomes the group's first, active member.
    const creator = c.creator ? this.must(c.creator) : undefined;
    if (creator && creator.group) throw new ClusterError("INVALID", `node ${JSON.stringify(creator.name)} already belongs to group ${JSON.stringify(creator.group)}`);
    const g: NodeGroup = { name: c.name, groupId, parent: c.parent, type: c.type };
    this.groups.set(g.name, g);
    if (creator) {
      creator.group = g.name;
      creator.state = "ACTIVE";
      creator.targetState = "ACTIVE";
    }
    return { ...g };
  }

  /** Move a node along its join or part (and, entering JOIN_START, into its group). */
  setState(c: { name: string; state: string; group: string }): DataNode {
    const n = this.must(c.name);
    if (!(PEER_STATES as readonly string[]).includes(c.state)) throw new ClusterError("INVALID", `unknown node state ${JSON.stringify(c.state)}`);
    const to = c.state as PeerState;
    if (to !== n.state && !NEXT[n.state].includes(to)) {
      throw new ClusterError("INVALID", `node ${JSON.stringify(n.name)} cannot go from ${n.state} to ${to}${NEXT[n.state].length ? ` (next: ${NEXT[n.state].join(", ")})` : ""}`);
    }
    if (to === "JOIN_START" && n.state !== "JOIN_START") {
      if (!c.group || !this.groups.has(c.group)) throw new ClusterError("NOT_FOUND", `node group ${JSON.stringify(c.group)} does not exist`);
      if (n.group && n.group !== c.group) throw new ClusterError("INVALID", `node ${JSON.stringify(n.name)} belongs to group ${JSON.stringify(n.group)}`);
      n.group = c.group;
    }
    if ((to === "PROMOTE" || to === "PROMOTING") && n.kind !== "subscriber-only") {
      // The seed: only one regular node at a time in PROMOTE or PROMOTING.
      const other = [...this.nodes.values()].find((x) => x !== n && x.kind !== "subscriber-only" && (x.state === "PROMOTE" || x.state === "PROMOTING"));
      if (other) throw new ClusterError("INVALID", `node ${JSON.stringify(other.name)} is in ${other.state}; only one node at a time may promote`);
    }
    // A join that starts over leaves the group until it tries again.
    if (to === "CREATED") n.group = "";
    n.state = to;
    n.targetState = to === "CREATED" ? "CREATED" : to.startsWith("PART") ? "PARTED" : "ACTIVE";
    return { ...n };
  }

  setInterface(c: { name: string; dsn: string }): DataNode {
    checkDsn(c.dsn);
    const n = this.must(c.name);
    n.dsn = c.dsn;
    return { ...n };
  }

  /** Remove a node's metadata: only once parted or never joined, unless forced. */
  dropNode(c: { name: string; force: boolean }): DataNode {
    const n = this.must(c.name);
    if (!c.force && n.state !== "PARTED" && n.state !== "CREATED") {
      throw new ClusterError("INVALID", `node ${JSON.stringify(n.name)} is ${n.state}; part it first (part_node), or drop it with force`);
    }
    this.nodes.delete(n.name);
    return { ...n };
  }

  dropGroup(c: { name: string }): NodeGroup {
    const g = this.groups.get(c.name);
    if (!g) throw new ClusterError("NOT_FOUND", `node group ${JSON.stringify(c.name)} does not exist`);
    const members = [...this.nodes.values()].filter((n) => n.group === g.name && n.state !== "PARTED");
    if (members.length) throw new ClusterError("INVALID", `node group ${JSON.stringify(g.name)} still has nodes: ${members.map((n) => n.name).join(", ")}`);
    const children = [...this.groups.values()].filter((x) => x.parent === g.name);
    if (children.length) throw new ClusterError("INVALID", `node group ${JSON.stringify(g.name)} has subgroups: ${children.map((x) => x.name).join(", ")}`);
    this.groups.delete(g.name);
    return { ...g };
  }

  // ---------------------------------------------------------------- snapshots

  dump(): { nextSeq: number; groups: NodeGroup[]; nodes: DataNode[] } {
    return { nextSeq: this.nextSeq, groups: this.allGroups(), nodes: this.allNodes() };
  }

  /** Throws ClusterError(CORRUPT_SNAPSHOT) for anything inconsistent. Undefined = an older snapshot without node groups. */
  static load(v: unknown): NodeGroupCatalog {
    const c = new NodeGroupCatalog();
    if (v === undefined) return c;
    const bad = (why: string): ClusterError => new ClusterError("CORRUPT_SNAPSHOT", `snapshot: node groups: ${why}`);
    if (typeof v !== "object" || v === null) throw bad("not an object");
    const d = v as Record<string, unknown>;
    if (typeof d["nextSeq"] !== "number" || !Number.isSafeInteger(d["nextSeq"]) || d["nextSeq"] < 1) throw bad("bad nextSeq");
    c.nextSeq = d["nextSeq"];
    if (!Array.isArray(d["groups"]) || !Array.isArray(d["nodes"])) throw bad("groups and nodes must be arrays");
    for (const raw of d["groups"] as unknown[]) {
      const g = raw as NodeGroup;
      if (typeof g?.name !== "string" || typeof g.groupId !== "number" || typeof g.parent !== "string" || typeof g.type !== "string") throw bad("malformed group");
      if (c.groups.has(g.name)) throw bad(`duplicate group ${g.name}`);
      c.groups.set(g.name, { name: g.name, groupId: g.groupId, parent: g.parent, type: g.type });
    }
    for (const raw of d["nodes"] as unknown[]) {
      const n = raw as DataNode;
      const ok =
        typeof n?.name === "string" &&
        typeof n.nodeId === "number" &&
        typeof n.seqId === "number" &&
        n.seqId < c.nextSeq &&
        (NODE_KINDS as readonly string[]).includes(n.kind) &&
        typeof n.dsn === "string" &&
        typeof n.dbname === "string" &&
        typeof n.group === "string" &&
        (PEER_STATES as readonly string[]).includes(n.state) &&
        (PEER_STATES as readonly string[]).includes(n.targetState) &&
        typeof n.raftMemberId === "number";
      if (!ok) throw bad("malformed node");
      if (c.nodes.has(n.name)) throw bad(`duplicate node ${n.name}`);
      if (n.group && !c.groups.has(n.group)) throw bad(`node ${n.name} is in missing group ${n.group}`);
      c.nodes.set(n.name, { ...n });
    }
    return c;
  }
}
