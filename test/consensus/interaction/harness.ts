// A deterministic playground for the Raft core: N RawNodes over MemoryStorage,
// one in-order network queue, partitions, and a readable trace of everything
// that happens. The script runner (test/consensus/interaction.test.ts) drives it
// from test/consensus/interaction/*.txt; paper.test.ts drives it directly.
//
// The driver loop mirrors what a real driver does with a Ready: persist the
// snapshot, entries and hard state; hand the messages to the network; apply the
// committed entries to a toy state machine (a list of strings); advance().
import { applyToConfState, decodeConfChange, type ConfChange } from "../../../src/consensus/confchange.js";
import type { RaftLogger, ReadOnlyOption } from "../../../src/consensus/config.js";
import { isRaftError, NotLeaderError } from "../../../src/consensus/errors.js";
import { CAMPAIGN_TRANSFER } from "../../../src/consensus/raft.js";
import { seededRandom, type Random } from "../../../src/consensus/random.js";
import { RawNode } from "../../../src/consensus/raw-node.js";
import { MemoryStorage } from "../../../src/consensus/storage.js";
import {
  EntryType,
  MessageType,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type Ready,
  type ReadState,
  type Snapshot,
} from "../../../src/consensus/types.js";

export const DEFAULT_CLUSTER = "pgraft-test";

export type LogLevel = "none" | "info" | "debug";

export interface NodeOptions {
  electionTick: number;
  heartbeatTick: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  maxSizePerMsg?: number;
  maxUncommittedEntriesSize?: number;
  preVote: boolean;
  checkQuorum: boolean;
  readOnlyOption: ReadOnlyOption;
  clusterId: string;
  /** The node's random source; seededRandom(id) when absent. */
  random?: Random;
}

export const defaultNodeOptions = (): NodeOptions => ({
  electionTick: 10,
  heartbeatTick: 1,
  preVote: true,
  checkQuorum: true,
  readOnlyOption: "safe",
  clusterId: DEFAULT_CLUSTER,
});

export interface SmEntry {
  index: number;
  data: string;
}

export interface TestNode {
  id: NodeId;
  storage: MemoryStorage;
  raw: RawNode;
  opts: NodeOptions;
  /** The toy state machine: every applied non-empty normal entry (index and data). */
  sm: SmEntry[];
  appliedIndex: number;
  /** The membership after each applied conf change (and the snapshot's), oldest first. */
  confHistory: { index: number; conf: ConfState }[];
  /** Every ReadState the node handed out, in order. */
  reads: ReadState[];
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

export const bytes = (s: string): Uint8Array => utf8.encode(s);
export const str = (b: Uint8Array | undefined): string => (b ? fromUtf8.decode(b) : "");

// ------------------------------------------------------------------ formatting

export const fmtIds = (ids: readonly NodeId[]): string => `(${ids.join(" ")})`;

export const fmtConf = (c: ConfState): string => `Voters:${fmtIds(c.voters)} Learners:${fmtIds(c.learners)}`;

export function fmtEntry(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    let cc: string;
    try {
      const d = decodeConfChange(e.data);
      cc = `${d.type} ${d.nodeId}`;
    } catch {
      cc = "<corrupt>";
    }
    return `${e.term}/${e.index} EntryConfChange ${cc}`;
  }
  return `${e.term}/${e.index} EntryNormal ${JSON.stringify(str(e.data))}`;
}

export const fmtSnapshot = (s: Snapshot): string => `Index:${s.meta.index} Term:${s.meta.term} ${fmtConf(s.meta.conf)}`;

