// The client proxy with real clients (the `pg` npm client, psql) in front of
// real PostgreSQL 15 servers: alpha (ssl off, so it answers an SSLRequest 'N')
// and beta (ssl on, a self-signed certificate). Logins are SCRAM over TCP.
// test/routing/proxy-raw.test.ts covers the byte level against an echo server.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import type { LocalPostgres } from "../../src/postgres/local-server.js";
import type { ProxyTarget } from "../../src/routing/proxy.js";
import { freePort } from "../support/ports.js";
import { startTestPostgres, testBinaries, type TestPostgres } from "../support/postgres.js";
import { runProcess } from "../support/run.js";
import { TargetBox, sleep, startProxy } from "./helpers.js";

let alpha: TestPostgres;
let beta: TestPostgres;
let psqlBin: string;

const targetOf = (s: LocalPostgres, nodeId: number): ProxyTarget => ({ host: "127.0.0.1", port: s.port, nodeId });

/** A throwaway self-signed certificate (P-256: quick to make) from the openssl CLI. */
async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), "proxy-tls-"));
  try {
    await promisify(execFile)("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
    ]);
    return { cert: await readFile(join(dir, "cert.pem"), "utf8"), key: await readFile(join(dir, "key.pem"), "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** ssl = on with a self-signed certificate, by ALTER SYSTEM and a reload (ssl is reloadable). */
async function enableSsl(s: LocalPostgres): Promise<void> {
  const { cert, key } = await selfSignedCert();
  for (const [name, text] of [["server.crt", cert], ["server.key", key]] as const) {
    const p = join(s.dataDir, name);
    await writeFile(p, text, { mode: 0o600 });
    if (s.osUser) await chown(p, s.osUser.uid, s.osUser.gid);
  }
  await s.query("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
  await s.query("ALTER SYSTEM SET ssl_key_file = 'server.key'");
  await s.query("ALTER SYSTEM SET ssl = on");
  await s.query("SELECT pg_reload_conf()");
  for (let i = 0; i < 100; i++) {
    if ((await s.query<{ ssl: string }>("SHOW ssl"))[0]?.ssl === "on") return;
    await sleep(50);
  }
  throw new Error("ssl did not turn on");
}

/** A `pg` client through the proxy on `port`, logging in to `server` (its user and password). */
async function viaProxy(port: number, server: LocalPostgres, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const c = new pg.Client({ ...server.clientConfig(), host: "127.0.0.1", port, ...extra });
  c.on("error", () => undefined);
  try {
    await c.connect();
  } catch (e) {
    await c.end().catch(() => undefined);
    throw e;
  }
  return c;
}

/** The error `p` rejects with (fails when it resolves). */
async function pgError(p: Promise<unknown>): Promise<{ code?: string; severity?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; severity?: string; message: string };
  }
  assert.fail("expected an error");
}

function psql(port: number, server: LocalPostgres, args: string[], opts: { conn?: string; onSpawn?: (pid: number) => void } = {}) {
  const conn = `host=127.0.0.1 port=${port} user=${server.superuser} dbname=postgres ${opts.conn ?? ""}`;
  return runProcess(psqlBin, ["-X", "-w", "-v", "ON_ERROR_STOP=1", "-d", conn, ...args], {
    env: { ...process.env, PGPASSWORD: server.password, PGCONNECT_TIMEOUT: "10", LC_ALL: "C.UTF-8" },
    timeoutMs: 30_000,
    onSpawn: (child) => {
      if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    },
  });
}

const clusterName = async (c: pg.Client): Promise<string> => (await c.query<{ cluster_name: string }>("SHOW cluster_name")).rows[0]!.cluster_name;

describe("client proxy with PostgreSQL", () => {
  before(async () => {
    [alpha, beta] = await Promise.all([
      startTestPostgres({ settings: { cluster_name: "alpha" } }),
      startTestPostgres({ settings: { cluster_name: "beta" } }),
    ]);
    await enableSsl(beta.server);
    psqlBin = (await testBinaries()).bin("psql");
  });
  after(async () => {
    await Promise.all([alpha?.destroy(), beta?.destroy()]);
  });

  test("queries go through (SCRAM login); a wrong password's error comes from the server as it is", async (t) => {
    const { port, proxy } = await startProxy(t, { target: () => targetOf(alpha.server, 1) });
    const c = await viaProxy(port, alpha.server);
    t.after(() => c.end());
    const r = await c.query<{ n: number; name: string }>("SELECT count(*)::int AS n, current_setting('cluster_name') AS name FROM generate_series(1, 10000)");
    assert.deepEqual(r.rows, [{ n: 10000, name: "alpha" }]);
    // Big results both ways (backpressure under a real client).
    const big = "x".repeat(4 * 1024 * 1024);
    const echo = await c.query<{ len: number }>("SELECT length($1::text) AS len", [big]);
    assert.equal(echo.rows[0]!.len, big.length);
    const many = await c.query("SELECT g, repeat('y', 100) FROM generate_series(1, 50000) g");
    assert.equal(many.rowCount, 50000);
    const e = await pgError(viaProxy(port, alpha.server, { password: "wrong" }));
    assert.equal(e.code, "28P01");
    assert.match(e.message, /password authentication failed for user "postgres"/);
    assert.equal(proxy.stats().accepted, 2);
  });

  test("psql with sslmode=prefer: the SSLRequest goes to the server, which answers 'N' (ssl off) or takes TLS (ssl on)", async (t) => {
    const box = new TargetBox(targetOf(alpha.server, 1));
    const { port, proxy } = await startProxy(t, { target: box.get });
    const plain = await psql(port, alpha.server, ["-Atc", "SELECT current_setting('cluster_name'), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"], { conn: "sslmode=prefer" });
    assert.equal(plain.stderr, "");
    assert.equal(plain.stdout, "alpha|f\n");
    const required = await psql(port, alpha.server, ["-Atc", "SELECT 1"], { conn: "sslmode=require" });
    assert.match(required.stderr, /server does not support SSL, but SSL was required/);
    box.current = targetOf(beta.server, 2);
    const tls = await psql(port, beta.server, ["-Atc", "SELECT current_setting('cluster_name'), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"], { conn: "sslmode=require" });
    assert.equal(tls.stderr, "");
    assert.equal(tls.stdout, "beta|t\n");
    const c = await viaProxy(port, beta.server, { ssl: { rejectUnauthorized: false } });
    t.after(() => c.end());
    const r = await c.query<{ ssl: boolean }>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert.equal(r.rows[0]!.ssl, true);
    assert.equal(proxy.stats().failedUpstream + proxy.stats().failedNoTarget, 0);
  });

  test("retarget(): the connections to the old node are closed; new ones go to the new node at once", async (t) => {
    const box = new TargetBox(targetOf(alpha.server, 1));
    const { port, proxy } = await startProxy(t, { target: box.get });
    const olds = await Promise.all([viaProxy(port, alpha.server), viaProxy(port, alpha.server)]);
    t.after(() => Promise.all(olds.map((c) => c.end().catch(() => undefined))));
    for (const c of olds) assert.equal(await clusterName(c), "alpha");
    const pids = await Promise.all(olds.map(async (c) => (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid));
    // beta's superuser has its own password: a client of the new target logs in with that.
    box.current = targetOf(beta.server, 2);
    proxy.retarget();
    const fresh = await viaProxy(port, beta.server);
    t.after(() => fresh.end());
    assert.equal(await clusterName(fresh), "beta");
    for (const c of olds) {
      const e = await pgError(c.query("SELECT 1"));
      assert.match(e.message, /Connection terminated|not queryable|ended/i);
    }
    assert.equal(proxy.stats().closedByRetarget, 2);
    // Their backends on alpha saw the client go, and ended.
    for (let i = 0; i < 100; i++) {
      const left = await alpha.server.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)", [pids]);
      if (left[0]!.n === 0) break;
      await sleep(50);
    }
    const left = await alpha.server.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)", [pids]);
    assert.equal(left[0]!.n, 0);
  });

  test("a client arriving with no target waits, and is served once a target appears within the wait", async (t) => {
    const box = new TargetBox();
    const { port, proxy } = await startProxy(t, { target: box.get, waitForTargetMs: 5000 });
    const start = Date.now();
    const pending = viaProxy(port, alpha.server);
    await sleep(300);
    assert.equal(proxy.stats().active, 1);
    box.current = targetOf(alpha.server, 1);
    proxy.retarget();
    const c = await pending;
    t.after(() => c.end());
    assert.ok(Date.now() - start >= 280);
    assert.equal(await clusterName(c), "alpha");
  });

  test("no target within the wait: pg and psql read a FATAL 57P03 naming the wait", async (t) => {
    const { port, proxy } = await startProxy(t, { target: () => undefined, waitForTargetMs: 300 });
    const start = Date.now();
    const e = await pgError(viaProxy(port, alpha.server));
    assert.ok(Date.now() - start >= 280);
    assert.equal(e.code, "57P03");
    assert.equal(e.severity, "FATAL");
    assert.equal(e.message, "pgraft read-write proxy: no write leader is available (waited 0.3 s)");
    // psql's default sslmode=prefer opens with an SSLRequest: answered 'N', then the startup gets the error.
    const r = await psql(port, alpha.server, ["-Atc", "SELECT 1"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /FATAL: {2}pgraft read-write proxy: no write leader is available \(waited 0\.3 s\)/);
    assert.equal(proxy.stats().failedNoTarget, 2);
  });

  test("upstream down (connection refused) for the whole wait: pg and psql read a FATAL 08006", async (t) => {
    const dead = await freePort();
    const { port } = await startProxy(t, { target: () => ({ host: "127.0.0.1", port: dead, nodeId: 7 }), waitForTargetMs: 800 });
    const e = await pgError(viaProxy(port, alpha.server));
    assert.equal(e.code, "08006");
    assert.equal(e.severity, "FATAL");
    assert.equal(e.message, `pgraft read-write proxy: cannot connect to node 7 (127.0.0.1:${dead}): ECONNREFUSED`);
    const r = await psql(port, alpha.server, ["-Atc", "SELECT 1"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /FATAL: {2}pgraft read-write proxy: cannot connect to node 7/);
  });

  test("maxConnections: the client beyond reads a FATAL 53300", async (t) => {
    const { port, proxy } = await startProxy(t, { target: () => targetOf(alpha.server, 1), maxConnections: 2 });
    const held = await Promise.all([viaProxy(port, alpha.server), viaProxy(port, alpha.server)]);
    t.after(() => Promise.all(held.map((c) => c.end())));
    const e = await pgError(viaProxy(port, alpha.server));
    assert.equal(e.code, "53300");
    assert.equal(e.severity, "FATAL");
    assert.equal(e.message, "pgraft read-write proxy: too many connections (limit 2)");
    assert.equal(proxy.stats().refused, 1);
  });

  test("idle timeout: a session idle that long is closed, its backend ends", async (t) => {
    const { port, proxy } = await startProxy(t, { target: () => targetOf(alpha.server, 1), idleTimeoutMs: 400 });
    const c = await viaProxy(port, alpha.server);
    t.after(() => c.end().catch(() => undefined));
    const pid = (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    // A query longer than the timeout but sending nothing meanwhile would be cut too: the timeout is about bytes.
    await sleep(900);
    await pgError(c.query("SELECT 1"));
    assert.equal(proxy.stats().closedByIdle, 1);
    for (let i = 0; i < 100; i++) {
      if ((await alpha.server.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1", [pid]))[0]!.n === 0) return;
      await sleep(50);
    }
    assert.fail("the backend is still there");
  });

  test("a CancelRequest goes through to the target: Ctrl-C in psql cancels its query", async (t) => {
    const { port } = await startProxy(t, { target: () => targetOf(alpha.server, 1) });
    let pid = 0;
    const run = psql(port, alpha.server, ["-Atc", "SELECT pg_sleep(30) /* proxy-cancel */"], { onSpawn: (p) => (pid = p) });
    for (let i = 0; ; i++) {
      const rows = await alpha.server.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%proxy-cancel */' AND state = 'active' AND pid <> pg_backend_pid()");
      if (rows[0]!.n > 0) break;
      if (i > 200) assert.fail("the query did not start");
      await sleep(50);
    }
    process.kill(pid, "SIGINT");
    const r = await run;
    assert.match(r.stderr, /ERROR: {2}canceling statement due to user request/);
    assert.notEqual(r.code, 0);
  });
});
