// What the proxy tests share: a proxy started for one test (closed after it),
// a raw client socket that collects what it is sent, a byte-echo upstream,
// and a reader of ErrorResponse fields.
import { spawn } from "node:child_process";
import { Writable } from "node:stream";
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { TestContext } from "node:test";
import { pino, type Logger } from "pino";
import { ClientProxy, type ClientProxyOptions, type ProxyTarget } from "../../src/routing/proxy.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A pino logger whose lines (parsed) land in `lines`; debug and up. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level: "debug", formatters: { level: (label) => ({ level: label }) } }, sink);
  return { logger, lines };
}

/** A mutable target the proxy reads. */
export class TargetBox {
  current: ProxyTarget | undefined;
  constructor(t?: ProxyTarget) {
    this.current = t;
  }
  readonly get = (): ProxyTarget | undefined => this.current;
}

export async function startProxy(
  t: TestContext,
  opts: Partial<ClientProxyOptions> & { target: () => ProxyTarget | undefined },
): Promise<{ proxy: ClientProxy; port: number; lines: Record<string, unknown>[] }> {
  const { logger, lines } = captureLogger();
  const proxy = new ClientProxy({ name: "read-write", listen: { host: "127.0.0.1", port: 0 }, logger, ...opts });
  const { port } = await proxy.start();
  t.after(() => proxy.close());
  return { proxy, port, lines };
}

/** A TCP server that sends every byte back; `sockets` are its connections. */
export async function startEcho(t: TestContext): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** A socket that records what it receives and can wait for n bytes or the close. */
export class RawClient {
  buf = Buffer.alloc(0);
  closed = false;
  readonly socket: Socket;
  private wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = netConnect(port, "127.0.0.1");
    this.socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    this.socket.on("error", () => undefined);
    this.socket.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Resolves when `n` bytes have arrived (true) or the socket closed first (false); fails after timeoutMs. */
  async bytes(n: number, timeoutMs = 5000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) return false;
      if (Date.now() > end) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
    return true;
  }

  async closedWithin(timeoutMs = 5000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < end) await sleep(10);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Int32 length, Int32 code (the untyped startup packets). */
export function startupPacket(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(code, 4);
  body.copy(b, 8);
  return b;
}

/** A protocol 3.0 StartupMessage for user/database. */
export function startupMessage(user = "alice", database = "db"): Buffer {
  return startupPacket(3 << 16, Buffer.from(`user\0${user}\0database\0${database}\0\0`));
}

/** The fields of the ErrorResponse at the start of `buf`, by their one-letter codes. */
export function parseErrorResponse(buf: Buffer): Record<string, string> {
  if (buf[0] !== 0x45) throw new Error(`not an ErrorResponse: ${buf.subarray(0, 16).toString("hex")}`);
  const len = buf.readInt32BE(1);
  const body = buf.subarray(5, 1 + len);
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    out[code] = body.subarray(i + 1, end).toString("utf8");
    i = end + 1;
  }
  return out;
}

/**
 * A loopback port whose connects hang (the SYN goes unanswered): a listener
 * (python3, which can listen without accepting) with a backlog of 0 whose
 * queue is already full. A non-routable address would do elsewhere, but
 * sandboxes intercept those.
 */
export async function blackhole(t: TestContext): Promise<number> {
  const py = "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(600)";
  const child = spawn("python3", ["-c", py], { stdio: ["ignore", "pipe", "inherit"] });
  const fill: Socket[] = [];
  t.after(() => {
    for (const s of fill) s.destroy();
    child.kill("SIGKILL");
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  const first = netConnect(port, "127.0.0.1");
  first.on("error", () => undefined);
  fill.push(first);
  await new Promise<void>((r) => first.once("connect", () => r()));
  return port;
}
