// Power failures at random instants, on a file system that keeps only fsynced
// bytes (optionally plus a torn prefix of what was in flight): recovery must
// never lose an acknowledged save, and must equal the log after some prefix of
// the issued saves' records (saves are written in order; each record is atomic,
// a whole save is not: entries of an unacknowledged save may survive without its hard state).
import { test } from "node:test";
import assert from "node:assert/strict";
import { seededRandom, randomInt, type Random } from "../../src/consensus/random.js";
import type { Entry, HardState } from "../../src/consensus/types.js";
import { Wal } from "../../src/consensus/wal/wal.js";
import { ents, MemFs, plain } from "./wal-fs-helpers.js";

const DIR = "/data/wal";
const ZERO: HardState = { term: 0, vote: 0, commit: 0 };

interface SaveOp {
  entries: Entry[];
  hs?: HardState;
}

/** The log and hard state after applying `ops` in order (the model). */
function model(ops: readonly SaveOp[]): { log: Entry[]; hs: HardState } {
  let log: Entry[] = [];
  let hs = ZERO;
  for (const op of ops) {
    const first = op.entries[0];
    if (first) log = [...log.filter((e) => e.index < first.index), ...op.entries];
    if (op.hs) hs = op.hs;
  }
  return { log, hs };
}

/** A random valid save: appends, sometimes truncates back (never at or below `floor`). */
function randomSave(rnd: Random, last: number, term: number, floor: number): SaveOp {
  const from = rnd() < 0.25 ? randomInt(rnd, Math.max(floor + 1, last - 4), last + 2) : last + 1;
  const n = randomInt(rnd, 0, 4);
  const op: SaveOp = { entries: n ? ents(from, from + n - 1, term) : [] };
  if (n === 0 || rnd() < 0.3) op.hs = { term, vote: randomInt(rnd, 0, 4), commit: Math.max(0, from - 3) };
  return op;
}

async function runOne(seed: number, torn: boolean): Promise<void> {
  const rnd = seededRandom(seed);
  // fsyncs take a random number of event-loop turns, so saves pile up behind them.
  const mem = new MemFs({
    fsyncDelay: async () => {
      for (let k = randomInt(rnd, 1, 4); k > 0; k--) await new Promise(setImmediate);
    },
  });
  const { wal } = await Wal.open({ dir: DIR, fs: mem, segmentBytes: randomInt(rnd, 80, 600) });
  const ops: SaveOp[] = [];
  const results: Promise<void>[] = [];
  let acked = 0;
  let last = 0;
  let term = 1;
  let floor = 0; // highest index passed to releaseTo
  // The power fails after a random step, usually with work in flight.
  const nSteps = randomInt(rnd, 5, 60);
  for (let s = 0; s < nSteps; s++) {
    const r = rnd();
    if (r < 0.55) {
      if (rnd() < 0.2) term++;
      const op = randomSave(rnd, last, term, floor);
      if (op.entries.length) last = op.entries[op.entries.length - 1]!.index;
      const k = ops.push(op);
      results.push(
        wal.save(op.entries, op.hs).then(() => {
          assert.equal(acked, k - 1, "saves resolve in order");
          acked = k;
        }),
      );
    } else if (r < 0.62 && acked > 0) {
      // Release only what is durable, and truncate above it from now on (as Raft does after a snapshot).
      const durable = model(ops.slice(0, acked)).log;
      const top = Math.min(durable[durable.length - 1]?.index ?? 0, last);
      if (top > floor) {
        floor = randomInt(rnd, floor, top + 1);
        results.push(wal.releaseTo(floor));
      }
    } else {
      await new Promise(setImmediate);
    }
  }
  if (rnd() < 0.2) await Promise.all(results); // sometimes crash when idle

  const ackedAtCrash = acked;
  const image = mem.crash(torn ? { keepUnsynced: (_p, n) => randomInt(rnd, 0, n + 1) } : {});
  await Promise.all(results); // let the doomed instance finish; its disk is no longer ours
  await wal.close();

  const warnings: string[] = [];
  const { wal: w2, recovery } = await Wal.open({ dir: DIR, fs: image, onWarning: (m) => warnings.push(m) });
  const got = plain(recovery.entries);
  const firstGot = recovery.entries[0]?.index;
  // At least the acknowledged saves survived, maybe more; releaseTo may have removed a prefix up to `floor`.
  // Record-granular steps: one per entry, then the hard state, as the WAL writes them.
  const steps: SaveOp[] = [];
  let ackedSteps = 0;
  for (const [k, op] of ops.entries()) {
    for (const e of op.entries) steps.push({ entries: [e] });
    if (op.hs) steps.push({ entries: [], hs: op.hs });
    if (k + 1 === ackedAtCrash) ackedSteps = steps.length;
  }
  let match = -1;
  for (let k = ackedSteps; k <= steps.length && match < 0; k++) {
    const m = model(steps.slice(0, k));
    const must = m.log.filter((e) => e.index > floor);
    const want = firstGot === undefined ? [] : m.log.filter((e) => e.index >= firstGot);
    const covers = must.every((e) => firstGot !== undefined && e.index >= firstGot);
    if (covers && JSON.stringify(plain(want)) === JSON.stringify(got) && JSON.stringify(m.hs) === JSON.stringify(recovery.hardState)) match = k;
  }
  assert.ok(
    match >= 0,
    `seed ${seed} torn=${torn}: recovered ${got.length} entries [${firstGot}..] hs ${JSON.stringify(recovery.hardState)} matches no prefix of >= ${ackedAtCrash} of ${ops.length} saves (floor ${floor})`,
  );
  if (recovery.tornTail) assert.equal(warnings.length >= 1, true);

  // Life goes on after the crash: append where the recovered log ends, then recover again.
  const end = recovery.entries[recovery.entries.length - 1]?.index ?? model(steps.slice(0, match)).log.at(-1)?.index ?? 0;
  await w2.save(ents(end + 1, end + 2, term + 1), { term: term + 1, vote: 1, commit: 0 });
  await w2.close();
  const { wal: w3, recovery: r3 } = await Wal.open({ dir: DIR, fs: image });
  assert.deepEqual(plain(r3.entries.slice(-2)), plain(ents(end + 1, end + 2, term + 1)));
  assert.equal(r3.tornTail, undefined);
  await w3.close();
}

test("crash keeping only fsynced bytes: no acknowledged save is lost", async () => {
  for (let seed = 1; seed <= 150; seed++) await runOne(seed, false);
});

test("crash keeping a torn prefix of unsynced bytes: no acknowledged save is lost, the tail is cut", async () => {
  for (let seed = 1001; seed <= 1150; seed++) await runOne(seed, true);
});
