// Functional tests of the segmented WAL on the real file system.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isRaftError } from "../../src/consensus/errors.js";
import { type HardState } from "../../src/consensus/types.js";
import { nodeFs } from "../../src/consensus/wal/fs-layer.js";
import { RecordType } from "../../src/consensus/wal/record.js";
import { Wal, type WalOptions } from "../../src/consensus/wal/wal.js";
import { CountingFs, ents, parseRecords, plain, tempDir, walFiles } from "./wal-fs-helpers.js";

async function reopen(opts: WalOptions) {
  const r = await Wal.open(opts);
  await r.wal.close();
  return r.recovery;
}

test("append, close, reopen: entries and hard state round-trip", async (t) => {
  const dir = await tempDir(t);
  const { wal, recovery } = await Wal.open({ dir: join(dir, "nested", "wal") }); // creates missing dirs
  assert.deepEqual(recovery, { hardState: { term: 0, vote: 0, commit: 0 }, entries: [] });
  await wal.save(ents(1, 3, 1), { term: 1, vote: 2, commit: 0 });
  await wal.save(ents(4, 10, 1), { term: 1, vote: 2, commit: 4 });
  await wal.save([], { term: 2, vote: 0, commit: 9 });
  assert.equal(wal.stats.saves, 3);
  assert.equal(wal.stats.segments, 1);
  await wal.close();
  const rec = await reopen({ dir: join(dir, "nested", "wal") });
  assert.deepEqual(plain(rec.entries), plain(ents(1, 10, 1)));
  assert.deepEqual(rec.hardState, { term: 2, vote: 0, commit: 9 });
  assert.equal(rec.tornTail, undefined);
});

test("a conflicting suffix is truncated: 1..10@1 then 6..8@2 recovers 1..5@1 + 6..8@2", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  assert.equal(wal.lastIndex, undefined, "a fresh log has no position yet");
  const p = wal.save(ents(1, 10, 1));
  assert.equal(wal.lastIndex, 10, "lastIndex counts accepted saves");
  await p;
  await wal.save(ents(6, 8, 2));
  assert.equal(wal.lastIndex, 8);
  await wal.close();
  let rec = await reopen({ dir });
  assert.deepEqual(plain(rec.entries), plain([...ents(1, 5, 1), ...ents(6, 8, 2)]));
  // Appending after the truncation point continues from 8, and a truncation right at the first entry works too.
  const again = await Wal.open({ dir });
  await again.wal.save(ents(9, 9, 2));
  await assert.rejects(again.wal.save(ents(11, 11, 2)), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
  await again.wal.save(ents(1, 2, 3));
  await again.wal.close();
  rec = await reopen({ dir });
  assert.deepEqual(plain(rec.entries), plain(ents(1, 2, 3)));
});

test("the latest hard state wins, and an unchanged one is not rewritten", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  const states: HardState[] = [
    { term: 1, vote: 1, commit: 0 },
    { term: 2, vote: 3, commit: 0 },
    { term: 2, vote: 3, commit: 5 },
  ];
  await wal.save(ents(1, 5, 1), states[0]);
  for (const hs of states.slice(1)) await wal.save([], hs);
  const before = wal.stats.bytesWritten;
  await wal.save([], { ...states[2]! });
  assert.equal(wal.stats.bytesWritten, before, "an identical hard state is already durable");
  // Going back to an earlier value while a newer one is still in flight must be written.
  await Promise.all([wal.save([], states[1]), wal.save([], states[2])]);
  await wal.close();
  const rec = await reopen({ dir });
  assert.deepEqual(rec.hardState, states[2]);
});

test("small segments: rotation, every segment starts with header + hard state, recovery across them", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir, segmentBytes: 150 });
  for (let i = 1; i <= 60; i++) await wal.save(ents(i, i, 1), { term: 1, vote: 1, commit: Math.max(0, i - 2) });
  await wal.save(ents(30, 34, 2)); // a truncation that reaches back across segments
  const files = walFiles(await readdir(dir));
  assert.ok(files.length >= 10, `expected many segments, got ${files.length}`);
  assert.equal(wal.stats.segments, files.length);
  await wal.close();
  for (const [k, f] of files.entries()) {
    const recs = parseRecords(await readFile(join(dir, f)));
    assert.equal(recs[0]?.record.type, RecordType.SegmentHeader, f);
    assert.equal(recs[1]?.record.type, RecordType.HardState, f);
    assert.equal(f.slice(0, 16), (k + 1).toString(16).padStart(16, "0"), "names sort in creation order");
  }
  const rec = await reopen({ dir, segmentBytes: 150 });
  assert.deepEqual(plain(rec.entries), plain([...ents(1, 29, 1), ...ents(30, 34, 2)]));
  assert.deepEqual(rec.hardState, { term: 1, vote: 1, commit: 58 });
});

