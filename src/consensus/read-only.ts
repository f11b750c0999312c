// Pending ReadIndex requests on the leader (safe mode): each waits until a
// quorum answered a heartbeat that carried its context, proving the leader was
// still the leader when the read index was taken.
import type { Message, NodeId } from "./types.js";

interface ReadIndexStatus {
  index: number;
  req: Message;
  acks: Set<NodeId>;
}

export const contextKey = (ctx: Uint8Array): string => Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString("hex");

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  addRequest(index: number, req: Message): void {
    const key = contextKey(req.context ?? new Uint8Array());
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, req, acks: new Set() });
    this.queue.push(key);
  }

  recvAck(id: NodeId, ctx: Uint8Array): Set<NodeId> | undefined {
    const rs = this.pending.get(contextKey(ctx));
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Remove and return every request up to and including the one for ctx. */
  advance(ctx: Uint8Array): { index: number; req: Message }[] {
    const key = contextKey(ctx);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    return done.map((k) => {
      const rs = this.pending.get(k)!;
      this.pending.delete(k);
      return { index: rs.index, req: rs.req };
    });
  }

  lastPendingContext(): Uint8Array | undefined {
    const k = this.queue[this.queue.length - 1];
    return k === undefined ? undefined : this.pending.get(k)!.req.context;
  }

  size(): number {
    return this.queue.length;
  }
}
