// Cuts the client's byte stream into protocol frames: the untyped startup
// packets (Int32 length, body) and, after startup, typed messages (Byte1 type,
// Int32 length, body). Limits are enforced from the length word alone, before
// anything is buffered, so a client cannot make us allocate what it claims.
import type { Duplex } from "node:stream";

export type Frame =
  | { kind: "message"; type: string; body: Buffer }
  /** A message longer than the limit: its bytes were read and thrown away. */
  | { kind: "oversize"; type: string; length: number };

export class FrameError extends Error {}

const MAX_PLAUSIBLE_LENGTH = 0x3fffffff;

export class FrameReader {
  private chunks: Buffer[] = [];
  private total = 0;
  private socket: Duplex | undefined;
  private ended = false;
  private paused = false;
  private wake: (() => void) | undefined;

  /**
   * @param maxMessageBytes longest message body accepted after startup
   * @param highWater bytes buffered before the socket is paused. Reading goes on
   *   while a query runs (that is how a vanished client is noticed), but a client
   *   pipelining megabytes of queries should not grow the buffer without bound.
   */
  constructor(
    readonly maxMessageBytes: number,
    private readonly highWater: number,
  ) {}

  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (this.total > this.highWater && !this.paused) {
      this.paused = true;
      this.socket?.pause();
    }
    this.notify();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.notify();
  };

  attach(socket: Duplex): void {
    this.socket = socket;
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
    socket.on("error", this.onEnd);
  }

  /** Stop reading from the current socket (before handing it to TLS). */
  detach(): void {
    const s = this.socket;
    if (!s) return;
    s.pause();
    s.off("data", this.onData);
    s.off("end", this.onEnd);
    s.off("close", this.onEnd);
    s.off("error", this.onEnd);
    this.socket = undefined;
    this.paused = false;
  }

  get bufferedBytes(): number {
    return this.total;
  }

  /** A whole typed message is buffered (reading it will not wait). */
  hasFrame(): boolean {
    if (this.total < 5) return false;
    const len = this.coalesce(5).readInt32BE(1);
    return len - 4 <= this.maxMessageBytes && this.total >= 1 + len;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Resolves once there are at least n buffered bytes (true) or the stream ended (false). */
  private async fill(n: number): Promise<boolean> {
    while (this.total < n) {
      if (this.ended) return false;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return true;
  }

  private coalesce(n: number): Buffer {
    if (this.chunks[0]!.length < n) {
      const all = Buffer.concat(this.chunks, this.total);
      this.chunks = [all];
    }
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const head = this.coalesce(n);
    const out = head.subarray(0, n);
    if (head.length === n) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.total -= n;
    this.consumed();
    return out;
  }

  private consumed(): void {
    if (this.paused && this.total <= this.highWater) {
      this.paused = false;
      this.socket?.resume();
    }
  }

  /**
   * One startup-phase packet (StartupMessage, SSLRequest, GSSENCRequest,
   * CancelRequest): the bytes after the length word. Null at end of stream.
   */
  async readStartupPacket(maxLength: number): Promise<Buffer | null> {
    if (!(await this.fill(4))) return null;
    const len = this.coalesce(4).readInt32BE(0);
    // 8 = length + protocol code, the smallest valid packet.
    if (len < 8 || len > maxLength) throw new FrameError("invalid length of startup packet");
    if (!(await this.fill(len))) return null;
    return this.take(len).subarray(4);
  }

  /**
   * One typed message. Null at end of stream (also mid-message: the client is
   * gone). A type outside `validTypes` is an error at once: its length word is
   * as likely garbage as the type, so nothing after it is read.
   */
  async readMessage(validTypes: string): Promise<Frame | null> {
    if (!(await this.fill(5))) return null;
    const head = this.coalesce(5);
    const type = String.fromCharCode(head[0]!);
    if (!validTypes.includes(type)) throw new FrameError(`invalid frontend message type ${head[0]!}`);
    const len = head.readInt32BE(1);
    // Beyond PostgreSQL's own ceiling (1 GiB) the length word is garbage, not a
    // big query: no point reading on.
    if (len < 4 || len > MAX_PLAUSIBLE_LENGTH) throw new FrameError(`invalid message length ${len}`);
    const bodyLen = len - 4;
    if (bodyLen > this.maxMessageBytes) {
      this.take(5);
      if (!(await this.discard(bodyLen))) return null;
      return { kind: "oversize", type, length: bodyLen };
    }
    if (!(await this.fill(5 + bodyLen))) return null;
    const whole = this.take(5 + bodyLen);
    return { kind: "message", type, body: whole.subarray(5) };
  }

  /** Drops n bytes as they arrive without keeping them; false if the stream ended first. */
  private async discard(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.total === 0 && !(await this.fill(1))) return false;
      const head = this.chunks[0]!;
      const k = Math.min(left, head.length);
      if (k === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(k);
      this.total -= k;
      left -= k;
      this.consumed();
    }
    return true;
  }
}
