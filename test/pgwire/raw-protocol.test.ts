// Byte-level tests: what no well-behaved client sends. Each bad input must end
// in an ErrorResponse where the protocol allows one and a closed connection, and
// the server must go on serving everyone else.
import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { describe, test, type TestContext } from "node:test";
import type { PgWireServer } from "../../src/pgwire/index.js";
import { PASSWORD, USER, connect, selfSignedCert, startTestServer, until } from "./helpers.js";

interface BackendMessage {
  type: string;
  body: Buffer;
}

/** A socket that records what the server sends and can be asked for the next message. */
class RawClient {
  private buf = Buffer.alloc(0);
  closed = false;
  /** What login() saw after the password exchange. */
  received: BackendMessage[] = [];
  private wake: (() => void) | undefined;
  private readonly closedPromise: Promise<void>;
  readonly socket: Socket;

  constructor(port: number) {
    this.socket = netConnect(port, "127.0.0.1");
    this.socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    this.socket.on("error", () => {});
    this.closedPromise = new Promise((resolve) =>
      this.socket.on("close", () => {
        this.closed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  send(...parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  private async waitFor(n: number): Promise<boolean> {
    const deadline = Date.now() + 3000;
    while (this.buf.length < n) {
      if (this.closed) return false;
      if (Date.now() > deadline) throw new Error("timed out waiting for the server");
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
    return true;
  }

  async byte(): Promise<string> {
    assert.ok(await this.waitFor(1), "connection closed");
    const c = String.fromCharCode(this.buf[0]!);
    this.buf = this.buf.subarray(1);
    return c;
  }

  /** The next message, or undefined when the server closed the connection. */
  async next(): Promise<BackendMessage | undefined> {
    if (!(await this.waitFor(5))) return undefined;
    const len = this.buf.readInt32BE(1);
    if (!(await this.waitFor(1 + len))) return undefined;
    const m = { type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, 1 + len) };
    this.buf = this.buf.subarray(1 + len);
    return m;
  }

  /** The ErrorResponse that must come next, as a field map, followed by the server closing. */
  async fatal(): Promise<Record<string, string>> {
    const m = await this.next();
    assert.equal(m?.type, "E", `expected ErrorResponse, got ${m?.type}`);
    const f = fields(m.body);
    assert.equal(f.S, "FATAL");
    await this.closedPromise;
    return f;
  }

  async untilClosed(): Promise<void> {
    await this.closedPromise;
  }

  end(): void {
    this.socket.destroy();
  }
}

function fields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    out[String.fromCharCode(body[i]!)] = body.subarray(i + 1, end).toString();
    i = end + 1;
  }
  return out;
}

const int32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
/** An untyped startup-phase packet. */
const packet = (...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  return Buffer.concat([int32(body.length + 4), body]);
};
const typed = (type: string, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(type), int32(body.length + 4), body]);
};
const startupMessage = (params: Record<string, string>, version = 3 << 16): Buffer =>
  packet(int32(version), ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.from([0]));

async function rawClient(t: TestContext, server: PgWireServer): Promise<RawClient> {
  const c = new RawClient(server.address.port);
  t.after(() => c.end());
  await new Promise((r) => c.socket.once("connect", r));
  return c;
}

/** A hand-rolled SCRAM-SHA-256 login, to reach the message loop with a raw socket. */
async function login(t: TestContext, server: PgWireServer): Promise<RawClient> {
  const c = await rawClient(t, server);
  c.send(startupMessage({ user: USER, database: "db" }));
  assert.equal((await c.next())?.type, "R");
  const clientNonce = "raw-client-nonce";
  const bare = `n=,r=${clientNonce}`;
  c.send(typed("p", cstr("SCRAM-SHA-256"), int32(Buffer.byteLength(`n,,${bare}`)), Buffer.from(`n,,${bare}`)));
  const cont = await c.next();
  const serverFirst = cont!.body.subarray(4).toString();
  const attrs: Record<string, string> = Object.fromEntries(serverFirst.split(",").map((a) => [a.slice(0, 1), a.slice(2)]));
  const salted = pbkdf2Sync(PASSWORD, Buffer.from(attrs.s!, "base64"), Number(attrs.i), 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const withoutProof = `c=biws,r=${attrs.r}`;
  const authMessage = `${bare},${serverFirst},${withoutProof}`;
  const sig = createHmac("sha256", createHash("sha256").update(clientKey).digest()).update(authMessage).digest();
  const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]!)).toString("base64");
  c.send(typed("p", Buffer.from(`${withoutProof},p=${proof}`)));
  for (;;) {
    const m = await c.next();
    assert.ok(m && m.type !== "E", "login failed");
    c.received.push(m);
    if (m.type === "Z") return c;
  }
}

/** The server still serves a normal client. */
async function stillServing(t: TestContext, server: PgWireServer): Promise<void> {
  const ok = await connect(t, server);
  assert.deepEqual((await ok.query("select 1")).rows, [{ "?column?": 1 }]);
  await ok.end();
}