test("releaseTo deletes exactly the oldest segments whose entries are all covered; recovery keeps the rest and the latest hard state", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir, segmentBytes: 120 });
  // The hard state is written once, early: after release only the segment prefixes still carry it.
  await wal.save(ents(1, 1, 1), { term: 1, vote: 2, commit: 1 });
  for (let i = 2; i <= 40; i++) await wal.save(ents(i, i, 1));
  const files = walFiles(await readdir(dir));
  const maxOf = new Map<string, number>();
  for (const f of files) {
    let max = 0;
    for (const r of parseRecords(await readFile(join(dir, f)))) if (r.record.type === RecordType.Entry) max = Math.max(max, r.record.entry.index);
    maxOf.set(f, max);
  }
  const cut = 23;
  // Independent expectation: the longest prefix (never the last file) whose entries are all <= cut.
  let n = 0;
  while (n < files.length - 1 && maxOf.get(files[n]!)! <= cut) n++;
  assert.ok(n >= 3, "the test needs several releasable segments");
  await wal.releaseTo(cut);
  const left = walFiles(await readdir(dir));
  assert.deepEqual(left, files.slice(n));
  assert.equal(wal.stats.segments, left.length);
  await wal.releaseTo(cut); // idempotent
  assert.deepEqual(walFiles(await readdir(dir)), left);
  await wal.save(ents(41, 42, 1));
  await wal.close();

  const rec = await reopen({ dir, segmentBytes: 120 });
  assert.deepEqual(rec.hardState, { term: 1, vote: 2, commit: 1 });
  // Even with every entry released, the log still knows where it ends (from the segment header).
  const dirAll = await tempDir(t);
  const wa = await Wal.open({ dir: dirAll, segmentBytes: 1 });
  await wa.wal.save(ents(1, 4, 1));
  await wa.wal.save([], { term: 1, vote: 0, commit: 4 }); // rotates: the current segment holds no entries
  await wa.wal.releaseTo(4);
  await wa.wal.close();
  const wb = await Wal.open({ dir: dirAll, segmentBytes: 1 });
  assert.deepEqual(wb.recovery.entries, []);
  assert.equal(wb.wal.lastIndex, 4);
  await assert.rejects(wb.wal.save(ents(6, 6, 1)), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
  await wb.wal.close();
  const first = rec.entries[0]!.index;
  assert.ok(first <= cut + 1, `entries after the release point must survive (first is ${first})`);
  assert.deepEqual(plain(rec.entries), plain(ents(first, 42, 1)));
});

test("releaseTo never deletes the segment being written", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  await wal.save(ents(1, 5, 1), { term: 1, vote: 0, commit: 5 });
  await wal.releaseTo(1000);
  assert.equal(walFiles(await readdir(dir)).length, 1);
  await wal.close();
  assert.equal((await reopen({ dir })).entries.length, 5);
});

