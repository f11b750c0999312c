// The receiving side of Raft between sidecars: the RaftPeer gRPC service.
// Every stream and every batch is checked before anything reaches the Raft
// node: the cluster id must be ours (else FAILED_PRECONDITION, "cluster id
// mismatch: expected X, got Y"), the sender the node its TLS certificate names
// (mTLS; else PERMISSION_DENIED, see peer-identity.ts) and a known peer (else
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
import { certificateIdentity, identityMismatch, type PeerIdentity } from "./peer-identity.js";
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
/** Request header: the sender's own Raft address, so a node that does not know it yet can answer. */
export const HEADER_FROM_ADDRESS = "pgraft-from-address";
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
  /** Whether `id` may send to this node (checked after the cluster id and the certificate). */
  isKnownPeer: (id: NodeId) => boolean;
  /** A checked message from a peer (RaftNode.receive). */
  onReceive: (m: Message) => void;
  /**
   * A peer that passed the checks says where it can be reached (its stream's
   * `pgraft-from-address` header): the transport can answer it even before the
   * catalog knows it (a joining node restored an old snapshot).
   */
  onPeerAddress?: (id: NodeId, address: string) => void;
  /**
   * Refuse peers without a verified TLS certificate (set with mTLS). A peer
   * that presents one is always held to the node ids it names, whatever this says.
   */
  requirePeerCertificate?: boolean;
  stats?: TransportStats;
  logger?: TransportLogger;
  /** Largest snapshot accepted, in bytes (default 2 GiB). */
  maxSnapshotBytes?: number;
}

