import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isRaftError } from "../../src/consensus/errors.js";
import type { Snapshot } from "../../src/consensus/types.js";
import { nodeFs } from "../../src/consensus/wal/fs-layer.js";
import { decodeSnapshot, encodeSnapshot, snapshotFileName, SnapshotStore } from "../../src/consensus/wal/snapshot-store.js";
import { CountingFs, MemFs, tempDir } from "./wal-fs-helpers.js";

const snap = (index: number, term: number, size = 16): Snapshot => ({
  meta: { index, term, conf: { voters: [1, 2, 0xffffffff], learners: index % 2 ? [7] : [] } },
  data: Uint8Array.from({ length: size }, (_, i) => (i * 31 + index) & 0xff),
});

const same = (a: Snapshot | undefined, b: Snapshot): void => {
  assert.ok(a);
  assert.deepEqual(a.meta, b.meta);
  assert.deepEqual(Buffer.from(a.data), Buffer.from(b.data));
};

test("save and loadNewest round-trip; newest means highest index, not name order", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  const store = new SnapshotStore(join(dir, "snap"));
  assert.equal(await store.loadNewest(), undefined, "an empty (even missing) directory has no snapshot");
  await store.save(snap(10, 5));
  await store.save(snap(20, 3, 1 << 20)); // lower term sorts first by name, but the index is higher
  await store.save(snap(15, 4, 0));
  same(await store.loadNewest(), snap(20, 3, 1 << 20));
  assert.deepEqual((await readdir(join(dir, "snap"))).sort(), [snapshotFileName(3, 20), snapshotFileName(4, 15), snapshotFileName(5, 10)].sort());
  // A fresh instance (a restart) sees the same.
  same(await new SnapshotStore(join(dir, "snap")).loadNewest(), snap(20, 3, 1 << 20));
});

test("encode/decode: every flipped bit or truncation is detected", () => {
  const s = snap(300, 9, 40);
  const b = encodeSnapshot(s);
  const d = decodeSnapshot(b);
  assert.ok(typeof d !== "string");
  same(d, s);
  for (let bit = 0; bit < b.length * 8; bit++) {
    const c = b.slice();
    c[bit >> 3]! ^= 1 << (bit & 7);
    assert.equal(typeof decodeSnapshot(c), "string", `bit ${bit}`);
  }
  for (let cut = 0; cut < b.length; cut++) assert.equal(typeof decodeSnapshot(b.subarray(0, cut)), "string", `cut ${cut}`);
});

test("save is one file fsync, a rename and one directory fsync", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  const fs = new CountingFs(nodeFs);
  await new SnapshotStore(dir, fs).save(snap(3, 1));
  assert.equal(fs.fsyncs, 1);
  assert.equal(fs.dirFsyncs, 1);
  assert.deepEqual(await readdir(dir), [snapshotFileName(1, 3)]);
});

test("a temp file left by a crash before the rename is ignored and removed", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  const store = new SnapshotStore(dir);
  await store.save(snap(10, 1));
  const full = encodeSnapshot(snap(20, 1));
  await writeFile(join(dir, `${snapshotFileName(1, 20)}.tmp`), full.subarray(0, 30));
  await writeFile(join(dir, `${snapshotFileName(1, 30)}.tmp`), encodeSnapshot(snap(30, 1))); // complete but never renamed
  const warnings: string[] = [];
  same(await new SnapshotStore(dir, undefined, (m) => warnings.push(m)).loadNewest(), snap(10, 1));
  assert.deepEqual(await readdir(dir), [snapshotFileName(1, 10)]);
  assert.deepEqual(warnings, []);
});

test("a crash at any point of save leaves the old snapshot or the new one, never neither", async () => {
  const mem = new MemFs();
  const dir = "/data/snap";
  const old = snap(10, 1);
  const next = snap(20, 2, 100);
  await new SnapshotStore(dir, mem).save(old);
  let done = false;
  const saving = new SnapshotStore(dir, mem).save(next).then(() => (done = true));
  const images: MemFs[] = [];
  while (!done) {
    images.push(mem.crash());
    await Promise.resolve();
  }
  await saving;
  images.push(mem.crash());
  assert.ok(images.length > 5, `expected many crash points, got ${images.length}`);
  let sawOld = false;
  let sawNew = false;
  for (const img of images) {
    const got = await new SnapshotStore(dir, img).loadNewest();
    assert.ok(got);
    if (got.meta.index === 10) {
      same(got, old);
      sawOld = true;
    } else {
      same(got, next);
      sawNew = true;
    }
    assert.deepEqual((await img.readdir(dir)).filter((n) => n.endsWith(".tmp")), [], "temp files are cleaned up");
  }
  assert.ok(sawOld && sawNew);
  // Once save() resolved, the new snapshot survives a crash.
  same(await new SnapshotStore(dir, images[images.length - 1]).loadNewest(), next);
});

test("a corrupt newest snapshot falls back to the next older valid one, with a warning", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  const store = new SnapshotStore(dir);
  await store.save(snap(10, 1));
  await store.save(snap(20, 1));
  await store.save(snap(30, 2));
  const p30 = join(dir, snapshotFileName(2, 30));
  const b = await readFile(p30);
  b[b.length - 3]! ^= 0x01;
  await writeFile(p30, b);
  // A valid file under the wrong name is corrupt too: the name is what we sort by.
  await copyFile(join(dir, snapshotFileName(1, 10)), join(dir, snapshotFileName(1, 25)));
  const warnings: string[] = [];
  same(await new SnapshotStore(dir, undefined, (m) => warnings.push(m)).loadNewest(), snap(20, 1));
  assert.equal(warnings.length, 2);
  assert.ok(warnings[0]!.includes(p30) && /crc mismatch/.test(warnings[0]!), warnings[0]);
  assert.ok(warnings[1]!.includes(snapshotFileName(1, 25)), warnings[1]);
});

test("if every snapshot is corrupt, loadNewest throws CORRUPT rather than pretending there is none", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  await writeFile(join(dir, snapshotFileName(1, 5)), new Uint8Array(64));
  await assert.rejects(new SnapshotStore(dir).loadNewest(), (e: unknown) => isRaftError(e, "CORRUPT") && e.message.includes(snapshotFileName(1, 5)));
});

test("purge keeps the newest valid snapshots and never counts a corrupt one", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  const store = new SnapshotStore(dir);
  for (const i of [1, 2, 3, 4, 5]) await store.save(snap(i * 10, 1));
  await store.purge(2);
  assert.deepEqual((await readdir(dir)).sort(), [snapshotFileName(1, 40), snapshotFileName(1, 50)]);
  await store.purge(); // default keep = 2: nothing more to do
  assert.equal((await readdir(dir)).length, 2);

  // Newest corrupt: purge(1) must keep the newest *valid* one (40), not just the newest file.
  const p50 = join(dir, snapshotFileName(1, 50));
  await writeFile(p50, new Uint8Array(100));
  await store.save(snap(35, 1));
  await store.purge(1);
  assert.deepEqual((await readdir(dir)).sort(), [snapshotFileName(1, 40), snapshotFileName(1, 50)]);
  same(await store.loadNewest(), snap(40, 1));
  await assert.rejects(store.purge(0), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
});

test("concurrent saves and purges do not trip over each other", async (t) => {
  const dir = await tempDir(t, "pgraft-snap-");
  const store = new SnapshotStore(dir);
  await Promise.all([store.save(snap(1, 1)), store.purge(1), store.save(snap(2, 1)), store.purge(1), store.save(snap(3, 1)), store.purge(1)]);
  assert.deepEqual(await readdir(dir), [snapshotFileName(1, 3)]);
});
