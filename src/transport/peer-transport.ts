// The sending side of Raft between sidecars: a consensus Transport over gRPC.
//
// One long-lived RaftPeer.Stream per peer carries batches of messages, with a
// bounded queue in front of it. What cannot be sent (queue full, peer
// disconnected or unknown) is dropped and reported through onUnreachable, as
// Raft expects of a lossy network: it retries on its own. A stream that fails
// is reopened after an exponential backoff with jitter (50 ms doubling to 1 s,
// reset once a peer accepts a stream); a stream that never got through drops
// its channel too, so the next attempt dials afresh instead of waiting out
// gRPC's own reconnect backoff on top of ours — a restarted peer is reached
// again within about a second, however long it was away. Snapshots go by InstallSnapshot in
// 1 MiB chunks on a connection of their own, so heartbeats never wait behind
// them; the outcome is reported through onSnapshotStatus.
//
// A peer's address comes from the address book (setPeer, kept in sync with the
// catalog by the daemon) or, failing that, from the peer itself: every stream
// names its sender's address, so a node whose catalog does not know a peer yet
// (it restored an old snapshot while joining) can still answer it.
import { create } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import type { Transport } from "../consensus/driver.js";
import { MessageType, type Message, type NodeId } from "../consensus/types.js";
import { RaftBatchSchema, RaftPeer, SnapshotChunkSchema, type RaftBatch, type SnapshotChunk } from "../gen/pgraft/v1/raft_pb.js";
import { LOCAL_MESSAGE_TYPES, approxSize, messageToWire, messageTypeName } from "./convert.js";
import type { FaultInjector } from "./faults.js";
import { createClient, isServiceError, type TypedClient } from "./grpc-service.js";
import {
  HEADER_ACCEPTED,
  HEADER_CLUSTER_ID,
  HEADER_FROM,
  HEADER_FROM_ADDRESS,
  HEADER_TO,
  LogLimiter,
  MiB,
  RaftPeerService,
  TRAILER_REFUSAL,
  silentLogger,
  type TransportLogger,
} from "./peer-server.js";
import { isRefusalReason, newTransportStats, type TransportStats } from "./stats.js";

export { PEER_SERVER_OPTIONS, RaftPeerService, type RaftPeerServiceOptions, type TransportLogger } from "./peer-server.js";
export { newTransportStats, type RefusalReason, type TransportStats } from "./stats.js";

/** Channel options of every peer connection. */
/** The stream's reconnect backoff: short enough that a restarted peer hears from us within about a second. */
export const PEER_BACKOFF: Readonly<{ initialMs: number; maxMs: number }> = { initialMs: 50, maxMs: 1_000 };

export const PEER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // Notice a dead peer (or a dead path to it) within ~15 s even when idle.
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_send_message_length": 64 * MiB,
  "grpc.max_receive_message_length": 64 * MiB,
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 1_000,
  // Each client its own connection: a snapshot never shares one with heartbeats.
  "grpc.use_local_subchannel_pool": 1,
};

