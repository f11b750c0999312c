// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it
// (https://www.postgresql.org/docs/15/sasl-authentication.html): no channel
// binding, the user name inside the SCRAM messages is ignored (the startup
// packet's "user" counts), verifiers stored in PostgreSQL's own format so one
// made by `makeScramVerifier` or copied from pg_authid.rolpassword both work.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { PgWireError, SqlState } from "./errors.js";

export const SCRAM_MECHANISM = "SCRAM-SHA-256";
const KEY_LEN = 32;
const SALT_LEN = 16;
const NONCE_BYTES = 18;

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

const hmac = (key: Uint8Array, data: string | Uint8Array): Buffer => createHmac("sha256", key).update(data).digest();
const sha256 = (data: Uint8Array): Buffer => createHash("sha256").update(data).digest();

/** `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts), as in pg_authid. */
export function makeScramVerifier(password: string, iterations = 4096): string {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError("SCRAM iterations must be a positive integer");
  return scramVerifierWithSalt(password, randomBytes(SALT_LEN), iterations);
}

/** makeScramVerifier with a chosen salt (test vectors). */
export function scramVerifierWithSalt(password: string, salt: Buffer, iterations: number): string {
  const salted = pbkdf2Sync(saslprep(password), salt, iterations, KEY_LEN, "sha256");
  const storedKey = sha256(hmac(salted, "Client Key"));
  const serverKey = hmac(salted, "Server Key");
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function parseScramVerifier(text: string): ScramVerifier | undefined {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(text);
  if (!m) return undefined;
  const [, iter, salt, stored, server] = m as unknown as [string, string, string, string, string];
  if (![salt, stored, server].every((s) => B64.test(s))) return undefined;
  const v = { iterations: Number(iter), salt: Buffer.from(salt, "base64"), storedKey: Buffer.from(stored, "base64"), serverKey: Buffer.from(server, "base64") };
  if (v.iterations < 1 || v.salt.length === 0 || v.storedKey.length !== KEY_LEN || v.serverKey.length !== KEY_LEN) return undefined;
  return v;
}

// --- SASLprep (RFC 4013), the subset that PostgreSQL's pg_saslprep applies ----
// PostgreSQL prepares the password before hashing and, when the result would be
// prohibited, falls back to the raw password; libpq does the same client-side.
// Doing the same here keeps verifiers for non-ASCII passwords interchangeable.
// Not done: the bidirectional-text and unassigned-code-point checks (only
// passwords mixing right-to-left and left-to-right scripts could differ).
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
// eslint-disable-next-line no-misleading-character-class -- these are exactly the combining characters RFC 3454 B.1 strips
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
// RFC 3454 C.1.2-C.9: spaces, controls, private use, non-characters, surrogates,
// ideographic description, bidi/deprecated format characters, tagging.
const PROHIBITED =
  // eslint-disable-next-line no-control-regex, no-misleading-character-class -- controls and combining marks are what this matches
  /[\u0000-\u001F\u007F-\u009F\u00A0\u0340\u0341\u06DD\u070F\u1680\u180E\u2000-\u200F\u2028-\u202F\u205F-\u2063\u206A-\u206F\u2FF0-\u2FFB\u3000\uD800-\uDFFF\uE000-\uF8FF\uFDD0-\uFDEF\uFEFF\uFFF9-\uFFFF]|[\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\u{F0000}-\u{10FFFF}]/u;

export function saslprep(password: string): string {
  // eslint-disable-next-line no-control-regex -- "pure ASCII" includes control characters
  if (/^[\u0000-\u007F]*$/.test(password)) return password;
  const prepared = password.replace(NON_ASCII_SPACE, " ").replace(MAPPED_TO_NOTHING, "").normalize("NFKC");
  if (prepared === "" || PROHIBITED.test(prepared)) return password;
  return prepared;
}

// --- the server side of one exchange -------------------------------------------

function malformed(detail: string): PgWireError {
  return new PgWireError({ code: SqlState.protocolViolation, message: "malformed SCRAM message", detail, severity: "FATAL" });
}

/** Printable ASCII except ',' (RFC 5802 "printable"). */
const NONCE = /^[\x21-\x2B\x2D-\x7E]+$/;

/**
 * Stand-in verifier for an unknown user (or an unusable stored one): the
 * exchange runs to the end and fails exactly like a wrong password, and the
 * salt is stable per user name, so a client cannot tell which users exist.
 */
const mockSecret = randomBytes(32);
function mockVerifier(user: string): ScramVerifier {
  return { iterations: 4096, salt: hmac(mockSecret, `salt:${user}`).subarray(0, SALT_LEN), storedKey: randomBytes(KEY_LEN), serverKey: randomBytes(KEY_LEN) };
}

export class ScramExchange {
  private readonly verifier: ScramVerifier;
  private readonly real: boolean;
  private clientFirstBare = "";
  private serverFirst = "";
  private cbindFlag = "";
  private nonce = "";

  /**
   * @param verifier the user's stored verifier, or undefined when there is none.
   * @param serverNonce fixed only by tests (RFC 7677's example); random otherwise.
   */
  constructor(
    user: string,
    verifier: ScramVerifier | undefined,
    private readonly serverNonce = randomBytes(NONCE_BYTES).toString("base64"),
  ) {
    this.real = verifier !== undefined;
    this.verifier = verifier ?? mockVerifier(user);
  }

  /** client-first-message → server-first-message. */
  start(clientFirst: string): string {
    // gs2-header: cbind-flag "," [authzid] ","
    const m = /^([^,]*),([^,]*),(.*)$/s.exec(clientFirst);
    if (!m) throw malformed("The client's first message lacks a GS2 header.");
    const [, flag, authzid, bare] = m as unknown as [string, string, string, string];
    if (flag.startsWith("p=")) {
      throw new PgWireError({
        code: SqlState.protocolViolation,
        message: "channel binding is not supported by this server",
        detail: `The client requested channel binding (${flag.slice(2)}), but only ${SCRAM_MECHANISM} without channel binding is offered.`,
        hint: "Connect with channel_binding=disable or channel_binding=prefer.",
        severity: "FATAL",
      });
    }
    // "y": the client could bind but believes we cannot, which is true (we never
    // offer SCRAM-SHA-256-PLUS), so it is no sign of a downgrade.
    if (flag !== "n" && flag !== "y") throw malformed(`Unexpected channel-binding flag "${flag}".`);
    if (authzid !== "") {
      throw new PgWireError({ code: SqlState.featureNotSupported, message: "client uses authorization identity, but it is not supported", severity: "FATAL" });
    }
    const attrs = bare.split(",");
    if (attrs[0]?.startsWith("m=")) {
      throw new PgWireError({ code: SqlState.featureNotSupported, message: "client requires an unsupported SCRAM extension", severity: "FATAL" });
    }
    if (!attrs[0]?.startsWith("n=")) throw malformed('Expected attribute "n" (user name).');
    const clientNonce = attrs[1]?.startsWith("r=") ? attrs[1].slice(2) : "";
    if (!NONCE.test(clientNonce)) throw malformed('Expected attribute "r" (nonce) of printable characters.');

    this.cbindFlag = flag;
    this.clientFirstBare = bare;
    this.nonce = clientNonce + this.serverNonce;
    this.serverFirst = `r=${this.nonce},s=${this.verifier.salt.toString("base64")},i=${this.verifier.iterations}`;
    return this.serverFirst;
  }

  /**
   * client-final-message → server-final-message when the proof is right,
   * undefined when it is not (wrong password or unknown user: same answer).
   */
  finish(clientFinal: string): string | undefined {
    const proofAt = clientFinal.lastIndexOf(",p=");
    if (proofAt < 0) throw malformed('Expected attribute "p" (proof) at the end.');
    const withoutProof = clientFinal.slice(0, proofAt);
    const proofB64 = clientFinal.slice(proofAt + 3);
    const attrs = withoutProof.split(",");
    // c = base64 of the gs2 header we saw: "n,," → "biws", "y,," → "eSws".
    const expectedC = Buffer.from(`${this.cbindFlag},,`).toString("base64");
    if (attrs[0] !== `c=${expectedC}`) throw malformed("Unexpected channel-binding attribute in the client's final message.");
    if (attrs[1] !== `r=${this.nonce}`) throw malformed("The nonce in the client's final message does not match.");
    if (!B64.test(proofB64)) throw malformed("The proof is not base64.");
    const proof = Buffer.from(proofB64, "base64");
    if (proof.length !== KEY_LEN) throw malformed("The proof has the wrong length.");

    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const clientSignature = hmac(this.verifier.storedKey, authMessage);
    const clientKey = Buffer.alloc(KEY_LEN);
    for (let i = 0; i < KEY_LEN; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
    const ok = timingSafeEqual(sha256(clientKey), this.verifier.storedKey);
    if (!ok || !this.real) return undefined;
    return `v=${hmac(this.verifier.serverKey, authMessage).toString("base64")}`;
  }
}