test("a gap or non-consecutive entries are rejected with INVALID_ARGUMENT and nothing is written", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  await wal.save(ents(1, 5, 1));
  const bytes = wal.stats.bytesWritten;
  await assert.rejects(wal.save(ents(7, 8, 1), { term: 9, vote: 9, commit: 9 }), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT") && /gap/.test(e.message));
  await assert.rejects(wal.save([...ents(6, 6, 1), ...ents(8, 8, 1)]), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
  assert.equal(wal.stats.bytesWritten, bytes);
  await wal.save(ents(6, 6, 1)); // the rejected saves did not move the log's end
  await wal.close();
  const rec = await reopen({ dir });
  assert.deepEqual(plain(rec.entries), plain(ents(1, 6, 1)));
  assert.deepEqual(rec.hardState, { term: 0, vote: 0, commit: 0 });
});

test("a snapshot mark replaces the log; the next entry must follow it", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  await wal.save(ents(1, 5, 1));
  await wal.save([], { term: 3, vote: 1, commit: 100 }, { index: 100, term: 3 });
  await assert.rejects(wal.save(ents(102, 102, 3)), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
  await wal.save(ents(101, 103, 3));
  await wal.close();
  const rec = await reopen({ dir });
  assert.deepEqual(plain(rec.entries), plain(ents(101, 103, 3)));
  assert.deepEqual(rec.snapshot, { index: 100, term: 3 });
  // With no entries after the mark, the log still knows where it ends.
  const dir2 = await tempDir(t);
  const w2 = await Wal.open({ dir: dir2 });
  await w2.wal.save([], { term: 1, vote: 0, commit: 1 }, { index: 1, term: 1 });
  await w2.wal.close();
  const w3 = await Wal.open({ dir: dir2 });
  assert.deepEqual(w3.recovery.entries, []);
  assert.equal(w3.wal.lastIndex, 1);
  await assert.rejects(w3.wal.save(ents(3, 3, 1)), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
  await w3.wal.save(ents(2, 2, 1));
  await w3.wal.close();
});

test("close waits for accepted saves; later saves and releases reject with STOPPED", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  const pending = wal.save(ents(1, 3, 1), { term: 1, vote: 1, commit: 0 });
  const closed = wal.close();
  await assert.rejects(wal.save(ents(4, 4, 1)), (e: unknown) => isRaftError(e, "STOPPED"));
  await assert.rejects(wal.releaseTo(1), (e: unknown) => isRaftError(e, "STOPPED"));
  await pending;
  await closed;
  await wal.close(); // idempotent
  assert.deepEqual(plain((await reopen({ dir })).entries), plain(ents(1, 3, 1)));
});

test("a failed fsync fails its saves and stops the WAL (the durable state is unknown)", async (t) => {
  const dir = await tempDir(t);
  let fail = false;
  const fs = new CountingFs(nodeFs, {
    beforeFsync: () => (fail ? Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" })) : Promise.resolve()),
  });
  const warnings: string[] = [];
  const { wal } = await Wal.open({ dir, fs, onWarning: (m) => warnings.push(m) });
  await wal.save(ents(1, 2, 1));
  fail = true;
  await assert.rejects(wal.save(ents(3, 3, 1)), /EIO/);
  fail = false;
  await assert.rejects(wal.save(ents(4, 4, 1)), (e: unknown) => isRaftError(e, "STOPPED"));
  assert.ok(warnings.some((w) => /EIO/.test(w)));
  await wal.close();
});

test("recovery refuses a hole in the segment sequence or a renamed segment", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir, segmentBytes: 100 });
  for (let i = 1; i <= 20; i++) await wal.save(ents(i, i, 1));
  await wal.close();
  const files = walFiles(await readdir(dir));
  assert.ok(files.length >= 4);
  const missing = files[2]!;
  await unlink(join(dir, missing));
  await assert.rejects(Wal.open({ dir }), (e: unknown) => isRaftError(e, "CORRUPT") && e.message.includes(files[3]!) && /missing/.test(e.message));

  // A missing segment that held only hard states is caught by the sequence numbers alone.
  const dir3 = await tempDir(t);
  const w3 = await Wal.open({ dir: dir3, segmentBytes: 60 });
  await w3.wal.save(ents(1, 2, 1));
  for (let c = 1; c <= 8; c++) await w3.wal.save([], { term: 1, vote: 0, commit: c });
  await w3.wal.close();
  const files3 = walFiles(await readdir(dir3));
  assert.ok(files3.length >= 4);
  await unlink(join(dir3, files3[2]!));
  await assert.rejects(Wal.open({ dir: dir3 }), (e: unknown) => isRaftError(e, "CORRUPT") && /sequence jumps/.test(e.message));

  const dir2 = await tempDir(t);
  const w2 = await Wal.open({ dir: dir2 });
  await w2.wal.save(ents(1, 2, 1));
  await w2.wal.close();
  const [only] = walFiles(await readdir(dir2));
  await rename(join(dir2, only!), join(dir2, "0000000000000005-0000000000000001.wal"));
  await assert.rejects(Wal.open({ dir: dir2 }), (e: unknown) => isRaftError(e, "CORRUPT") && /sequence 1/.test(e.message));
});

test("save copies entry data: mutating the caller's buffer afterwards does not change the log", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  const e = ents(1, 1, 1);
  const p = wal.save(e);
  e[0]!.data.fill(0x58);
  await p;
  await wal.close();
  assert.deepEqual(plain((await reopen({ dir })).entries), plain(ents(1, 1, 1)));
});
