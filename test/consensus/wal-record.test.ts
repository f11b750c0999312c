import { test } from "node:test";
import assert from "node:assert/strict";
import { isRaftError } from "../../src/consensus/errors.js";
import { EntryType } from "../../src/consensus/types.js";
import { crc32c } from "../../src/consensus/wal/crc32c.js";
import {
  decodeRecord,
  encodeRecord,
  encodeRecords,
  isRecordAt,
  MAX_PAYLOAD_BYTES,
  RECORD_HEADER_BYTES,
  RecordType,
  type WalRecord,
} from "../../src/consensus/wal/record.js";

const BIG = Number.MAX_SAFE_INTEGER;
const samples: WalRecord[] = [
  { type: RecordType.SegmentHeader, seq: 1, firstIndex: 0 },
  { type: RecordType.SegmentHeader, seq: BIG, firstIndex: 2 ** 40 + 3 },
  { type: RecordType.Entry, entry: { index: 1, term: 1, type: EntryType.Normal, data: new Uint8Array() } },
  { type: RecordType.Entry, entry: { index: BIG, term: 2 ** 32 + 1, type: EntryType.ConfChange, data: Uint8Array.of(0, 1, 2, 255) } },
  { type: RecordType.HardState, hardState: { term: 5, vote: 0xffffffff, commit: 2 ** 33 } },
  { type: RecordType.SnapshotMark, index: 100, term: 7 },
];

test("every record type round-trips, including numbers up to 2^53-1", () => {
  const buf = encodeRecords(samples);
  let off = 0;
  for (const want of samples) {
    const r = decodeRecord(buf, off);
    assert.equal(r.kind, "ok");
    if (r.kind !== "ok") return;
    assert.deepEqual(r.record, want);
    assert.equal(r.offset, off);
    off = r.next;
  }
  assert.deepEqual(decodeRecord(buf, off), { kind: "end", offset: buf.length });
});

test("framing is [len][crc32c(type+payload)][type][payload], little-endian", () => {
  const b = encodeRecord({ type: RecordType.SnapshotMark, index: 0x0102030405, term: 9 });
  const v = new DataView(b.buffer);
  assert.equal(v.getUint32(0, true), 16);
  assert.equal(b[8], RecordType.SnapshotMark);
  assert.equal(v.getUint32(4, true), crc32c(b.subarray(8)));
  assert.equal(v.getUint32(9, true), 0x02030405);
  assert.equal(v.getUint32(13, true), 0x01);
});

test("a record cut at any point is torn, never ok or invalid", () => {
  const full = encodeRecord(samples[3]!);
  for (let cut = 1; cut < full.length; cut++) {
    const r = decodeRecord(full.subarray(0, cut), 0);
    assert.equal(r.kind, "torn", `cut at ${cut}`);
  }
});

test("any flipped bit makes the record torn (crc or length), never a different valid record", () => {
  const full = encodeRecord(samples[4]!);
  for (let bit = 0; bit < full.length * 8; bit++) {
    const b = full.slice();
    b[bit >> 3]! ^= 1 << (bit & 7);
    const r = decodeRecord(b, 0);
    assert.equal(r.kind, "torn", `bit ${bit}`);
  }
});

test("a correctly checksummed but malformed record is invalid, and a huge length is torn", () => {
  const mk = (type: number, payload: Uint8Array): Uint8Array => {
    const b = new Uint8Array(RECORD_HEADER_BYTES + payload.length);
    const v = new DataView(b.buffer);
    v.setUint32(0, payload.length, true);
    b[8] = type;
    b.set(payload, 9);
    v.setUint32(4, crc32c(b.subarray(8)), true);
    return b;
  };
  assert.equal(decodeRecord(mk(99, new Uint8Array(4)), 0).kind, "invalid");
  assert.equal(decodeRecord(mk(RecordType.HardState, new Uint8Array(23)), 0).kind, "invalid");
  const badEntryType = new Uint8Array(17);
  badEntryType[16] = 9;
  assert.equal(decodeRecord(mk(RecordType.Entry, badEntryType), 0).kind, "invalid");
  const huge = new Uint8Array(64);
  new DataView(huge.buffer).setUint32(0, MAX_PAYLOAD_BYTES + 1, true);
  const r = decodeRecord(huge, 0);
  assert.equal(r.kind, "torn");
  assert.match(r.kind === "torn" ? r.reason : "", /implausible/);
  // All zeros (a preallocated or zero-filled tail) is torn, not an empty valid record.
  assert.equal(decodeRecord(new Uint8Array(32), 0).kind, "torn");
});

test("encoding rejects numbers that cannot round-trip", () => {
  const bad: WalRecord[] = [
    { type: RecordType.Entry, entry: { index: 2 ** 53, term: 1, type: EntryType.Normal, data: new Uint8Array() } },
    { type: RecordType.Entry, entry: { index: 1, term: -1, type: EntryType.Normal, data: new Uint8Array() } },
    { type: RecordType.Entry, entry: { index: 1.5, term: 1, type: EntryType.Normal, data: new Uint8Array() } },
    { type: RecordType.Entry, entry: { index: 1, term: 1, type: 5 as EntryType, data: new Uint8Array() } },
    { type: RecordType.HardState, hardState: { term: 1, vote: NaN, commit: 0 } },
  ];
  for (const r of bad) assert.throws(() => encodeRecord(r), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
});

test("isRecordAt finds exactly the record boundaries of a log", () => {
  const buf = encodeRecords(samples);
  const starts = new Set<number>();
  for (let off = 0, r = decodeRecord(buf, 0); r.kind === "ok"; off = r.next, r = decodeRecord(buf, off)) starts.add(off);
  for (let p = 0; p < buf.length; p++) assert.equal(isRecordAt(buf, p), starts.has(p), `offset ${p}`);
  assert.equal(isRecordAt(new Uint8Array(64), 0), false);
});