export interface GrpcPeerTransportOptions {
  selfId: NodeId;
  clusterId: string;
  /** Peer id -> "host:port" of its RaftPeer endpoint; change later with setPeer/removePeer. */
  peers?: ReadonlyMap<NodeId, string> | Iterable<readonly [NodeId, string]>;
  credentials: grpc.ChannelCredentials;
  /** A checked message from a peer (the server side, see register()). */
  onReceive: (m: Message) => void;
  /** A peer could not be reached; messages to it were dropped (RaftNode.reportUnreachable). */
  onUnreachable: (id: NodeId) => void;
  /** Outcome of sending a snapshot (RaftNode.reportSnapshot). */
  onSnapshotStatus: (id: NodeId, ok: boolean) => void;
  /** This node's own RaftPeer address, sent on every stream so that peers can answer before their catalog knows us. */
  advertise?: string;
  /** Server side: may `id` send to us? Default: it is in the peer map. */
  isKnownPeer?: (id: NodeId) => boolean;
  /** Server side: refuse peers without a verified TLS certificate naming their node id (set with mTLS). */
  requirePeerCertificate?: boolean;
  logger?: TransportLogger;
  stats?: TransportStats;
  /** Test-only fault hook (FaultInjector.create() works only with PGRAFT_TEST_FAULTS=1). */
  faults?: FaultInjector;
  /** Messages queued per peer before new ones are dropped (default 4096). */
  maxQueue?: number;
  /** Soft limit of one batch in bytes (default 4 MiB; one message may exceed it). */
  maxBatchBytes?: number;
  /** A message larger than this is dropped (default 60 MiB, under the 64 MiB gRPC limit). */
  maxMessageBytes?: number;
  /** A stream the peer has not accepted within this time is abandoned (default 5 s). */
  acceptTimeoutMs?: number;
  /** Reconnect backoff (default 50 ms doubling to 1 s, with jitter). */
  backoff?: { initialMs: number; maxMs: number };
  snapshotChunkBytes?: number;
  /** Deadline of one snapshot transfer (default 10 min). */
  snapshotTimeoutMs?: number;
  /** Extra grpc channel options, over PEER_CHANNEL_OPTIONS. */
  channelOptions?: grpc.ChannelOptions;
  /** For the backoff's jitter (tests). */
  random?: () => number;
}

type Resolved = Required<
  Pick<GrpcPeerTransportOptions, "maxQueue" | "maxBatchBytes" | "maxMessageBytes" | "acceptTimeoutMs" | "backoff" | "snapshotChunkBytes" | "snapshotTimeoutMs" | "random">
>;

type PeerMethods = typeof RaftPeer extends GenService<infer T> ? T : never;

/** What a PeerSender needs of its transport. */
interface Context {
  readonly o: GrpcPeerTransportOptions & Resolved;
  readonly stats: TransportStats;
  readonly log: TransportLogger;
  readonly limiter: LogLimiter;
  readonly channelOptions: grpc.ChannelOptions;
  unreachable(id: NodeId): void;
  snapshotStatus(id: NodeId, ok: boolean): void;
}

function errText(e: unknown): string {
  if (isServiceError(e)) return `${grpc.status[e.code] ?? e.code}: ${e.details}`;
  return e instanceof Error ? e.message : String(e);
}

/** The stream to one peer, its queue and its snapshot transfer. */
class PeerSender {
  private client: TypedClient<PeerMethods> | undefined;
  private call: grpc.ClientWritableStream<RaftBatch> | undefined;
  private queue: Message[] = [];
  private waitingDrain = false;
  private state: "idle" | "open" | "backoff" | "closed" = "idle";
  private backoffMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private acceptTimer: NodeJS.Timeout | undefined;
  private streamsOpened = 0;
  private accepted = false;
  private snapshot: { cancel(): void } | undefined;

  constructor(
    readonly id: NodeId,
    readonly address: string,
    private readonly ctx: Context,
  ) {
    this.backoffMs = ctx.o.backoff.initialMs;
  }

  private drop(msgs: readonly Message[]): void {
    for (const m of msgs) this.ctx.stats.dropped[messageTypeName(m.type)]++;
  }

  private getClient(): TypedClient<PeerMethods> {
    this.client ??= createClient(RaftPeer, this.address, this.ctx.o.credentials, this.ctx.channelOptions);
    return this.client;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(HEADER_CLUSTER_ID, this.ctx.o.clusterId);
    md.set(HEADER_FROM, String(this.ctx.o.selfId));
    md.set(HEADER_TO, String(this.id));
    if (this.ctx.o.advertise !== undefined) md.set(HEADER_FROM_ADDRESS, this.ctx.o.advertise);
    return md;
  }

