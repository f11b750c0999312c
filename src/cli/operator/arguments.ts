// Checks of the commands' own arguments and options, done before anything is
// sent. Each returns the value or throws a UsageError naming the argument.
import { formatHostPort, parseHostPort } from "../../config/address.js";
import { UsageError } from "./errors.js";
import { escapeControl } from "./output.js";

const MAX_NODE_ID = 0xffffffff;
const MAX_INT64 = (1n << 63n) - 1n;

/** A node id: an integer in 1..4294967295. */
export function parseNodeId(raw: string, what = "node id"): number {
  const s = raw.trim();
  if (!/^\d{1,10}$/.test(s) || Number(s) < 1 || Number(s) > MAX_NODE_ID) {
    throw new UsageError([`${what} must be an integer in 1..${MAX_NODE_ID}, got "${raw}"`]);
  }
  return Number(s);
}

/** A revision or lease id: an int64 >= 0. */
export function parseInt64(raw: string, what: string): bigint {
  const s = raw.trim();
  if (!/^\d{1,19}$/.test(s) || BigInt(s) > MAX_INT64) throw new UsageError([`${what} must be an integer in 0..${MAX_INT64}, got "${raw}"`]);
  return BigInt(s);
}

/** A count: an integer in 1..2^53-1. */
export function parsePositiveInt(raw: string, what: string): number {
  const s = raw.trim();
  if (!/^\d{1,16}$/.test(s) || Number(s) < 1 || !Number.isSafeInteger(Number(s))) {
    throw new UsageError([`${what} must be a positive integer, got "${raw}"`]);
  }
  return Number(s);
}

/** A member's Raft address, normalised to host:port. */
export function parseRaftAddress(raw: string): string {
  const a = parseHostPort(raw);
  if (typeof a === "string") throw new UsageError([`raft address ${a}`]);
  return formatHostPort(a);
}

export function parseKey(raw: string): string {
  if (raw === "") throw new UsageError(["the key must not be empty"]);
  return raw;
}

/** `text` as one shell word: in single quotes, each quote inside as '\'' (close, escaped quote, open). */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * The JSON string a value that is not JSON was most likely meant to be: a
 * quoted text whose only fault is raw control characters (a newline from
 * "$(printf ...)") is that text, the control characters escaped; anything
 * else (a bare word: the shell ate the quotes) is the whole input.
 */
export function meantJsonString(raw: string): string {
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) {
    // eslint-disable-next-line no-control-regex
    const escaped = raw.replace(/[\u0000-\u001f]/g, (c) => JSON.stringify(c).slice(1, -1));
    try {
      const text: unknown = JSON.parse(escaped);
      if (typeof text === "string") return JSON.stringify(text);
    } catch {
      // not a quoted string after all
    }
  }
  return JSON.stringify(raw);
}

/**
 * A KV value: JSON text, sent as given. A bare word is the usual slip (the
 * shell ate the quotes), so the message shows the value as a JSON string,
 * quoted for the shell: pasted, it stores the text as a string.
 */
export function parseJsonValue(raw: string): string {
  try {
    JSON.parse(raw);
    return raw;
  } catch (e) {
    const why = escapeControl(e instanceof Error ? e.message : String(e));
    throw new UsageError([`the value must be JSON text: ${why}; to store it as a string, pass the JSON string: ${shellQuote(meantJsonString(raw))}`]);
  }
}
