// Latency bookkeeping shared by the benchmark's runners.
export interface RunResult {
  committed: number;
  seconds: number;
  latenciesMs: number[];
  fsyncsPerEntry?: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Run `concurrency` loops of `op` for `seconds`; each loop waits for its op before the next. */
export async function closedLoop(concurrency: number, seconds: number, op: () => Promise<unknown>): Promise<RunResult> {
  const latenciesMs: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const s = performance.now();
      await op();
      latenciesMs.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  latenciesMs.sort((a, b) => a - b);
  return { committed: latenciesMs.length, seconds: (performance.now() - t0) / 1000, latenciesMs };
}
