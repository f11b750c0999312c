// A small seeded PRNG (mulberry32). The core takes `random: () => number` so a
// simulator can replay a history from its seed; production seeds from crypto.
export type Random = () => number;

export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [lo, hi). */
export const randomInt = (random: Random, lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo));
