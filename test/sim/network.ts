// A simulated network: each message is delivered after a random delay (so
// messages reorder), or dropped, or duplicated; partitions split the nodes
// into groups that cannot talk. A node that crashes loses every message still
// in flight from or to it (messages carry the incarnations of both ends).
import { MessageType, type Message, type NodeId } from "../../src/consensus/types.js";
import { fmtMsg } from "./format.js";
import type { Rng } from "./rng.js";
import type { Scheduler } from "./scheduler.js";

export interface NetworkFaults {
  dropRate: number;
  dupRate: number;
  minDelay: number;
  maxDelay: number;
  /** Probability that a message takes a long detour (strong reordering). */
  longDelayRate: number;
  longDelayMax: number;
  /** Probability that the transport tells the sender a dropped message's target is unreachable. */
  reportUnreachableRate: number;
}

export const NO_FAULTS: NetworkFaults = {
  dropRate: 0,
  dupRate: 0,
  minDelay: 1,
  maxDelay: 5,
  longDelayRate: 0,
  longDelayMax: 0,
  reportUnreachableRate: 0,
};

/** What the network needs to know about the nodes. */
export interface NetworkHost {
  /** The node's current incarnation, or undefined while it is down (or gone). */
  incarnation(id: NodeId): number | undefined;
  deliver(to: NodeId, m: Message): void;
  /** Transport feedback to a sender (only while it is still the same incarnation). */
  reportSnapshot(from: NodeId, to: NodeId, ok: boolean): void;
  reportUnreachable(from: NodeId, to: NodeId): void;
}

export class Network {
  faults: NetworkFaults;
  private groups = new Map<NodeId, number>();
  readonly stats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, partitioned: 0 };

  constructor(
    private readonly sched: Scheduler,
    private readonly rng: Rng,
    private readonly host: NetworkHost,
    faults: NetworkFaults,
    private readonly trace: (line: () => string) => void,
  ) {
    this.faults = { ...faults };
  }

  /** Split into groups; nodes not listed form one more group of their own. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    this.groups = new Map();
    groups.forEach((g, i) => {
      for (const id of g) this.groups.set(id, i + 1);
    });
  }

  heal(): void {
    this.groups = new Map();
  }

  get partitioned(): boolean {
    return this.groups.size > 0;
  }

  canTalk(a: NodeId, b: NodeId): boolean {
    return (this.groups.get(a) ?? 0) === (this.groups.get(b) ?? 0);
  }

  describePartition(): string {
    if (!this.partitioned) return "none";
    const byGroup = new Map<number, NodeId[]>();
    for (const [id, g] of this.groups) byGroup.set(g, [...(byGroup.get(g) ?? []), id]);
    return [...byGroup.values()].map((g) => `{${g.join(",")}}`).join(" | ");
  }

  /**
   * Send m from node `sender` (normally m.from; a forwarded ReadIndex or
   * TransferLeader keeps the original requester in m.from).
   */
  send(sender: NodeId, m: Message): void {
    this.stats.sent++;
    const fromInc = this.host.incarnation(sender);
    const toInc = this.host.incarnation(m.to);
    if (fromInc === undefined) return; // a dead node sends nothing
    const f = this.faults;
    if (toInc === undefined || !this.canTalk(sender, m.to)) {
      this.stats.partitioned++;
      this.trace(() => `  (not sent: ${fmtMsg(m)}: ${toInc === undefined ? "target down" : "partitioned"})`);
      this.lost(sender, m, fromInc, toInc === undefined ? "target down" : "partitioned", true);
      return;
    }
    if (this.rng.chance(f.dropRate)) {
      this.stats.dropped++;
      this.trace(() => `  (dropped: ${fmtMsg(m)})`);
      this.lost(sender, m, fromInc, "dropped", false);
      return;
    }
    const copies = this.rng.chance(f.dupRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let c = 0; c < copies; c++) {
      const wire = cloneMessage(m);
      const delay = this.rng.chance(f.longDelayRate) ? this.rng.int(f.maxDelay, Math.max(f.maxDelay, f.longDelayMax) + 1) : this.rng.int(f.minDelay, f.maxDelay + 1);
      this.sched.after(
        delay,
        () => `deliver ${fmtMsg(wire)}${sender !== m.from ? ` (forwarded by ${sender})` : ""}${c ? " (duplicate)" : ""}`,
        () => this.arrive(sender, wire, fromInc, toInc),
      );
    }
  }

  private arrive(sender: NodeId, m: Message, fromInc: number, toInc: number): void {
    const reason =
      this.host.incarnation(sender) !== fromInc
        ? "sender crashed since"
        : this.host.incarnation(m.to) !== toInc
          ? "receiver crashed since"
          : !this.canTalk(sender, m.to)
            ? "partitioned in flight"
            : undefined;
    if (reason) {
      this.stats.partitioned++;
      this.trace(() => `  (lost: ${reason})`);
      this.lost(sender, m, fromInc, reason, true);
      return;
    }
    this.stats.delivered++;
    this.host.deliver(m.to, m);
    if (m.type === MessageType.Snap) {
      this.sched.after(
        this.rng.int(0, 3),
        () => `transport: snapshot ${m.from}→${m.to} delivered`,
        () => {
          if (this.host.incarnation(sender) === fromInc) this.host.reportSnapshot(sender, m.to, true);
        },
      );
    }
  }

  /** A message that will never arrive: the sender's transport may notice. */
  private lost(sender: NodeId, m: Message, fromInc: number, why: string, connectionLevel: boolean): void {
    const snap = m.type === MessageType.Snap;
    const unreachable = connectionLevel && this.rng.chance(this.faults.reportUnreachableRate);
    if (!snap && !unreachable) return;
    this.sched.after(
      this.rng.int(1, 10),
      () => `transport: ${snap ? `snapshot ${sender}→${m.to} failed` : `${m.to} unreachable from ${sender}`} (${why})`,
      () => {
        if (this.host.incarnation(sender) !== fromInc) return;
        if (snap) this.host.reportSnapshot(sender, m.to, false);
        if (unreachable) this.host.reportUnreachable(sender, m.to);
      },
    );
  }
}

/** What the receiver would decode from the wire: no object shared with the sender. */
export function cloneMessage(m: Message): Message {
  const c: Message = { ...m, entries: m.entries.map((e) => ({ ...e, data: e.data.slice() })) };
  if (m.context) c.context = m.context.slice();
  if (m.snapshot) {
    const s = m.snapshot;
    c.snapshot = { meta: { ...s.meta, conf: { voters: [...s.meta.conf.voters], learners: [...s.meta.conf.learners] } }, data: s.data.slice() };
  }
  return c;
}
