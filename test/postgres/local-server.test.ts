// One real server, reused across the tests in order (initdb costs a second):
// settings, extensions, logins, the ways to reach it, restarts, crashes, and
// the errors on start.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { isPostgresError } from "../../src/postgres/errors.js";
import { startTestPostgres, testServer, type TestPostgres } from "../support/postgres.js";

const execFileP = promisify(execFile);

// Awkward on purpose: every DSN form and the psql command must carry it intact.
const PASSWORD = "p@ss w'rd/:?#%$`\\";

let tp: TestPostgres | undefined;
before(async () => {
  tp = await startTestPostgres({ password: PASSWORD });
});
after(async () => {
  await tp?.destroy();
});

function pgs(): TestPostgres {
  if (!tp) throw new Error("the server did not start (see the before hook's error)");
  return tp;
}

async function scalar(sql: string): Promise<unknown> {
  const rows = await pgs().server.query(sql);
  return Object.values(rows[0] ?? {})[0];
}

test("it answers select 1, with the settings pgraft needs", async () => {
  assert.equal(await scalar("select 1"), 1);
  const settings = await pgs().server.query<{ name: string; setting: string; unit: string | null }>(
    "select name, setting, unit from pg_settings where name = any($1)",
    [["wal_level", "track_commit_timestamp", "listen_addresses", "shared_buffers", "fsync", "max_replication_slots", "max_wal_senders", "max_worker_processes", "logging_collector", "server_encoding", "unix_socket_directories", "port", "wal_writer_flush_after"]],
  );
  const s = Object.fromEntries(settings.map((r) => [r.name, r.setting]));
  const { server } = pgs();
  assert.deepEqual(s, {
    wal_level: "logical",
    track_commit_timestamp: "on",
    listen_addresses: "127.0.0.1",
    shared_buffers: "4096", // 8 kB pages: 32MB
    fsync: "off",
    max_replication_slots: "16",
    max_wal_senders: "16",
    max_worker_processes: "16",
    logging_collector: "off",
    server_encoding: "UTF8",
    unix_socket_directories: server.socketDir,
    port: String(server.port),
    wal_writer_flush_after: "0",
  });
  assert.equal(await scalar("show wal_level"), "logical");
});

test("the server log goes to the node dir's log file", () => {
  const { server } = pgs();
  assert.equal(server.logFile, join(pgs().dir, "postgres.log"));
  const log = readFileSync(server.logFile, "utf8");
  assert.match(log, /=== pgraft: starting .*postgres -D /);
  assert.match(log, /LOG: {2}database system is ready to accept connections/);
  assert.match(server.logTail(3), /\S/);
});

test("CREATE EXTENSION dblink works, and dblink reaches the server through keyValueDsn()", async () => {
  const { server } = pgs();
  await server.query("create extension if not exists dblink");
  const rows = await server.query<{ x: number }>("select x from dblink($1, 'select 42') as t(x int)", [server.keyValueDsn()]);
  assert.deepEqual(rows, [{ x: 42 }]);
});

test("TCP logins use SCRAM: the right password works, a wrong one is refused", async () => {
  const { server } = pgs();
  assert.equal(await scalar("select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'postgres'"), true);
  const methods = await server.query<{ type: string; address: string | null; auth_method: string }>(
    "select type, address, auth_method from pg_hba_file_rules where 'all' = any(database)",
  );
  assert.ok(methods.some((m) => m.type === "host" && m.address === "127.0.0.1" && m.auth_method === "scram-sha-256"), JSON.stringify(methods));

  const good = new pg.Client({ connectionString: server.dsn() });
  await good.connect();
  try {
    assert.equal((await good.query<{ u: string }>("select current_user as u")).rows[0]?.u, "postgres");
  } finally {
    await good.end();
  }

  const bad = new pg.Client({ ...server.clientConfig(), password: "wrong" });
  await assert.rejects(bad.connect(), (e: unknown) => {
    assert.equal((e as { code?: string }).code, "28P01"); // invalid_password
    assert.match(String(e), /password authentication failed for user "postgres"/);
    return true;
  });
  await bad.end().catch(() => undefined);
});

test("the unix socket needs no password (trust; only root and the server's user reach it)", async () => {
  const { server } = pgs();
  assert.ok(existsSync(join(server.socketDir, `.s.PGSQL.${server.port}`)));
  const c = new pg.Client({ host: server.socketDir, port: server.port, user: "postgres", database: "postgres" });
  await c.connect();
  try {
    assert.equal((await c.query<{ one: number }>("select 1 as one")).rows[0]?.one, 1);
  } finally {
    await c.end();
  }
});

test("psqlCommand() works pasted into a shell", async () => {
  const { server } = pgs();
  const cmd = server.psqlCommand();
  assert.ok(cmd.startsWith(`${(await server.binaries()).bin("psql")} `), cmd);
  const { stdout } = await execFileP("bash", ["-c", `${cmd} -XAtc 'select 1, current_user'`], { timeout: 10_000 });
  assert.equal(stdout, "1|postgres\n");
});

test("a stop (fast) and start on the same data dir keeps the data", async () => {
  const { server } = pgs();
  await server.query("create table kept (v text)");
  await server.query("insert into kept values ('before restart')");
  const exit = await server.stop({ mode: "fast" });
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.equal(server.running, false);
  assert.equal(existsSync(join(server.dataDir, "postmaster.pid")), false);
  await server.start();
  assert.deepEqual(await server.query("select v from kept"), [{ v: "before restart" }]);
});