export function fmtMsg(m: Message): string {
  let s = `${m.from}->${m.to} ${MessageType[m.type] ?? `type${m.type}`} Term:${m.term}`;
  if (m.clusterId !== DEFAULT_CLUSTER) s += ` Cluster:${JSON.stringify(m.clusterId)}`;
  const ctx = m.context && m.context.length > 0 ? ` Ctx:${JSON.stringify(str(m.context))}` : "";
  switch (m.type) {
    case MessageType.App:
      s += ` Log:${m.logTerm}/${m.index} Commit:${m.commit}`;
      if (m.entries.length) s += ` Entries:[${m.entries.map(fmtEntry).join(", ")}]`;
      break;
    case MessageType.AppResp:
      s += m.reject ? ` Rejected Index:${m.index} Hint:${m.logTermHint ?? 0}/${m.rejectHint}` : ` Index:${m.index}`;
      break;
    case MessageType.Vote:
    case MessageType.PreVote:
      s += ` Log:${m.logTerm}/${m.index}`;
      if (m.context && m.context.length === CAMPAIGN_TRANSFER.length && m.context.every((b, i) => b === CAMPAIGN_TRANSFER[i])) s += " Transfer";
      break;
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      s += m.reject ? " Rejected" : " Granted";
      break;
    case MessageType.Heartbeat:
      s += ` Commit:${m.commit}${ctx}`;
      break;
    case MessageType.HeartbeatResp:
    case MessageType.ReadIndex:
      s += ctx;
      break;
    case MessageType.ReadIndexResp:
      s += ` Index:${m.index}${ctx}`;
      break;
    case MessageType.Snap:
      s += m.snapshot ? ` Snapshot:[${fmtSnapshot(m.snapshot)}]` : " Snapshot:none";
      break;
    default:
      if (m.index || m.logTerm) s += ` Log:${m.logTerm}/${m.index}`;
      if (m.commit) s += ` Commit:${m.commit}`;
      if (m.reject) s += " Rejected";
      s += ctx;
  }
  return s;
}

export function fmtError(e: unknown): string {
  if (e instanceof NotLeaderError) return `error NOT_LEADER (leader ${e.leader})`;
  if (isRaftError(e)) return `error ${e.code}`;
  return `error ${e instanceof Error ? e.message : String(e)}`;
}

// ------------------------------------------------------------------ the harness

export class Harness {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages on the wire, in the order they were sent. */
  queue: Message[] = [];
  /** Partition groups; undefined = fully connected. A node in no group is isolated. */
  groups: NodeId[][] | undefined;
  logLevel: LogLevel = "info";
  /** Called for every message actually stepped into a node (tests count traffic with it). */
  observer: ((m: Message) => void) | undefined;
  private out: string[] = [];
  /** Messages sent across a partition: lost even if the partition heals before delivery. */
  private readonly cut = new WeakSet<Message>();
  /** Where the last delivered message's line is in `out`, to fold repeats into "×N". */
  private lastLine: { at: number; text: string; count: number } | undefined;

  // ---------------------------------------------------------------- output

  emit(line: string): void {
    this.out.push(line);
  }

  /** A delivered message: identical consecutive lines (nothing printed between) fold into one "×N". */
  private emitMsgLine(text: string): void {
    const l = this.lastLine;
    if (l && l.text === text && l.at === this.out.length - 1) {
      l.count++;
      this.out[l.at] = `${text} ×${l.count}`;
      return;
    }
    this.emit(text);
    this.lastLine = { at: this.out.length - 1, text, count: 1 };
  }

  /** Everything emitted since the last call. */
  takeOutput(): string[] {
    const o = this.out;
    this.out = [];
    this.lastLine = undefined;
    return o;
  }

  private logger(): RaftLogger {
    return {
      info: (msg: string) => {
        if (this.logLevel !== "none") this.emit(`INFO ${msg}`);
      },
      warn: (msg: string) => {
        if (this.logLevel !== "none") this.emit(`WARN ${msg}`);
      },
      debug: (msg: string) => {
        if (this.logLevel === "debug") this.emit(`DEBUG ${msg}`);
      },
    };
  }

  // ------------------------------------------------------------- node setup

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  private makeRaw(id: NodeId, storage: MemoryStorage, opts: NodeOptions, applied: number): RawNode {
    return new RawNode({
      id,
      clusterId: opts.clusterId,
      storage,
      random: opts.random ?? seededRandom(id),
      electionTick: opts.electionTick,
      heartbeatTick: opts.heartbeatTick,
      applied,
      preVote: opts.preVote,
      checkQuorum: opts.checkQuorum,
      readOnlyOption: opts.readOnlyOption,
      ...(opts.maxInflightMsgs !== undefined ? { maxInflightMsgs: opts.maxInflightMsgs } : {}),
      ...(opts.maxInflightBytes !== undefined ? { maxInflightBytes: opts.maxInflightBytes } : {}),
      ...(opts.maxSizePerMsg !== undefined ? { maxSizePerMsg: opts.maxSizePerMsg } : {}),
      ...(opts.maxUncommittedEntriesSize !== undefined ? { maxUncommittedEntriesSize: opts.maxUncommittedEntriesSize } : {}),
      logger: this.logger(),
    });
  }

