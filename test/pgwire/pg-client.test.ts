// The endpoint as the `pg` npm client sees it: SCRAM login, simple and
// extended (parameterized) queries, errors, cancellation, disconnects, close().
import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { PASSWORD, USER, connect, pgError, startTestServer, until } from "./helpers.js";

describe("pgwire with the pg client", () => {
  test("SCRAM login with the right password; the handler sees user, database, application_name", async (t) => {
    const { server } = await startTestServer(t);
    const c = await connect(t, server, { application_name: "tester" });
    const { processID } = c as unknown as { processID: number };
    assert.ok(processID > 0, "BackendKeyData pid");
    const r = await c.query("whoami");
    assert.deepEqual(r.rows, [{ user: USER, database: "db", application_name: "tester" }]);
    assert.equal(server.sessions(), 1);
  });

  test("a wrong password and an unknown user fail alike with 28P01", async (t) => {
    const { server } = await startTestServer(t);
    for (const [user, password] of [[USER, "wrong"], ["mallory", PASSWORD]] as const) {
      const c = new pg.Client({ host: "127.0.0.1", port: server.address.port, user, password, database: "db" });
      c.on("error", () => {});
      const e = await pgError(c.connect());
      assert.equal(e.code, "28P01");
      assert.equal(e.message, `password authentication failed for user "${user}"`);
      await c.end().catch(() => {});
    }
    await until(() => server.sessions() === 0, "failed sessions released");
  });

  test("rows, NULLs, many rows, command tags", async (t) => {
    const { server } = await startTestServer(t);
    const c = await connect(t, server);
    const r = await c.query("rows 4");
    assert.equal(r.command, "SELECT");
    assert.equal(r.rowCount, 4);
    assert.deepEqual(r.fields.map((f) => [f.name, f.dataTypeID]), [["n", 23], ["label", 25]]);
    assert.deepEqual(r.rows, [
      { n: 1, label: "row 1" },
      { n: 2, label: "row 2" },
      { n: 3, label: null },
      { n: 4, label: "row 4" },
    ]);
    const big = await c.query("rows 20000");
    assert.equal(big.rows.length, 20000);
    assert.deepEqual(big.rows[19999], { n: 20000, label: "row 20000" });
    assert.deepEqual((await c.query("select null")).rows, [{ "?column?": null }]);
    const set = await c.query("set x = 1");
    assert.equal(set.command, "SET");
    assert.deepEqual(set.fields, []);
  });

  test("a multi-statement simple query returns one result per statement", async (t) => {
    const { server } = await startTestServer(t);
    const c = await connect(t, server);
    const r = (await c.query("select 1; rows 2; set a = b")) as unknown as pg.QueryResult[];
    assert.equal(r.length, 3);
    assert.deepEqual(r[0]!.rows, [{ "?column?": 1 }]);
    assert.equal(r[1]!.rows.length, 2);
    assert.equal(r[2]!.command, "SET");
  });

  test("errors keep SQLSTATE, message, detail, hint; the session goes on", async (t) => {
    const { server } = await startTestServer(t);
    const c = await connect(t, server);
    const e = await pgError(c.query("fail"));
    assert.equal(e.code, "22023");
    assert.equal(e.severity, "ERROR");
    assert.equal(e.message, "the frobnicator is out of range");
    assert.equal(e.detail, "It was 11; the limit is 10.");
    assert.equal(e.hint, "Try a smaller frobnicator.");
    const crash = await pgError(c.query("crash"));
    assert.equal(crash.code, "XX000");
    assert.equal(crash.message, "kaboom");
    assert.deepEqual((await c.query("select 7")).rows, [{ "?column?": 7 }]);
  });

  test("empty queries and notices", async (t) => {
    const { server } = await startTestServer(t);
    const c = await connect(t, server);
    const notices: { message?: string; severity?: string; code?: string; detail?: string }[] = [];
    c.on("notice", (n) => notices.push(n));
    await c.query("");
    await c.query("empty");
    const r = await c.query("notice");
    assert.equal(r.command, "DO");
    assert.deepEqual(
      notices.map((n) => [n.severity, n.code, n.message, n.detail]),
      [
        ["NOTICE", "00000", "first notice", undefined],
        ["WARNING", "01000", "careful", "a detail"],
      ],
    );
  });

  test("parameterized queries (extended protocol) bind text parameters as literals", async (t) => {
    const { server, log } = await startTestServer(t);
    const c = await connect(t, server);
    const tricky = "it's a $1 \\ 'quoted' -- not a comment";
    assert.deepEqual((await c.query("select $1", [tricky])).rows, [{ "?column?": tricky }]);
    assert.equal(log.queries.at(-1), `select 'it''s a $1 \\ ''quoted'' -- not a comment'`);
    assert.deepEqual((await c.query("select $1", [null])).rows, [{ "?column?": null }]);
    assert.deepEqual((await c.query("select $1", [3])).rows, [{ "?column?": "3" }]);
    // Named statements are prepared once and bound again.
    for (const v of ["a", "b"]) assert.deepEqual((await c.query({ name: "s1", text: "select $1", values: [v] })).rows, [{ "?column?": v }]);
    assert.deepEqual((await c.query({ name: "r", text: "rows 2", rowMode: "array" })).rows, [[1, "row 1"], [2, "row 2"]]);
    assert.deepEqual((await c.query({ name: "e", text: "" })).rows, []);
    // Errors skip to Sync and the session goes on.
    // (A name forces the extended protocol even without parameters.)
    const e = await pgError(c.query({ name: "f", text: "fail" }));
    assert.equal(e.code, "22023");
    assert.equal(e.hint, "Try a smaller frobnicator.");
    const multi = await pgError(c.query({ name: "m", text: "select 1; select 2" }));
    assert.equal(multi.code, "42601");
    const missing = await pgError(c.query("select $2", ["x"]));
    assert.equal(missing.code, "08P01");
    assert.deepEqual((await c.query("select $1", ["still fine"])).rows, [{ "?column?": "still fine" }]);
    assert.equal((await c.query("set a = $1", ["x"])).command, "SET");
  });

  test("Execute with a row limit suspends the portal (pg.Cursor-style fetches)", async (t) => {
    const { server } = await startTestServer(t);
    const c = await connect(t, server);
    // pg has no cursor API of its own; drive Parse/Bind/Describe/Execute(2) directly.
    const conn = (c as unknown as { connection: { stream: NodeJS.WritableStream } }).connection;
    const got: string[] = [];
    const done = new Promise<void>((resolve) => {
      const stream = conn as unknown as NodeJS.EventEmitter;
      const on = (name: string) => (msg: { name?: string; fields?: unknown[] }) => {
        got.push(name === "dataRow" ? `row:${String((msg.fields as unknown[])[0])}` : name);
        if (name === "readyForQuery") resolve();
      };
      for (const n of ["parseComplete", "bindComplete", "rowDescription", "dataRow", "portalSuspended", "commandComplete", "readyForQuery"]) stream.on(n, on(n));
    });
    const raw = conn as unknown as {
      parse(q: { text: string; name?: string }): void;
      bind(b: { portal?: string; statement?: string; values?: unknown[] }): void;
      describe(d: { type: string; name?: string }): void;
      execute(e: { portal?: string; rows?: number }): void;
      sync(): void;
    };
    raw.parse({ text: "rows 5" });
    raw.bind({});
    raw.describe({ type: "P" });
    raw.execute({ rows: 2 });
    raw.execute({ rows: 2 });
    raw.execute({ rows: 2 });
    raw.sync();
    await done;
    assert.deepEqual(got, [
      "parseComplete",
      "bindComplete",
      "rowDescription",
      "row:1",
      "row:2",
      "portalSuspended",
      "row:3",
      "row:4",
      "portalSuspended",
      "row:5",
      "commandComplete",
      "readyForQuery",
    ]);
  });

  test("an oversized query gets 54000 and the session stays usable", async (t) => {
    const { server } = await startTestServer(t, { maxMessageBytes: 64 * 1024 });
    const c = await connect(t, server);
    const e = await pgError(c.query(`select '${"x".repeat(200 * 1024)}'`));
    assert.equal(e.code, "54000");
    const e2 = await pgError(c.query(`select '${"x".repeat(200 * 1024)}' /* $1 */`, ["p"]));
    assert.equal(e2.code, "54000");
    assert.deepEqual((await c.query("select 5")).rows, [{ "?column?": 5 }]);
  });

  test("many concurrent clients", async (t) => {
    const { server } = await startTestServer(t);
    const clients = await Promise.all(Array.from({ length: 40 }, () => connect(t, server)));
    assert.equal(server.sessions(), 40);
    const results = await Promise.all(clients.map((c, i) => c.query(`select ${i}`)));
    results.forEach((r, i) => assert.deepEqual(r.rows, [{ "?column?": i }]));
    await Promise.all(clients.map((c) => c.end()));
    await until(() => server.sessions() === 0, "sessions released");
  });

  test("maxConnections: one too many gets 53300", async (t) => {
    const { server } = await startTestServer(t, { maxConnections: 2 });
    await connect(t, server);
    await connect(t, server);
    const c = new pg.Client({ host: "127.0.0.1", port: server.address.port, user: USER, password: PASSWORD });
    c.on("error", () => {});
    const e = await pgError(c.connect());
    assert.equal(e.code, "53300");
    await c.end().catch(() => {});
  });

  test("a CancelRequest aborts the running query with 57014", async (t) => {
    const { server, log } = await startTestServer(t);
    const c = await connect(t, server);
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const running = pgError(c.query("sleep 10000"));
    await until(() => log.queries.includes("sleep 10000"), "query started");
    const cancelWith = async (pid: number, key: number): Promise<void> => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(80877102, 4);
      packet.writeInt32BE(pid, 8);
      packet.writeInt32BE(key, 12);
      const s = netConnect(server.address.port, "127.0.0.1");
      s.on("error", () => {});
      s.end(packet);
      await new Promise((r) => s.on("close", r));
    };
    await cancelWith(processID, secretKey ^ 1); // wrong key: ignored
    await sleep(50);
    assert.equal(log.aborted.length, 0);
    await cancelWith(processID, secretKey);
    const e = await running;
    assert.equal(e.code, "57014");
    assert.equal(e.message, "canceling statement due to user request");
    assert.deepEqual(log.aborted.map((a) => a.sql), ["sleep 10000"]);
    assert.deepEqual((await c.query("select 1")).rows, [{ "?column?": 1 }]);
  });

  test("an abrupt disconnect mid-query aborts the handler", async (t) => {
    const { server, log } = await startTestServer(t);
    const c = await connect(t, server);
    const running = c.query("sleep 10000").catch(() => {});
    await until(() => log.queries.includes("sleep 10000"), "query started");
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await log.nextAbort;
    assert.equal(log.aborted[0]?.reason, "client disconnected");
    await running;
    await until(() => server.sessions() === 0, "session released");
  });

  test("close() ends open sessions (FATAL 57P01), also one stuck in a handler ignoring its signal", async (t) => {
    const { server, log } = await startTestServer(t);
    const idle = await connect(t, server);
    const busy = await connect(t, server);
    const idleError = new Promise<Error & { code?: string }>((resolve) => idle.on("error", (e) => resolve(e)));
    const stuck = pgError(busy.query("stubborn 5000"));
    await until(() => log.queries.includes("stubborn 5000"), "query started");
    const started = Date.now();
    await server.close();
    assert.ok(Date.now() - started < 2000, "close() did not wait for the stubborn handler");
    assert.equal(server.sessions(), 0);
    assert.equal((await idleError).code, "57P01");
    assert.equal((await stuck).code, "57P01");
    assert.deepEqual(log.aborted.map((a) => a.reason), ["terminating connection due to administrator command"]);
    const late = new pg.Client({ host: "127.0.0.1", port: server.address.port, user: USER, password: PASSWORD });
    late.on("error", () => {});
    await assert.rejects(late.connect());
  });

  test("binding a port in use rejects with a clear message", async (t) => {
    const { server } = await startTestServer(t);
    await assert.rejects(startTestServer(t, { port: server.address.port }), /cannot listen on 127\.0\.0\.1:\d+: address already in use/);
  });
});
