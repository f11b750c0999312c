// The simulator's single source of randomness: every choice in a history comes
// from one seeded stream, so a seed replays the same history exactly.
import { seededRandom, type Random } from "../../src/consensus/random.js";

export class Rng {
  private readonly r: Random;

  constructor(seed: number) {
    this.r = seededRandom(seed);
  }

  next(): number {
    return this.r();
  }

  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.r() * (hi - lo));
  }

  chance(p: number): boolean {
    return p > 0 && this.r() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("Rng.pick from an empty list");
    return items[Math.floor(this.r() * items.length)]!;
  }

  /** Pick by weight; entries with weight 0 are never chosen. */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, w] of items) total += w;
    let x = this.r() * total;
    for (const [v, w] of items) {
      if (w <= 0) continue;
      if (x < w) return v;
      x -= w;
    }
    const last = items.findLast(([, w]) => w > 0);
    if (!last) throw new Error("Rng.weighted with no positive weight");
    return last[0];
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.r() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** A fresh independent stream (e.g. for a node's election timer). */
  fork(): Random {
    return seededRandom(this.int(0, 0x100000000));
  }
}
