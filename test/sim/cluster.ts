// The set of simulated servers: creation (bootstrap or joining), the tick
// timers, crash/restart, the network's view of who is up, and shutting down
// nodes once their removal from the cluster is applied everywhere.
import type { ConfState, Message, NodeId } from "../../src/consensus/types.js";
import type { SafetyChecker } from "./checker.js";
import type { Network, NetworkHost } from "./network.js";
import { SimNode, type NodeContext } from "./node.js";
import type { Rng } from "./rng.js";
import type { Scheduler } from "./scheduler.js";
import { bootstrapHash, encodeImage } from "./state-machine.js";

export class Cluster implements NetworkHost {
  readonly nodes = new Map<NodeId, SimNode>();
  private readonly touchedNodes = new Set<SimNode>();
  /** Nodes a removal was proposed for: never re-added (ids are not reused). */
  readonly removalProposed = new Set<NodeId>();
  private nextId = 1;
  net!: Network;
  /** Told (after the event's checks) when a node becomes leader of a new term, and when it first commits as such. */
  onLeaderEvent: NodeContext["leaderEvent"];

  constructor(
    private readonly sched: Scheduler,
    private readonly rng: Rng,
    private readonly checker: SafetyChecker,
    private readonly nodeCtx: Omit<NodeContext, "touched" | "net" | "leaderEvent">,
    private readonly tickMs: number,
    /** Relative clock drift bound per node (0.1 = ±10%). */
    private readonly drift: number,
  ) {}

  // ---------------------------------------------------------- NetworkHost

  incarnation(id: NodeId): number | undefined {
    const n = this.nodes.get(id);
    return n?.alive ? n.incarnation : undefined;
  }

  deliver(to: NodeId, m: Message): void {
    this.nodes.get(to)?.step(m);
  }

  reportSnapshot(from: NodeId, to: NodeId, ok: boolean): void {
    this.nodes.get(from)?.reportSnapshot(to, ok);
  }

  reportUnreachable(from: NodeId, to: NodeId): void {
    this.nodes.get(from)?.reportUnreachable(to);
  }

  // -------------------------------------------------------------- members

  /** Create the initial voters from a bootstrap snapshot at index 1, term 1. */
  bootstrap(count: number): void {
    const voters = Array.from({ length: count }, (_, i) => i + 1);
    this.nextId = count + 1;
    const data = encodeImage({ index: 1, term: 1, hash: bootstrapHash() });
    this.checker.apply(0, { index: 1, term: 1, type: 0, data: new Uint8Array() }, "bootstrap", bootstrapHash(), 1);
    for (const id of voters) {
      const n = this.create(id);
      const conf: ConfState = { voters: [...voters], learners: [] };
      n.storage.applySnapshot({ meta: { index: 1, term: 1, conf }, data });
      n.storage.setHardState({ term: 1, vote: 0, commit: 1 });
    }
    for (const id of voters) this.nodes.get(id)!.start();
  }

  /** A brand-new node (empty disk) that will learn everything from the leader. */
  spawn(): SimNode {
    const n = this.create(this.nextId++);
    n.start();
    return n;
  }

  private create(id: NodeId): SimNode {
    const n = new SimNode(id, {
      ...this.nodeCtx,
      net: this.net,
      touched: (x) => this.touchedNodes.add(x),
      leaderEvent: (x, term, what) => this.onLeaderEvent?.(x, term, what),
    });
    this.nodes.set(id, n);
    const period = Math.max(1, Math.round(this.tickMs * (1 + (this.rng.next() * 2 - 1) * this.drift)));
    const loop = (): void => {
      if (n.destroyed) return;
      this.sched.after(period, () => `tick ${id}`, () => {
        n.tick();
        loop();
      });
    };
    this.sched.after(this.rng.int(0, period), () => `tick ${id}`, () => {
      n.tick();
      loop();
    });
    return n;
  }

  // -------------------------------------------------------------- queries

  live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.alive);
  }

  down(): SimNode[] {
    return [...this.nodes.values()].filter((n) => !n.alive && !n.destroyed);
  }

  existing(): SimNode[] {
    return [...this.nodes.values()].filter((n) => !n.destroyed);
  }

  leaders(): SimNode[] {
    return this.live().filter((n) => n.isLeader);
  }

  /** The live leader of the highest term, if any. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.leaders()) if (!best || n.lastStatus!.term > best.lastStatus!.term) best = n;
    return best;
  }

  // ------------------------------------------------------------ lifecycle

  /** Run the invariant checks for every node the last event called into. */
  checkTouched(): void {
    for (const n of this.touchedNodes) n.checkAfterEvent();
    this.touchedNodes.clear();
  }

  /**
   * Shut down nodes whose removal every other node has applied (and at least
   * one voter remains). Waiting for all of them (and for all to be up) keeps
   * the remaining members able to form a quorum in whatever configuration they
   * restart with.
   */
  reapRemoved(trace: (line: () => string) => void): void {
    for (const id of this.removalProposed) {
      const x = this.nodes.get(id);
      if (!x || x.destroyed) continue;
      const others = this.existing().filter((n) => n.id !== id);
      const settled =
        others.every((n) => n.alive && n.lastStatus !== undefined && !isMember(n.lastStatus.conf, id)) &&
        others.some((n) => n.lastStatus!.conf.voters.includes(n.id));
      if (!settled) continue;
      x.destroy();
      trace(() => `  node ${id} shut down: every other node has applied its removal`);
    }
  }

  describe(): string {
    return [...this.nodes.values()].map((n) => `    ${n.describe()}`).join("\n");
  }
}

export const isMember = (c: ConfState, id: NodeId): boolean => c.voters.includes(id) || c.learners.includes(id);
