// Counters of the Raft transport, plain numbers the daemon exports to
// Prometheus. One object may be shared by the sending side (GrpcPeerTransport)
// and the receiving side (RaftPeerService) of a sidecar.
import { MESSAGE_TYPE_NAMES, type MessageTypeName } from "./convert.js";

/**
 * Why an incoming stream (or snapshot) was refused. identity_mismatch: the node
 * id the peer claims is not one its TLS certificate names (or, with mTLS, it
 * presented no certificate).
 */
export type RefusalReason = "cluster_id_mismatch" | "identity_mismatch" | "unknown_peer" | "wrong_recipient" | "malformed";
export const REFUSAL_REASONS: readonly RefusalReason[] = ["cluster_id_mismatch", "identity_mismatch", "unknown_peer", "wrong_recipient", "malformed"];

export interface TransportStats {
  /** Messages written to a peer's stream (Snap: snapshot transfers started), by type. */
  sent: Record<MessageTypeName, number>;
  /** Messages received and handed to the Raft node, by type. */
  received: Record<MessageTypeName, number>;
  /** Messages dropped on the way out (queue full, peer disconnected or unknown, failed stream), by type. */
  dropped: Record<MessageTypeName, number>;
  /** Streams and snapshots from peers that this node refused, by reason. */
  refused: Record<RefusalReason, number>;
  /** This node's streams that a peer refused, by the reason it gave ("other": a reason this version does not know). */
  refusedByPeer: Record<RefusalReason | "other", number>;
  /** Outbound streams opened again after one ended or failed. */
  reconnects: number;
  /** Outbound streams that ended with an error (refusals included). */
  streamFailures: number;
  /** Messages dropped by the test fault hook. */
  faultDropped: number;
  /** Messages delayed by the test fault hook. */
  faultDelayed: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  snapshotsReceived: number;
  snapshotBytesSent: number;
  snapshotBytesReceived: number;
}

function perType(): Record<MessageTypeName, number> {
  return Object.fromEntries(MESSAGE_TYPE_NAMES.map((n) => [n, 0])) as Record<MessageTypeName, number>;
}

export function newTransportStats(): TransportStats {
  return {
    sent: perType(),
    received: perType(),
    dropped: perType(),
    refused: { cluster_id_mismatch: 0, identity_mismatch: 0, unknown_peer: 0, wrong_recipient: 0, malformed: 0 },
    refusedByPeer: { cluster_id_mismatch: 0, identity_mismatch: 0, unknown_peer: 0, wrong_recipient: 0, malformed: 0, other: 0 },
    reconnects: 0,
    streamFailures: 0,
    faultDropped: 0,
    faultDelayed: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsReceived: 0,
    snapshotBytesSent: 0,
    snapshotBytesReceived: 0,
  };
}

export function isRefusalReason(s: string): s is RefusalReason {
  return (REFUSAL_REASONS as readonly string[]).includes(s);
}
