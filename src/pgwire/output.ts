// Outgoing bytes of one session: small messages are gathered and written in
// batches (a result of many rows is many tiny DataRows), and a long result waits
// for the socket to drain instead of piling up in memory.
import type { Duplex } from "node:stream";

const BATCH_BYTES = 64 * 1024;

export class Output {
  private pending: Buffer[] = [];
  private size = 0;

  constructor(private socket: Duplex) {}

  /** Continue on another socket (the TLS one after an upgrade). */
  replaceSocket(socket: Duplex): void {
    this.socket = socket;
  }

  get closed(): boolean {
    return this.socket.destroyed || !this.socket.writable;
  }

  push(message: Buffer): void {
    this.pending.push(message);
    this.size += message.length;
    if (this.size >= BATCH_BYTES) this.flush();
  }

  /** Hands what is gathered to the socket (a write after close is dropped). */
  flush(): void {
    if (this.size === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.size);
    this.pending = [];
    this.size = 0;
    if (!this.closed) this.socket.write(data);
  }

  /** flush(), then wait until the socket's buffer drained or it closed. */
  async drain(): Promise<void> {
    this.flush();
    const s = this.socket;
    if (this.closed || !s.writableNeedDrain) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        s.off("drain", done);
        s.off("close", done);
        resolve();
      };
      s.on("drain", done);
      s.on("close", done);
    });
  }

  /** Writes what is left, then closes the connection once it is on the wire. */
  end(): void {
    this.flush();
    const s = this.socket;
    if (s.destroyed) return;
    s.end(() => s.destroy());
    // A peer that never reads would keep the socket half-open for ever.
    setTimeout(() => s.destroy(), 2000).unref();
  }
}
