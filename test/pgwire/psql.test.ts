// The endpoint as psql (libpq) sees it: output, errors and exit codes, notices,
// \conninfo, SSL negotiation with and without TLS, Ctrl-C cancellation.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import pg from "pg";
import { PASSWORD, USER, psql, selfSignedCert, startTestServer, until } from "./helpers.js";

describe("pgwire with psql", () => {
  test("a query prints its rows (NULL as empty) and exits 0", async (t) => {
    const { server } = await startTestServer(t);
    const r = await psql(server, ["-Atc", "rows 3"]);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, "1|row 1\n2|row 2\n3|\n");
    assert.equal(r.code, 0);
    const multi = await psql(server, ["-Atc", "select 1; select 'two'"]);
    assert.equal(multi.stdout, "1\ntwo\n");
  });

  test("an error prints ERROR/DETAIL/HINT and exits non-zero", async (t) => {
    const { server } = await startTestServer(t);
    const r = await psql(server, ["-Atc", "fail"]);
    assert.equal(r.stderr, "ERROR:  the frobnicator is out of range\nDETAIL:  It was 11; the limit is 10.\nHINT:  Try a smaller frobnicator.\n");
    assert.notEqual(r.code, 0);
    // ON_ERROR_STOP: the script stops at the error.
    const script = await psql(server, ["-At", "-c", "select 1", "-c", "crash", "-c", "select 2"]);
    assert.equal(script.stdout, "1\n");
    assert.match(script.stderr, /^ERROR: {2}kaboom$/m);
    assert.notEqual(script.code, 0);
  });

  test("notices are printed; \\conninfo; \\encoding goes through SET client_encoding", async (t) => {
    const { server, log } = await startTestServer(t);
    const r = await psql(server, ["-Atc", "notice"]);
    assert.equal(r.stderr, "NOTICE:  first notice\nWARNING:  careful\nDETAIL:  a detail\n");
    const info = await psql(server, ["-c", "\\conninfo"]);
    assert.match(info.stdout, new RegExp(`You are connected to database "db" as user "${USER}" on host "127.0.0.1" at port "${server.address.port}"`));
    assert.doesNotMatch(info.stdout, /SSL/);
    const enc = await psql(server, ["-At", "-c", "\\encoding UTF8", "-c", "\\encoding", "-c", "select 1"]);
    assert.equal(enc.stdout, "UTF8\n1\n");
    const latin = await psql(server, ["-Atc", "set client_encoding to 'LATIN1'"]);
    assert.match(latin.stderr, /ERROR: {2}invalid value for parameter "client_encoding": "LATIN1"/);
    // Neither reached the handler: they are about the wire.
    assert.deepEqual(log.queries, ["notice", "select 1"]);
  });

  test("another user (other iteration count) logs in; wrong password or unknown user: FATAL 28P01, exit 2", async (t) => {
    const { server } = await startTestServer(t);
    const bob = await psql(server, ["-Atc", "whoami"], { user: "bob", password: "bobpw" });
    assert.equal(bob.stdout, "bob|db|psql\n");
    for (const [user, password] of [[USER, "nope"], ["nobody", PASSWORD]] as const) {
      const r = await psql(server, ["-Atc", "select 1"], { user, password });
      assert.match(r.stderr, new RegExp(`FATAL: {2}password authentication failed for user "${user}"`));
      assert.equal(r.code, 2);
    }
  });

  test("sslmode=require fails clearly without TLS; sslmode=prefer falls back to plaintext", async (t) => {
    const { server } = await startTestServer(t);
    const req = await psql(server, ["-Atc", "select 1"], { conn: "sslmode=require" });
    assert.match(req.stderr, /server does not support SSL, but SSL was required/);
    assert.equal(req.code, 2);
    const pref = await psql(server, ["-Atc", "select 1"], { conn: "sslmode=prefer" });
    assert.equal(pref.stdout, "1\n");
  });

  test("Ctrl-C in psql cancels the running query", async (t) => {
    const { server, log } = await startTestServer(t);
    let pid = 0;
    const run = psql(server, ["-Atc", "sleep 10000"], { onSpawn: (p) => (pid = p) });
    await until(() => log.queries.includes("sleep 10000"), "query started");
    process.kill(pid, "SIGINT");
    const r = await run;
    assert.match(r.stderr, /ERROR: {2}canceling statement due to user request/);
    assert.notEqual(r.code, 0);
    assert.equal(log.aborted.length, 1);
  });
});

describe("pgwire over TLS (self-signed certificate made with openssl)", () => {
  let cert: string;
  let key: string;
  before(async () => {
    ({ cert, key } = await selfSignedCert());
  });

  test("psql with sslmode=require gets TLS; plaintext still works", async (t) => {
    const { server } = await startTestServer(t, { tls: { cert, key } });
    const r = await psql(server, ["-At", "-c", "\\conninfo", "-c", "rows 2"], { conn: "sslmode=require" });
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
    assert.match(r.stdout, /1\|row 1\n2\|row 2\n$/);
    const plain = await psql(server, ["-Atc", "select 1"], { conn: "sslmode=disable" });
    assert.equal(plain.stdout, "1\n");
    // libpq cannot get channel binding here (no SCRAM-SHA-256-PLUS) and says so.
    const cb = await psql(server, ["-Atc", "select 1"], { conn: "sslmode=require channel_binding=require" });
    assert.match(cb.stderr, /channel binding/);
    assert.equal(cb.code, 2);
    const wrong = await psql(server, ["-Atc", "select 1"], { conn: "sslmode=require", password: "nope" });
    assert.match(wrong.stderr, /password authentication failed/);
  });

  test("the pg client over TLS", async (t) => {
    const { server } = await startTestServer(t, { tls: { cert, key } });
    const c = new pg.Client({ host: "127.0.0.1", port: server.address.port, user: USER, password: PASSWORD, ssl: { rejectUnauthorized: false } });
    c.on("error", () => {});
    t.after(() => c.end().catch(() => {}));
    await c.connect();
    assert.deepEqual((await c.query("select $1", ["over tls"])).rows, [{ "?column?": "over tls" }]);
    assert.equal((await c.query("rows 5000")).rows.length, 5000);
    await c.end();
    await until(() => server.sessions() === 0, "session released");
  });
});
