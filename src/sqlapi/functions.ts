// What each pgraft_* function does, on whichever node it is called. Changes go
// through the Cluster service in-process (so a follower forwards them to the
// leader exactly as a gRPC client's would be); reads of the KV store are
// linearizable; per-member figures come from the leader, which is the only node
// that tracks replication progress.
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { electionTimingWarning, parseDurationMs } from "../cluster/config-registry.js";
import { parseHostPort, unresolvableHost } from "../config/address.js";
import type { RaftNode } from "../consensus/driver.js";
import * as pb from "../gen/pgraft/v1/client_pb.js";
import { PgWireError } from "../pgwire/index.js";
import type { ClientOf } from "../transport/grpc-service.js";
import type { ClusterState } from "../cluster/state.js";
import type { DataNode } from "../cluster/node-groups.js";
import type { GroupController } from "../join/group-controller.js";
import type { SqlFunction } from "./catalog.js";
import { checkInterfaceDsn, probeDsn, withDsn } from "./dsn-probe.js";
import { internalCall } from "../daemon/internal-keys.js";
import { JOIN_KEY } from "../join/group-controller.js";
import { parseRecord, statusKey, type PartStatusRecord } from "../part/part-keys.js";
import { checkTargetEmpty, JoinCopyError } from "../join/snapshot-copy.js";
import { recordedPostgresAddress } from "../daemon/postgres-address.js";
import { callErrorText } from "../transport/grpc-error-text.js";
import { dataPlaneHealth, groupSlotName } from "../slots/index.js";
import { invalidParameter, nullArgument } from "./errors.js";
import { isWriteLeader } from "../routing/targets.js";
import { switchover, TRANSFER_METHODS, type TransferMethod } from "../routing/switchover.js";

/** One text-format value per column; null = SQL NULL. */
export type Row = (string | null)[];

export interface SqlApiDeps {
  clusterId: string;
  selfId: number;
  /** The replicated state (read-only here: changes go through `cluster`). */
  state: ClusterState;
  /** The Cluster service, called in-process. */
  cluster: ClientOf<typeof pb.Cluster>;
  node: RaftNode;
  dataDir: string;
  electionMs: number;
  requestTimeoutMs: number;
  /** Turns debug logging on or off; returns what it did, for the caller. */
  setDebug(on: boolean): string;
  /** The node-group controller (data plane, joins, parts), when this sidecar drives a PostgreSQL. */
  groups?: GroupController;
  /** Whether the local PostgreSQL answers (for pgraft_health_check). */
  postgresCheck(): Promise<{ ok: boolean; detail: string }>;
  /** Where a switchover run here logs its steps. */
  switchoverProgress?(req: { group: string; target: string }): (line: string) => void;
  /** Every member's PostgreSQL as its sidecar reports it (for pgraft_health_check's postgres_nodes row). */
  postgresNodes?(): Promise<{ severity: "ok" | "warning" | "critical"; detail: string }>;
}

const MAX_NODE_ID = 2_147_483_647;
/** A follower this far behind the leader is reported as lagging (warning) / stalled. */
export const LAG_WARNING_ENTRIES = 1_000;
/** Log on disk above this is a warning in pgraft_health_check. */
const DISK_WARNING_MB = 1_024;

const bool = (b: boolean): string => (b ? "t" : "f");
const num = (n: number | bigint): string => String(n);

function arg(f: SqlFunction, args: (string | null)[], i: number): string {
  const v = args[i];
  if (v === null || v === undefined) throw nullArgument(f.name, f.args[i]!.name);
  return v;
}

