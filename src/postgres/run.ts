// Running the server's helper programs (initdb) to completion: as the server's
// OS user when we are root, with a bounded run time, and with an environment
// that cannot redirect them (no PG* variables) and gives English messages.
import { spawn } from "node:child_process";
import type { OsUser } from "./os-user.js";

/**
 * Our environment without libpq/server variables (PGDATA, PGPORT, PGOPTIONS...
 * would silently change what the programs do) and with the C locale, so the
 * messages we match on (and show) are the untranslated ones.
 */
export function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^PG/.test(k) && !/^LC_/.test(k) && k !== "LANG") env[k] = v;
  return { ...env, LC_ALL: "C", LANG: "C" };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr interleaved, as a person would have seen them. */
  output: string;
}

export function runProgram(
  file: string,
  args: string[],
  opts: { user: OsUser | undefined; cwd: string; timeoutMs: number },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: serverEnv(),
      stdio: ["ignore", "pipe", "pipe"],
      ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    });
    let output = "";
    const collect = (c: string) => (output += c);
    child.stdout.setEncoding("utf8").on("data", collect);
    child.stderr.setEncoding("utf8").on("data", collect);
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} ${args.join(" ")} did not finish within ${opts.timeoutMs} ms; its output:\n${output}`));
    }, opts.timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}
