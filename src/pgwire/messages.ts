// Encoding of backend messages and decoding of frontend message bodies
// (https://www.postgresql.org/docs/15/protocol-message-formats.html).
// Every backend message is Byte1(type) Int32(length including itself) body;
// integers are big-endian; strings are NUL-terminated UTF-8.
import { PgWireError, SqlState, type PgWireErrorFields } from "./errors.js";

export const PROTOCOL_3_0 = 3 << 16;
export const SSL_REQUEST_CODE = (1234 << 16) | 5679;
export const GSSENC_REQUEST_CODE = (1234 << 16) | 5680;
export const CANCEL_REQUEST_CODE = (1234 << 16) | 5678;

/** Growable big-endian byte builder for one message body. */
class Body {
  private buf = Buffer.allocUnsafe(256);
  private len = 0;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  byte(v: number): this {
    this.room(1);
    this.buf[this.len++] = v;
    return this;
  }
  int16(v: number): this {
    this.room(2);
    this.buf.writeInt16BE(v, this.len);
    this.len += 2;
    return this;
  }
  int32(v: number): this {
    this.room(4);
    this.buf.writeInt32BE(v, this.len);
    this.len += 4;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }
  cstring(s: string): this {
    // A NUL inside would cut the string short on the client; PostgreSQL never
    // sends one, so drop it rather than corrupt the framing.
    return this.bytes(Buffer.from(s.includes("\0") ? s.replaceAll("\0", "") : s, "utf8")).byte(0);
  }
  /** The whole message: type byte, length, body. */
  message(type: string): Buffer {
    const out = Buffer.allocUnsafe(5 + this.len);
    out[0] = type.charCodeAt(0);
    out.writeInt32BE(4 + this.len, 1);
    this.buf.copy(out, 5, 0, this.len);
    return out;
  }
}

const body = (): Body => new Body();

// --- authentication ---------------------------------------------------------
export const authenticationOk = (): Buffer => body().int32(0).message("R");
export const authenticationSasl = (mechanisms: string[]): Buffer => {
  const b = body().int32(10);
  for (const m of mechanisms) b.cstring(m);
  return b.byte(0).message("R");
};
export const authenticationSaslContinue = (data: string): Buffer => body().int32(11).bytes(Buffer.from(data, "utf8")).message("R");
export const authenticationSaslFinal = (data: string): Buffer => body().int32(12).bytes(Buffer.from(data, "utf8")).message("R");

// --- session start ------------------------------------------------------------
export const parameterStatus = (name: string, value: string): Buffer => body().cstring(name).cstring(value).message("S");
export const backendKeyData = (pid: number, secret: number): Buffer => body().int32(pid).int32(secret).message("K");
export const readyForQuery = (status: "I" | "T" | "E" = "I"): Buffer => body().byte(status.charCodeAt(0)).message("Z");
export const negotiateProtocolVersion = (version: number, unrecognized: string[]): Buffer => {
  const b = body().int32(version).int32(unrecognized.length);
  for (const o of unrecognized) b.cstring(o);
  return b.message("v");
};

// --- results ------------------------------------------------------------------
export interface ColumnDescription {
  name: string;
  typeOid: number;
}

/**
 * Sizes of the fixed-width types among the common OIDs; clients rarely look at
 * typlen, but -1 (varlena) would be a lie for int4 and friends.
 */
const TYPE_LENGTHS = new Map<number, number>([
  [16, 1], [18, 1], [19, 64], [20, 8], [21, 2], [23, 4], [26, 4], [700, 4], [701, 8],
  [1082, 4], [1083, 8], [1114, 8], [1184, 8], [1186, 16], [2950, 16], [3220, 8],
]);

export const rowDescription = (columns: readonly ColumnDescription[]): Buffer => {
  const b = body().int16(columns.length);
  for (const c of columns) {
    // table OID 0 and attribute 0: not a column of a table; typmod -1; text format.
    b.cstring(c.name).int32(0).int16(0).int32(c.typeOid).int16(TYPE_LENGTHS.get(c.typeOid) ?? -1).int32(-1).int16(0);
  }
  return b.message("T");
};

export const dataRow = (values: readonly (string | null)[]): Buffer => {
  const b = body().int16(values.length);
  for (const v of values) {
    if (v === null) b.int32(-1);
    else {
      const bytes = Buffer.from(v, "utf8");
      b.int32(bytes.length).bytes(bytes);
    }
  }
  return b.message("D");
};

export const commandComplete = (tag: string): Buffer => body().cstring(tag).message("C");
export const emptyQueryResponse = (): Buffer => body().message("I");
export const parseComplete = (): Buffer => body().message("1");
export const bindComplete = (): Buffer => body().message("2");
export const closeComplete = (): Buffer => body().message("3");
export const noData = (): Buffer => body().message("n");
export const portalSuspended = (): Buffer => body().message("s");

// --- errors and notices -------------------------------------------------------
function fieldsMessage(type: "E" | "N", f: PgWireErrorFields, defaultSeverity: string): Buffer {
  const severity = f.severity ?? defaultSeverity;
  // S is the localized severity, V the fixed one (both English here); libpq
  // needs S, C and M.
  const b = body().byte(0x53).cstring(severity).byte(0x56).cstring(severity).byte(0x43).cstring(f.code).byte(0x4d).cstring(f.message);
  if (f.detail !== undefined) b.byte(0x44).cstring(f.detail);
  if (f.hint !== undefined) b.byte(0x48).cstring(f.hint);
  return b.byte(0).message(type);
}
export const errorResponse = (f: PgWireErrorFields): Buffer => fieldsMessage("E", f, "ERROR");
export const noticeResponse = (f: PgWireErrorFields): Buffer => fieldsMessage("N", f, "NOTICE");

// --- decoding frontend message bodies ------------------------------------------

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Strict UTF-8 (the only client encoding spoken here): bad bytes are an error, not U+FFFD. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new PgWireError({ code: SqlState.characterNotInRepertoire, message: 'invalid byte sequence for encoding "UTF8"' });
  }
}

/** Sequential reader over one message body; running off the end is a protocol violation. */
export class BodyReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw malformed();
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  byte(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(n: number): Buffer {
    if (n < 0) throw malformed();
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw malformed();
    const v = decodeUtf8(this.buf.subarray(this.pos, end));
    this.pos = end + 1;
    return v;
  }
  rest(): Buffer {
    return this.bytes(this.remaining);
  }
  /** Messages with trailing garbage are rejected, as PostgreSQL does (pq_getmsgend). */
  end(): void {
    if (this.remaining !== 0) throw malformed();
  }
}

function malformed(): PgWireError {
  return new PgWireError({ code: SqlState.protocolViolation, message: "invalid message format", severity: "FATAL" });
}
