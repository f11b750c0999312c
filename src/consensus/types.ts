// The values the Raft core exchanges with the outside world. Everything here is
// plain data: the core never touches disk, network, clock or randomness, so a
// simulator can drive thousands of histories from these types alone.

/** A node id. 0 means "none" (no vote, no known leader). */
export type NodeId = number;
export const NONE: NodeId = 0;

export enum EntryType {
  /** Application command (or the empty entry a new leader appends). */
  Normal = 0,
  /** A membership change; `data` is an encoded ConfChange (see confchange.ts). */
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/** The membership of the cluster: who votes and who only receives the log. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMeta {
  index: number;
  term: number;
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

export enum MessageType {
  /** Local: the election timer fired (never sent on the wire). */
  Hup = 0,
  /** Local: leader heartbeat timer fired (never sent on the wire). */
  Beat = 1,
  /** A proposal; followers forward it to the leader. */
  Prop = 2,
  App = 3,
  AppResp = 4,
  Vote = 5,
  VoteResp = 6,
  PreVote = 7,
  PreVoteResp = 8,
  Snap = 9,
  Heartbeat = 10,
  HeartbeatResp = 11,
  /** Local: the transport could not reach `from`. */
  Unreachable = 12,
  /** Local: result of sending a snapshot to `from` (reject = failed). */
  SnapStatus = 13,
  /** Local: check that a quorum is still active (check-quorum). */
  CheckQuorum = 14,
  /** Ask the leader to hand leadership to `from` (the transferee). */
  TransferLeader = 15,
  /** Leader tells a caught-up transferee to campaign at once. */
  TimeoutNow = 16,
  ReadIndex = 17,
  ReadIndexResp = 18,
}

export interface Message {
  type: MessageType;
  /** Every message names its cluster; a mismatch is rejected and counted. */
  clusterId: string;
  from: NodeId;
  to: NodeId;
  term: number;
  /** Term of the entry at `index` (App: the entry before `entries`; votes: candidate's last). */
  logTerm: number;
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** On a rejected AppResp: the follower's hint of where the logs may match. */
  rejectHint: number;
  /** The term at rejectHint on the follower, to skip whole terms when probing back. */
  logTermHint?: number;
  snapshot?: Snapshot;
  /** Opaque request context (ReadIndex id; campaign-transfer marker on votes). */
  context?: Uint8Array;
}

/** A message with every optional-by-meaning field at its zero value. */
export function makeMessage(m: Pick<Message, "type" | "clusterId" | "from" | "to"> & Partial<Message>): Message {
  return { term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...m };
}

export enum Role {
  Follower = "follower",
  PreCandidate = "pre-candidate",
  Candidate = "candidate",
  Leader = "leader",
}

/** Volatile state the application may want to observe (leader changes). */
export interface SoftState {
  leader: NodeId;
  role: Role;
}

/** A ReadIndex answer: once `index` is applied, a read for `context` is linearizable. */
export interface ReadState {
  index: number;
  context: Uint8Array;
}

/**
 * One batch of work the core hands out. The driver must, in this order:
 *  1. persist `snapshot` (if any), `entries` and `hardState` (fsync if mustSync);
 *  2. send `messages`;
 *  3. apply `committedEntries` (and restore `snapshot` into the state machine);
 *  4. call `advance(ready)`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
  mustSync: boolean;
}

/** Why a message was dropped without effect; counted in RaftStatus.rejected. */
export type RejectReason =
  | "cluster_id_mismatch"
  | "unknown_node"
  | "stale_term"
  | "not_addressed_to_me";

export type ProgressState = "probe" | "replicate" | "snapshot";

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  learner: boolean;
  recentActive: boolean;
  /** Ticks since the follower last answered the leader. */
  ticksSinceActive: number;
  inflightMsgs: number;
  inflightBytes: number;
  pendingSnapshot: number;
}

export interface RaftStatus {
  id: NodeId;
  term: number;
  vote: NodeId;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  leader: NodeId;
  role: Role;
  conf: ConfState;
  /** Only on the leader: replication progress per member. */
  progress: Map<NodeId, ProgressStatus>;
  /** Transferee of an in-progress leadership transfer, NONE otherwise. */
  leadTransferee: NodeId;
  rejected: Record<RejectReason, number>;
  electionsStarted: number;
}
