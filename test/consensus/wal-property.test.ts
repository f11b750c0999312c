// Property: any sequence of saves (with truncations, hard states and snapshot
// marks), releases, reopenings and crash-restarts on an idle WAL recovers
// exactly what a trivial in-memory model says.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Entry, HardState } from "../../src/consensus/types.js";
import { Wal } from "../../src/consensus/wal/wal.js";
import { ents, MemFs, plain, walFiles } from "./wal-fs-helpers.js";

const DIR = "/node/wal";

type Cmd =
  | { kind: "save"; back: number; count: number; bumpTerm: boolean; hs: boolean; vote: number; mark: number }
  | { kind: "release"; frac: number }
  | { kind: "reopen"; segmentBytes: number }
  | { kind: "crash"; segmentBytes: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant("save" as const),
      back: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 8 })),
      count: fc.integer({ min: 0, max: 5 }),
      bumpTerm: fc.boolean(),
      hs: fc.boolean(),
      vote: fc.integer({ min: 0, max: 3 }),
      // Mostly no snapshot mark; sometimes one at or beyond the log's end.
      mark: fc.oneof({ weight: 12, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 6 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("release" as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const), segmentBytes: fc.integer({ min: 40, max: 2000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const), segmentBytes: fc.integer({ min: 40, max: 2000 }) }) },
);

test("random saves / truncations / releases / reopens / crashes recover what the model says", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 40, max: 1500 }), fc.array(cmd, { maxLength: 60 }), async (segmentBytes, cmds) => {
      let fs = new MemFs();
      let { wal } = await Wal.open({ dir: DIR, fs, segmentBytes });
      // The model.
      let log: Entry[] = [];
      let hs: HardState = { term: 0, vote: 0, commit: 0 };
      let last = 0; // index the log ends at (entries or snapshot mark)
      let term = 1;
      let floor = 0; // nothing at or below this may be truncated (released / snapshotted)

      const check = async (where: string): Promise<void> => {
        const r = await Wal.open({ dir: DIR, fs, segmentBytes });
        wal = r.wal;
        const rec = r.recovery;
        assert.equal(rec.tornTail, undefined, where);
        assert.deepEqual(rec.hardState, hs, where);
        // Releasing drops whole segments, so recovery yields a suffix of the model
        // log that still holds every entry above the release point.
        const first = rec.entries[0]?.index ?? last + 1;
        const must = log.find((e) => e.index > floor);
        assert.ok(!must || first <= must.index, `${where}: recovery starts at ${first}, but ${must?.index} is above the release point ${floor}`);
        assert.deepEqual(plain(rec.entries), plain(log.filter((e) => e.index >= first)), where);
        assert.equal(wal.stats.segments, walFiles(await fs.readdir(DIR)).length, where);
      };

      for (const [n, c] of cmds.entries()) {
        const where = `step ${n} ${JSON.stringify(c)}`;
        switch (c.kind) {
          case "save": {
            if (c.bumpTerm) term++;
            let mark: { index: number; term: number } | undefined;
            if (c.mark >= 0) {
              mark = { index: Math.max(last, floor) + c.mark, term };
              log = [];
              last = floor = mark.index;
            }
            const from = Math.max(floor + 1, last + 1 - c.back);
            const es = ents(from, from + c.count - 1, term);
            const h = c.hs || (!c.count && !mark) ? { term, vote: c.vote, commit: Math.min(floor, from - 1) } : undefined;
            await wal.save(es, h, mark);
            if (es.length) {
              log = [...log.filter((e) => e.index < from), ...es];
              last = es[es.length - 1]!.index;
            }
            if (h) hs = h;
            break;
          }
          case "release": {
            const to = floor + Math.floor(c.frac * (last - floor));
            await wal.releaseTo(to);
            floor = Math.max(floor, to);
            break;
          }
          case "reopen":
            await wal.close();
            segmentBytes = c.segmentBytes;
            await check(where);
            break;
          case "crash":
            // Everything resolved, so everything acknowledged must survive a power failure.
            fs = fs.crash();
            await wal.close();
            segmentBytes = c.segmentBytes;
            await check(where);
            break;
        }
      }
      await wal.close();
      await check("final");
      await wal.close();
    }),
    { numRuns: 300 },
  );
});
