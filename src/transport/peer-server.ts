// The receiving side of Raft between sidecars: the RaftPeer gRPC service.
// Every stream and every batch is checked before anything reaches the Raft
// node: the cluster id must be ours (else FAILED_PRECONDITION, "cluster id
// mismatch: expected X, got Y"), the sender a known member (else
// PERMISSION_DENIED), the batch addressed to this node and well formed. A
// refusal ends the stream, is counted by reason and names its reason in the
// `pgraft-refusal` trailer so the sender can count it too.
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { MessageType, type Message, type NodeId } from "../consensus/types.js";
import {
  RaftPeer,
  SnapshotAckSchema,
  StreamSummarySchema,
  MessageType as WireMessageType,
  type RaftBatch,
  type RaftMessage,
  type SnapshotAck,
  type SnapshotChunk,
  type StreamSummary,
} from "../gen/pgraft/v1/raft_pb.js";
import { LOCAL_MESSAGE_TYPES, WireFormatError, messageFromWire, messageTypeName } from "./convert.js";
import { addService, statusError } from "./grpc-service.js";
import { newTransportStats, type RefusalReason, type TransportStats } from "./stats.js";

export interface TransportLogger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

export const silentLogger: TransportLogger = { info: () => {}, warn: () => {}, debug: () => {} };

/** Request headers a sender puts on every stream (checked before the first batch). */
export const HEADER_CLUSTER_ID = "pgraft-cluster-id";
export const HEADER_FROM = "pgraft-from";
export const HEADER_TO = "pgraft-to";
/** Response header: the stream was accepted (the sender resets its backoff). */
export const HEADER_ACCEPTED = "pgraft-accepted";
/** Trailer of a refusal: its RefusalReason. */
export const TRAILER_REFUSAL = "pgraft-refusal";

export const MiB = 1024 * 1024;

/** Server options for a sidecar's grpc.Server: keepalive and message sizes to match the peers' channels. */
export const PEER_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.max_receive_message_length": 64 * MiB,
  "grpc.max_send_message_length": 64 * MiB,
};

export interface RaftPeerServiceOptions {
  selfId: NodeId;
  clusterId: string;
  /** Whether `id` may send to this node (a member, or a node being added). */
  isKnownPeer: (id: NodeId) => boolean;
  /** A checked message from a peer (RaftNode.receive). */
  onReceive: (m: Message) => void;
  stats?: TransportStats;
  logger?: TransportLogger;
  /** Largest snapshot accepted, in bytes (default 2 GiB). */
  maxSnapshotBytes?: number;
}

interface Refusal {
  reason: RefusalReason;
  code: grpc.status;
  details: string;
}

/** Logs one line per distinct text at most every `intervalMs`. */
export class LogLimiter {
  private readonly last = new Map<string, number>();
  constructor(private readonly intervalMs = 10_000) {}
  allow(key: string): boolean {
    const now = Date.now();
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    if (this.last.size > 1000) this.last.clear();
    this.last.set(key, now);
    return true;
  }
}

export class RaftPeerService {
  readonly stats: TransportStats;
  private readonly log: TransportLogger;
  private readonly limiter = new LogLimiter();
  private readonly active = new Set<(err: grpc.ServerErrorResponse) => void>();
  private readonly maxSnapshotBytes: number;
  private closed = false;

  constructor(private readonly opts: RaftPeerServiceOptions) {
    this.stats = opts.stats ?? newTransportStats();
    this.log = opts.logger ?? silentLogger;
    this.maxSnapshotBytes = opts.maxSnapshotBytes ?? 2048 * MiB;
  }

  /** Add the RaftPeer service to `server` (before it starts). */
  register(server: grpc.Server): void {
    addService(server, RaftPeer, {
      stream: (call, callback) => this.handleStream(call, callback),
      installSnapshot: (call, callback) => this.handleSnapshot(call, callback),
    });
  }

  /** End every open incoming stream (UNAVAILABLE), so the server can shut down. */
  close(): void {
    this.closed = true;
    const err = statusError(grpc.status.UNAVAILABLE, `node ${this.opts.selfId} is shutting down`);
    for (const end of [...this.active]) end(err);
  }

  // ------------------------------------------------------------------ checks

  private refusal(reason: RefusalReason, code: grpc.status, details: string): Refusal {
    return { reason, code, details };
  }