/** What the checks read of an incoming call (grpc-js does not export its ServerSurfaceCall). */
type IncomingCall = Pick<grpc.ServerReadableStream<unknown, unknown>, "metadata" | "getAuthContext">;

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

  /**
   * Who the peer of `call` is by its TLS certificate: undefined on a plaintext
   * connection (nothing to bind), a refusal when a certificate is required and missing.
   */
  private identityOf(call: IncomingCall): PeerIdentity | Refusal | undefined {
    const cert = call.getAuthContext().sslPeerCertificate;
    if (cert) return certificateIdentity(cert, this.opts.clusterId);
    if (!this.opts.requirePeerCertificate) return undefined;
    return this.refusal("identity_mismatch", grpc.status.UNAUTHENTICATED, "the peer presented no verified TLS certificate (mTLS is required)");
  }

  /** The envelope every batch and chunk carries: cluster, sender (bound to `identity` when given), recipient. */
  private checkEnvelope(clusterId: string, from: NodeId, to: NodeId, identity: PeerIdentity | undefined): Refusal | undefined {
    const { clusterId: ours, selfId } = this.opts;
    if (clusterId !== ours) {
      return this.refusal("cluster_id_mismatch", grpc.status.FAILED_PRECONDITION, `cluster id mismatch: expected ${ours}, got ${clusterId}`);
    }
    if (!Number.isInteger(from) || from < 1 || from > 0xffffffff) {
      return this.refusal("malformed", grpc.status.INVALID_ARGUMENT, `sender ${from} is not a node id (1..4294967295)`);
    }
    if (from === selfId) {
      return this.refusal("unknown_peer", grpc.status.PERMISSION_DENIED, `sender claims node id ${from}, which is this node's own id (two sidecars with one id?)`);
    }
    if (identity && !identity.ids.has(from)) {
      return this.refusal("identity_mismatch", grpc.status.PERMISSION_DENIED, identityMismatch(identity, from, ours));
    }
    if (!this.opts.isKnownPeer(from)) {
      return this.refusal("unknown_peer", grpc.status.PERMISSION_DENIED, `node ${from} is not a known member of cluster ${ours}`);
    }
    if (to !== selfId) {
      return this.refusal("wrong_recipient", grpc.status.FAILED_PRECONDITION, `addressed to node ${to}, but this is node ${selfId} (stale address book?)`);
    }
    return undefined;
  }

  /**
   * The same check on the stream's request headers, before any batch (absent
   * headers are not checked). A peer that passes and says where it listens is
   * reported to onPeerAddress.
   */
  private checkHeaders(md: grpc.Metadata, identity: PeerIdentity | undefined): Refusal | undefined {
    const cluster = md.get(HEADER_CLUSTER_ID)[0];
    const from = md.get(HEADER_FROM)[0];
    const to = md.get(HEADER_TO)[0];
    if (cluster === undefined || from === undefined || to === undefined) return undefined;
    if (!/^\d{1,10}$/.test(String(from))) {
      return this.refusal("malformed", grpc.status.INVALID_ARGUMENT, `header ${HEADER_FROM} is not a node id: ${JSON.stringify(String(from).slice(0, 100))}`);
    }
    const fromId = Number(String(from));
    const r = this.checkEnvelope(String(cluster), fromId, Number(String(to)), identity);
    if (r) return r;
    const addr = md.get(HEADER_FROM_ADDRESS)[0];
    if (addr === undefined) return undefined;
    if (!isHostPort(String(addr))) return this.refusal("malformed", grpc.status.INVALID_ARGUMENT, `header ${HEADER_FROM_ADDRESS} is not a host:port: ${JSON.stringify(String(addr).slice(0, 100))}`);
    this.opts.onPeerAddress?.(fromId, String(addr));
    return undefined;
  }

  /** The identity check and the header check of a new call. */
  private checkCall(call: IncomingCall): { identity: PeerIdentity | undefined } | Refusal {
    const identity = this.identityOf(call);
    if (identity && "reason" in identity) return identity;
    return this.checkHeaders(call.metadata, identity) ?? { identity };
  }

  /** A message inside a batch (or the head of a snapshot) must agree with its envelope. */
  private convert(w: RaftMessage, env: { clusterId: string; from: NodeId; to: NodeId }, data?: Uint8Array): Message | Refusal {
    if (w.clusterId !== env.clusterId || (w.from !== env.from && !isRelayed(w)) || w.to !== env.to) {
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
    const checked = this.checkCall(call);
    if ("reason" in checked) return t.finish(this.refuse(checked, peer));
    const { identity } = checked;
    const accepted = new grpc.Metadata();
    accepted.set(HEADER_ACCEPTED, "1");
    call.sendMetadata(accepted);
    let batches = 0;
    let messages = 0;
    call.on("data", (batch: RaftBatch) => {
      if (t.isEnded()) return;
      const env = this.checkEnvelope(batch.clusterId, batch.from, batch.to, identity);
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
    const checked = this.checkCall(call);
    if ("reason" in checked) return t.finish(this.refuse(checked, peer));
    const { identity } = checked;
    call.sendMetadata(new grpc.Metadata());
    let head: RaftMessage | undefined;
    let buf: Uint8Array | undefined;
    let received = 0;
    const malformed = (details: string): void => t.finish(this.refuse(this.refusal("malformed", grpc.status.INVALID_ARGUMENT, details), peer));
    call.on("data", (c: SnapshotChunk) => {
      if (t.isEnded()) return;
      const env = this.checkEnvelope(c.clusterId, c.from, c.to, identity);
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

/**
 * A request a follower passes on to its leader keeps its requester in `from`
 * (the leader answers the requester directly, as in etcd): a ReadIndex, or a
 * TransferLeader (whose `from` is the transferee), sent term-less. A node that
 * thinks a follower leads sends it such a request, and that follower relays it
 * — so these alone may name another sender than their batch. The batch's
 * sender is still the authenticated one; a relayed `from` only decides where
 * the leader sends a read's answer, or whom it hands leadership to (which any
 * member may ask for anyway).
 */
function isRelayed(w: RaftMessage): boolean {
  return w.term === 0n && w.from !== 0 && (w.type === WireMessageType.READ_INDEX || w.type === WireMessageType.TRANSFER_LEADER);
}

/** "host:port", "[v6]:port": what a sidecar advertises (a dialable address, never more than 255 characters). */
function isHostPort(s: string): boolean {
  return s.length <= 255 && /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/.test(s);
}

function summary(batches: number, messages: number): StreamSummary {
  return create(StreamSummarySchema, { batches: BigInt(batches), messages: BigInt(messages) });
}

function ack(bytes: number, index: number): SnapshotAck {
  return create(SnapshotAckSchema, { bytes: BigInt(bytes), index: BigInt(index) });
}
