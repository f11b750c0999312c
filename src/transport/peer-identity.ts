// Which node ids a peer's TLS certificate lets it speak for. With mTLS every
// peer's certificate is signed by the cluster's CA, but that alone would let
// any sidecar claim any node id in its streams; so the certificate must also
// name the node:
//
//   - a URI subject alternative name `pgraft://<cluster-id>/node/<id>` (one per
//     id the certificate may speak for; the cluster id is bound too), or,
//   - only when the certificate has no `pgraft://` URI at all, a subject common
//     name `node-<id>` (for CAs that can set nothing else).
//
// The receiving side (peer-server.ts) refuses a stream or snapshot whose
// claimed sender is not among these ids.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import type { NodeId } from "../consensus/types.js";
import { TlsConfigError } from "./tls.js";

/** The URI SAN that names node `id` of cluster `clusterId` in a certificate. */
export function nodeUri(clusterId: string, id: NodeId): string {
  return `pgraft://${clusterId}/node/${id}`;
}

/** What a verified peer certificate says about who the peer is. */
export interface PeerIdentity {
  /** The node ids of this cluster the certificate names. */
  readonly ids: ReadonlySet<NodeId>;
  /** The certificate's naming, for refusal messages ("URI pgraft://c1/node/2", "CN node-2", …). */
  readonly described: string;
}

const PGRAFT_URI = /^pgraft:\/\/([^/]+)\/node\/(\d{1,10})$/;
const NODE_CN = /^node-(\d{1,10})$/;

function nodeId(digits: string): NodeId | undefined {
  const n = Number(digits);
  return Number.isSafeInteger(n) && n >= 1 && n <= 0xffffffff ? n : undefined;
}

/** URI entries of Node's `subjectaltname` text ("DNS:a, URI:pgraft://c/node/2, IP Address:…"). */
function uris(cert: PeerCertificate): string[] {
  const san = cert.subjectaltname ?? "";
  return san
    .split(/, (?=[A-Za-z ]+:)/)
    .filter((e) => e.startsWith("URI:"))
    .map((e) => e.slice(4).replace(/^"(.*)"$/, "$1"));
}

function commonNames(cert: PeerCertificate): string[] {
  const cn = (cert.subject as Partial<Record<string, string | string[]>> | undefined)?.CN;
  if (cn === undefined) return [];
  return Array.isArray(cn) ? cn : [cn];
}

/** The node ids of `clusterId` that a (CA-verified) peer certificate names. */
export function certificateIdentity(cert: PeerCertificate, clusterId: string): PeerIdentity {
  const ids = new Set<NodeId>();
  const pgraftUris = uris(cert).filter((u) => u.startsWith("pgraft://"));
  for (const u of pgraftUris) {
    const m = PGRAFT_URI.exec(u);
    const id = m && m[1] === clusterId ? nodeId(m[2]!) : undefined;
    if (id !== undefined) ids.add(id);
  }
  const cns = commonNames(cert);
  if (pgraftUris.length === 0) {
    for (const cn of cns) {
      const m = NODE_CN.exec(cn);
      const id = m ? nodeId(m[1]!) : undefined;
      if (id !== undefined) ids.add(id);
    }
  }
  const parts = [...pgraftUris.map((u) => `URI ${u}`), ...cns.map((c) => `CN ${c}`)];
  return { ids, described: parts.length ? parts.join(", ") : "no URI SAN or CN" };
}

/** What a certificate names ("node 2 (URI pgraft://c1/node/2)") and what it should carry for `id`. */
function names(identity: PeerIdentity, id: NodeId, clusterId: string): { names: string; expected: string } {
  return {
    names: `${identity.ids.size ? `node ${[...identity.ids].join(", ")}` : `no node of cluster ${clusterId}`} (${identity.described})`,
    expected: `the URI SAN ${nodeUri(clusterId, id)} (or, without pgraft:// URIs, the CN node-${id})`,
  };
}

/** The refusal text when a peer claims `claimed` but its certificate names other ids. */
export function identityMismatch(identity: PeerIdentity, claimed: NodeId, clusterId: string): string {
  const n = names(identity, claimed, clusterId);
  return `the peer claims to be node ${claimed}, but its certificate names ${n.names}; a certificate for node ${claimed} must carry ${n.expected}`;
}

/**
 * A sidecar's own certificate must name its node id, or every peer would refuse
 * it: say so at start, naming the file, rather than in the peers' logs later.
 */
export function checkOwnCertificate(certFile: string, clusterId: string, id: NodeId): void {
  let cert: X509Certificate;
  try {
    // The file was read and checked by loadMtlsFiles; its first certificate is the leaf.
    cert = new X509Certificate(readFileSync(certFile));
  } catch (e) {
    throw new TlsConfigError(`certificate file ${certFile}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const identity = certificateIdentity(cert.toLegacyObject(), clusterId);
  if (identity.ids.has(id)) return;
  const n = names(identity, id, clusterId);
  throw new TlsConfigError(`certificate file ${certFile} names ${n.names}, not this node ${id}: peers would refuse it; it must carry ${n.expected}`);
}
