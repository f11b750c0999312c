// The core reads its stable log through LogStorage (the shape of etcd's Storage).
// MemoryStorage keeps the durable log since the last snapshot in memory; the
// driver fills it only after the WAL has fsynced, so it always mirrors disk.
import { RaftError } from "./errors.js";
import type { ConfState, Entry, HardState, Snapshot } from "./types.js";

export interface LogStorage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), cut at maxBytes (but at least one). */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i; valid for i in [firstIndex()-1, lastIndex()]. */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

export const entryBytes = (e: Entry): number => e.data.byteLength + 24;

/** Keep the longest prefix of `ents` within maxBytes (always at least one entry). */
export function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entryBytes(ents[0]!);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entryBytes(ents[n]!);
    if (size > maxBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

export class MemoryStorage implements LogStorage {
  hardState: HardState = { term: 0, vote: 0, commit: 0 };
  private snap: Snapshot = { meta: { index: 0, term: 0, conf: { voters: [], learners: [] } }, data: new Uint8Array() };
  // ents[0] is a dummy entry standing for the snapshot point (index, term).
  private ents: Entry[] = [{ index: 0, term: 0, type: 0, data: new Uint8Array() }];

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: this.snap.meta.conf };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.offset();
    if (i < off) throw new RaftError("COMPACTED", `index ${i} is compacted (first ${off + 1})`);
    if (i - off >= this.ents.length) throw new RaftError("UNAVAILABLE", `index ${i} is beyond the last index ${this.lastIndex()}`);
    return this.ents[i - off]!.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.offset();
    if (lo <= off) throw new RaftError("COMPACTED", `index ${lo} is compacted (first ${off + 1})`);
    if (hi > this.lastIndex() + 1) throw new RaftError("UNAVAILABLE", `entries up to ${hi - 1} requested, last is ${this.lastIndex()}`);
    return limitSize(this.ents.slice(lo - off, hi - off), maxBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replace the whole log with a snapshot (a follower receiving InstallSnapshot, or a restart). */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index < this.snap.meta.index) throw new RaftError("COMPACTED", `snapshot ${s.meta.index} is older than ${this.snap.meta.index}`);
    this.snap = s;
    this.ents = [{ index: s.meta.index, term: s.meta.term, type: 0, data: new Uint8Array() }];
  }

  /** Record a snapshot the application took at `index` (must be applied already). */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.meta.index) return this.snap;
    if (index > this.lastIndex()) throw new RaftError("UNAVAILABLE", `snapshot index ${index} beyond last index ${this.lastIndex()}`);
    this.snap = { meta: { index, term: this.term(index), conf }, data };
    return this.snap;
  }

  /** Drop entries up to and including `index` (which must be ≤ the applied index). */
  compact(index: number): void {
    const off = this.offset();
    if (index <= off) return;
    if (index > this.lastIndex()) throw new RaftError("UNAVAILABLE", `compact ${index} beyond last index ${this.lastIndex()}`);
    const i = index - off;
    const dummy: Entry = { index: this.ents[i]!.index, term: this.ents[i]!.term, type: 0, data: new Uint8Array() };
    this.ents = [dummy, ...this.ents.slice(i + 1)];
  }

  /** Append durable entries, truncating any conflicting suffix. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return;
    // Entries already covered by the snapshot are skipped.
    const ents = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const offset = ents[0]!.index - this.offset();
    if (offset > this.ents.length) {
      throw new RaftError("UNAVAILABLE", `missing log entry: last ${this.lastIndex()}, appending at ${ents[0]!.index}`);
    }
    this.ents = this.ents.slice(0, offset).concat(ents);
  }
}
