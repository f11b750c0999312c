// Consensus values <-> their wire form (proto/pgraft/v1/raft.proto). The wire
// enums keep the core's numbers, so types map by value; terms and indexes are
// uint64 on the wire (bigint) and must fit a JS number on the way back in.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { MessageType, type Entry, type Message, type SnapshotMeta } from "../consensus/types.js";
import {
  EntrySchema,
  EntryType as WireEntryType,
  MessageType as WireMessageType,
  RaftMessageSchema,
  SnapshotMetaSchema,
  type Entry as WireEntry,
  type RaftMessage,
  type SnapshotMeta as WireSnapshotMeta,
} from "../gen/pgraft/v1/raft_pb.js";

/** A received value that cannot be a valid consensus message. */
export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireFormatError";
  }
}

/** Message types that exist only inside a node and are never sent. */
export const LOCAL_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set([
  MessageType.Hup,
  MessageType.Beat,
  MessageType.Unreachable,
  MessageType.SnapStatus,
  MessageType.CheckQuorum,
]);

export type MessageTypeName = keyof typeof MessageType;

/** The names of every consensus message type (for per-type counters). */
export const MESSAGE_TYPE_NAMES: readonly MessageTypeName[] = Object.keys(MessageType).filter((k) => Number.isNaN(Number(k))) as MessageTypeName[];

export function messageTypeName(t: MessageType): MessageTypeName {
  return (MessageType[t] as MessageTypeName | undefined) ?? "Hup";
}

function u64(n: number): bigint {
  return BigInt(n);
}

function num(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireFormatError(`${field} ${v} is larger than ${Number.MAX_SAFE_INTEGER}`);
  return Number(v);
}

/** A copy as a plain Uint8Array: nothing kept aliases a receive buffer. */
function copyBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function entryToWire(e: Entry): WireEntry {
  return create(EntrySchema, { term: u64(e.term), index: u64(e.index), type: e.type as number as WireEntryType, data: e.data });
}

function entryFromWire(e: WireEntry): Entry {
  if (e.type !== WireEntryType.NORMAL && e.type !== WireEntryType.CONF_CHANGE) throw new WireFormatError(`unknown entry type ${e.type as number}`);
  return { term: num(e.term, "entry term"), index: num(e.index, "entry index"), type: e.type as number, data: copyBytes(e.data) };
}

export function snapshotMetaToWire(m: SnapshotMeta): MessageInitShape<typeof SnapshotMetaSchema> {
  return { index: u64(m.index), term: u64(m.term), conf: { voters: [...m.conf.voters], learners: [...m.conf.learners] } };
}

export function snapshotMetaFromWire(m: WireSnapshotMeta): SnapshotMeta {
  return {
    index: num(m.index, "snapshot index"),
    term: num(m.term, "snapshot term"),
    conf: { voters: [...(m.conf?.voters ?? [])], learners: [...(m.conf?.learners ?? [])] },
  };
}

/**
 * The wire form of a consensus message. The snapshot's bytes are not included
 * (they travel as InstallSnapshot chunks); its meta is.
 */
export function messageToWire(m: Message): RaftMessage {
  return create(RaftMessageSchema, {
    type: m.type as number as WireMessageType,
    clusterId: m.clusterId,
    from: m.from,
    to: m.to,
    term: u64(m.term),
    logTerm: u64(m.logTerm),
    index: u64(m.index),
    entries: m.entries.map(entryToWire),
    commit: u64(m.commit),
    reject: m.reject,
    rejectHint: u64(m.rejectHint),
    ...(m.logTermHint !== undefined ? { logTermHint: u64(m.logTermHint) } : {}),
    ...(m.snapshot ? { snapshot: snapshotMetaToWire(m.snapshot.meta) } : {}),
    ...(m.context !== undefined ? { context: m.context } : {}),
  });
}

/**
 * The consensus message for a received wire message. Throws WireFormatError
 * for an unknown type or a number that does not fit. A Snap's data is
 * supplied by the caller (it arrives in chunks).
 */
export function messageFromWire(w: RaftMessage, snapshotData?: Uint8Array): Message {
  if (typeof MessageType[w.type as number] !== "string") throw new WireFormatError(`unknown message type ${w.type}`);
  const type = w.type as number as MessageType;
  const m: Message = {
    type,
    clusterId: w.clusterId,
    from: w.from,
    to: w.to,
    term: num(w.term, "term"),
    logTerm: num(w.logTerm, "log term"),
    index: num(w.index, "index"),
    entries: w.entries.map(entryFromWire),
    commit: num(w.commit, "commit"),
    reject: w.reject,
    rejectHint: num(w.rejectHint, "reject hint"),
  };
  if (w.logTermHint !== undefined) m.logTermHint = num(w.logTermHint, "log term hint");
  if (w.snapshot) m.snapshot = { meta: snapshotMetaFromWire(w.snapshot), data: snapshotData ?? new Uint8Array() };
  if (w.context !== undefined) m.context = copyBytes(w.context);
  return m;
}

/** A rough size of a message on the wire, for batching and queue limits. */
export function approxSize(m: Message): number {
  let n = 64 + (m.context?.byteLength ?? 0);
  for (const e of m.entries) n += 24 + e.data.byteLength;
  return n;
}
