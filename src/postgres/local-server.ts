// One local PostgreSQL server: initdb, start, stop, and the ways to reach it.
//
// The postmaster is spawned directly (not through pg_ctl), so it is our child:
// its exit is an event we see at once, and stop() knows when it is done. Its
// stdout/stderr go to a log file in the node dir (logging_collector=off), and
// every error we throw about it carries the tail of that log.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, closeSync, existsSync, openSync, readFileSync, statSync } from "node:fs";
import { appendFile, chmod, chown, readFile, readlink, realpath, rm, unlink, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import pg from "pg";
import { findPostgresBinaries, type PostgresBinaries } from "./binaries.js";
import { keyValueDsn, shellQuote, uriDsn, type ConnectionParams } from "./dsn.js";
import { passfileLine } from "./passfile.js";
import { PostgresError } from "./errors.js";
import { assertReachable, chownTree, createServerDir, serverOsUser, type OsUser } from "./os-user.js";
import { runProgram, serverEnv } from "./run.js";
import { checkSocketPath, hbaConf, INCLUDE_LINE, PGRAFT_CONF, renderConf, serverSettings, type SettingValue } from "./settings.js";

export type StopMode = "smart" | "fast" | "immediate";

/** How the postmaster ended; `error` when it could not be spawned at all. */
export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

export interface LocalPostgresOptions {
  /** The cluster's data directory. Its parent is the "node dir" (default home of the socket dir and log). */
  dataDir: string;
  /** TCP port on 127.0.0.1 (also names the unix socket). */
  port: number;
  /** The superuser's password, for TCP logins (SCRAM). */
  password: string;
  /** Default "postgres". */
  superuser?: string;
  /** Default `<node dir>/run`. The socket path must stay within 107 bytes. */
  socketDir?: string;
  /** Default `<node dir>/postgres.log`; appended to. */
  logFile?: string;
  /** Default: findPostgresBinaries() on first use. */
  binaries?: PostgresBinaries;
  /** Default true; tests turn it off for speed (a crash of the machine then loses the data). */
  fsync?: boolean;
  /** Extra settings, or overrides of pgraft's (see settings.ts). */
  settings?: Record<string, SettingValue>;
  /** When we are root, the OS user that runs the server. Default "postgres". */
  osUser?: string;
  /**
   * Default true: the running postmaster keeps this Node process alive. Tests
   * turn it off so a forgotten server cannot hang the run (their exit handler
   * and watchdog stop it instead).
   */
  keepProcessAlive?: boolean;
  /** Called with the postmaster's pid each time it is spawned. */
  onSpawn?: (pid: number) => void;
  /**
   * More 127.0.0.1 ports at which clients reach this server with the same
   * superuser and password (a pgraft proxy in front of it): the password file
   * gets a line for each, so psql through them finds the password too.
   */
  alsoReachedAt?: number[];
  /** Called each time the postmaster exits, expected or not. */
  onExit?: (exit: ServerExit) => void;
}

export interface InitdbOptions extends LocalPostgresOptions {
  /** initdb --no-sync: faster, for throwaway clusters. */
  noSync?: boolean;
}

const SIGNAL_OF: Record<StopMode, NodeJS.Signals> = { smart: "SIGTERM", fast: "SIGINT", immediate: "SIGQUIT" };
const DEFAULT_STOP_MS: Record<StopMode, number> = { smart: 60_000, fast: 30_000, immediate: 10_000 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class LocalPostgres {
  readonly dataDir: string;
  /** The data dir's parent: the socket dir and the log live here by default. */
  readonly nodeDir: string;
  readonly port: number;
  readonly superuser: string;
  readonly password: string;
  readonly socketDir: string;
  readonly logFile: string;
  /**
   * `<node dir>/pgpass`: the superuser's password in libpq's password-file
   * format (mode 0600, owned by this process's user, who runs the sidecars),
   * rewritten on every start; passfileDsn() names it.
   */
  readonly passfile: string;
  /** The OS user the server runs as; undefined when that is us (we are not root). */
  readonly osUser: OsUser | undefined;
  private bins: PostgresBinaries | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<ServerExit> | undefined;
  /** How the postmaster ended last time, if it has run and ended. */
  lastExit: ServerExit | undefined;

  constructor(private readonly opts: LocalPostgresOptions) {
    this.dataDir = resolve(opts.dataDir);
    this.nodeDir = dirname(this.dataDir);
    this.port = opts.port;
    this.superuser = opts.superuser ?? "postgres";
    this.password = opts.password;
    this.socketDir = resolve(opts.socketDir ?? join(this.nodeDir, "run"));
    this.logFile = resolve(opts.logFile ?? join(this.nodeDir, "postgres.log"));
    this.passfile = join(this.nodeDir, "pgpass");
    this.bins = opts.binaries;
    // Checked now: both are mistakes in the options, better reported before anything is created.
    checkSocketPath(this.socketDir, this.port);
    this.osUser = serverOsUser(opts.osUser);
  }

  /** Create the cluster (see initdb()) and return its server, not yet started. */
  static async initdb(opts: InitdbOptions): Promise<LocalPostgres> {
    const s = new LocalPostgres(opts);
    await s.initdb({ noSync: opts.noSync });
    return s;
  }

  async binaries(): Promise<PostgresBinaries> {
    this.bins ??= await findPostgresBinaries();
    return this.bins;
  }

  /** True when the data dir holds a cluster (initdb ran). */
  isInitialized(): boolean {
    return existsSync(join(this.dataDir, "PG_VERSION"));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  // ---------------------------------------------------------------- initdb

  /**
   * initdb: UTF8, C locale, the superuser with `password` (SCRAM over TCP,
   * trust on the unix socket), then pgraft's pg_hba.conf and settings.
   */
  async initdb(o: { noSync?: boolean } = {}): Promise<void> {
    const bins = await this.binaries();
    if (this.isInitialized()) {
      throw new PostgresError("PG_INITDB_FAILED", `initdb: ${this.dataDir} already holds a PostgreSQL cluster; start it, or remove the directory to create a new one`);
    }
    await this.prepareDirs({ ownDataDir: true });
    // The password goes through a file (never the command line, which `ps` shows), readable only by the server's user.
    const pwfile = join(this.nodeDir, `.pgraft-pw-${randomBytes(6).toString("hex")}`);
    await writeFile(pwfile, `${this.password}\n`, { mode: 0o600, flag: "wx" });
    try {
      if (this.osUser) await chown(pwfile, this.osUser.uid, this.osUser.gid);
      const args = [
        "-D", this.dataDir,
        "-U", this.superuser,
        `--pwfile=${pwfile}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
        ...(o.noSync ? ["--no-sync"] : []),
      ];
      let r;
      try {
        r = await runProgram(bins.bin("initdb"), args, { user: this.osUser, cwd: this.nodeDir, timeoutMs: 300_000 });
      } catch (e) {
        throw new PostgresError("PG_INITDB_FAILED", `initdb -D ${this.dataDir} failed: ${errorText(e)}`, { cause: e });
      }
      if (r.code !== 0) {
        throw new PostgresError("PG_INITDB_FAILED", `initdb -D ${this.dataDir} failed (${r.signal ? `signal ${r.signal}` : `exit code ${r.code}`}):\n${r.output.trim()}`);
      }
    } finally {
      await rm(pwfile, { force: true });
    }
    await this.writeServerFile("pg_hba.conf", hbaConf());
    await appendFile(join(this.dataDir, "postgresql.conf"), `\n${INCLUDE_LINE}\n`);
    await this.writeSettings();
  }

  /**
   * The node dir, data dir, socket dir and log dir, made when missing and
   * owned by the server's user; when we are root, checked to be reachable by
   * that user. `ownDataDir` (initdb) also chowns the whole data dir: it is ours
   * by contract, and initdb insists on owning it. Existing dirs are otherwise
   * only checked, never chowned.
   */
  private async prepareDirs(o: { ownDataDir: boolean }): Promise<void> {
    await createServerDir(this.nodeDir, this.osUser);
    await createServerDir(this.dataDir, this.osUser);
    await createServerDir(this.socketDir, this.osUser);
    await createServerDir(dirname(this.logFile), this.osUser);
    if (!this.osUser) return;
    if (o.ownDataDir) await chownTree(this.dataDir, this.osUser);
    await assertReachable(this.dataDir, this.osUser);
    await assertReachable(this.socketDir, this.osUser);
  }

  /** A file in the data dir, mode 0600, owned by the server's user. */
  private async writeServerFile(name: string, text: string): Promise<void> {
    const p = join(this.dataDir, name);
    await writeFile(p, text, { mode: 0o600 });
    await chmod(p, 0o600);
    if (this.osUser) await chown(p, this.osUser.uid, this.osUser.gid);
  }

  /** (Re)write the password file passfileDsn() names (see `passfile`). */
  private async writePassfile(): Promise<void> {
    const lines = [this.port, ...(this.opts.alsoReachedAt ?? [])].map((port) => passfileLine({ host: "127.0.0.1", port, database: "*", user: this.superuser, password: this.password }));
    await writeFile(this.passfile, `${lines.join("\n")}\n`, { mode: 0o600 });
    await chmod(this.passfile, 0o600);
  }

  /** (Re)write pgraft.conf from the options: a restart with other options (a new port) takes effect. */
  private async writeSettings(): Promise<void> {
    const settings = serverSettings({ port: this.port, socketDir: this.socketDir, fsync: this.opts.fsync ?? true, extra: this.opts.settings });
    await this.writeServerFile(PGRAFT_CONF, renderConf(settings));
  }

  // ---------------------------------------------------------------- start

  /**
   * Start the postmaster and wait until it accepts a password login over TCP
   * (and is the server on our data dir, not some other one on our port).
   * Throws PG_START_FAILED (it exited) or PG_START_TIMEOUT (it was then
   * stopped), each with the tail of the server log.
   */
  async start(o: { timeoutMs?: number } = {}): Promise<void> {
    if (this.child) throw new PostgresError("PG_ALREADY_RUNNING", `the server on ${this.dataDir} is already running (pid ${this.child.pid})`);
    const bins = await this.binaries();
    if (!this.isInitialized()) {
      throw new PostgresError("PG_NOT_INITIALIZED", `${this.dataDir} holds no PostgreSQL cluster (no PG_VERSION); run initdb first`);
    }
    // The socket dir may have been cleaned away (a tmp dir) since the last start.
    await this.prepareDirs({ ownDataDir: false });
    await this.writeSettings();
    await this.writePassfile();
    await this.clearStalePidFile();
    const timeoutMs = o.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    const realDataDir = await realpath(this.dataDir);
    for (;;) {
      const logFrom = this.logSize();
      let exit: ServerExit | undefined;
      const exited = this.spawnPostmaster(bins).then((e) => (exit = e));
      let lastError = "";
      for (;;) {
        if (exit) {
          const log = this.logSince(logFrom);
          // After a crash (kill -9 of the postmaster) its children live on for a moment, attached to the old
          // shared memory; the new postmaster refuses to start until they are gone. Try again shortly.
          if (/pre-existing shared memory block .* is still in use/.test(log) && Date.now() < deadline) {
            await sleep(200);
            break;
          }
          throw new PostgresError(
            "PG_START_FAILED",
            `postgres -D ${this.dataDir} exited during startup (${describeExit(exit)}); server log ${this.logFile}:\n${tailLines(log, 30)}`,
          );
        }
        try {
          if (await this.probe(realDataDir)) return;
          lastError = `another server answers on port ${this.port}`;
        } catch (e) {
          lastError = errorText(e);
        }
        if (exit) continue; // it died while we probed: report that, not a timeout
        if (Date.now() > deadline) {
          await this.stop({ mode: "immediate" });
          throw new PostgresError(
            "PG_START_TIMEOUT",
            `postgres -D ${this.dataDir} did not accept connections on 127.0.0.1:${this.port} within ${timeoutMs} ms (last attempt: ${lastError}); ` +
              `it was stopped; server log ${this.logFile}:\n${tailLines(this.logSince(logFrom), 30)}`,
          );
        }
        await raceTimeout(exited, 50);
      }
    }
  }

  private spawnPostmaster(bins: PostgresBinaries): Promise<ServerExit> {
    // The server's log holds statements with their values (a failing statement's text, a refused DSN): never world-readable.
    appendFileSync(this.logFile, `=== pgraft: starting ${bins.bin("postgres")} -D ${this.dataDir} (port ${this.port}) at ${new Date().toISOString()}\n`, { mode: 0o600 });
    chmodSync(this.logFile, 0o600);
    const fd = openSync(this.logFile, "a", 0o600);
    let child: ChildProcess;
    try {
      child = spawn(bins.bin("postgres"), ["-D", this.dataDir], {
        cwd: this.dataDir,
        env: serverEnv(),
        stdio: ["ignore", fd, fd],
        ...(this.osUser ? { uid: this.osUser.uid, gid: this.osUser.gid } : {}),
      });
    } finally {
      // The child has its own copy of the descriptor.
      closeSync(fd);
    }
    if (this.opts.keepProcessAlive === false) child.unref();
    this.child = child;
    const exited = new Promise<ServerExit>((res) => {
      let done = false;
      const finish = (exit: ServerExit): void => {
        if (done) return;
        done = true;
        if (this.child === child) this.child = undefined;
        this.lastExit = exit;
        try {
          appendFileSync(this.logFile, `=== pgraft: postgres exited (${describeExit(exit)}) at ${new Date().toISOString()}\n`);
        } catch {
          // the node dir is gone (a test removed it): nothing to record
        }
        this.opts.onExit?.(exit);
        res(exit);
      };
      child.once("exit", (code, signal) => finish({ code, signal }));
      // No "exit" follows a failed spawn (ENOENT, EACCES); after a successful one, errors are about signals we send.
      child.once("error", (error) => {
        if (child.pid === undefined) finish({ code: null, signal: null, error });
      });
    });
    this.exited = exited;
    if (child.pid !== undefined) this.opts.onSpawn?.(child.pid);
    return exited;
  }

  /** One login over TCP with the password; true when it reached the server on our data dir. */
  private async probe(realDataDir: string): Promise<boolean> {
    const client = new pg.Client({ ...this.clientConfig(), connectionTimeoutMillis: 2_000 });
    client.on("error", () => {}); // a connection that breaks while idle must not become an uncaught error
    try {
      await client.connect();
      const r = await client.query<{ d: string }>("select current_setting('data_directory') as d");
      const d = r.rows[0]?.d;
      return d !== undefined && (await realpath(d).catch(() => d)) === realDataDir;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * A postmaster.pid left by a crash. PostgreSQL removes one itself when its
   * pid is dead; but when that pid has since been reused by an unrelated
   * process, it would refuse to start ("Is another postmaster running?"). So:
   * pid alive and a postmaster on this data dir → PG_ALREADY_RUNNING; pid
   * alive and anything else → remove the file; pid dead → leave it to PostgreSQL.
   */
  private async clearStalePidFile(): Promise<void> {
    const file = join(this.dataDir, "postmaster.pid");
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      return;
    }
    const pid = Number(text.split("\n")[0]);
    if (!Number.isInteger(pid) || pid <= 0) {
      await unlink(file).catch(() => undefined); // unreadable: PostgreSQL would stop at "bogus data in lock file"
      return;
    }
    if (!isAlive(pid)) return;
    if (await isPostmasterOf(pid, await realpath(this.dataDir))) {
      throw new PostgresError(
        "PG_ALREADY_RUNNING",
        `a PostgreSQL server (pid ${pid}) is already running on ${this.dataDir}; stop it first (kill -INT ${pid}, or pg_ctl -D ${this.dataDir} stop -m fast)`,
      );
    }
    await unlink(file).catch(() => undefined);
  }

  // ---------------------------------------------------------------- stop

  /**
   * Stop the postmaster: smart (SIGTERM: waits for clients), fast (SIGINT:
   * disconnects them, checkpoints; the default) or immediate (SIGQUIT: no
   * checkpoint, crash recovery at the next start). After `timeoutMs` (default
   * 60/30/10 s) it is SIGKILLed. Resolves once it has exited; undefined when
   * it was not running.
   */
  async stop(o: { mode?: StopMode; timeoutMs?: number } = {}): Promise<ServerExit | undefined> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited) return undefined;
    const mode = o.mode ?? "fast";
    child.ref(); // an unref'd child (keepProcessAlive: false) would let the event loop end before its exit event
    child.kill(SIGNAL_OF[mode]);
    const exit = await raceTimeout(exited, o.timeoutMs ?? DEFAULT_STOP_MS[mode]);
    if (exit) return exit;
    child.kill("SIGKILL");
    return exited;
  }

  /** SIGKILL the postmaster (a crash, for tests) and wait for its exit. Its children notice and exit on their own. */
  async kill(): Promise<ServerExit | undefined> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited) return undefined;
    child.ref();
    child.kill("SIGKILL");
    return exited;
  }

  /** Resolves when the current postmaster exits (at once with the last exit when none runs). */
  waitExit(): Promise<ServerExit | undefined> {
    if (!this.child || !this.exited) return Promise.resolve(this.lastExit);
    this.child.ref(); // waiting for it is a reason to stay alive
    return this.exited;
  }

  // ---------------------------------------------------------------- reaching it

  connectionParams(database = "postgres"): ConnectionParams {
    return { host: "127.0.0.1", port: this.port, user: this.superuser, password: this.password, database };
  }

  /** `postgresql://postgres:<pw>@127.0.0.1:<port>/postgres` (URL-encoded). */
  dsn(database = "postgres"): string {
    return uriDsn(this.connectionParams(database));
  }

  /** `host=127.0.0.1 port=... user=... password=... dbname=...` (for CREATE SUBSCRIPTION, dblink). */
  keyValueDsn(database = "postgres"): string {
    return keyValueDsn(this.connectionParams(database));
  }

  /**
   * `host=127.0.0.1 port=... user=... dbname=... passfile=<node dir>/pgpass`:
   * no password in it, so it may be an interface DSN (replicated to every
   * node) or a command-line argument (which `ps` shows). libpq, and the
   * sidecar's connections, read the password from the file.
   */
  passfileDsn(database = "postgres"): string {
    return keyValueDsn({ host: "127.0.0.1", port: this.port, user: this.superuser, database, passfile: this.passfile });
  }

  /**
   * A shell command that opens psql on this server (password from the
   * passfile, never on the command line); append psql options (`-c 'select 1'`) as needed.
   */
  psqlCommand(database = "postgres"): string {
    const psql = this.bins && existsSync(this.bins.bin("psql")) ? this.bins.bin("psql") : "psql";
    return `${shellQuote(psql)} ${shellQuote(this.passfileDsn(database))}`;
  }

  clientConfig(database = "postgres"): pg.ClientConfig {
    return { ...this.connectionParams(database) };
  }

  /**
   * A connected client (TCP, password); the caller end()s it. A connection
   * lost while idle (the server stopped) does not crash the process with an
   * unhandled "error" event: the next query fails instead. Add an "error"
   * listener to hear of it sooner.
   */
  async connect(database = "postgres"): Promise<pg.Client> {
    const client = new pg.Client(this.clientConfig(database));
    client.on("error", () => {});
    try {
      await client.connect();
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    return client;
  }

  /** Run one statement on its own connection; its rows. */
  async query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[], database = "postgres"): Promise<R[]> {
    const client = await this.connect(database);
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end().catch(() => undefined); // never hide the query's own error behind a failed goodbye
    }
  }

  // ---------------------------------------------------------------- the log

  /** The last `lines` lines of the server log ("" when there is none yet). */
  logTail(lines = 40): string {
    try {
      return tailLines(readFileSync(this.logFile, "utf8"), lines);
    } catch {
      return "";
    }
  }

  private logSize(): number {
    try {
      return statSync(this.logFile).size;
    } catch {
      return 0;
    }
  }

  private logSince(offset: number): string {
    try {
      return readFileSync(this.logFile).subarray(offset).toString("utf8");
    } catch {
      return "";
    }
  }
}

/** Create the cluster and return its server, not yet started (LocalPostgres.initdb). */
export function initdb(opts: InitdbOptions): Promise<LocalPostgres> {
  return LocalPostgres.initdb(opts);
}

/** `p`'s value, or undefined after `ms`; the timer never outlives the race. */
async function raceTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((res) => (timer = setTimeout(res, ms, undefined)))]);
  } finally {
    clearTimeout(timer);
  }
}

function describeExit(e: ServerExit): string {
  return e.error ? `could not be started: ${e.error.message}` : e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

function tailLines(text: string, n: number): string {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.slice(-n).join("\n");
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // alive, someone else's
  }
}

/**
 * Whether `pid` is a postgres process working in `dataDir` (the postmaster
 * chdirs there). Without /proc (not Linux) we cannot tell, and assume it is.
 */
async function isPostmasterOf(pid: number, dataDir: string): Promise<boolean> {
  if (!existsSync("/proc/self/cwd")) return true;
  try {
    const cwd = await readlink(`/proc/${pid}/cwd`);
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return cwd === dataDir && /postgres|postmaster/.test(cmdline);
  } catch {
    return true; // cannot inspect it (another user's, without privileges): do not risk a second postmaster
  }
}
