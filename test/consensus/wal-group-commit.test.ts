// Group commit: concurrent saves share one fsync, and none resolves before an fsync covers it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { seededRandom } from "../../src/consensus/random.js";
import { nodeFs } from "../../src/consensus/wal/fs-layer.js";
import { RecordType } from "../../src/consensus/wal/record.js";
import { Wal } from "../../src/consensus/wal/wal.js";
import { CountingFs, ents, parseRecords, tempDir, walFiles } from "./wal-fs-helpers.js";

/** End offset of each entry's record in the (single) segment file. */
async function recordEnds(dir: string): Promise<Map<number, number>> {
  const files = walFiles(await readdir(dir));
  assert.equal(files.length, 1);
  const ends = new Map<number, number>();
  for (const r of parseRecords(await readFile(join(dir, files[0]!)))) if (r.record.type === RecordType.Entry) ends.set(r.record.entry.index, r.next);
  return ends;
}

test("100 saves arriving during a slow fsync are written and covered by ONE next fsync", async (t) => {
  const dir = await tempDir(t);
  let gate: Promise<void> = Promise.resolve();
  const fs = new CountingFs(nodeFs, { beforeFsync: () => gate });
  const { wal } = await Wal.open({ dir, fs });
  const seg = join(dir, walFiles(await readdir(dir))[0]!);
  const base = fs.fsyncs;
  let release!: () => void;
  gate = new Promise((r) => (release = r));

  const durableWhenResolved = new Map<number, number>();
  const saves: Promise<void>[] = [];
  const fire = (i: number): void => {
    saves.push(wal.save(ents(i, i, 1)).then(() => void durableWhenResolved.set(i, fs.durable.get(seg) ?? 0)));
  };
  fire(1);
  await fs.fsyncStarted(fs.fsyncsStarted + 1); // save 1's fsync is now stalled
  for (let i = 2; i <= 100; i++) fire(i);
  await new Promise(setImmediate);
  assert.equal(durableWhenResolved.size, 0, "nothing may resolve while its fsync is stalled");
  release();
  await Promise.all(saves);

  assert.equal(fs.fsyncs - base, 2, "one fsync for save 1, one shared by the 99 that queued behind it");
  assert.equal(wal.stats.saves, 100);
  const ends = await recordEnds(dir);
  for (let i = 1; i <= 100; i++) {
    assert.ok(ends.get(i)! <= durableWhenResolved.get(i)!, `save ${i} resolved with ${durableWhenResolved.get(i)} bytes durable, its record ends at ${ends.get(i)}`);
  }
  await wal.close();
});

test("saves issued in one synchronous burst share a single fsync", async (t) => {
  const dir = await tempDir(t);
  const fs = new CountingFs(nodeFs);
  const { wal } = await Wal.open({ dir, fs });
  const base = fs.fsyncs;
  await Promise.all(Array.from({ length: 100 }, (_, k) => wal.save(ents(k + 1, k + 1, 1), { term: 1, vote: 1, commit: k })));
  assert.equal(fs.fsyncs - base, 1);
  await wal.close();
  const { wal: w2, recovery } = await Wal.open({ dir });
  assert.equal(recovery.entries.length, 100);
  assert.deepEqual(recovery.hardState, { term: 1, vote: 1, commit: 99 });
  await w2.close();
});

test("random interleavings: every save is covered by the first fsync that starts after it arrived during an fsync", async (t) => {
  for (const seed of [1, 2, 3]) {
    const dir = await tempDir(t);
    const rnd = seededRandom(seed);
    const stalled: (() => void)[] = [];
    const fs = new CountingFs(nodeFs, { beforeFsync: () => new Promise<void>((r) => stalled.push(r)) });
    const opening = Wal.open({ dir, fs });
    while (stalled.length === 0) await new Promise(setImmediate);
    stalled.shift()!(); // let open's own fsync through
    const { wal } = await opening;
    const seg = join(dir, walFiles(await readdir(dir))[0]!);
    const base = fs.fsyncs;

    const facts: { i: number; startedAtIssue: number; fsyncRunning: boolean; completedAtResolve?: number; durableAtResolve?: number }[] = [];
    const saves: Promise<void>[] = [];
    let next = 1;
    while (next <= 100 || stalled.length || facts.some((f) => f.completedAtResolve === undefined)) {
      if (next <= 100 && rnd() < 0.8) {
        const f = { i: next, startedAtIssue: fs.fsyncsStarted, fsyncRunning: fs.fsyncsStarted > fs.fsyncs, completedAtResolve: undefined as number | undefined, durableAtResolve: undefined as number | undefined };
        facts.push(f);
        saves.push(
          wal.save(ents(next, next, 1)).then(() => {
            f.completedAtResolve = fs.fsyncs;
            f.durableAtResolve = fs.durable.get(seg) ?? 0;
          }),
        );
        next++;
      } else if (stalled.length) {
        stalled.shift()!();
      }
      await new Promise(setImmediate);
    }
    await Promise.all(saves);
    const ends = await recordEnds(dir);
    for (const f of facts) {
      assert.ok(ends.get(f.i)! <= f.durableAtResolve!, `seed ${seed} save ${f.i}: resolved before an fsync covered it`);
      // Arrived during fsync k: must be covered by fsync k+1. Otherwise at most one more (a write may be in progress).
      const bound = f.startedAtIssue + (f.fsyncRunning ? 1 : 2);
      assert.ok(f.completedAtResolve! <= bound, `seed ${seed} save ${f.i}: waited for ${f.completedAtResolve! - f.startedAtIssue} fsyncs`);
    }
    assert.ok(fs.fsyncs - base < 50, `seed ${seed}: ${fs.fsyncs - base} fsyncs for 100 saves`);
    await wal.close();
  }
});
