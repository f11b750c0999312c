// The client proxy at the byte level, against a byte-echo upstream (no
// PostgreSQL): what passes untouched, what the proxy answers itself and how,
// the limits (connections, idle, connect timeout), bad input, and that close()
// leaves nothing behind. test/routing/proxy.test.ts runs real clients against
// real PostgreSQL servers.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE } from "../../src/pgwire/messages.js";
import { ClientProxy } from "../../src/routing/proxy.js";
import { runProcess } from "../support/run.js";
import { freePort } from "../support/ports.js";
import { RawClient, TargetBox, blackhole, captureLogger, parseErrorResponse, sleep, startEcho, startProxy, startupMessage, startupPacket } from "./helpers.js";

const local = (port: number, nodeId = 1): { host: string; port: number; nodeId: number } => ({ host: "127.0.0.1", port, nodeId });

describe("client proxy, bytes", () => {
  test("with a target, every byte goes through untouched from the first one (an SSLRequest included), both ways", async (t) => {
    const echo = await startEcho(t);
    const { port, proxy } = await startProxy(t, { target: () => local(echo.port) });
    const c = new RawClient(port);
    t.after(() => c.destroy());
    const ssl = startupPacket(SSL_REQUEST_CODE);
    c.write(ssl);
    assert.equal(await c.bytes(8), true);
    assert.deepEqual(c.buf, ssl, "the SSLRequest reached the upstream as sent, and its bytes came back");
    // A few megabytes each way: backpressure, nothing lost or reordered.
    const big = randomBytes(4 * 1024 * 1024);
    c.write(big);
    assert.equal(await c.bytes(8 + big.length, 20_000), true);
    assert.equal(Buffer.compare(c.buf.subarray(8), big), 0);
    assert.deepEqual(proxy.stats(), { active: 1, accepted: 1, refused: 0, closedByRetarget: 0, failedNoTarget: 0, failedUpstream: 0, closedByIdle: 0 });
    // The client leaves: the upstream connection goes too.
    c.destroy();
    for (let i = 0; i < 200 && (echo.sockets.size > 0 || proxy.stats().active > 0); i++) await sleep(10);
    assert.equal(echo.sockets.size, 0);
    assert.equal(proxy.stats().active, 0);
  });

  test("300 clients at once: each gets its own bytes back; once they leave, nothing is left open", async (t) => {
    const echo = await startEcho(t);
    const { port, proxy } = await startProxy(t, { target: () => local(echo.port) });
    const clients = Array.from({ length: 300 }, () => new RawClient(port));
    t.after(() => clients.forEach((c) => c.destroy()));
    const sent = clients.map((c, i) => {
      const b = Buffer.from(`${i}:`.padEnd(1024, String.fromCharCode(97 + (i % 26))));
      c.write(b);
      return b;
    });
    for (const [i, c] of clients.entries()) {
      assert.equal(await c.bytes(1024, 20_000), true);
      assert.deepEqual(c.buf, sent[i]);
    }
    assert.equal(proxy.stats().active, 300);
    for (const c of clients) c.socket.end();
    for (let i = 0; i < 500 && (proxy.stats().active > 0 || echo.sockets.size > 0); i++) await sleep(10);
    assert.equal(proxy.stats().active, 0);
    assert.equal(echo.sockets.size, 0);
  });

  test("the upstream ends: what it sent still reaches the client, then the client is closed", async (t) => {
    const last = Buffer.from("last words");
    const server = createServer((s) => {
      s.on("error", () => undefined);
      s.end(last);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const { port } = await startProxy(t, { target: () => local((server.address() as AddressInfo).port) });
    const c = new RawClient(port);
    assert.equal(await c.closedWithin(3000), true);
    assert.deepEqual(c.buf, last);
  });

  test("no target within the wait: SSLRequest and GSSENCRequest answered 'N', the StartupMessage a FATAL 57P03, then closed", async (t) => {
    const { port, proxy, lines } = await startProxy(t, { target: () => undefined, waitForTargetMs: 200 });
    const c = new RawClient(port);
    t.after(() => c.destroy());
    const start = Date.now();
    c.write(startupPacket(GSSENC_REQUEST_CODE));
    assert.equal(await c.bytes(1), true);
    assert.ok(Date.now() - start >= 180, "answered only once the wait was over");
    assert.equal(c.buf.toString(), "N");
    c.write(startupPacket(SSL_REQUEST_CODE));
    assert.equal(await c.bytes(2), true);
    assert.equal(c.buf.toString(), "NN");
    c.write(startupMessage());
    assert.equal(await c.closedWithin(), true);
    const fields = parseErrorResponse(c.buf.subarray(2));
    assert.equal(fields.S, "FATAL");
    assert.equal(fields.V, "FATAL");
    assert.equal(fields.C, "57P03");
    assert.equal(fields.M, "pgraft read-write proxy: no write leader is available (waited 0.2 s)");
    assert.equal(proxy.stats().failedNoTarget, 1);
    assert.equal(proxy.stats().active, 0);
    assert.ok(lines.some((l) => l.level === "warn" && /no target within 0.2 s/.test(String(l.msg))));
  });

  test("no target: a CancelRequest is closed without an answer; a length out of range is closed", async (t) => {
    const { port } = await startProxy(t, { target: () => undefined, waitForTargetMs: 0, name: "read-only" });
    const cancel = new RawClient(port);
    const body = Buffer.alloc(8);
    body.writeInt32BE(1234, 0);
    body.writeInt32BE(5678, 4);
    cancel.write(startupPacket(CANCEL_REQUEST_CODE, body));
    assert.equal(await cancel.closedWithin(), true);
    assert.equal(cancel.buf.length, 0);
    const junk = new RawClient(port);
    junk.write(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
    assert.equal(await junk.closedWithin(), true);
    assert.equal(junk.buf.length, 0);
    // The read-only port names what it lacks.
    const c = new RawClient(port);
    c.write(startupMessage());
    assert.equal(await c.closedWithin(), true);
    assert.equal(parseErrorResponse(c.buf).M, "pgraft read-only proxy: no read-only node is available (waited 0.0 s)");
  });

  test("a waiting client is connected when the poll finds a target; nothing it sent is lost", async (t) => {
    const echo = await startEcho(t);
    const box = new TargetBox();
    const { port, proxy } = await startProxy(t, { target: box.get, waitForTargetMs: 5000 });
    const a = new RawClient(port);
    const b = new RawClient(port);
    t.after(() => (a.destroy(), b.destroy()));
    a.write(startupPacket(SSL_REQUEST_CODE));
    b.write(Buffer.from("b's bytes"));
    await sleep(200);
    assert.equal(a.buf.length + b.buf.length, 0, "nothing answered while waiting");
    assert.equal(proxy.stats().active, 2);
    // Found by the poll, without retarget().
    box.current = local(echo.port);
    assert.equal(await a.bytes(8, 2000), true);
    assert.deepEqual(a.buf, startupPacket(SSL_REQUEST_CODE));
    assert.equal(await b.bytes(9, 2000), true);
    assert.equal(b.buf.toString(), "b's bytes");
  });

  test("a waiting client is woken by retarget() (no poll in time here)", async (t) => {
    const echo = await startEcho(t);
    const box = new TargetBox();
    const { port, proxy } = await startProxy(t, { target: box.get, waitForTargetMs: 60_000, pollMs: 60_000 });
    const c = new RawClient(port);
    t.after(() => c.destroy());
    c.write(Buffer.from("c"));
    await sleep(150);
    box.current = local(echo.port);
    proxy.retarget();
    assert.equal(await c.bytes(1, 5000), true);
    assert.equal(c.buf.toString(), "c");
  });

  test("retarget() closes connections to the old target (both sockets), keeps those to the new one", async (t) => {
    const one = await startEcho(t);
    const two = await startEcho(t);
    const box = new TargetBox(local(one.port, 1));
    const { port, proxy, lines } = await startProxy(t, { target: box.get });
    const olds = [new RawClient(port), new RawClient(port)];
    for (const c of olds) c.write(Buffer.from("x"));
    for (const c of olds) assert.equal(await c.bytes(1), true);
    box.current = local(two.port, 2);
    const fresh = new RawClient(port);
    t.after(() => fresh.destroy());
    fresh.write(Buffer.from("y"));
    assert.equal(await fresh.bytes(1), true);
    proxy.retarget();
    for (const c of olds) assert.equal(await c.closedWithin(2000), true);
    for (let i = 0; i < 200 && one.sockets.size > 0; i++) await sleep(10);
    assert.equal(one.sockets.size, 0, "the upstream sockets to the old target are closed too");
    assert.equal(fresh.closed, false);
    fresh.write(Buffer.from("z"));
    assert.equal(await fresh.bytes(2), true);
    assert.equal(fresh.buf.toString(), "yz");
    assert.equal(proxy.stats().closedByRetarget, 2);
    assert.equal(proxy.stats().active, 1);
    const warn = lines.find((l) => l.level === "warn" && l.closed === 2);
    assert.ok(warn, "a warn line names the closures");
    assert.match(String(warn.msg), /retarget to node 2 \(127\.0\.0\.1:\d+\): closed 2 connections to node 1/);
    // Same nodeId, same address: nothing to close.
    proxy.retarget();
    assert.equal(proxy.stats().closedByRetarget, 2);
    // No target at all: every connection goes.
    box.current = undefined;
    proxy.retarget();
    assert.equal(await fresh.closedWithin(2000), true);
    assert.equal(proxy.stats().closedByRetarget, 3);
  });

  test("maxConnections: the one beyond gets a FATAL 53300 after its startup packet; a slot freed is usable again", async (t) => {
    const echo = await startEcho(t);
    const { port, proxy } = await startProxy(t, { target: () => local(echo.port), maxConnections: 2 });
    const a = new RawClient(port);
    const b = new RawClient(port);
    for (const c of [a, b]) c.write(Buffer.from("1"));
    for (const c of [a, b]) assert.equal(await c.bytes(1), true);
    const over = new RawClient(port);
    over.write(startupPacket(SSL_REQUEST_CODE));
    assert.equal(await over.bytes(1), true);
    assert.equal(over.buf.toString(), "N");
    over.write(startupMessage());
    assert.equal(await over.closedWithin(), true);
    const f = parseErrorResponse(over.buf.subarray(1));
    assert.equal(f.C, "53300");
    assert.equal(f.S, "FATAL");
    assert.equal(f.M, "pgraft read-write proxy: too many connections (limit 2)");
    assert.equal(proxy.stats().refused, 1);
    assert.equal(proxy.stats().accepted, 2);
    a.destroy();
    for (let i = 0; i < 200 && proxy.stats().active > 1; i++) await sleep(10);
    const c = new RawClient(port);
    t.after(() => (b.destroy(), c.destroy()));
    c.write(Buffer.from("2"));
    assert.equal(await c.bytes(1), true);
  });

  test("idle timeout: a connection without a byte either way is closed; one in use stays", async (t) => {
    const echo = await startEcho(t);
    const { port, proxy } = await startProxy(t, { target: () => local(echo.port), idleTimeoutMs: 600 });
    const idle = new RawClient(port);
    const busy = new RawClient(port);
    t.after(() => busy.destroy());
    idle.write(Buffer.from("i"));
    const start = Date.now();
    let n = 0;
    // A write every 100 ms: six times within the timeout, margin for a loaded machine.
    while (Date.now() - start < 1500) {
      busy.write(Buffer.from("b"));
      n++;
      await sleep(100);
    }
    assert.equal(idle.closed, true);
    assert.equal(busy.closed, false);
    assert.equal(await busy.bytes(n), true);
    assert.equal(proxy.stats().closedByIdle, 1);
    for (let i = 0; i < 200 && echo.sockets.size > 1; i++) await sleep(10);
    assert.equal(echo.sockets.size, 1, "the idle connection's upstream socket is closed too");
  });

  test("a target() that throws counts as no target: the client waits, then reads the error; the proxy goes on", async (t) => {
    let throws = true;
    const echo = await startEcho(t);
    const { port, lines } = await startProxy(t, {
      target: () => {
        if (throws) throw new Error("boom");
        return local(echo.port);
      },
      waitForTargetMs: 100,
    });
    const c = new RawClient(port);
    c.write(startupMessage());
    assert.equal(await c.closedWithin(), true);
    assert.equal(parseErrorResponse(c.buf).C, "57P03");
    assert.ok(lines.some((l) => l.level === "error" && /target\(\) threw/.test(String(l.msg))));
    throws = false;
    const d = new RawClient(port);
    t.after(() => d.destroy());
    d.write(Buffer.from("ok"));
    assert.equal(await d.bytes(2), true);
  });

  test("upstream refuses the connection for the whole wait: the client reads a FATAL 08006 naming the node", async (t) => {
    const dead = await freePort();
    const { port, proxy } = await startProxy(t, { target: () => local(dead, 3), waitForTargetMs: 600 });
    const c = new RawClient(port);
    c.write(startupPacket(SSL_REQUEST_CODE));
    assert.equal(await c.bytes(1), true);
    c.write(startupMessage());
    assert.equal(await c.closedWithin(), true);
    const f = parseErrorResponse(c.buf.subarray(1));
    assert.equal(f.C, "08006");
    assert.equal(f.S, "FATAL");
    assert.equal(f.M, `pgraft read-write proxy: cannot connect to node 3 (127.0.0.1:${dead}): ECONNREFUSED`);
    assert.equal(proxy.stats().failedUpstream, 1);
  });

  test("upstream connect that does not answer: a FATAL 08006 once the client's wait is over", async (t) => {
    const hole = await blackhole(t);
    const { port } = await startProxy(t, { target: () => local(hole, 4), connectTimeoutMs: 300, waitForTargetMs: 700 });
    const c = new RawClient(port);
    const start = Date.now();
    c.write(startupMessage());
    assert.equal(await c.closedWithin(), true);
    const f = parseErrorResponse(c.buf);
    assert.equal(f.C, "08006");
    assert.equal(f.M, `pgraft read-write proxy: cannot connect to node 4 (127.0.0.1:${hole}): no answer within 300 ms`);
    const took = Date.now() - start;
    assert.ok(took >= 680 && took < 5000, `answered after ${took} ms`);
  });

  test("a target that refuses connections is tried again within the client's wait: once the routing moves, the client lands on the new one", async (t) => {
    const echo = await startEcho(t);
    const dead = await freePort();
    const box = new TargetBox(local(dead, 1));
    // No retarget() call: as when the routing has not changed yet while the old node is already down.
    const { port, proxy } = await startProxy(t, { target: box.get, waitForTargetMs: 5000 });
    const c = new RawClient(port);
    t.after(() => c.destroy());
    c.write(Buffer.from("hi"));
    await sleep(350);
    box.current = local(echo.port, 2);
    assert.equal(await c.bytes(2), true, "echoed through the new target");
    assert.equal(proxy.stats().failedUpstream, 0);
  });

  test("a connect under way to a target that retarget() replaces goes to the new target instead", async (t) => {
    const echo = await startEcho(t);
    const box = new TargetBox(local(await blackhole(t), 1));
    const { port, proxy } = await startProxy(t, { target: box.get, connectTimeoutMs: 5000 });
    const c = new RawClient(port);
    t.after(() => c.destroy());
    c.write(Buffer.from("hi"));
    await sleep(100);
    box.current = local(echo.port, 2);
    proxy.retarget();
    assert.equal(await c.bytes(2, 2000), true);
    assert.equal(c.buf.toString(), "hi");
    assert.equal(proxy.stats().closedByRetarget, 0);
  });
});

describe("client proxy, lifecycle", () => {
  test("a listen port in use: start() rejects with a clear error", async (t) => {
    const first = await startProxy(t, { target: () => undefined });
    const { logger } = captureLogger();
    const second = new ClientProxy({ name: "read-write", listen: { host: "127.0.0.1", port: first.port }, target: () => undefined, logger });
    await assert.rejects(second.start(), { message: `cannot listen on 127.0.0.1:${first.port} (read-write proxy): EADDRINUSE` });
    await second.close();
    const ro = new ClientProxy({ name: "read-only", listen: { host: "203.0.113.7", port: 6433 }, target: () => undefined, logger });
    await assert.rejects(ro.start(), { message: "cannot listen on 203.0.113.7:6433 (read-only proxy): EADDRNOTAVAIL" });
  });

  test("close() twice, start() after close(), stats after close", async (t) => {
    const { proxy } = await startProxy(t, { target: () => undefined });
    await Promise.all([proxy.close(), proxy.close()]);
    await proxy.close();
    await assert.rejects(proxy.start(), /closed/);
    assert.equal(proxy.stats().active, 0);
  });

  test("close() while start() is under way: start() rejects, nothing stays listening", async () => {
    const { logger } = captureLogger();
    const proxy = new ClientProxy({ name: "read-write", listen: { host: "127.0.0.1", port: 0 }, target: () => undefined, logger });
    const started = proxy.start();
    await proxy.close();
    await assert.rejects(started, /closed while starting/);
  });

  test("close() with piped, waiting and refused connections leaves no handle: the process exits on its own", async () => {
    const fixture = join(import.meta.dirname, "fixtures", "close-exits.ts");
    const r = await runProcess(process.execPath, ["--import", "tsx", fixture], { timeoutMs: 20_000 });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^closed \{"active":0,"accepted":2,"refused":1,/);
  });
});
