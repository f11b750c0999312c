// CPU time of process trees, from Linux's /proc (the benchmarks run on Linux;
// elsewhere every figure is NaN). A PostgreSQL server's CPU is its postmaster's
// tree: the postmaster itself, the children it has reaped (their time is in its
// cutime/cstime once they exit: a pgbench backend that disconnects still
// counts) and the children still alive.
import { readdirSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface Stat {
  pid: number;
  ppid: number;
  /** utime + stime, seconds. */
  self: number;
  /** cutime + cstime (reaped children), seconds. */
  children: number;
}

export function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const f = text.slice(text.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
  return { pid, ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / CLK_TCK, children: (Number(f[13]) + Number(f[14])) / CLK_TCK };
}

function allPids(): number[] {
  try {
    return readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds used so far by `root` and every descendant, alive or reaped. */
export function treeCpuSeconds(root: number | undefined): number {
  if (root === undefined) return NaN;
  const stats = allPids()
    .map(readStat)
    .filter((s): s is Stat => s !== undefined);
  const byParent = new Map<number, Stat[]>();
  for (const s of stats) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), s]);
  const top = stats.find((s) => s.pid === root);
  if (!top) return NaN;
  let total = 0;
  const walk = (s: Stat): void => {
    total += s.self + s.children;
    for (const c of byParent.get(s.pid) ?? []) walk(c);
  };
  walk(top);
  return total;
}

/** Pids of live processes whose command line holds every one of `parts` (NUL-separated argv, matched as substrings). */
export function pidsByCommandLine(parts: string[]): number[] {
  const out: number[] = [];
  for (const pid of allPids()) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (parts.every((p) => cmd.includes(p))) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The postmaster's pid from `<dataDir>/postmaster.pid`. */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