  enqueue(msgs: readonly Message[]): void {
    if (msgs.length === 0) return;
    if (this.state === "closed") return this.drop(msgs);
    if (this.state === "backoff") {
      this.drop(msgs);
      this.ctx.unreachable(this.id);
      return;
    }
    const room = this.ctx.o.maxQueue - this.queue.length;
    if (room < msgs.length) {
      this.drop(msgs.slice(Math.max(0, room)));
      if (this.ctx.limiter.allow(`queue-full-${this.id}`)) {
        this.ctx.log.warn(`node ${this.ctx.o.selfId}: send queue to node ${this.id} is full (${this.ctx.o.maxQueue} messages): dropping`);
      }
      this.ctx.unreachable(this.id);
    }
    for (const m of msgs.slice(0, Math.max(0, room))) this.queue.push(m);
    if (this.state === "idle") this.open();
    this.flush();
  }

  private open(): void {
    if (this.streamsOpened > 0) this.ctx.stats.reconnects++;
    this.streamsOpened++;
    this.accepted = false;
    const call = this.getClient().methods.stream((err) => this.onEnd(call, err), { metadata: this.metadata() });
    call.on("metadata", (md: grpc.Metadata) => {
      if (call !== this.call || md.get(HEADER_ACCEPTED).length === 0) return;
      if (this.backoffMs > this.ctx.o.backoff.initialMs) this.ctx.log.info(`node ${this.ctx.o.selfId}: connected to node ${this.id} at ${this.address}`);
      this.accepted = true;
      this.clearAcceptTimer();
      this.backoffMs = this.ctx.o.backoff.initialMs;
      this.flush();
    });
    call.on("drain", () => {
      if (call !== this.call) return;
      this.waitingDrain = false;
      this.flush();
    });
    // The status arrives through the callback; this keeps an 'error' event from being unhandled.
    call.on("error", () => {});
    this.call = call;
    this.state = "open";
    this.acceptTimer = setTimeout(() => {
      this.acceptTimer = undefined;
      // Ends the call with CANCELLED: onEnd drops the queue and backs off.
      if (call === this.call && !this.accepted) call.cancel();
    }, this.ctx.o.acceptTimeoutMs);
  }

  private clearAcceptTimer(): void {
    if (this.acceptTimer) clearTimeout(this.acceptTimer);
    this.acceptTimer = undefined;
  }

  private flush(): void {
    const call = this.call;
    // Nothing is written before the peer accepts the stream: until then messages wait in
    // the bounded queue, and are dropped (and counted) if the stream fails instead.
    while (call && this.call === call && this.accepted && !this.waitingDrain && this.queue.length > 0) {
      let bytes = 0;
      let n = 0;
      while (n < this.queue.length) {
        const size = approxSize(this.queue[n]!);
        if (n > 0 && bytes + size > this.ctx.o.maxBatchBytes) break;
        bytes += size;
        n++;
      }
      const msgs = this.queue.splice(0, n);
      const batch = create(RaftBatchSchema, { clusterId: this.ctx.o.clusterId, from: this.ctx.o.selfId, to: this.id, messages: msgs.map(messageToWire) });
      for (const m of msgs) this.ctx.stats.sent[messageTypeName(m.type)]++;
      if (!call.write(batch)) this.waitingDrain = true;
    }
  }