  /**
   * Add a node over `storage` (already holding whatever log/hard state/snapshot
   * the test wants). Its state machine starts from the storage's snapshot.
   */
  addNode(id: NodeId, storage: MemoryStorage, opts: NodeOptions): TestNode {
    if (this.nodes.has(id)) throw new Error(`node ${id} exists`);
    const snap = storage.snapshot();
    const raw = this.makeRaw(id, storage, opts, snap.meta.index);
    const n: TestNode = {
      id,
      storage,
      raw,
      opts,
      sm: decodeSm(snap.data),
      appliedIndex: snap.meta.index,
      confHistory: [{ index: snap.meta.index, conf: snap.meta.conf }],
      reads: [],
    };
    this.nodes.set(id, n);
    return n;
  }

  /**
   * Add `count` nodes (ids continue from the largest existing one). With a
   * configuration, each starts from a snapshot at `index` (term 1 when index > 0)
   * carrying it; without one (a joining node) it starts empty.
   */
  addNodes(count: number, conf: ConfState | undefined, index: number, opts: NodeOptions): NodeId[] {
    const added: NodeId[] = [];
    let next = Math.max(0, ...this.nodes.keys()) + 1;
    for (let k = 0; k < count; k++, next++) {
      const storage = new MemoryStorage();
      if (conf) {
        storage.applySnapshot({
          meta: { index, term: index > 0 ? 1 : 0, conf: { voters: [...conf.voters], learners: [...conf.learners] } },
          data: encodeSm([]),
        });
      }
      this.addNode(next, storage, opts);
      added.push(next);
    }
    return added;
  }

  /** Rebuild the RawNode from what its storage holds; volatile state is lost. */
  restart(id: NodeId): void {
    const n = this.node(id);
    const snap = n.storage.snapshot();
    n.raw = this.makeRaw(id, n.storage, n.opts, snap.meta.index);
    n.sm = decodeSm(snap.data);
    n.appliedIndex = snap.meta.index;
    n.confHistory = [{ index: snap.meta.index, conf: snap.meta.conf }];
  }

  /** Snapshot the state machine at `index` (≤ applied) and drop the log up to it. */
  compact(id: NodeId, index: number): Snapshot {
    const n = this.node(id);
    if (index > n.appliedIndex) throw new Error(`cannot compact node ${id} at ${index}: applied is ${n.appliedIndex}`);
    let conf: ConfState | undefined;
    for (const h of n.confHistory) if (h.index <= index) conf = h.conf;
    if (!conf) throw new Error(`node ${id}: membership at ${index} is no longer known`);
    const snap = n.storage.createSnapshot(index, conf, encodeSm(n.sm.filter((e) => e.index <= index)));
    n.storage.compact(index);
    return snap;
  }

  // -------------------------------------------------------------- network

  connected(a: NodeId, b: NodeId): boolean {
    if (!this.groups) return true;
    return this.groups.some((g) => g.includes(a) && g.includes(b));
  }

  partition(groups: NodeId[][]): void {
    this.groups = groups;
  }

  heal(): void {
    this.groups = undefined;
  }

  // ------------------------------------------------------------ the driver

