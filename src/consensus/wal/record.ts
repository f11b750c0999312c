// WAL record framing:
//
//   [u32 LE payload length][u32 LE crc32c(type byte ++ payload)][u8 type][payload]
//
// The length comes first so a reader can tell "the file ends inside this
// record" (torn write) from "the record is there but its bytes are wrong".
// The CRC covers the type byte so a flipped type cannot reinterpret a payload.
// 64-bit numbers are stored as two u32 LE halves (low first); terms, indexes
// and node ids are JS numbers below 2^53.
import { RaftError } from "../errors.js";
import { EntryType, type Entry, type HardState } from "../types.js";
import { crc32c } from "./crc32c.js";

export const RECORD_HEADER_BYTES = 9;
const ENTRY_FIXED_BYTES = 17;
/** Largest entry data the WAL accepts. */
export const MAX_ENTRY_DATA_BYTES = 64 * 1024 * 1024;
/** A length field above this cannot have been written by us: it is damage, not a record. */
export const MAX_PAYLOAD_BYTES = MAX_ENTRY_DATA_BYTES + ENTRY_FIXED_BYTES;

/** "PGRW" read as a u32 LE: identifies a pgraft WAL segment. */
export const SEGMENT_MAGIC = 0x57524750;
export const SEGMENT_VERSION = 1;

export enum RecordType {
  /** First record of every segment: magic, version, segment sequence number. */
  SegmentHeader = 1,
  Entry = 2,
  HardState = 3,
  /** The log was replaced by a snapshot at (index, term): earlier entries are gone. */
  SnapshotMark = 4,
}

export type WalRecord =
  | { type: RecordType.SegmentHeader; seq: number; firstIndex: number }
  | { type: RecordType.Entry; entry: Entry }
  | { type: RecordType.HardState; hardState: HardState }
  | { type: RecordType.SnapshotMark; index: number; term: number };

export type DecodeResult =
  /** A whole, checksummed, well-formed record in [offset, next). */
  | { kind: "ok"; record: WalRecord; offset: number; next: number }
  /** offset is exactly the end of the buffer. */
  | { kind: "end"; offset: number }
  /** Incomplete header, length past the end or implausible, or CRC mismatch: what a torn write (or bit rot) looks like. */
  | { kind: "torn"; offset: number; reason: string }
  /** The CRC matches but the contents make no sense (unknown type, bad size): a writer bug or a foreign file, never a torn write. */
  | { kind: "invalid"; offset: number; reason: string };

const TWO_32 = 0x1_0000_0000;
const ENTRY_TYPES: ReadonlySet<number> = new Set<number>([EntryType.Normal, EntryType.ConfChange]);

function checkU64(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RaftError("INVALID_ARGUMENT", `${what} must be a non-negative safe integer, got ${n}`);
}

function putU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % TWO_32, true);
  v.setUint32(at + 4, Math.floor(n / TWO_32), true);
}

/** undefined when the value is >= 2^53 (we never write such a value). */
function getU64(v: DataView, at: number): number | undefined {
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  if (hi > 0x1fffff) return undefined;
  return hi * TWO_32 + lo;
}

function payloadSize(rec: WalRecord): number {
  switch (rec.type) {
    case RecordType.SegmentHeader:
      return 24;
    case RecordType.Entry:
      return ENTRY_FIXED_BYTES + rec.entry.data.byteLength;
    case RecordType.HardState:
      return 24;
    case RecordType.SnapshotMark:
      return 16;
  }
}

/** Encoded size of a record, header included. */
export const recordSize = (rec: WalRecord): number => RECORD_HEADER_BYTES + payloadSize(rec);