  private onEnd(call: grpc.ClientWritableStream<RaftBatch>, err: grpc.ServiceError | null): void {
    if (call !== this.call) return;
    this.call = undefined;
    this.clearAcceptTimer();
    this.waitingDrain = false;
    this.drop(this.queue);
    this.queue = [];
    if (this.state === "closed") return;
    if (!err) {
      // The peer ended the stream cleanly (it should not); open a new one with the next message.
      this.state = "idle";
      return;
    }
    const { stats, o, log } = this.ctx;
    stats.streamFailures++;
    const reason = String(err.metadata?.get(TRAILER_REFUSAL)[0] ?? "");
    if (reason) stats.refusedByPeer[isRefusalReason(reason) ? reason : "other"]++;
    const text = `node ${o.selfId}: stream to node ${this.id} at ${this.address} failed: ${errText(err)}`;
    if (reason) {
      if (this.ctx.limiter.allow(text)) log.warn(text);
    } else if (this.accepted) {
      log.info(text);
    } else {
      log.debug(text);
    }
    this.ctx.unreachable(this.id);
    if (!this.accepted) {
      // Never got through: a fresh channel next time (see the top of the file).
      this.client?.close();
      this.client = undefined;
    }
    this.state = "backoff";
    // A refusal will not go away by itself soon: never retry it on the shortest backoff.
    if (reason) this.backoffMs = Math.max(this.backoffMs, Math.min(1_000, o.backoff.maxMs));
    const base = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, o.backoff.maxMs);
    const delay = Math.round(base / 2 + (base / 2) * o.random());
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === "backoff") this.state = "idle";
    }, delay);
  }

  /** Send one Snap message by InstallSnapshot in chunks. */
  sendSnapshot(m: Message): void {
    const { o, stats, log } = this.ctx;
    if (this.state === "closed") {
      this.drop([m]);
      this.ctx.snapshotStatus(this.id, false);
      return;
    }
    if (this.snapshot) {
      // The core sends one snapshot at a time per follower; a second is refused, not queued.
      this.drop([m]);
      stats.snapshotsFailed++;
      this.ctx.snapshotStatus(this.id, false);
      return;
    }
    const data = m.snapshot?.data ?? new Uint8Array();
    stats.sent.Snap++;
    // A client (and so a connection) of its own for the transfer.
    const client = createClient(RaftPeer, this.address, o.credentials, this.ctx.channelOptions);
    let done = false;
    let sent = 0;
    const finish = (err: unknown): void => {
      if (done) return;
      done = true;
      this.snapshot = undefined;
      client.close();
      if (err === undefined) {
        stats.snapshotsSent++;
        stats.snapshotBytesSent += sent;
        log.info(`node ${o.selfId}: sent snapshot at index ${m.snapshot?.meta.index ?? 0} (${data.byteLength} bytes) to node ${this.id}`);
      } else {
        stats.snapshotsFailed++;
        log.warn(`node ${o.selfId}: sending snapshot to node ${this.id} failed: ${errText(err)}`);
      }
      this.ctx.snapshotStatus(this.id, err === undefined);
    };
    const call = client.methods.installSnapshot((err) => finish(err ?? undefined), {
      metadata: this.metadata(),
      timeoutMs: o.snapshotTimeoutMs,
    });
    call.on("error", () => {});
    this.snapshot = {
      cancel: () => {
        call.cancel();
        finish(new Error("transport closed"));
      },
    };
    const head = messageToWire(m);
    let offset = 0;
    let first = true;
    const writeMore = (): void => {
      while (!done) {
        const end = Math.min(offset + o.snapshotChunkBytes, data.byteLength);
        const chunk: SnapshotChunk = create(SnapshotChunkSchema, {
          clusterId: o.clusterId,
          from: o.selfId,
          to: this.id,
          offset: BigInt(offset),
          data: data.subarray(offset, end),
          last: end === data.byteLength,
          ...(first ? { message: head, totalBytes: BigInt(data.byteLength) } : {}),
        });
        first = false;
        sent += end - offset;
        offset = end;
        const more = call.write(chunk);
        if (end === data.byteLength) {
          call.end();
          return;
        }
        if (!more) {
          call.once("drain", writeMore);
          return;
        }
      }
    };
    writeMore();
  }

  close(): void {
    this.state = "closed";
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.clearAcceptTimer();
    const call = this.call;
    this.call = undefined;
    this.drop(this.queue);
    this.queue = [];
    call?.cancel();
    this.snapshot?.cancel();
    this.client?.close();
    this.client = undefined;
  }
}

export class GrpcPeerTransport implements Transport {
  readonly stats: TransportStats;
  private readonly o: GrpcPeerTransportOptions & Resolved;
  private readonly log: TransportLogger;
  /** The address book (setPeer/removePeer). */
  private readonly addresses = new Map<NodeId, string>();
  /** Addresses peers gave for themselves on their streams: used for ids the address book lacks. */
  private readonly learned = new Map<NodeId, string>();
  private readonly senders = new Map<NodeId, PeerSender>();
  private readonly ctx: Context;
  private readonly delayTimers = new Set<NodeJS.Timeout>();
  private readonly services: RaftPeerService[] = [];
  private pendingUnreachable = new Set<NodeId>();
  private pendingSnapshotStatus: [NodeId, boolean][] = [];
  private notifyScheduled = false;
  private closed = false;

