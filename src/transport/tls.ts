// Credentials for the sidecars' gRPC: mutual TLS from a CA, a certificate and
// its key (each sidecar is both a server and a client of its peers), or
// plaintext only when asked for by name. Files are read and checked here, so a
// wrong path or a malformed PEM is an error naming the file, not an opaque
// handshake failure later.
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";

export interface MtlsFiles {
  /** PEM file of the CA (or CAs) that signs every sidecar's certificate. */
  caFile: string;
  /** PEM file of this sidecar's certificate (chain), used as server and client. */
  certFile: string;
  /** PEM file of the certificate's private key (unencrypted). */
  keyFile: string;
  /**
   * Client side: the name to verify in the server's certificate instead of the
   * host of the address dialled (e.g. one name shared by every sidecar's cert).
   */
  serverName?: string;
}

/** mTLS, or plaintext only when `insecure: true` is said explicitly. */
export type TlsConfig = ({ insecure?: false } & MtlsFiles) | { insecure: true };

export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TlsConfigError";
  }
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function readPem(path: string, what: string): Buffer {
  if (!path) throw new TlsConfigError(`no ${what} file given`);
  try {
    return readFileSync(path);
  } catch (e) {
    throw new TlsConfigError(`cannot read ${what} file ${path}: ${reason(e)}`);
  }
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCertificates(pem: Buffer, path: string, what: string): X509Certificate[] {
  const blocks = pem.toString("utf8").match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) throw new TlsConfigError(`${what} file ${path} holds no PEM certificate (expected "-----BEGIN CERTIFICATE-----")`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new TlsConfigError(`${what} file ${path}: certificate #${i + 1} is malformed: ${reason(e)}`);
    }
  });
}

function checkValidity(cert: X509Certificate, path: string, what: string): void {
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) throw new TlsConfigError(`${what} file ${path}: certificate ${cert.subject.replace(/\n/g, ", ")} expired on ${cert.validTo}`);
  if (Date.parse(cert.validFrom) > now) {
    throw new TlsConfigError(`${what} file ${path}: certificate ${cert.subject.replace(/\n/g, ", ")} is not valid before ${cert.validFrom}`);
  }
}

interface LoadedMtls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Read and check the three files; every error names the file. */
export function loadMtlsFiles(files: MtlsFiles): LoadedMtls {
  const ca = readPem(files.caFile, "CA");
  for (const c of parseCertificates(ca, files.caFile, "CA")) {
    checkValidity(c, files.caFile, "CA");
    if (!c.ca) throw new TlsConfigError(`CA file ${files.caFile}: certificate ${c.subject.replace(/\n/g, ", ")} is not a CA certificate`);
  }
  const cert = readPem(files.certFile, "certificate");
  const chain = parseCertificates(cert, files.certFile, "certificate");
  const leaf = chain[0];
  if (!leaf) throw new TlsConfigError(`certificate file ${files.certFile} holds no certificate`);
  checkValidity(leaf, files.certFile, "certificate");
  const key = readPem(files.keyFile, "key");
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(key);
  } catch (e) {
    throw new TlsConfigError(`key file ${files.keyFile} is not a valid unencrypted PEM private key: ${reason(e)}`);
  }
  if (!leaf.checkPrivateKey(keyObject)) {
    throw new TlsConfigError(`certificate file ${files.certFile} does not match the private key in ${files.keyFile}`);
  }
  return { ca, cert, key };
}

/**
 * Server credentials: with mTLS the server presents its certificate and
 * requires every client to present one signed by the CA.
 */
export function serverCredentials(cfg: TlsConfig): grpc.ServerCredentials {
  if (cfg.insecure === true) return grpc.ServerCredentials.createInsecure();
  const { ca, cert, key } = loadMtlsFiles(cfg);
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

/**
 * Client credentials: with mTLS the client verifies the server's certificate
 * against the CA (and its name: the address's host, or `serverName`) and
 * presents its own certificate.
 */
export function clientCredentials(cfg: TlsConfig): grpc.ChannelCredentials {
  if (cfg.insecure === true) return grpc.credentials.createInsecure();
  const { ca, cert, key } = loadMtlsFiles(cfg);
  const serverName = cfg.serverName;
  const verify: grpc.VerifyOptions = serverName
    ? { checkServerIdentity: (_host: string, peer: PeerCertificate) => checkServerIdentity(serverName, peer) }
    : {};
  return grpc.credentials.createSsl(ca, key, cert, verify);
}
