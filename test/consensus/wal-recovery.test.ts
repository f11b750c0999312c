// Recovery from damaged segment files: torn tails are cut, anything else is CORRUPT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { isRaftError } from "../../src/consensus/errors.js";
import { encodeRecords, RecordType } from "../../src/consensus/wal/record.js";
import { segmentName, Wal } from "../../src/consensus/wal/wal.js";
import { ents, MemFs, parseRecords, plain, tempDir, walFiles } from "./wal-fs-helpers.js";

const N = 8;

/** A one-segment WAL with entries 1..N (one record each) and a hard state; returns the segment's name and bytes. */
async function buildLog(dir: string, lastIsHardState = false): Promise<{ name: string; bytes: Uint8Array }> {
  const { wal } = await Wal.open({ dir });
  await wal.save(ents(1, 1, 1), { term: 1, vote: 1, commit: 0 });
  for (let i = 2; i <= N; i++) await wal.save(ents(i, i, 1));
  if (lastIsHardState) await wal.save([], { term: 4, vote: 2, commit: 7 });
  await wal.close();
  const [name] = walFiles(await readdir(dir));
  // A plain Uint8Array copy: Buffer#slice would alias and let one test case damage the next.
  return { name: name!, bytes: new Uint8Array(await readFile(join(dir, name!))) };
}

async function dirWith(base: string, sub: string, files: Record<string, Uint8Array>): Promise<string> {
  const d = join(base, sub);
  await mkdir(d);
  for (const [n, b] of Object.entries(files)) await writeFile(join(d, n), b);
  return d;
}

test("a crash at every byte offset of the last record recovers exactly the prefix, and the log stays usable", async (t) => {
  const base = await tempDir(t);
  const { name, bytes } = await buildLog(join(base, "orig"));
  const recs = parseRecords(bytes);
  const last = recs[recs.length - 1]!;
  assert.equal(last.record.type, RecordType.Entry);
  assert.equal(last.next, bytes.length);
  for (let cut = last.offset; cut < last.next; cut++) {
    const d = await dirWith(base, `cut${cut}`, { [name]: bytes.subarray(0, cut) });
    const warnings: string[] = [];
    const { wal, recovery } = await Wal.open({ dir: d, onWarning: (m) => warnings.push(m) });
    assert.deepEqual(plain(recovery.entries), plain(ents(1, N - 1, 1)), `cut ${cut}`);
    assert.deepEqual(recovery.hardState, { term: 1, vote: 1, commit: 0 });
    if (cut === last.offset) {
      // Cut exactly on a record boundary: a clean, shorter log.
      assert.equal(recovery.tornTail, undefined);
      assert.deepEqual(warnings, []);
    } else {
      assert.deepEqual(recovery.tornTail, { file: join(d, name), offset: last.offset, droppedBytes: cut - last.offset }, `cut ${cut}`);
      assert.equal(warnings.length, 1);
      assert.ok(warnings[0]!.includes(name) && warnings[0]!.includes(`offset ${last.offset}`), warnings[0]);
      assert.equal((await stat(join(d, name))).size, last.offset, "the torn bytes are truncated away");
    }
    await wal.save(ents(N, N + 1, 2));
    await wal.close();
    const again = await Wal.open({ dir: d });
    assert.deepEqual(plain(again.recovery.entries), plain([...ents(1, N - 1, 1), ...ents(N, N + 1, 2)]), `cut ${cut} after re-save`);
    assert.equal(again.recovery.tornTail, undefined);
    await again.wal.close();
  }
});

test("a torn final hard-state record falls back to the previous hard state", async (t) => {
  const base = await tempDir(t);
  const { name, bytes } = await buildLog(join(base, "orig"), true);
  const recs = parseRecords(bytes);
  const last = recs[recs.length - 1]!;
  assert.equal(last.record.type, RecordType.HardState);
  for (let cut = last.offset + 1; cut < last.next; cut++) {
    const d = await dirWith(base, `cut${cut}`, { [name]: bytes.subarray(0, cut) });
    const { wal, recovery } = await Wal.open({ dir: d });
    assert.deepEqual(recovery.hardState, { term: 1, vote: 1, commit: 0 });
    assert.equal(recovery.entries.length, N);
    assert.equal(recovery.tornTail?.offset, last.offset);
    await wal.close();
  }
});