/** Validate `rec` (throws RaftError INVALID_ARGUMENT) and encode it into `out` at `at`; returns the end offset. */
export function encodeRecordInto(rec: WalRecord, out: Uint8Array, at: number): number {
  const len = payloadSize(rec);
  if (len > MAX_PAYLOAD_BYTES) throw new RaftError("INVALID_ARGUMENT", `WAL record payload of ${len} bytes exceeds the ${MAX_PAYLOAD_BYTES}-byte limit`);
  const v = new DataView(out.buffer, out.byteOffset + at, RECORD_HEADER_BYTES + len);
  const p = RECORD_HEADER_BYTES; // payload start, relative to `at`
  switch (rec.type) {
    case RecordType.SegmentHeader:
      checkU64("segment seq", rec.seq);
      checkU64("segment first index", rec.firstIndex);
      v.setUint32(p, SEGMENT_MAGIC, true);
      v.setUint32(p + 4, SEGMENT_VERSION, true);
      putU64(v, p + 8, rec.seq);
      putU64(v, p + 16, rec.firstIndex);
      break;
    case RecordType.Entry: {
      const e = rec.entry;
      checkU64("entry term", e.term);
      checkU64("entry index", e.index);
      if (!ENTRY_TYPES.has(e.type)) {
        throw new RaftError("INVALID_ARGUMENT", `entry ${e.index} has unknown type ${String(e.type)}`);
      }
      putU64(v, p, e.term);
      putU64(v, p + 8, e.index);
      v.setUint8(p + 16, e.type);
      out.set(e.data, at + p + ENTRY_FIXED_BYTES);
      break;
    }
    case RecordType.HardState: {
      const hs = rec.hardState;
      checkU64("hard state term", hs.term);
      checkU64("hard state vote", hs.vote);
      checkU64("hard state commit", hs.commit);
      putU64(v, p, hs.term);
      putU64(v, p + 8, hs.vote);
      putU64(v, p + 16, hs.commit);
      break;
    }
    case RecordType.SnapshotMark:
      checkU64("snapshot index", rec.index);
      checkU64("snapshot term", rec.term);
      putU64(v, p, rec.index);
      putU64(v, p + 8, rec.term);
      break;
  }
  v.setUint32(0, len, true);
  v.setUint8(8, rec.type);
  // CRC over [type][payload], which are contiguous starting at header byte 8.
  v.setUint32(4, crc32c(out.subarray(at + 8, at + RECORD_HEADER_BYTES + len)), true);
  return at + RECORD_HEADER_BYTES + len;
}

/** Encode records back to back into one buffer (one write for a whole batch). */
export function encodeRecords(recs: readonly WalRecord[]): Uint8Array {
  let total = 0;
  for (const r of recs) total += recordSize(r);
  const out = new Uint8Array(total);
  let at = 0;
  for (const r of recs) at = encodeRecordInto(r, out, at);
  return out;
}

export const encodeRecord = (rec: WalRecord): Uint8Array => encodeRecords([rec]);

