// A test process that dies without tearing down its servers (SIGKILL, or an
// exit without destroy()) leaves no postmaster and no temp dir behind.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { describe, test } from "node:test";

const SUPPORT = new URL("../support/postgres.ts", import.meta.url).href;

/** A process that starts a test server, prints its postmaster pid and dir, then exits or idles as told. */
function childScript(then: "exit" | "idle"): string {
  return `
    import { startTestPostgres } from ${JSON.stringify(SUPPORT)};
    const tp = await startTestPostgres();
    process.stdout.write(JSON.stringify({ pid: tp.server.pid, dir: tp.dir }) + "\\n");
    ${then === "exit" ? "process.exit(0);" : "setInterval(() => {}, 1000);"}
  `;
}

/** Whether `pid` is still a live postgres on `dir` (a zombie or a reused pid is not). */
function postmasterAlive(pid: number, dir: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z") return false;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir);
  } catch {
    return false;
  }
}

async function waitGone(pid: number, dir: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (postmasterAlive(pid, dir) || existsSync(dir)) {
    if (Date.now() > end) {
      throw new Error(`after ${timeoutMs} ms: postmaster ${pid} ${postmasterAlive(pid, dir) ? "still runs" : "is gone"}, ${dir} ${existsSync(dir) ? "still exists" : "is gone"}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function runChild(then: "exit" | "idle", act: (child: ReturnType<typeof spawn>) => void): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", childScript(then)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  let started: { pid: number; dir: string } | undefined;
  try {
    const end = Date.now() + 30_000;
    while (!out.includes("\n")) {
      if (child.exitCode !== null || Date.now() > end) throw new Error(`the child did not start its server (exit ${child.exitCode}); stderr:\n${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    started = JSON.parse(out.split("\n")[0]!) as { pid: number; dir: string };
    // (An exiting child may already have had it stopped by now.)
    if (then === "idle") assert.ok(postmasterAlive(started.pid, started.dir), "the child's postmaster runs");
    act(child);
    await waitGone(started.pid, started.dir);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    // If the protection failed, do its job so this test leaves nothing behind either.
    if (started && postmasterAlive(started.pid, started.dir)) process.kill(started.pid, "SIGKILL");
    if (started) rmSync(started.dir, { recursive: true, force: true });
  }
}

// Two independent child processes: run side by side to halve the wait.
describe("a dead test process leaves nothing behind", { concurrency: true }, () => {
  test("the test process is SIGKILLed: the watchdog stops its postmaster and removes its dir", async () => {
    await runChild("idle", (child) => child.kill("SIGKILL"));
  });

  test("the test process exits without destroy(): the exit handler and watchdog clean up", async () => {
    await runChild("exit", () => {});
  });
});
