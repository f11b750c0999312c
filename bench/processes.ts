// Child processes of the benchmarks: killed and awaited, never left behind.
import type { ChildProcess } from "node:child_process";

export function killAndWait(procs: Iterable<ChildProcess>): Promise<void[]> {
  return Promise.all(
    [...procs].map(
      (p) =>
        new Promise<void>((res) => {
          if (p.exitCode !== null || p.signalCode !== null) return res();
          p.once("exit", () => res());
          p.kill("SIGKILL");
        }),
    ),
  );
}
