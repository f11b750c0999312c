// An in-process network of RaftNodes for the demo and the benchmark: messages
// are delivered on a later turn of the event loop, as a socket would.
import type { RaftNode, Transport } from "./driver.js";
import { MessageType, type Message, type NodeId } from "./types.js";

export class MemoryNetwork {
  private readonly nodes = new Map<NodeId, RaftNode>();
  private readonly down = new Set<NodeId>();

  attach(node: RaftNode): void {
    this.nodes.set(node.id, node);
    this.down.delete(node.id);
  }

  /** Cut a node off (as if crashed or partitioned) until attach() is called again. */
  detach(id: NodeId): void {
    this.nodes.delete(id);
    this.down.add(id);
  }

  transportFor(from: NodeId): Transport {
    return {
      send: (messages: Message[]) => {
        if (this.down.has(from)) return;
        setImmediate(() => {
          for (const m of messages) {
            const to = this.nodes.get(m.to);
            const sender = this.nodes.get(from);
            if (!to) {
              sender?.reportUnreachable(m.to);
              if (m.type === MessageType.Snap) sender?.reportSnapshot(m.to, false);
              continue;
            }
            to.receive(m);
            if (m.type === MessageType.Snap) sender?.reportSnapshot(m.to, true);
          }
        });
      },
    };
  }
}