  constructor(opts: GrpcPeerTransportOptions) {
    this.o = {
      maxQueue: 4096,
      maxBatchBytes: 4 * MiB,
      maxMessageBytes: 60 * MiB,
      acceptTimeoutMs: 5_000,
      backoff: PEER_BACKOFF,
      snapshotChunkBytes: MiB,
      snapshotTimeoutMs: 10 * 60_000,
      random: Math.random,
      ...opts,
    };
    this.stats = opts.stats ?? newTransportStats();
    this.log = opts.logger ?? silentLogger;
    for (const [id, addr] of opts.peers ?? []) if (id !== opts.selfId) this.addresses.set(id, addr);
    this.ctx = {
      o: this.o,
      stats: this.stats,
      log: this.log,
      limiter: new LogLimiter(),
      channelOptions: { ...PEER_CHANNEL_OPTIONS, ...(opts.channelOptions ?? {}) },
      unreachable: (id) => this.notifyUnreachable(id),
      snapshotStatus: (id, ok) => this.notifySnapshotStatus(id, ok),
    };
  }

  /** Set or change a peer's address (a changed address closes the old stream). */
  setPeer(id: NodeId, address: string): void {
    if (id === this.o.selfId || this.closed) return;
    if (this.addresses.get(id) === address) return;
    this.addresses.set(id, address);
    this.retarget(id);
  }

  /**
   * Drop `id` from the address book. An address the peer gave for itself stays:
   * the catalog of a node catching up may not know yet the leader that feeds it.
   */
  removePeer(id: NodeId): void {
    if (!this.addresses.delete(id)) return;
    this.retarget(id);
  }

  /** A peer that passed the server-side checks said where it listens. */
  private learnAddress(id: NodeId, address: string): void {
    if (id === this.o.selfId || this.closed || this.learned.get(id) === address) return;
    // Ids come only from authenticated peers of this cluster; still, keep the map bounded.
    if (this.learned.size >= 1024 && !this.learned.has(id)) this.learned.clear();
    this.learned.set(id, address);
    this.retarget(id);
  }

  /** Where messages to `id` go: the address book, else what the peer said. */
  private addressOf(id: NodeId): string | undefined {
    return this.addresses.get(id) ?? this.learned.get(id);
  }

  /** Close the sender to `id` if it no longer dials the address messages to `id` should take. */
  private retarget(id: NodeId): void {
    const s = this.senders.get(id);
    if (!s || s.address === this.addressOf(id)) return;
    s.close();
    this.senders.delete(id);
  }

  /** The address book (without the addresses peers gave for themselves). */
  peers(): Map<NodeId, string> {
    return new Map(this.addresses);
  }

  /** Whether `id` is in the peer map (the default isKnownPeer). */
  hasPeer(id: NodeId): boolean {
    return this.addresses.has(id);
  }

  /**
   * Register the receiving side (RaftPeer service) on `server`, delivering to
   * onReceive and sharing this transport's stats. close() also closes it.
   */
  register(server: grpc.Server): RaftPeerService {
    const svc = new RaftPeerService({
      selfId: this.o.selfId,
      clusterId: this.o.clusterId,
      isKnownPeer: this.o.isKnownPeer ?? ((id) => this.hasPeer(id)),
      onReceive: this.o.onReceive,
      onPeerAddress: (id, address) => this.learnAddress(id, address),
      ...(this.o.requirePeerCertificate ? { requirePeerCertificate: true } : {}),
      stats: this.stats,
      logger: this.log,
    });
    svc.register(server);
    this.services.push(svc);
    return svc;
  }

  /** Best effort, never throws: what cannot be sent is dropped and reported. */
  send(messages: Message[]): void {
    this.trySend(messages, false);
  }