  /** The envelope every batch and chunk carries: cluster, sender, recipient. */
  private checkEnvelope(clusterId: string, from: NodeId, to: NodeId): Refusal | undefined {
    const { clusterId: ours, selfId } = this.opts;
    if (clusterId !== ours) {
      return this.refusal("cluster_id_mismatch", grpc.status.FAILED_PRECONDITION, `cluster id mismatch: expected ${ours}, got ${clusterId}`);
    }
    if (from === selfId) {
      return this.refusal("unknown_peer", grpc.status.PERMISSION_DENIED, `sender claims node id ${from}, which is this node's own id (two sidecars with one id?)`);
    }
    if (!this.opts.isKnownPeer(from)) {
      return this.refusal("unknown_peer", grpc.status.PERMISSION_DENIED, `node ${from} is not a known member of cluster ${ours}`);
    }
    if (to !== selfId) {
      return this.refusal("wrong_recipient", grpc.status.FAILED_PRECONDITION, `addressed to node ${to}, but this is node ${selfId} (stale address book?)`);
    }
    return undefined;
  }

  /** The same check on the stream's request headers, before any batch (absent headers are not checked). */
  private checkHeaders(md: grpc.Metadata): Refusal | undefined {
    const cluster = md.get(HEADER_CLUSTER_ID)[0];
    const from = md.get(HEADER_FROM)[0];
    const to = md.get(HEADER_TO)[0];
    if (cluster === undefined || from === undefined || to === undefined) return undefined;
    return this.checkEnvelope(String(cluster), Number(String(from)), Number(String(to)));
  }

  /** A message inside a batch (or the head of a snapshot) must agree with its envelope. */
  private convert(w: RaftMessage, env: { clusterId: string; from: NodeId; to: NodeId }, data?: Uint8Array): Message | Refusal {
    if (w.clusterId !== env.clusterId || w.from !== env.from || w.to !== env.to) {
      return this.refusal(
        "malformed",
        grpc.status.INVALID_ARGUMENT,
        `a message (cluster ${w.clusterId}, ${w.from}->${w.to}) does not match its batch (cluster ${env.clusterId}, ${env.from}->${env.to})`,
      );
    }
    try {
      const m = messageFromWire(w, data);
      if (LOCAL_MESSAGE_TYPES.has(m.type)) {
        return this.refusal("malformed", grpc.status.INVALID_ARGUMENT, `message type ${messageTypeName(m.type)} is local to a node and never sent`);
      }
      return m;
    } catch (e) {
      if (e instanceof WireFormatError) return this.refusal("malformed", grpc.status.INVALID_ARGUMENT, e.message);
      throw e;
    }
  }

  private refuse(r: Refusal, from: string): grpc.ServerErrorResponse {
    this.stats.refused[r.reason]++;
    if (this.limiter.allow(r.details)) this.log.warn(`node ${this.opts.selfId}: refused Raft traffic from ${from}: ${r.details}`);
    const md = new grpc.Metadata();
    md.set(TRAILER_REFUSAL, r.reason);
    return statusError(r.code, r.details, md);
  }