function intArg(f: SqlFunction, args: (string | null)[], i: number, min: number, max: number): number {
  const raw = arg(f, args, i).trim();
  const name = f.args[i]!.name;
  if (!/^[+-]?\d+$/.test(raw)) throw invalidParameter(`${f.name}: ${name} must be an integer, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalidParameter(`${f.name}: ${name} must be in ${min}..${max}, got ${raw}`);
  return n;
}

function boolArg(f: SqlFunction, args: (string | null)[], i: number): boolean {
  const raw = arg(f, args, i).trim().toLowerCase();
  if (["t", "true", "on", "yes", "1"].includes(raw)) return true;
  if (["f", "false", "off", "no", "0"].includes(raw)) return false;
  throw invalidParameter(`${f.name}: ${f.args[i]!.name} must be a boolean, got ${JSON.stringify(raw)}`);
}

/** A member's state as pgraft_get_nodes shows it. */
function memberState(m: pb.Member, electionMs: number): string {
  if (m.isLeader) return "leader";
  if (!m.reachable || (m.lastHeartbeatMs >= 0n && Number(m.lastHeartbeatMs) > electionMs)) return "unreachable";
  return m.role === pb.MemberRole.LEARNER ? "learner" : "follower";
}

/** A member's replication state as pgraft_log_get_replication_status shows it. */
function replicationState(m: pb.Member, electionMs: number): string {
  if (m.isLeader) return "leader";
  if (!m.reachable || (m.lastHeartbeatMs >= 0n && Number(m.lastHeartbeatMs) > electionMs)) return "stalled";
  return m.progressState === "replicate" ? "replicating" : m.progressState === "probe" ? "probing" : m.progressState || "unknown";
}

function splitAddress(raft: string): { host: string; port: number | null } {
  const hp = parseHostPort(raft);
  return typeof hp === "string" ? { host: raft, port: null } : { host: hp.host, port: hp.port };
}

/** A warning when the timing after setting `name` to `value` leaves the election timeout under the safe multiple. */
function timingWarning(name: string, value: string, d: SqlApiDeps): string | null {
  if (name !== "heartbeat_interval" && name !== "election_timeout") return null;
  const s = d.state.settings();
  const heartbeat = name === "heartbeat_interval" ? parseDurationMs(value) : s.heartbeatIntervalMs;
  const election = name === "election_timeout" ? parseDurationMs(value) : s.electionTimeoutMs;
  return heartbeat === undefined || election === undefined ? null : electionTimingWarning(heartbeat, election);
}

async function diskUsageBytes(dir: string): Promise<number> {
  let total = 0;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  for (const n of names) {
    const p = join(dir, n);
    try {
      const s = await stat(p);
      total += s.isDirectory() ? await diskUsageBytes(p) : s.size;
    } catch {
      // removed while we looked (a released WAL segment)
    }
  }
  return total;
}

const stateName = (s: pb.RaftState): string =>
  s === pb.RaftState.LEADER ? "leader" : s === pb.RaftState.CANDIDATE ? "candidate" : s === pb.RaftState.PRE_CANDIDATE ? "pre-candidate" : "follower";

type Impl = (f: SqlFunction, args: (string | null)[], d: SqlApiDeps) => Promise<Row[]>;

const one = (v: string | null): Row[] => [[v]];

async function status(d: SqlApiDeps): Promise<pb.StatusResponse> {
  return d.cluster.status({ clusterId: d.clusterId });
}

/**
 * pgraft_get_nodes' rows from this node's own view, for when no leader
 * answers: membership, addresses and roles as this node knows them; the
 * state `unknown` (this node: its own Raft state), and NULL for what only a
 * leader knows (match index, last heartbeat, lag, reachability).
 */
async function localMembers(d: SqlApiDeps): Promise<(string | null)[][]> {
  const [r, st] = await Promise.all([d.cluster.members({ clusterId: d.clusterId, fromLeader: false }), status(d)]);
  const self = stateName(st.state);
  return r.members.map((m) => {
    const { host, port } = splitAddress(m.raftAddress);
    return [
      num(m.id),
      m.id === d.selfId ? self : "unknown",
      null,
      num(r.commitIndex),
      host,
      port === null ? null : num(port),
      null,
      null,
      m.name,
      m.role === pb.MemberRole.LEARNER ? "learner" : "voter",
      bool(m.isLeader),
      m.id === d.selfId ? bool(true) : null,
      null,
      recordedPostgresAddress(d.state, m.id) ?? null,
    ];
  });
}

async function membersFromLeader(d: SqlApiDeps): Promise<pb.MembersResponse> {
  return d.cluster.members({ clusterId: d.clusterId, fromLeader: true });
}

async function requireMember(d: SqlApiDeps, fn: string, id: number): Promise<pb.StatusResponse> {
  const st = await status(d);
  if (!st.voters.includes(id) && !st.learners.includes(id)) {
    throw new PgWireError({ code: "42704", message: `${fn}: node ${id} is not a member of the cluster`, hint: `members: ${[...st.voters, ...st.learners].sort((a, b) => a - b).join(", ")}` });
  }
  return st;
}

/** Wait until this node has applied what the leader had when it answered (a following read here sees the change). */
async function appliedHere(d: SqlApiDeps, header: pb.ResponseHeader | undefined): Promise<void> {
  await d.node.waitApplied(Number(header?.appliedIndex ?? 0n), d.requestTimeoutMs).catch(() => undefined);
}

/** Run one pgd.* command on the leader; returns its result (the node or group after it). */
async function pgd<T>(d: SqlApiDeps, cmd: Record<string, unknown>): Promise<T> {
  const r = await d.cluster.nodeGroupCommand({ clusterId: d.clusterId, command: JSON.stringify(cmd) });
  // Let this node's view catch up with the change before answering (a following read here sees it).
  await d.node.waitApplied(Number(r.header?.appliedIndex ?? 0n), d.requestTimeoutMs).catch(() => undefined);
  return JSON.parse(r.result) as T;
}

/**
 * Bring this node's view of the catalog up to date (ReadIndex from the leader,
 * then wait until applied): the node-group functions check their input against
 * it, and a follower that lags (a restarted sidecar replaying its log) would
 * otherwise refuse, or allow, on a stale catalog.
 */
async function current(d: SqlApiDeps): Promise<void> {
  await d.node.read({ timeoutMs: d.requestTimeoutMs });
}

/** The data node beside this sidecar (created by create_node here), if any. */
const localNode = (d: SqlApiDeps): DataNode | undefined => d.state.dataNodes().find((n) => n.raftMemberId === d.selfId);

function optArg(args: (string | null)[], i: number): string | null {
  return args[i] ?? null;
}

const PART_ORDER = ["PART_START", "PARTING", "PART_CATCHUP", "PARTED"];

/** A join failing this long (it retries in the background) makes the waiting call return the error. */
const JOIN_FAILING_MS = 60_000;

/**
 * Poll the catalog until node `name` reaches `state` (interrupted by the
 * caller's statement_timeout). A join of this node that keeps failing ends the
 * wait with its last error after JOIN_FAILING_MS, rather than hanging.
 */
async function waitForState(d: SqlApiDeps, name: string, state: string): Promise<void> {
  let failingSince: number | undefined;
  for (;;) {
    const n = d.state.dataNodes().find((x) => x.name === name);
    if (!n) throw new PgWireError({ code: "55000", message: `node ${JSON.stringify(name)} was dropped while waiting for ${state}` });
    if (n.state === state) return;
    const err = n.raftMemberId === d.selfId ? (d.groups?.lastJoinError ?? "") : "";
    failingSince = err ? (failingSince ?? Date.now()) : undefined;
    if (failingSince !== undefined && Date.now() - failingSince > JOIN_FAILING_MS) {
      throw new PgWireError({
        code: "55000",
        message: `the join of node ${JSON.stringify(name)} keeps failing: ${err}`,
        hint: "it is retried in the background: fix the cause and call wait_for_join_completion(), or give up with part_node/drop_node",
      });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** How long part_node waits on a part that lacks a majority of the nodes that stay before it says so. */
const PART_NO_MAJORITY_MS = 15_000;

/**
 * Wait until `p` is PARTED. The coordinator writes what the part waits for
 * in the KV store (part-keys.ts); a part that has lacked a majority of the
 * remaining nodes for PART_NO_MAJORITY_MS ends the wait with that message
 * (the part itself goes on once enough nodes are back).
 */
async function waitForPart(d: SqlApiDeps, p: DataNode): Promise<void> {
  let stuck: { state: string; since: number } | undefined;
  for (;;) {
    const n = d.state.dataNodes().find((x) => x.name === p.name);
    if (!n) throw new PgWireError({ code: "55000", message: `node ${JSON.stringify(p.name)} was dropped while waiting for PARTED` });
    if (n.state === "PARTED") return;
    const r = await d.cluster.kvGet({ clusterId: d.clusterId, key: statusKey(n) }, internalCall());
    const said = parseRecord<PartStatusRecord>(r.kv?.value);
    if (said?.message.includes("needs a majority")) {
      if (stuck?.state !== n.state) stuck = { state: n.state, since: Date.now() };
      if (Date.now() - stuck.since > PART_NO_MAJORITY_MS) {
        throw new PgWireError({
          code: "55000",
          message: `the part of node ${JSON.stringify(p.name)} cannot finish: ${said.message}`,
          hint: "it goes on by itself once enough of the nodes that stay are back; pgraft.node_summary shows its state",
        });
      }
    } else stuck = undefined;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The node name of the pgraft node at `dsn` (its local_node_summary), on one connection. */
function probeNode(fn: string, dsn: string): Promise<string> {
  return withDsn(fn, dsn, async (c) => {
    let rows: { node_name: string }[];
    try {
      rows = (await c.query<{ node_name: string }>("SELECT node_name FROM pgraft.local_node_summary")).rows;
    } catch (e) {
      throw new PgWireError({ code: "55000", message: `${fn}: the database at join_target_dsn has no pgraft shim: ${e instanceof Error ? e.message : String(e)}` });
    }
    if (!rows[0]) throw new PgWireError({ code: "55000", message: `${fn}: the database at join_target_dsn is not a pgraft node (create_node was not called there)` });
    return rows[0].node_name;
  });
}

/** Hide a password in a DSN shown in a view. */
export function redactDsn(dsn: string): string {
  return dsn.replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, "$1********").replace(/(postgres(?:ql)?:\/\/[^:/@]*:)[^@]*@/i, "$1********@");
}

function summaryRow(n: DataNode, d: SqlApiDeps): Row {
  const g = n.group ? d.state.nodeGroups().find((x) => x.name === n.group) : undefined;
  return [n.name, n.group || null, redactDsn(n.dsn), n.state, n.targetState, num(n.seqId), n.dbname, num(n.nodeId), g ? num(g.groupId) : null, n.kind];
}

const IMPLS: Record<string, Impl> = {
  async pgraft_init(_f, _a, d) {
    const st = await status(d);
    if (!st.leaderId) throw new PgWireError({ code: "55000", message: `node ${d.selfId} knows no leader yet: the cluster is forming, this node is joining, or there is no quorum` });
    return one("t");
  },

  async pgraft_add_node(f, a, d) {
    const id = intArg(f, a, 0, 1, MAX_NODE_ID);
    const host = arg(f, a, 1).trim();
    const port = intArg(f, a, 2, 1, 65_535);
    if (!host) throw invalidParameter(`${f.name}: address must not be empty`);
    if (host.length > 253 || /[\s/,]/.test(host)) throw invalidParameter(`${f.name}: ${JSON.stringify(host)} is not a host name or IP address`);
    const st = await status(d);
    if (st.voters.includes(id) || st.learners.includes(id)) throw new PgWireError({ code: "42710", message: `${f.name}: node ${id} is already a member of the cluster` });
    const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
    const unresolved = await unresolvableHost(host);
    // As a learner first, promoted to voter by the leader once it has caught up.
    await d.cluster.join({ clusterId: d.clusterId, id, name: `node${id}`, raftAddress: address, asVoter: false });
    const warning = unresolved
      ? `node ${id} was added, but its address ${JSON.stringify(host)} does not resolve here (${unresolved}): nothing can reach it until it does; pgraft_remove_node(${id}) takes it out again`
      : null;
    return [["t", warning]];
  },

  async pgraft_remove_node(f, a, d) {
    const id = intArg(f, a, 0, 1, MAX_NODE_ID);
    const st = await requireMember(d, f.name, id);
    if (st.voters.length === 1 && st.voters[0] === id) throw new PgWireError({ code: "55000", message: `${f.name}: node ${id} is the last voter; removing it would leave no cluster` });
    await d.cluster.removeMember({ clusterId: d.clusterId, id });
    return one("t");
  },

  async pgraft_get_nodes(_f, _a, d) {
    let r: pb.MembersResponse;
    try {
      r = await membersFromLeader(d);
    } catch {
      // No leader (or it does not answer): what this node knows, with the columns only a leader knows NULL —
      // an operator needs the member list most when the cluster has lost its leader.
      return localMembers(d);
    }
    return r.members.map((m) => {
      const { host, port } = splitAddress(m.raftAddress);
      return [
        num(m.id),
        memberState(m, d.electionMs),
        num(m.matchIndex),
        num(r.commitIndex),
        host,
        port === null ? null : num(port),
        m.lastHeartbeatMs < 0n ? null : num(m.lastHeartbeatMs),
        num(m.replicationLagBytes),
        m.name,
        m.role === pb.MemberRole.LEARNER ? "learner" : "voter",
        bool(m.isLeader),
        bool(m.reachable),
        num(m.lagEntries),
        recordedPostgresAddress(d.state, m.id) ?? null,
      ];
    });
  },

  async pgraft_quorum_met(_f, _a, d) {
    return one(bool((await status(d)).quorumMet));
  },

  async pgraft_get_leader(_f, _a, d) {
    const st = await status(d);
    return one(st.leaderId ? num(st.leaderId) : null);
  },

  pgraft_is_write_leader(_f, _a, d) {
    return Promise.resolve(one(bool(isWriteLeader(d.state, d.selfId) === true)));
  },

  async routing_leadership_transfer(f, a, d) {
    const group = arg(f, a, 0);
    const target = arg(f, a, 1);
    const method = (optArg(a, 2) ?? "strict").trim().toLowerCase();
    if (!(TRANSFER_METHODS as readonly string[]).includes(method)) throw invalidParameter(`${f.name}: transfer_method must be one of ${TRANSFER_METHODS.join(", ")}, got ${JSON.stringify(method)}`);
    const timeoutText = optArg(a, 3) ?? "10s";
    const timeoutMs = parseDurationMs(timeoutText);
    if (timeoutMs === undefined || timeoutMs < 100 || timeoutMs > 3_600_000) throw invalidParameter(`${f.name}: transfer_timeout must be a duration from 100ms to 1h (e.g. '10s'), got ${JSON.stringify(timeoutText)}`);
    await current(d);
    if (!d.state.nodeGroups().some((g) => g.name === group)) throw new PgWireError({ code: "42704", message: `${f.name}: node group ${JSON.stringify(group)} does not exist` });
    if (!d.state.dataNodes().some((n) => n.name === target)) throw new PgWireError({ code: "42704", message: `${f.name}: node ${JSON.stringify(target)} does not exist` });
    const progress = d.switchoverProgress?.({ group, target });
    return one(await switchover({ group, target, method: method as TransferMethod, timeoutMs }, { state: d.state, propose: (cmd) => pgd(d, cmd), ...(progress ? { progress } : {}) }));
  },

  async alter_node_group_option(f, a, d) {
    const group = arg(f, a, 0);
    const key = arg(f, a, 1).trim().toLowerCase();
    const value = arg(f, a, 2).trim().toLowerCase();
    if (key !== "default_commit_scope") throw invalidParameter(`${f.name}: unknown option ${JSON.stringify(key)} (known: default_commit_scope)`);
    await current(d);
    if (!d.state.nodeGroups().some((g) => g.name === group)) throw new PgWireError({ code: "42704", message: `${f.name}: node group ${JSON.stringify(group)} does not exist` });
    await pgd(d, { op: "routing.scope", group, scope: value });
    return one("t");
  },

  node_group_routing_summary_rows(_f, _a, d) {
    const groups = d.state.nodeGroups().filter((g) => d.state.dataNodes().some((n) => n.group === g.name));
    return Promise.resolve(
      groups.map((g) => {
        const r = d.state.routing(g.name);
        return [
          g.name,
          r.leader || null,
          r.previous || null,
          `{${r.readers.map((x) => `"${x.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(",")}}`,
          r.commitScope,
          r.switchingTo || null,
          r.changedAtMs ? new Date(r.changedAtMs).toISOString() : null,
          r.reason || null,
        ];
      }),
    );
  },

  async pgraft_is_leader(_f, _a, d) {
    return one(bool((await status(d)).state === pb.RaftState.LEADER));
  },

  async pgraft_transfer_leadership(f, a, d) {
    const id = intArg(f, a, 0, 1, MAX_NODE_ID);
    const st = await requireMember(d, f.name, id);
    if (!st.voters.includes(id)) throw invalidParameter(`${f.name}: node ${id} is a learner; only a voter can lead`);
    if (st.leaderId !== id) await d.cluster.transferLeader({ clusterId: d.clusterId, targetId: id });
    // Return once this node, too, knows the new leader (so a following pgraft_get_leader() agrees).
    const end = Date.now() + d.requestTimeoutMs;
    while ((await status(d)).leaderId !== id) {
      if (Date.now() > end) throw new PgWireError({ code: "40003", message: `${f.name}: node ${id} did not become leader within ${d.requestTimeoutMs} ms` });
      await new Promise((r) => setTimeout(r, 20));
    }
    return one("t");
  },

  async pgraft_get_cluster_status(_f, _a, d) {
    const st = await status(d);
    return [
      [
        num(st.nodeId),
        st.leaderId ? num(st.leaderId) : null,
        num(st.term),
        stateName(st.state),
        num(st.voters.length + st.learners.length),
        num(st.messagesProcessed),
        num(st.electionsStarted),
        num(st.commitIndex),
        num(st.appliedIndex),
        bool(st.quorumMet),
        st.version,
      ],
    ];
  },

  async pgraft_log_get_replication_status(_f, _a, d) {
    const r = await membersFromLeader(d);
    return r.members.map((m) => [num(m.id), num(m.matchIndex), num(r.commitIndex), num(m.lagEntries), replicationState(m, d.electionMs)]);
  },

  async pgraft_log_get_stats(_f, _a, d) {
    const st = await status(d);
    const first = Number(st.firstIndex);
    const last = Number(st.lastIndex);
    const bytes = (await diskUsageBytes(join(d.dataDir, "wal"))) + (await diskUsageBytes(join(d.dataDir, "snap")));
    return [[num(first), num(last), num(Math.max(0, last - first + 1)), (bytes / (1024 * 1024)).toFixed(3), num(st.commitIndex), num(st.appliedIndex)]];
  },

  async pgraft_set_config(f, a, d) {
    const r = await d.cluster.configSet({ clusterId: d.clusterId, name: arg(f, a, 0), value: arg(f, a, 1) });
    await appliedHere(d, r.header);
    return [["t", r.entry ? timingWarning(r.entry.name, r.entry.value, d) : null]];
  },

  async pgraft_reset_config(f, a, d) {
    await appliedHere(d, (await d.cluster.configReset({ clusterId: d.clusterId, name: arg(f, a, 0) })).header);
    return one("t");
  },

  async pgraft_save_config(_f, _a, d) {
    await d.cluster.configSave({ clusterId: d.clusterId });
    return one("t");
  },

  async pgraft_get_config(_f, _a, d) {
    const r = await d.cluster.configGet({ clusterId: d.clusterId });
    return r.entries.map((e) => [
      e.name,
      e.value,
      e.defaultValue,
      bool(e.source === pb.ConfigSource.RUNTIME || e.source === pb.ConfigSource.SAVED),
      bool(e.source === pb.ConfigSource.SAVED),
      e.description,
    ]);
  },

  async pgraft_kv_put(f, a, d) {
    const key = arg(f, a, 0);
    const value = arg(f, a, 1);
    const r = await d.cluster.kvPut({ clusterId: d.clusterId, key, value });
    return one(num(r.kv?.modRevision ?? r.header?.revision ?? 0n));
  },

  async pgraft_kv_get(f, a, d) {
    const r = await d.cluster.kvGet({ clusterId: d.clusterId, key: arg(f, a, 0) });
    return one(r.kv ? r.kv.value : null);
  },

  async pgraft_kv_delete(f, a, d) {
    const r = await d.cluster.kvDelete({ clusterId: d.clusterId, key: arg(f, a, 0) });
    return one(bool(r.deleted > 0n));
  },

  async pgraft_log_sync_with_leader(_f, _a, d) {
    // ReadIndex from the leader, then wait until this node has applied that far
    // (the leader sends a snapshot when the entries are gone from its log).
    await d.node.read({ timeoutMs: d.requestTimeoutMs });
    return one("t");
  },

  // The debug setting, replicated (true: set; false: reset to its default, false): every node's log level follows it (the control loop applies it), and
  // pgraft_get_config shows it. This node applies it at once so the answer is true when it returns.
  async pgraft_set_debug(f, a, d) {
    const on = boolArg(f, a, 0);
    // Off is the default: the override goes (nothing left for pgraft_save_config to keep).
    const r = on ? await d.cluster.configSet({ clusterId: d.clusterId, name: "debug", value: "true" }) : await d.cluster.configReset({ clusterId: d.clusterId, name: "debug" });
    await appliedHere(d, r.header);
    return one(d.setDebug(on));
  },

  // ---------------------------------------------------------------- node groups (seed 004)

  async create_node(f, a, d) {
    await current(d);
    const name = arg(f, a, 0);
    const dsn = arg(f, a, 1);
    const kind = optArg(a, 2) ?? "data";
    const existing = localNode(d);
    if (existing) throw new PgWireError({ code: "42710", message: `${f.name}: this database is already node ${JSON.stringify(existing.name)}`, hint: "drop_node it first to create it again under another name" });
    checkInterfaceDsn(f.name, dsn);
    const { dbname } = await probeDsn(f.name, dsn);
    const n = await pgd<DataNode>(d, { op: "pgd.node.create", name, dsn, kind, dbname, raftMemberId: d.selfId });
    return one(num(n.nodeId));
  },

  async create_node_group(f, a, d) {
    await current(d);
    const name = arg(f, a, 0);
    const parent = optArg(a, 1);
    const join = optArg(a, 2) === null ? true : boolArg(f, a, 2);
    const type = optArg(a, 3);
    const local = localNode(d);
    if (join && !local) throw new PgWireError({ code: "55000", message: `${f.name}: this database is not a node yet`, hint: "call create_node(node_name, local_dsn) first" });
    const g = await pgd<{ groupId: number }>(d, {
      op: "pgd.group.create",
      name,
      ...(parent !== null ? { parent } : {}),
      ...(type !== null ? { type } : {}),
      ...(join && local ? { creator: local.name } : {}),
    });
    return one(num(g.groupId));
  },

  async alter_node_interface(f, a, d) {
    await current(d);
    const name = arg(f, a, 0);
    const dsn = arg(f, a, 1);
    if (!d.state.dataNodes().some((n) => n.name === name)) throw new PgWireError({ code: "42704", message: `${f.name}: node ${JSON.stringify(name)} does not exist` });
    checkInterfaceDsn(f.name, dsn);
    await probeDsn(f.name, dsn);
    await pgd(d, { op: "pgd.node.interface", name, dsn });
    return one("t");
  },

  async drop_node(f, a, d) {
    await current(d);
    const name = arg(f, a, 0);
    const force = optArg(a, 2) === null ? false : boolArg(f, a, 2);
    await pgd(d, { op: "pgd.node.drop", name, force });
    return one("t");
  },

  async drop_node_group(f, a, d) {
    await current(d);
    await pgd(d, { op: "pgd.group.drop", name: arg(f, a, 0) });
    return one("t");
  },

  async join_node_group(f, a, d) {
    await current(d);
    const targetDsn = arg(f, a, 0);
    const groupArg = optArg(a, 1);
    if (optArg(a, 2) !== null && boolArg(f, a, 2)) throw new PgWireError({ code: "0A000", message: `${f.name}: pause_in_standby is not supported yet (standby nodes come in a later release)` });
    const wait = optArg(a, 3) === null ? true : boolArg(f, a, 3);
    const sync = (optArg(a, 4) ?? "all").toLowerCase();
    if (sync !== "all" && sync !== "none") throw invalidParameter(`${f.name}: synchronize_structure must be 'all' or 'none', got ${JSON.stringify(sync)}`);
    if (!d.groups) throw new PgWireError({ code: "55000", message: `${f.name}: this sidecar drives no PostgreSQL (start it with --postgres-dsn)` });
    // Which node is at join_target_dsn, and which group is it in?
    const target = await probeNode(f.name, targetDsn);
    const me = localNode(d);
    if (!me) throw new PgWireError({ code: "55000", message: `${f.name}: this database is not a node yet`, hint: "call create_node(node_name, local_dsn) first" });
    if (me.group && me.state !== "CREATED") throw new PgWireError({ code: "55000", message: `${f.name}: node ${JSON.stringify(me.name)} is already in group ${JSON.stringify(me.group)} (${me.state})` });
    const source = d.state.dataNodes().find((n) => n.name === target);
    if (!source) throw new PgWireError({ code: "55000", message: `${f.name}: the node at join_target_dsn (${JSON.stringify(target)}) is not in this cluster`, hint: "start this node's sidecar with --join pointing at that cluster's sidecars" });
    if (source.state !== "ACTIVE" || !source.group) throw new PgWireError({ code: "55000", message: `${f.name}: node ${JSON.stringify(source.name)} is ${source.state}${source.group ? "" : " and in no group"}; join through an active member` });
    const group = groupArg ?? source.group;
    if (group !== source.group) throw invalidParameter(`${f.name}: node ${JSON.stringify(source.name)} is in group ${JSON.stringify(source.group)}, not ${JSON.stringify(group)}`);
    try {
      await checkTargetEmpty(me.dsn, sync);
    } catch (e) {
      if (e instanceof JoinCopyError) throw new PgWireError({ code: e.sqlstate, message: `${f.name}: ${e.message}`, ...(e.hint ? { hint: e.hint } : {}) });
      throw e;
    }
    await d.cluster.kvPut({ clusterId: d.clusterId, key: JOIN_KEY(me.name), value: JSON.stringify({ source: source.name, synchronizeStructure: sync }) }, internalCall());
    await pgd(d, { op: "pgd.node.state", name: me.name, state: "JOIN_START", group });
    if (!wait) return one(`node ${me.name} is joining group ${group} from ${source.name}; wait_for_join_completion() waits for it`);
    await waitForState(d, me.name, "ACTIVE");
    return one(`node ${me.name} joined group ${group} (data from ${source.name})`);
  },

  async wait_for_join_completion(f, _a, d) {
    const me = localNode(d);
    if (!me) throw new PgWireError({ code: "55000", message: `${f.name}: this database is not a node` });
    if (me.state === "CREATED") throw new PgWireError({ code: "55000", message: `${f.name}: node ${JSON.stringify(me.name)} is not joining any group` });
    await waitForState(d, me.name, "ACTIVE");
    return one(`node ${me.name} is ACTIVE in group ${me.group}`);
  },

  async part_node(f, a, d) {
    const name = arg(f, a, 0);
    const wait = optArg(a, 1) === null ? true : boolArg(f, a, 1);
    const force = optArg(a, 2) === null ? false : boolArg(f, a, 2);
    // The read barrier needs a majority itself. Asking status first instead refused parts on a loaded
    // host: a leader counts a peer active only if it answered within the last election timeout.
    try {
      await current(d);
    } catch (e) {
      if (!(await status(d)).quorumMet) throw new PgWireError({ code: "55000", message: `${f.name}: parting needs a majority of the cluster, and this node sees none`, hint: "bring enough nodes back, or call it on a node in the majority" });
      throw e;
    }
    const n = d.state.dataNodes().find((x) => x.name === name);
    if (!n) throw new PgWireError({ code: "42704", message: `${f.name}: node ${JSON.stringify(name)} does not exist` });
    if (!n.group) throw new PgWireError({ code: "55000", message: `${f.name}: node ${JSON.stringify(name)} is in no group` });
    if (n.state === "PARTED") return one(`node ${name} is already parted`);
    if (!n.state.startsWith("PART")) await pgd(d, { op: "pgd.node.state", name, state: "PART_START" });
    // The last member of its group has nobody to catch up or coordinate: it parts at once.
    const others = d.state.dataNodes().filter((x) => x.group === n.group && x.name !== name && ["CATCHUP", "PROMOTE", "PROMOTING", "ACTIVE"].includes(x.state));
    if (force || others.length === 0) {
      for (const s of ["PARTING", "PART_CATCHUP", "PARTED"]) {
        const cur = d.state.dataNodes().find((x) => x.name === name)!.state;
        if (cur === "PARTED") break;
        if (PART_ORDER.indexOf(s) > PART_ORDER.indexOf(cur)) await pgd(d, { op: "pgd.node.state", name, state: s });
      }
    }
    if (!wait) return one(`node ${name} is parting`);
    await waitForPart(d, n);
    return one(`node ${name} parted from group ${n.group}`);
  },

  local_group_slot_name(_f, _a, d) {
    const me = localNode(d);
    return Promise.resolve(one(me?.group ? groupSlotName(me.dbname, me.group) : null));
  },

  async node_slots_rows(_f, _a, d) {
    const st = await d.groups?.status();
    if (!st) return [];
    return st.slots.map((s) => [st.node, s.kind === "group" ? null : (s.peer ?? null), s.name, bool(s.kind === "group"), bool(s.active), s.state, s.restartLsn, s.confirmedFlushLsn, s.lagBytes === null ? null : num(s.lagBytes)]);
  },

  async node_catchup_info_rows(_f, _a, d) {
    const st = await d.groups?.status();
    if (!st) return [];
    return st.receivers.map((r) => [r.peer, r.origin, r.state, r.receivedLsn, r.durableLsn, r.upstreamLsn, r.lagBytes === null ? null : num(r.lagBytes)]);
  },

  node_summary_rows(_f, _a, d) {
    return Promise.resolve(d.state.dataNodes().map((n) => summaryRow(n, d)));
  },

  local_node_summary_rows(_f, _a, d) {
    const n = localNode(d);
    return Promise.resolve(n ? [summaryRow(n, d)] : []);
  },

  async group_raft_details_rows(_f, _a, d) {
    const st = await status(d);
    return d.state.dataNodes().map((n) => [
      num(n.raftMemberId),
      n.name,
      n.group || null,
      n.raftMemberId === st.leaderId ? "leader" : st.voters.includes(n.raftMemberId) ? "follower" : st.learners.includes(n.raftMemberId) ? "learner" : "not a member",
      st.leaderId ? num(st.leaderId) : null,
      num(st.term),
      num(st.commitIndex),
      num(st.voters.length + st.learners.length),
      num(st.voters.length),
    ]);
  },

  async pgraft_health_check(_f, _a, d) {
    const rows: Row[] = [];
    const st = await status(d);
    rows.push(["quorum", st.quorumMet ? "ok" : "critical", st.quorumMet ? "a quorum of voters is active" : "no active quorum: writes cannot commit"]);
    rows.push(["leader", st.leaderId ? "ok" : "critical", st.leaderId ? `node ${st.leaderId} leads term ${st.term}` : `no leader known at term ${st.term}`]);
    try {
      const m = await membersFromLeader(d);
      const others = m.members.filter((x) => !x.isLeader);
      const stalled = others.filter((x) => replicationState(x, d.electionMs) === "stalled");
      const maxLag = others.reduce((mx, x) => (x.lagEntries > mx ? x.lagEntries : mx), 0n);
      const sev = stalled.length > 0 ? "critical" : maxLag > BigInt(LAG_WARNING_ENTRIES) ? "warning" : "ok";
      rows.push([
        "follower_lag",
        sev,
        stalled.length > 0 ? `not answering: node ${stalled.map((x) => x.id).join(", node ")}; max lag ${maxLag} entries` : `max lag ${maxLag} entries over ${others.length} follower(s)`,
      ]);
    } catch (e) {
      rows.push(["follower_lag", "critical", `the leader could not be asked: ${callErrorText(e, "the leader's sidecar")}`]);
    }
    const perTerm = Number(st.electionsStarted) / Math.max(1, Number(st.term));
    rows.push(["elections_per_term", perTerm > 2 ? "warning" : "ok", `${st.electionsStarted} election(s) started here over ${st.term} term(s) (${perTerm.toFixed(2)} per term)`]);
    const mb = ((await diskUsageBytes(join(d.dataDir, "wal"))) + (await diskUsageBytes(join(d.dataDir, "snap")))) / (1024 * 1024);
    rows.push(["log_disk_usage", mb > DISK_WARNING_MB ? "warning" : "ok", `${mb.toFixed(1)} MB of WAL and snapshots in ${d.dataDir}`]);
    const pg = await d.postgresCheck();
    rows.push(["postgres_connection", pg.ok ? "ok" : "critical", pg.detail]);
    if (d.postgresNodes) {
      const all = await d.postgresNodes();
      rows.push(["postgres_nodes", all.severity, all.detail]);
    }
    // This node's data plane, when it is in a group: a lost slot (critical), its PostgreSQL out of reach (warning).
    const dp = await d.groups?.status();
    if (dp) {
      const h = dataPlaneHealth(dp);
      rows.push(["data_plane", h.severity, h.detail]);
    }
    return rows;
  },
};

/** Runs `f` with its (already counted) arguments. */
export function runFunction(f: SqlFunction, args: (string | null)[], d: SqlApiDeps): Promise<Row[]> {
  const impl = IMPLS[f.name];
  if (!impl) return Promise.reject(new PgWireError({ code: "0A000", message: `${f.name} is not implemented` }));
  return impl(f, args, d);
}

/** For tests: every catalogued function has an implementation. */
export const implementedFunctions = (): string[] => Object.keys(IMPLS);