  private trySend(messages: Message[], faulted: boolean): void {
    try {
      this.sendInner(messages, faulted);
    } catch (e) {
      this.log.warn(`node ${this.o.selfId}: transport send failed: ${errText(e)}`);
    }
  }

  /** `faulted`: the fault hook already decided about these (they come out of a delay). */
  private sendInner(messages: Message[], faulted: boolean): void {
    const groups = new Map<PeerSender, Message[]>();
    for (const m of messages) {
      const name = messageTypeName(m.type);
      if (this.closed || m.to === this.o.selfId || LOCAL_MESSAGE_TYPES.has(m.type)) {
        this.stats.dropped[name]++;
        continue;
      }
      const sender = this.sender(m.to);
      if (!sender) {
        this.stats.dropped[name]++;
        if (this.ctx.limiter.allow(`no-address-${m.to}`)) this.log.warn(`node ${this.o.selfId}: no address for node ${m.to}: dropping ${name}`);
        this.notifyUnreachable(m.to);
        if (m.type === MessageType.Snap) this.notifySnapshotStatus(m.to, false);
        continue;
      }
      if (m.type !== MessageType.Snap && approxSize(m) > this.o.maxMessageBytes) {
        this.stats.dropped[name]++;
        this.log.warn(`node ${this.o.selfId}: ${name} to node ${m.to} is about ${approxSize(m)} bytes, over the ${this.o.maxMessageBytes}-byte limit: dropped`);
        this.notifyUnreachable(m.to);
        continue;
      }
      const fault = faulted ? undefined : this.o.faults?.decide(m.to);
      if (fault?.drop) {
        this.stats.faultDropped++;
        if (m.type === MessageType.Snap) this.notifySnapshotStatus(m.to, false);
        continue;
      }
      if (fault && fault.delayMs > 0) {
        this.stats.faultDelayed++;
        const timer = setTimeout(() => {
          this.delayTimers.delete(timer);
          this.trySend([m], true);
        }, fault.delayMs);
        this.delayTimers.add(timer);
        continue;
      }
      if (m.type === MessageType.Snap) {
        sender.sendSnapshot(m);
        continue;
      }
      let g = groups.get(sender);
      if (!g) groups.set(sender, (g = []));
      g.push(m);
    }
    for (const [sender, msgs] of groups) sender.enqueue(msgs);
  }

  private sender(id: NodeId): PeerSender | undefined {
    let s = this.senders.get(id);
    if (s) return s;
    const addr = this.addressOf(id);
    if (addr === undefined) return undefined;
    s = new PeerSender(id, addr, this.ctx);
    this.senders.set(id, s);
    return s;
  }

  // Reports to the Raft node go out after the current call returns (never from
  // inside send(), which the driver calls while handling a Ready), one per peer.
  private notifyUnreachable(id: NodeId): void {
    this.pendingUnreachable.add(id);
    this.scheduleNotify();
  }

  private notifySnapshotStatus(id: NodeId, ok: boolean): void {
    this.pendingSnapshotStatus.push([id, ok]);
    this.scheduleNotify();
  }

  private scheduleNotify(): void {
    if (this.notifyScheduled || this.closed) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      if (this.closed) return;
      const ids = this.pendingUnreachable;
      const snaps = this.pendingSnapshotStatus;
      this.pendingUnreachable = new Set();
      this.pendingSnapshotStatus = [];
      for (const id of ids) this.safely(() => this.o.onUnreachable(id));
      for (const [id, ok] of snaps) this.safely(() => this.o.onSnapshotStatus(id, ok));
    });
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.warn(`node ${this.o.selfId}: transport callback failed: ${errText(e)}`);
    }
  }

  /** Close every stream, connection and timer, and the registered services' open streams. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.delayTimers) clearTimeout(t);
    this.delayTimers.clear();
    for (const s of this.senders.values()) s.close();
    this.senders.clear();
    for (const svc of this.services) svc.close();
  }
}