test("stop immediate, then start: crash recovery replays the WAL", async () => {
  const { server } = pgs();
  await server.query("insert into kept values ('before immediate stop')");
  await server.stop({ mode: "immediate" });
  await server.start();
  assert.match(server.logTail(30), /database system was interrupted|not properly shut down; automatic recovery in progress/);
  assert.deepEqual(await server.query("select v from kept order by v"), [{ v: "before immediate stop" }, { v: "before restart" }]);
});

test("kill -9 of the postmaster, then start: the stale postmaster.pid (dead pid) is handled", async () => {
  const { server } = pgs();
  await server.query("insert into kept values ('before kill -9')");
  const exit = await server.kill();
  assert.equal(exit?.signal, "SIGKILL");
  assert.ok(existsSync(join(server.dataDir, "postmaster.pid")), "a crash leaves postmaster.pid behind");
  await server.start();
  assert.equal(await scalar("select count(*)::int from kept where v = 'before kill -9'"), 1);
});

test("kill -9 while a backend lives on: start waits until the old shared memory is free", async () => {
  const { server } = pgs();
  const c = await server.connect();
  const backend = (await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
  // A stopped backend cannot notice that its postmaster died: it keeps the old shared memory attached.
  process.kill(backend, "SIGSTOP");
  try {
    await server.kill();
    const started = server.start();
    await new Promise((r) => setTimeout(r, 600));
    process.kill(backend, "SIGCONT");
    await started;
  } finally {
    try {
      process.kill(backend, "SIGCONT");
    } catch {
      // gone
    }
    await c.end().catch(() => undefined);
  }
  assert.match(readFileSync(server.logFile, "utf8"), /pre-existing shared memory block .* is still in use/);
  assert.equal(await scalar("select 1"), 1);
});

test("a postmaster.pid naming a live unrelated process is removed, not obeyed", async () => {
  const { server } = pgs();
  await server.stop();
  const pidFile = join(server.dataDir, "postmaster.pid");
  const sleeper = spawn("sleep", ["60"], { stdio: "ignore" });
  try {
    writeFileSync(pidFile, `${sleeper.pid}\n${server.dataDir}\n0\n${server.port}\n${server.socketDir}\n127.0.0.1\n0 0\nready   \n`);
    await server.start();
    assert.equal(readFileSync(pidFile, "utf8").split("\n")[0], String(server.pid));
  } finally {
    sleeper.kill("SIGKILL");
  }
});

test("a second start on a running data dir is refused: same instance, or another one", async () => {
  const { server } = pgs();
  await assert.rejects(server.start(), (e: unknown) => isPostgresError(e, "PG_ALREADY_RUNNING"));
  const other = testServer({ dataDir: server.dataDir, port: server.port, password: PASSWORD, binaries: await server.binaries() });
  await assert.rejects(other.start(), (e: unknown) => {
    assert.ok(isPostgresError(e, "PG_ALREADY_RUNNING"), String(e));
    assert.ok(e.message.includes(`(pid ${server.pid}) is already running on ${server.dataDir}`), e.message);
    return true;
  });
  assert.equal(other.running, false);
  assert.equal(await scalar("select 1"), 1);
});

test("a server that exits during startup: PG_START_FAILED with the log tail", async () => {
  const { server } = pgs();
  await server.stop();
  const broken = testServer({
    dataDir: server.dataDir,
    port: server.port,
    password: PASSWORD,
    binaries: await server.binaries(),
    settings: { shared_buffers: "lots" },
  });
  try {
    await assert.rejects(broken.start(), (e: unknown) => {
      assert.ok(isPostgresError(e, "PG_START_FAILED"), String(e));
      assert.match(e.message, /exited during startup \(exit code 1\); server log .*postgres\.log:\n/);
      assert.match(e.message, /invalid value for parameter "shared_buffers": "lots"/);
      return true;
    });
    assert.equal(broken.running, false);
  } finally {
    await broken.stop({ mode: "immediate" });
    // pgraft.conf is rewritten from the options on every start: the good server starts again.
    await server.start();
  }
  assert.equal(await scalar("show shared_buffers"), "32MB");
});

test("a start that does not finish in time: PG_START_TIMEOUT, and the server is stopped", async () => {
  const { server } = pgs();
  await server.stop();
  try {
    await assert.rejects(server.start({ timeoutMs: 1 }), (e: unknown) => {
      assert.ok(isPostgresError(e, "PG_START_TIMEOUT"), String(e));
      assert.match(e.message, /did not accept connections on 127\.0\.0\.1:\d+ within 1 ms .*it was stopped; server log /s);
      return true;
    });
    assert.equal(server.running, false);
    assert.ok(server.lastExit, "it exited");
  } finally {
    await server.start();
  }
});

test("start on an empty data dir: PG_NOT_INITIALIZED", async () => {
  const { server } = pgs();
  const empty = testServer({ dataDir: join(pgs().dir, "empty", "data"), port: server.port, password: PASSWORD, binaries: await server.binaries() });
  await assert.rejects(empty.start(), (e: unknown) => isPostgresError(e, "PG_NOT_INITIALIZED") && /run initdb first/.test(e.message));
});