test("a zero-filled or garbage tail is a torn tail", async (t) => {
  const base = await tempDir(t);
  const { name, bytes } = await buildLog(join(base, "orig"));
  const garbage = Uint8Array.from({ length: 700 }, (_, i) => (i * 131 + 7) & 0xff);
  for (const [label, tail] of [["zeros", new Uint8Array(4096)], ["garbage", garbage]] as const) {
    const d = await dirWith(base, label, { [name]: Buffer.concat([bytes, tail]) });
    const { wal, recovery } = await Wal.open({ dir: d });
    assert.equal(recovery.entries.length, N, label);
    assert.deepEqual(recovery.tornTail, { file: join(d, name), offset: bytes.length, droppedBytes: tail.length }, label);
    await wal.close();
  }
});

test("a flipped bit in a middle record is CORRUPT naming the file and the record's offset; in the last record it is a torn tail", async (t) => {
  const base = await tempDir(t);
  const { name, bytes } = await buildLog(join(base, "orig"));
  const recs = parseRecords(bytes);
  const mid = recs[4]!; // an entry record with whole records after it
  assert.equal(mid.record.type, RecordType.Entry);
  for (let bit = 0; bit < (mid.next - mid.offset) * 8; bit++) {
    const b = bytes.slice();
    b[mid.offset + (bit >> 3)]! ^= 1 << (bit & 7);
    const d = await dirWith(base, `mid${bit}`, { [name]: b });
    await assert.rejects(
      Wal.open({ dir: d }),
      (e: unknown) => isRaftError(e, "CORRUPT") && e.message.startsWith(`${join(d, name)}: corrupt record at offset ${mid.offset}:`),
      `bit ${bit}`,
    );
  }
  // The header record too: nothing may be skipped silently.
  const h = bytes.slice();
  h[12]! ^= 0x10;
  await assert.rejects(Wal.open({ dir: await dirWith(base, "hdr", { [name]: h }) }), (e: unknown) => isRaftError(e, "CORRUPT") && /offset 0:/.test(e.message));

  // Same file, in memory (each case rewrites the file and fsyncs: keep it off the disk).
  const last = recs[recs.length - 1]!;
  for (let bit = 0; bit < (last.next - last.offset) * 8; bit++) {
    const b = bytes.slice();
    b[last.offset + (bit >> 3)]! ^= 1 << (bit & 7);
    const mem = new MemFs();
    await mem.mkdirp("/w");
    mem.setContents(`/w/${name}`, b);
    const { wal, recovery } = await Wal.open({ dir: "/w", fs: mem });
    assert.deepEqual(plain(recovery.entries), plain(ents(1, N - 1, 1)), `bit ${bit}`);
    assert.equal(recovery.tornTail?.offset, last.offset);
    await wal.close();
  }
});

test("scanning a large garbage or zero tail for later records stays fast", async () => {
  for (const tail of [randomBytes(8 << 20), new Uint8Array(8 << 20)]) {
    const mem = new MemFs();
    const { wal } = await Wal.open({ dir: "/w", fs: mem });
    await wal.save(ents(1, 3, 1));
    await wal.close();
    const [name] = walFiles(await mem.readdir("/w"));
    const good = mem.contents(`/w/${name}`);
    mem.setContents(`/w/${name}`, Buffer.concat([good, tail]));
    const started = Date.now();
    const r = await Wal.open({ dir: "/w", fs: mem });
    // A byte-by-byte CRC scan would take minutes here; the structural pre-checks make it linear.
    assert.ok(Date.now() - started < 10_000, `recovery took ${Date.now() - started} ms`);
    assert.equal(r.recovery.entries.length, 3);
    assert.deepEqual(r.recovery.tornTail, { file: `/w/${name}`, offset: good.length, droppedBytes: tail.length });
    await r.wal.close();
  }
});