  private deliver(m: Message): void {
    this.stats.received[messageTypeName(m.type)]++;
    try {
      this.opts.onReceive(m);
    } catch (e) {
      this.log.warn(`node ${this.opts.selfId}: delivering ${messageTypeName(m.type)} from ${m.from} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Common life cycle of an incoming stream: `finish` sends the status once;
   * close() and a cancelled call end it too.
   */
  private track<Req, Res>(
    call: grpc.ServerReadableStream<Req, Res>,
    callback: grpc.sendUnaryData<Res>,
  ): { finish(err: grpc.ServerErrorResponse | null, res?: Res): void; isEnded(): boolean } {
    let ended = false;
    const finish = (err: grpc.ServerErrorResponse | null, res?: Res): void => {
      if (ended) return;
      ended = true;
      this.active.delete(finish);
      if (err) callback(err);
      else callback(null, res);
    };
    this.active.add(finish);
    call.on("cancelled", () => {
      ended = true;
      this.active.delete(finish);
    });
    call.on("error", () => {
      ended = true;
      this.active.delete(finish);
    });
    return { finish, isEnded: () => ended };
  }

  // ------------------------------------------------------------------ Stream

  private handleStream(call: grpc.ServerReadableStream<RaftBatch, StreamSummary>, callback: grpc.sendUnaryData<StreamSummary>): void {
    const peer = call.getPeer();
    const t = this.track(call, callback);
    if (this.closed) return t.finish(statusError(grpc.status.UNAVAILABLE, `node ${this.opts.selfId} is shutting down`));
    const hr = this.checkHeaders(call.metadata);
    if (hr) return t.finish(this.refuse(hr, peer));
    const accepted = new grpc.Metadata();
    accepted.set(HEADER_ACCEPTED, "1");
    call.sendMetadata(accepted);
    let batches = 0;
    let messages = 0;
    call.on("data", (batch: RaftBatch) => {
      if (t.isEnded()) return;
      const env = this.checkEnvelope(batch.clusterId, batch.from, batch.to);
      if (env) return t.finish(this.refuse(env, `node ${batch.from} (${peer})`));
      const out: Message[] = [];
      for (const w of batch.messages) {
        const m = this.convert(w, batch);
        if ("reason" in m) return t.finish(this.refuse(m, `node ${batch.from} (${peer})`));
        if (m.type === MessageType.Snap) {
          return t.finish(this.refuse(this.refusal("malformed", grpc.status.INVALID_ARGUMENT, "Snap messages travel by InstallSnapshot, not Stream"), peer));
        }
        out.push(m);
      }
      batches++;
      messages += out.length;
      for (const m of out) this.deliver(m);
    });
    call.on("end", () => t.finish(null, summary(batches, messages)));
  }

  // ------------------------------------------------------------------ InstallSnapshot

  private handleSnapshot(call: grpc.ServerReadableStream<SnapshotChunk, SnapshotAck>, callback: grpc.sendUnaryData<SnapshotAck>): void {
    const peer = call.getPeer();
    const t = this.track(call, callback);
    if (this.closed) return t.finish(statusError(grpc.status.UNAVAILABLE, `node ${this.opts.selfId} is shutting down`));
    const hr = this.checkHeaders(call.metadata);
    if (hr) return t.finish(this.refuse(hr, peer));
    call.sendMetadata(new grpc.Metadata());
    let head: RaftMessage | undefined;
    let buf: Uint8Array | undefined;
    let received = 0;
    const malformed = (details: string): void => t.finish(this.refuse(this.refusal("malformed", grpc.status.INVALID_ARGUMENT, details), peer));
    call.on("data", (c: SnapshotChunk) => {
      if (t.isEnded()) return;
      const env = this.checkEnvelope(c.clusterId, c.from, c.to);
      if (env) return t.finish(this.refuse(env, `node ${c.from} (${peer})`));
      if (!head) {
        if (!c.message || c.message.type !== WireMessageType.SNAP || !c.message.snapshot) {
          return malformed("the first snapshot chunk must carry the Snap message with its snapshot meta");
        }
        if (c.totalBytes > BigInt(this.maxSnapshotBytes)) {
          return t.finish(
            statusError(grpc.status.RESOURCE_EXHAUSTED, `snapshot of ${c.totalBytes} bytes is larger than the limit of ${this.maxSnapshotBytes} bytes`),
          );
        }
        head = c.message;
        buf = new Uint8Array(Number(c.totalBytes));
      } else if (c.message) {
        return malformed("only the first snapshot chunk may carry the message");
      }
      if (!buf) return malformed("snapshot chunk without a header");
      if (c.offset !== BigInt(received)) return malformed(`snapshot chunk at offset ${c.offset}, expected ${received}`);
      if (received + c.data.byteLength > buf.byteLength) return malformed(`snapshot chunks exceed the announced ${buf.byteLength} bytes`);
      buf.set(c.data, received);
      received += c.data.byteLength;
      if (!c.last) return;
      if (received !== buf.byteLength) return malformed(`snapshot ended at ${received} of ${buf.byteLength} bytes`);
      const m = this.convert(head, c, buf);
      if ("reason" in m) return t.finish(this.refuse(m, `node ${c.from} (${peer})`));
      this.stats.snapshotsReceived++;
      this.stats.snapshotBytesReceived += received;
      this.deliver(m);
      t.finish(null, ack(received, m.snapshot?.meta.index ?? 0));
    });
    call.on("end", () => {
      if (!t.isEnded()) malformed(`snapshot stream ended after ${received} bytes, before its last chunk`);
    });
  }
}

function summary(batches: number, messages: number): StreamSummary {
  return create(StreamSummarySchema, { batches: BigInt(batches), messages: BigInt(messages) });
}

function ack(bytes: number, index: number): SnapshotAck {
  return create(SnapshotAckSchema, { bytes: BigInt(bytes), index: BigInt(index) });
}
