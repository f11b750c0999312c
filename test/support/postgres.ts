// Throwaway PostgreSQL servers for tests: initdb'd in a short temp dir, on a
// free loopback port, fsync off, and gone afterwards.
//
// No postmaster outlives the test process. destroy() (call it from `after` or
// a `finally`) stops it (immediate) and removes its dir; an exit handler
// SIGQUITs any still running when the process exits without that; and a
// watchdog process SIGQUITs (then SIGKILLs) them and removes the dirs when the
// test process dies by a signal, SIGKILL included, which skips exit handlers.
// A postmaster does not die with its parent, but its own children exit once
// the postmaster is gone, so killing postmasters is enough.
import { spawn } from "node:child_process";
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findPostgresBinaries, type PostgresBinaries } from "../../src/postgres/binaries.js";
import { isPostgresError } from "../../src/postgres/errors.js";
import { LocalPostgres, type LocalPostgresOptions, type ServerExit } from "../../src/postgres/local-server.js";
import { serverOsUser } from "../../src/postgres/os-user.js";
import type { SettingValue } from "../../src/postgres/settings.js";
import { freePort } from "./ports.js";

// ------------------------------------------------------------------ the watchdog

/** Running postmasters (by a key per LocalPostgres) and live temp dirs, mirrored into the watchdog's file. */
const livePostmasters = new Map<symbol, { pid: number; dataDir: string }>();
const liveDirs = new Set<string>();
let watchFile: string | undefined;

/**
 * Watches its parent (the test process): once that is gone it SIGQUITs every
 * postmaster listed in its file (immediate shutdown, which also stops the
 * children and frees shared memory), SIGKILLs any still there after 5 s,
 * removes the listed dirs and its own, and exits. A pid is only signalled
 * while /proc shows a postgres on that data dir, so a reused pid is safe. It
 * ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C to the process group cannot stop
 * it before its job is done.
 */
const WATCHDOG_JS = `
const fs = require("node:fs");
const path = require("node:path");
const parent = process.ppid;
const file = process.env.PGRAFT_PG_WATCH_FILE;
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(s, () => {});
const hasProc = fs.existsSync("/proc/self/stat");
const running = (pid) => {
  if (hasProc) {
    try { const st = fs.readFileSync("/proc/" + pid + "/stat", "utf8"); return st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3) !== "Z"; } catch { return false; }
  }
  try { process.kill(pid, 0); return true; } catch (e) { return e.code === "EPERM"; }
};
const ours = (pid, dataDir) => {
  if (!hasProc) return running(pid);
  try { return fs.readFileSync("/proc/" + pid + "/cmdline", "utf8").includes(dataDir); } catch { return false; }
};
let done = false;
setInterval(() => {
  if (done || process.ppid === parent) return;
  done = true;
  let lines = [];
  try { lines = fs.readFileSync(file, "utf8").split("\\n"); } catch {}
  const pids = [];
  for (const l of lines) {
    const m = /^pid (\\d+) (.+)$/.exec(l);
    if (m && ours(Number(m[1]), m[2])) pids.push(Number(m[1]));
  }
  for (const p of pids) try { process.kill(p, "SIGQUIT"); } catch {}
  const t0 = Date.now();
  const finish = () => {
    const left = pids.filter(running);
    if (left.length && Date.now() - t0 < 5000) return void setTimeout(finish, 50);
    for (const p of left) try { process.kill(p, "SIGKILL"); } catch {}
    setTimeout(() => {
      for (const l of lines) if (l.startsWith("dir ")) try { fs.rmSync(l.slice(4), { recursive: true, force: true }); } catch {}
      try { fs.rmSync(path.dirname(file), { recursive: true, force: true }); } catch {}
      process.exit(0);
    }, left.length ? 500 : 50);
  };
  finish();
}, 100);
`;

function writeWatchFile(): void {
  if (!watchFile) return;
  const lines = [...[...livePostmasters.values()].map((p) => `pid ${p.pid} ${p.dataDir}`), ...[...liveDirs].map((d) => `dir ${d}`)];
  try {
    writeFileSync(watchFile, lines.join("\n"));
  } catch {
    // the watchdog already cleaned up: this process is exiting
  }
}