describe("pgwire: malformed and hostile input", () => {
  test("a login ends with SASLFinal, AuthenticationOk, the ParameterStatus set, BackendKeyData, ReadyForQuery 'I'", async (t) => {
    const { server } = await startTestServer(t);
    const c = await login(t, server);
    const types = c.received.map((m) => (m.type === "R" ? `R${m.body.readInt32BE(0)}` : m.type));
    assert.deepEqual(types.slice(0, 2), ["R12", "R0"]);
    assert.deepEqual(types.slice(-2), ["K", "Z"]);
    const status = Object.fromEntries(
      c.received.filter((m) => m.type === "S").map((m) => m.body.toString().split("\0").slice(0, 2) as [string, string]),
    );
    assert.deepEqual(status, {
      server_version: "15.0 (pgraft 0.1.0)",
      server_encoding: "UTF8",
      client_encoding: "UTF8",
      DateStyle: "ISO, MDY",
      IntervalStyle: "postgres",
      TimeZone: "UTC",
      integer_datetimes: "on",
      standard_conforming_strings: "on",
      application_name: "",
      is_superuser: "off",
      session_authorization: USER,
    });
    assert.equal(c.received.at(-1)!.body.toString(), "I");
  });

  test("bad startup packets: FATAL ErrorResponse, then close", async (t) => {
    const { server } = await startTestServer(t);
    const cases: [string, Buffer, string, RegExp][] = [
      ["length too small", int32(4), "08P01", /invalid length of startup packet/],
      ["length too large", Buffer.concat([int32(1_000_000), int32(3 << 16)]), "08P01", /invalid length of startup packet/],
      ["protocol 2.0", startupMessage({ user: USER }, 2 << 16), "0A000", /unsupported frontend protocol 2\.0/],
      ["no terminator", packet(int32(3 << 16), cstr("user"), cstr(USER)), "08P01", /invalid startup packet layout/],
      ["no user", startupMessage({ database: "db" }), "28000", /no PostgreSQL user name/],
      ["replication", startupMessage({ user: USER, replication: "database" }), "0A000", /replication/],
      ["bad UTF-8", packet(int32(3 << 16), cstr("user"), Buffer.from([0xff, 0xfe, 0]), Buffer.from([0])), "22021", /invalid byte sequence/],
      ["SSLRequest with data behind it", Buffer.concat([packet(int32(80877103)), startupMessage({ user: USER })]), "08P01", /unencrypted data after SSL request/],
    ];
    for (const [what, bytes, code, message] of cases) {
      const c = await rawClient(t, server);
      c.send(bytes);
      const f = await c.fatal();
      assert.equal(f.C, code, what);
      assert.match(f.M!, message, what);
    }
    await stillServing(t, server);
  });

  test("GSSENCRequest and SSLRequest are refused with 'N'; protocol 3.1 and _pq_ options are negotiated down", async (t) => {
    const { server } = await startTestServer(t);
    const c = await rawClient(t, server);
    c.send(packet(int32(80877104)));
    assert.equal(await c.byte(), "N");
    c.send(packet(int32(80877103)));
    assert.equal(await c.byte(), "N");
    c.send(startupMessage({ user: USER, "_pq_.something": "x" }, (3 << 16) | 1));
    const v = await c.next();
    assert.equal(v?.type, "v");
    assert.equal(v.body.readInt32BE(0), 3 << 16);
    assert.equal(v.body.readInt32BE(4), 1);
    assert.equal(v.body.subarray(8).toString(), "_pq_.something\0");
    const sasl = await c.next();
    assert.equal(sasl?.type, "R");
    assert.equal(sasl.body.readInt32BE(0), 10);
    assert.equal(sasl.body.subarray(4).toString(), "SCRAM-SHA-256\0\0");
  });

  test("SASL misuse: channel binding requested, another mechanism, a non-SASL message", async (t) => {
    const { server } = await startTestServer(t);
    const start = async (): Promise<RawClient> => {
      const c = await rawClient(t, server);
      c.send(startupMessage({ user: USER }));
      assert.equal((await c.next())?.type, "R");
      return c;
    };
    const cb = await start();
    const first = "p=tls-server-end-point,,n=,r=abc";
    cb.send(typed("p", cstr("SCRAM-SHA-256"), int32(first.length), Buffer.from(first)));
    const f1 = await cb.fatal();
    assert.equal(f1.C, "08P01");
    assert.match(f1.M!, /channel binding is not supported/);
    assert.match(f1.H!, /channel_binding=disable/);

    const plus = await start();
    plus.send(typed("p", cstr("SCRAM-SHA-256-PLUS"), int32(3), Buffer.from("n,,")));
    assert.match((await plus.fatal()).M!, /invalid SASL authentication mechanism/);

    const query = await start();
    query.send(typed("Q", cstr("select 1")));
    assert.match((await query.fatal()).M!, /expected SASL response/);

    const garbage = await start();
    garbage.send(typed("p", cstr("SCRAM-SHA-256"), int32(5), Buffer.from("hello")));
    assert.match((await garbage.fatal()).M!, /malformed SCRAM message/);
    await stillServing(t, server);
  });

  test("authentication must finish in time", async (t) => {
    const { server } = await startTestServer(t, { authTimeoutMs: 150 });
    const silent = await rawClient(t, server);
    assert.match((await silent.fatal()).M!, /canceling authentication due to timeout/);
    const halfway = await rawClient(t, server);
    halfway.send(startupMessage({ user: USER }));
    assert.equal((await halfway.next())?.type, "R");
    assert.match((await halfway.fatal()).M!, /timeout/);
    await until(() => server.sessions() === 0, "sessions released");
  });

  test("after login: unknown message type, absurd lengths → FATAL and close", async (t) => {
    const { server } = await startTestServer(t);
    const garbage = await login(t, server);
    garbage.send(Buffer.from("\x01\x02\x03\x04\x05\x06garbage"));
    const f = await garbage.fatal();
    assert.equal(f.C, "08P01");
    assert.match(f.M!, /invalid frontend message type 1/);

    const huge = await login(t, server);
    huge.send(Buffer.from("Q"), int32(0x7fffffff));
    assert.match((await huge.fatal()).M!, /invalid message length/);

    const tiny = await login(t, server);
    tiny.send(Buffer.from("Q"), int32(2));
    assert.match((await tiny.fatal()).M!, /invalid message length/);

    const trailing = await login(t, server);
    trailing.send(typed("Q", cstr("select 1"), Buffer.from("junk")));
    assert.match((await trailing.fatal()).M!, /invalid message format/);
    await stillServing(t, server);
    await until(() => server.sessions() === 0, "sessions released");
  });

  test("an oversized Query is skipped with 54000 and the session goes on; a truncated one just ends it", async (t) => {
    const { server } = await startTestServer(t, { maxMessageBytes: 1024 });
    const c = await login(t, server);
    c.send(typed("Q", cstr(`select '${"y".repeat(5000)}'`)), typed("Q", cstr("select 3")));
    const err = await c.next();
    assert.equal(err?.type, "E");
    assert.equal(fields(err.body).C, "54000");
    assert.equal((await c.next())?.type, "Z");
    const types: string[] = [];
    for (let m = await c.next(); m; m = await c.next()) {
      types.push(m.type);
      if (m.type === "Z") break;
    }
    assert.deepEqual(types, ["T", "D", "C", "Z"]);

    // Half a message, then the client vanishes.
    c.send(Buffer.from("Q"), int32(100), Buffer.from("sel"));
    c.end();
    await until(() => server.sessions() === 0, "session released");
  });

  test("pipelined extended-protocol messages: an error skips to Sync; Describe of a statement is refused", async (t) => {
    const { server, log } = await startTestServer(t);
    const c = await login(t, server);
    const parse = (name: string, sql: string): Buffer => typed("P", cstr(name), cstr(sql), Buffer.from([0, 0]));
    const bind = (portal: string, stmt: string, values: string[]): Buffer =>
      typed("B", cstr(portal), cstr(stmt), Buffer.from([0, 0]), Buffer.from([0, values.length]), ...values.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]), Buffer.from([0, 0]));
    const execute = (portal: string): Buffer => typed("E", cstr(portal), int32(0));
    const sync = typed("S");
    c.send(
      parse("", "fail"), bind("", "", []), execute(""), // error here...
      parse("", "select 1"), execute(""), // ...these are skipped
      sync,
      parse("s", "select $1"), typed("D", Buffer.from("S"), cstr("s")), sync,
      parse("s2", "select $1"), bind("p", "s2", ["a'b"]), typed("D", Buffer.from("P"), cstr("p")), execute("p"), typed("C", Buffer.from("S"), cstr("s2")), sync,
    );
    const seen: string[] = [];
    let syncs = 0;
    while (syncs < 3) {
      const m = await c.next();
      assert.ok(m, "connection closed");
      seen.push(m.type === "E" ? `E:${fields(m.body).C}` : m.type);
      if (m.type === "Z") syncs++;
    }
    assert.deepEqual(seen, ["1", "2", "E:22023", "Z", "1", "E:0A000", "Z", "1", "2", "T", "D", "C", "3", "Z"]);
    assert.deepEqual(log.queries, ["fail", "select 'a''b'"]);
  });

  test("garbage instead of a TLS handshake closes that connection only", async (t) => {
    const { server } = await startTestServer(t, { tls: await selfSignedCert() });
    const c = await rawClient(t, server);
    c.send(packet(int32(80877103)));
    assert.equal(await c.byte(), "S");
    c.send(Buffer.from("this is not a ClientHello\r\n".repeat(10)));
    await c.untilClosed();
    await stillServing(t, server);
    await until(() => server.sessions() === 0, "sessions released");
  });
});
