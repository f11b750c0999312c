// The replicated state machine of the simulation: a hash chain over every
// applied entry (index, term, payload). Two nodes agree on the applied prefix
// up to i exactly when their hashes at i agree, and a snapshot is just
// (index, term, hash), so InstallSnapshot is checked as strictly as replay.
import { decodeConfChange } from "../../src/consensus/confchange.js";
import { EntryType, type Entry } from "../../src/consensus/types.js";

/** Hash of the empty state machine (no entry applied). */
export const EMPTY_HASH = "0000000000000000";

/** The payload of an entry as a short printable string (identical entries ⇔ identical digests). */
export function entryDigest(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    try {
      const cc = decodeConfChange(e.data);
      return `cc:${cc.type}:${cc.nodeId}`;
    } catch {
      return `cc:corrupt:${hex(e.data)}`;
    }
  }
  if (e.type !== EntryType.Normal) return `type${e.type as number}:${hex(e.data)}`;
  return e.data.byteLength === 0 ? "noop" : ascii(e.data);
}

function ascii(data: Uint8Array): string {
  let s = "";
  for (const b of data) {
    if (b < 0x20 || b > 0x7e) return `hex:${hex(data)}`;
    s += String.fromCharCode(b);
  }
  return s;
}

function hex(data: Uint8Array): string {
  let s = "";
  for (const b of data) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Two FNV-1a lanes (64 bits) over the previous hash and the entry. */
export function chainHash(prev: string, index: number, term: number, digest: string): string {
  const s = `${prev}|${index}|${term}|${digest}`;
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x00c6a4a7) ^ (b >>> 13);
  }
  return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
}

export interface StateMachineImage {
  index: number;
  term: number;
  hash: string;
}

export const bootstrapHash = (): string => chainHash(EMPTY_HASH, 1, 1, "bootstrap");

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeImage(img: StateMachineImage): Uint8Array {
  return enc.encode(`${img.index}/${img.term}/${img.hash}`);
}

/** Decode snapshot data; an empty snapshot (a fresh joining node) is the empty machine. */
export function decodeImage(data: Uint8Array): StateMachineImage {
  if (data.byteLength === 0) return { index: 0, term: 0, hash: EMPTY_HASH };
  const parts = dec.decode(data).split("/");
  const [i, t, h] = parts;
  if (parts.length !== 3 || i === undefined || t === undefined || h === undefined) {
    throw new Error(`corrupt state-machine snapshot ${JSON.stringify(dec.decode(data))}`);
  }
  return { index: Number(i), term: Number(t), hash: h };
}

export class StateMachine {
  applied: number;
  term: number;
  hash: string;

  constructor(img: StateMachineImage) {
    this.applied = img.index;
    this.term = img.term;
    this.hash = img.hash;
  }

  apply(e: Entry, digest: string): void {
    this.hash = chainHash(this.hash, e.index, e.term, digest);
    this.applied = e.index;
    this.term = e.term;
  }

  restore(img: StateMachineImage): void {
    this.applied = img.index;
    this.term = img.term;
    this.hash = img.hash;
  }

  image(): StateMachineImage {
    return { index: this.applied, term: this.term, hash: this.hash };
  }
}