function installWatchdog(): void {
  if (watchFile) return;
  const dir = mkdtempSync(join(shortTmp(), "pgt-watch-"));
  watchFile = join(dir, "watch");
  writeFileSync(watchFile, "");
  const dog = spawn(process.execPath, ["-e", WATCHDOG_JS], {
    stdio: "ignore",
    env: { PATH: process.env.PATH ?? "", PGRAFT_PG_WATCH_FILE: watchFile },
  });
  dog.unref();
  // A normal exit without destroy(): start the immediate shutdowns now; the
  // watchdog, seeing us gone, waits for them and removes the dirs.
  process.on("exit", () => {
    for (const p of livePostmasters.values()) {
      try {
        process.kill(p.pid, "SIGQUIT");
      } catch {
        // already gone
      }
    }
  });
}

// ------------------------------------------------------------------ dirs and servers

/** A short temp root: socket paths (`<dir>/run/.s.PGSQL.<port>`) must stay under 107 bytes. */
function shortTmp(): string {
  const t = tmpdir();
  return t.length <= 32 ? t : "/tmp";
}

/**
 * A new temp dir (short path) that the server's OS user owns, removed by the
 * watchdog if this process dies before removeTestDir().
 */
export function makeTestDir(prefix = "pgt-"): string {
  installWatchdog();
  const dir = mkdtempSync(join(shortTmp(), prefix));
  // mkdtemp makes it 0700 and ours; when we are root the server runs as postgres, which must reach inside.
  const user = serverOsUser();
  if (user) chownSync(dir, user.uid, user.gid);
  liveDirs.add(dir);
  writeWatchFile();
  return dir;
}

export function removeTestDir(dir: string): void {
  if (process.env.PGRAFT_PG_KEEP === "1") process.stderr.write(`pgraft tests: kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
  writeWatchFile();
}

let binaries: Promise<PostgresBinaries> | undefined;

/** The server binaries, looked up once per test process. */
export function testBinaries(): Promise<PostgresBinaries> {
  binaries ??= findPostgresBinaries();
  return binaries;
}

/**
 * A LocalPostgres whose postmaster the exit handler and the watchdog know
 * about (for tests that open a second instance on a data dir); it does not
 * keep the test process alive.
 */
export function testServer(opts: LocalPostgresOptions): LocalPostgres {
  installWatchdog();
  const key = Symbol(opts.dataDir);
  const dataDir = opts.dataDir;
  return new LocalPostgres({
    keepProcessAlive: false,
    ...opts,
    onSpawn: (pid) => {
      livePostmasters.set(key, { pid, dataDir });
      writeWatchFile();
      opts.onSpawn?.(pid);
    },
    onExit: (exit: ServerExit) => {
      livePostmasters.delete(key);
      writeWatchFile();
      opts.onExit?.(exit);
    },
  });
}

export interface TestPostgresOptions {
  /** Default false: tests do not need durability against a machine crash. */
  fsync?: boolean;
  /** Default: a random one. */
  password?: string;
  superuser?: string;
  settings?: Record<string, SettingValue>;
}

export interface TestPostgres {
  /** The server (started). Restart it with server.stop()/start(); destroy() works in any state. */
  server: LocalPostgres;
  /** The temp dir holding data/, run/ and postgres.log. */
  dir: string;
  /** Stop (immediate) and remove the dir; safe to call twice. */
  destroy(): Promise<void>;
}

/** initdb + start a server in a new temp dir on a free port. */
export async function startTestPostgres(opts: TestPostgresOptions = {}): Promise<TestPostgres> {
  const bins = await testBinaries();
  const dir = makeTestDir();
  const make = (port: number): LocalPostgres =>
    testServer({
      dataDir: join(dir, "data"),
      port,
      password: opts.password ?? `pw-${Math.random().toString(36).slice(2)}`,
      superuser: opts.superuser,
      binaries: bins,
      fsync: opts.fsync ?? false,
      settings: opts.settings,
    });
  let server = make(await freePort());
  try {
    await server.initdb({ noSync: true });
    for (let attempt = 1; ; attempt++) {
      try {
        await server.start();
        break;
      } catch (e) {
        // Another process took the port between our check and the server's bind: try another one.
        if (!(isPostgresError(e, "PG_START_FAILED") && /Address already in use/.test(e.message)) || attempt >= 5) throw e;
        server = make(await freePort());
      }
    }
  } catch (e) {
    await server.stop({ mode: "immediate" }).catch(() => undefined);
    removeTestDir(dir);
    throw e;
  }
  let destroyed = false;
  const result: TestPostgres = {
    server,
    dir,
    destroy: async () => {
      if (destroyed) return;
      destroyed = true;
      await result.server.stop({ mode: "immediate" });
      removeTestDir(dir);
    },
  };
  return result;
}