  /** Handle one Ready of node `id` if it has one; returns whether it did. */
  processReady(id: NodeId, print = true): boolean {
    const n = this.node(id);
    if (!n.raw.hasReady()) return false;
    const rd = n.raw.ready();
    if (print) {
      this.emit(`> ${id} handling Ready`);
      for (const l of fmtReady(rd)) this.emit(`  ${l}`);
    }
    // 1. persist
    if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length) n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    // 2. send
    for (const m of rd.messages) {
      if (!this.connected(m.from, m.to)) this.cut.add(m);
      this.queue.push(m);
    }
    // 3. apply
    if (rd.snapshot) {
      n.sm = decodeSm(rd.snapshot.data);
      n.appliedIndex = rd.snapshot.meta.index;
      n.confHistory = [{ index: rd.snapshot.meta.index, conf: rd.snapshot.meta.conf }];
    }
    for (const e of rd.committedEntries) this.apply(n, e);
    n.reads.push(...rd.readStates);
    n.raw.advance(rd);
    return true;
  }

  private apply(n: TestNode, e: Entry): void {
    if (e.index !== n.appliedIndex + 1) throw new Error(`node ${n.id} applies ${e.index} after ${n.appliedIndex}`);
    n.appliedIndex = e.index;
    if (e.type === EntryType.Normal) {
      if (e.data.length) n.sm.push({ index: e.index, data: str(e.data) });
      return;
    }
    const cc: ConfChange = decodeConfChange(e.data);
    const last = n.confHistory[n.confHistory.length - 1];
    if (!last) throw new Error(`node ${n.id}: no membership known`);
    try {
      n.confHistory.push({ index: e.index, conf: applyToConfState(last.conf, cc) });
    } catch {
      // Invalid changes are skipped by every node alike.
    }
  }

  /** Deliver (in order) the queued messages that `pick` selects; returns how many were taken. */
  deliver(pick: (m: Message) => boolean, drop: (m: Message) => boolean = () => false, print = true): number {
    const taken: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.queue) (pick(m) || drop(m) ? taken : rest).push(m);
    this.queue = rest;
    let lastTo: NodeId | undefined;
    for (const m of taken) {
      if (print && m.to !== lastTo) this.emit(`> ${m.to} receiving messages`);
      lastTo = m.to;
      const target = this.nodes.get(m.to);
      if (drop(m)) {
        if (print) this.emitMsgLine(`  ${fmtMsg(m)} DROPPED`);
        continue;
      }
      if (!target) {
        if (print) this.emitMsgLine(`  ${fmtMsg(m)} DROPPED (no such node)`);
        continue;
      }
      if (this.cut.has(m) || !this.connected(m.from, m.to)) {
        if (print) this.emitMsgLine(`  ${fmtMsg(m)} DROPPED (partition)`);
        continue;
      }
      if (print) this.emitMsgLine(`  ${fmtMsg(m)}`);
      this.observer?.(m);
      try {
        target.raw.step(m);
      } catch (e) {
        if (print) this.emit(`  ${fmtError(e)}`);
        else throw e;
      }
    }
    return taken.length;
  }

  /** Deliver everything queued for `to`, grouped by receiver in ascending order. */
  deliverTo(to: readonly NodeId[], print = true): number {
    let n = 0;
    for (const id of [...to].sort((a, b) => a - b)) n += this.deliver((m) => m.to === id, undefined, print);
    return n;
  }

  /** Process Readies and deliver messages among `ids` until nothing is left to do. */
  stabilize(ids: readonly NodeId[] = this.ids(), print = true, maxRounds = 10_000): void {
    const sorted = [...ids].sort((a, b) => a - b);
    for (let round = 0; round < maxRounds; round++) {
      let busy = false;
      for (const id of sorted) if (this.processReady(id, print)) busy = true;
      for (const id of sorted) if (this.deliver((m) => m.to === id, undefined, print) > 0) busy = true;
      if (!busy) return;
    }
    throw new Error(`not stable after ${maxRounds} rounds`);
  }

  tick(id: NodeId, times: number): void {
    const n = this.node(id);
    for (let i = 0; i < times; i++) n.raw.tick();
  }
}

// --------------------------------------------------------------- state machine

export function encodeSm(sm: readonly SmEntry[]): Uint8Array {
  return bytes(JSON.stringify(sm));
}

export function decodeSm(data: Uint8Array): SmEntry[] {
  if (data.length === 0) return [];
  const v: unknown = JSON.parse(str(data));
  const ok = (x: unknown): x is SmEntry =>
    typeof x === "object" && x !== null && typeof (x as SmEntry).index === "number" && typeof (x as SmEntry).data === "string";
  if (!Array.isArray(v) || !v.every(ok)) throw new Error("bad state machine snapshot");
  return v;
}

export function fmtReady(rd: Ready): string[] {
  const l: string[] = [];
  if (rd.softState) l.push(`Lead:${rd.softState.leader} State:${rd.softState.role}`);
  if (rd.hardState) l.push(`HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote} Commit:${rd.hardState.commit}`);
  if (rd.snapshot) l.push(`Snapshot ${fmtSnapshot(rd.snapshot)}`);
  if (rd.entries.length) {
    l.push("Entries:");
    for (const e of rd.entries) l.push(`  ${fmtEntry(e)}`);
  }
  if (rd.committedEntries.length) {
    l.push("CommittedEntries:");
    for (const e of rd.committedEntries) l.push(`  ${fmtEntry(e)}`);
  }
  if (rd.messages.length) {
    // Identical messages (e.g. the heartbeats of many ticks) are listed once, "×N".
    l.push("Messages:");
    const counts = new Map<string, number>();
    for (const m of rd.messages) {
      const t = fmtMsg(m);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [t, c] of counts) l.push(`  ${t}${c > 1 ? ` ×${c}` : ""}`);
  }
  if (rd.readStates.length) {
    l.push("ReadStates:");
    for (const r of rd.readStates) l.push(`  Index:${r.index} Ctx:${JSON.stringify(str(r.context))}`);
  }
  return l;
}
