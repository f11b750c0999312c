// What every benchmark prints the same way: the load average before and after,
// how many repetitions, min/median/max of a figure over them, and the CPU a
// load generator used (this process's own via process.cpuUsage, a child's
// process tree via /proc) so that a saturated generator is seen, not hidden.
import { availableParallelism, loadavg } from "node:os";
import { readStat, treeCpuSeconds } from "./proc-cpu.js";

/** BENCH_REPS (default `fallback`, at least 1): how many times each comparison is repeated. */
export function repetitions(fallback = 3): number {
  const n = Math.floor(Number(process.env.BENCH_REPS ?? fallback));
  return Number.isFinite(n) && n >= 1 ? n : fallback;
}

/** "1.23 1.10 0.98 (1/5/15 min; 2 cores shared with everything else on this machine)" */
export function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
}

/** The 1-minute load average is above the number of cores: every figure then shares the cores with other work. */
export function busy(): boolean {
  return loadavg()[0]! > availableParallelism();
}

/** "" or " (busy: load above the 2 cores; figures are rough)": appended to a load-average line when busy(). */
export function busyNote(): string {
  return busy() ? ` (busy: load above the ${availableParallelism()} cores; figures are rough)` : "";
}

/** loadAverage() followed by busyNote(): what a "load average before/after" line prints. */
export function loadAverageChecked(): string {
  return `${loadAverage()}${busyNote()}`;
}

export function machineNote(): string {
  return process.env.BENCH_NOTE ?? `${availableParallelism()} cores shared with everything else on this machine`;
}

export interface Spread {
  n: number;
  min: number;
  median: number;
  max: number;
}

export function spread(values: number[]): Spread {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return { n: 0, min: NaN, median: NaN, max: NaN };
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { n: v.length, min: v[0]!, median, max: v[v.length - 1]! };
}

export const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : "n/a");

/** "min 0.81 / median 0.93 / max 1.02 (n=3)" */
export function fmtSpread(values: number[], d = 2): string {
  const s = spread(values);
  return s.n === 0 ? "n/a" : `min ${fmt(s.min, d)} / median ${fmt(s.median, d)} / max ${fmt(s.max, d)} (n=${s.n})`;
}

/** Repetition `rep` (0-based) runs the two sides in this order: A first on even repetitions, B first on odd ones. */
export function alternate<T>(rep: number, a: T, b: T): [T, T] {
  return rep % 2 === 0 ? [a, b] : [b, a];
}

/** A generator using this much of one core (percent) is treated as saturated: its level is the last one run. */
export const SATURATED_PCT = Number(process.env.BENCH_SATURATED_PCT ?? 90);

/** This process's CPU (user + system) from now until the returned function is called, in % of one core. */
export function selfCpuMeter(): () => number {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const c = process.cpuUsage(cpu0);
    return (c.user + c.system) / 1e4 / ((performance.now() - t0) / 1000);
  };
}

/** A process tree's CPU (Linux /proc) from now until the returned function is called, in % of one core; NaN elsewhere. */
export function treeCpuMeter(pid: number | undefined): () => number {
  const cpu0 = treeCpuSeconds(pid);
  const t0 = performance.now();
  return () => (100 * (treeCpuSeconds(pid) - cpu0)) / ((performance.now() - t0) / 1000);
}

/** CPU seconds of this process's children that have exited and been reaped (Linux /proc: cutime + cstime); NaN elsewhere. */
export function reapedChildrenCpu(): number {
  return readStat(process.pid)?.children ?? NaN;
}