test("any bad record in a segment that is not the last is CORRUPT, even at its end", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir, segmentBytes: 120 });
  for (let i = 1; i <= 12; i++) await wal.save(ents(i, i, 1));
  await wal.close();
  const files = walFiles(await readdir(dir));
  assert.ok(files.length >= 3);
  const victim = join(dir, files[0]!);
  const bytes = await readFile(victim);
  const recs = parseRecords(bytes);
  const last = recs[recs.length - 1]!;
  await writeFile(victim, bytes.subarray(0, last.next - 1)); // torn, but not in the last segment
  await assert.rejects(Wal.open({ dir }), (e: unknown) => isRaftError(e, "CORRUPT") && e.message.startsWith(`${victim}: corrupt record at offset ${last.offset}:`));
});

test("a crash while creating a new segment: an incomplete header drops the file, a torn hard state is rewritten", async (t) => {
  const base = await tempDir(t);
  const orig = join(base, "orig");
  const { name, bytes } = await buildLog(orig);
  const hs = { term: 1, vote: 1, commit: 0 };
  const prefix = encodeRecords([
    { type: RecordType.SegmentHeader, seq: 2, firstIndex: N + 1 },
    { type: RecordType.HardState, hardState: hs },
  ]);
  const headerLen = parseRecords(prefix)[0]!.next;
  const next = segmentName(2, N + 1);
  for (const cut of [0, 1, 8, headerLen - 1]) {
    const d = await dirWith(base, `hdr${cut}`, { [name]: bytes, [next]: prefix.subarray(0, cut) });
    const { wal, recovery } = await Wal.open({ dir: d });
    assert.equal(recovery.entries.length, N);
    assert.deepEqual(recovery.tornTail, { file: join(d, next), offset: 0, droppedBytes: cut });
    assert.deepEqual(walFiles(await readdir(d)), [name]);
    assert.equal(wal.stats.segments, 1);
    await wal.save(ents(N + 1, N + 1, 1));
    await wal.close();
    assert.equal((await Wal.open({ dir: d }).then(async (r) => (await r.wal.close(), r.recovery))).entries.length, N + 1);
  }
  // Header whole but the hard state torn: the segment is kept and gets a hard state again.
  const d = await dirWith(base, "hs", { [name]: bytes, [next]: prefix.subarray(0, headerLen + 5) });
  const { wal, recovery } = await Wal.open({ dir: d, segmentBytes: 1 });
  assert.deepEqual(recovery.tornTail, { file: join(d, next), offset: headerLen, droppedBytes: 5 });
  const recs = parseRecords(await readFile(join(d, next)));
  assert.deepEqual(
    recs.map((r) => r.record.type),
    [RecordType.SegmentHeader, RecordType.HardState],
  );
  // So the old segment can go without losing the hard state.
  await wal.save(ents(N + 1, N + 1, 1)); // rotates (segmentBytes 1)
  await wal.releaseTo(N + 1);
  await wal.close();
  const files = walFiles(await readdir(d));
  assert.equal(files.length, 1);
  const again = await Wal.open({ dir: d });
  assert.deepEqual(again.recovery.hardState, hs);
  assert.deepEqual(plain(again.recovery.entries), plain(ents(N + 1, N + 1, 1)));
  await again.wal.save(ents(N + 2, N + 2, 1));
  await again.wal.close();
});

test("entries that do not follow the log across segments are CORRUPT", async (t) => {
  const dir = await tempDir(t);
  const { wal } = await Wal.open({ dir });
  await wal.save(ents(1, 3, 1));
  await wal.close();
  // A hand-made second segment that claims to start after 3 but holds entry 6.
  const seg = encodeRecords([
    { type: RecordType.SegmentHeader, seq: 2, firstIndex: 4 },
    { type: RecordType.HardState, hardState: { term: 1, vote: 0, commit: 0 } },
    { type: RecordType.Entry, entry: ents(6, 6, 1)[0]! },
  ]);
  const name = segmentName(2, 4);
  await writeFile(join(dir, name), seg);
  const off = parseRecords(seg)[2]!.offset;
  await assert.rejects(Wal.open({ dir }), (e: unknown) => isRaftError(e, "CORRUPT") && e.message.startsWith(`${join(dir, name)}: corrupt record at offset ${off}:`));
  // A header that disagrees with where the previous segment ended.
  await writeFile(join(dir, name), encodeRecords([{ type: RecordType.SegmentHeader, seq: 2, firstIndex: 9 }]));
  await assert.rejects(Wal.open({ dir }), (e: unknown) => isRaftError(e, "CORRUPT") && /missing/.test(e.message));
});