/** Decode the record starting at `offset` in `buf`. Never throws. */
export function decodeRecord(buf: Uint8Array, offset: number): DecodeResult {
  const avail = buf.byteLength - offset;
  if (avail === 0) return { kind: "end", offset };
  if (avail < RECORD_HEADER_BYTES) return { kind: "torn", offset, reason: `incomplete record header (${avail} of ${RECORD_HEADER_BYTES} bytes)` };
  const hv = new DataView(buf.buffer, buf.byteOffset + offset, RECORD_HEADER_BYTES);
  const len = hv.getUint32(0, true);
  if (len > MAX_PAYLOAD_BYTES) return { kind: "torn", offset, reason: `implausible record length ${len}` };
  const end = offset + RECORD_HEADER_BYTES + len;
  if (end > buf.byteLength) {
    return { kind: "torn", offset, reason: `record of ${RECORD_HEADER_BYTES + len} bytes runs past the end of the file (${avail} bytes left)` };
  }
  const want = hv.getUint32(4, true);
  const got = crc32c(buf.subarray(offset + 8, end));
  if (want !== got) return { kind: "torn", offset, reason: `crc mismatch (stored ${hex32(want)}, computed ${hex32(got)})` };
  const type = hv.getUint8(8);
  const v = new DataView(buf.buffer, buf.byteOffset + offset + RECORD_HEADER_BYTES, len);
  const invalid = (reason: string): DecodeResult => ({ kind: "invalid", offset, reason });
  const ok = (record: WalRecord): DecodeResult => ({ kind: "ok", record, offset, next: end });
  const u64s = (n: number): number[] | undefined => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const x = getU64(v, i * 8);
      if (x === undefined) return undefined;
      out.push(x);
    }
    return out;
  };
  switch (type as RecordType) {
    case RecordType.SegmentHeader: {
      if (len !== 24) return invalid(`segment header of ${len} bytes`);
      if (v.getUint32(0, true) !== SEGMENT_MAGIC) return invalid("bad segment magic");
      const version = v.getUint32(4, true);
      if (version !== SEGMENT_VERSION) return invalid(`unsupported segment version ${version}`);
      const seq = getU64(v, 8);
      const firstIndex = getU64(v, 16);
      if (seq === undefined || firstIndex === undefined) return invalid("segment header number out of range");
      return ok({ type: RecordType.SegmentHeader, seq, firstIndex });
    }
    case RecordType.Entry: {
      if (len < ENTRY_FIXED_BYTES) return invalid(`entry record of ${len} bytes`);
      const nums = u64s(2);
      if (!nums) return invalid("entry term/index out of range");
      const et = v.getUint8(16);
      if (!ENTRY_TYPES.has(et)) return invalid(`unknown entry type ${et}`);
      // Copy so entries do not pin the whole segment buffer in memory.
      const data = buf.slice(offset + RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES, end);
      return ok({ type: RecordType.Entry, entry: { term: nums[0]!, index: nums[1]!, type: et, data } });
    }
    case RecordType.HardState: {
      if (len !== 24) return invalid(`hard state record of ${len} bytes`);
      const nums = u64s(3);
      if (!nums) return invalid("hard state number out of range");
      return ok({ type: RecordType.HardState, hardState: { term: nums[0]!, vote: nums[1]!, commit: nums[2]! } });
    }
    case RecordType.SnapshotMark: {
      if (len !== 16) return invalid(`snapshot mark of ${len} bytes`);
      const nums = u64s(2);
      if (!nums) return invalid("snapshot mark number out of range");
      return ok({ type: RecordType.SnapshotMark, index: nums[0]!, term: nums[1]! });
    }
    default:
      return invalid(`unknown record type ${type}`);
  }
}

/**
 * Whether a whole, valid record starts at `offset`. Cheap structural checks
 * (type, exact size for fixed-size records, high words of 64-bit fields) come
 * before the CRC so scanning arbitrary bytes for a record costs little.
 */
export function isRecordAt(buf: Uint8Array, offset: number): boolean {
  if (offset + RECORD_HEADER_BYTES > buf.byteLength) return false;
  // The type byte first: it rejects all but 4 of 256 byte values before any other work.
  const type = buf[offset + 8]!;
  if (type < FIRST_TYPE || type > LAST_TYPE) return false;
  const len = (buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16) | (buf[offset + 3]! << 24)) >>> 0;
  if (offset + RECORD_HEADER_BYTES + len > buf.byteLength) return false;
  const p = offset + RECORD_HEADER_BYTES;
  switch (type as RecordType) {
    case RecordType.SegmentHeader:
    case RecordType.HardState:
      if (len !== 24) return false;
      break;
    case RecordType.SnapshotMark:
      if (len !== 16 || !hiWordOk(buf, p) || !hiWordOk(buf, p + 8)) return false;
      break;
    case RecordType.Entry:
      if (len < ENTRY_FIXED_BYTES || !hiWordOk(buf, p) || !hiWordOk(buf, p + 8) || !ENTRY_TYPES.has(buf[p + 16]!)) return false;
      break;
  }
  return decodeRecord(buf, offset).kind === "ok";
}

const FIRST_TYPE: number = RecordType.SegmentHeader;
const LAST_TYPE: number = RecordType.SnapshotMark;

/** The u64 at `at` is below 2^53 (its high u32 is <= 0x1fffff). */
const hiWordOk = (buf: Uint8Array, at: number): boolean => buf[at + 7] === 0 && buf[at + 6]! <= 0x1f;

export const hex32 = (n: number): string => "0x" + n.toString(16).padStart(8, "0");
