// The Raft log as the core sees it: stable storage followed by unstable entries,
// plus the commit and apply cursors. (The shape of etcd's raftLog.)
import { RaftError } from "./errors.js";
import { limitSize, type LogStorage } from "./storage.js";
import type { Entry, Snapshot } from "./types.js";
import { Unstable } from "./unstable.js";

export class RaftLog {
  readonly unstable: Unstable;
  committed: number;
  applied: number;

  constructor(readonly storage: LogStorage) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.termOrThrow(this.lastIndex());
  }

  /** Term at i, or undefined when i is compacted or beyond the log. */
  term(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof RaftError && (e.code === "COMPACTED" || e.code === "UNAVAILABLE")) return undefined;
      throw e;
    }
  }

  termOrThrow(i: number): number {
    const t = this.term(i);
    if (t === undefined) throw new RaftError("COMPACTED", `term of index ${i} is not available (first ${this.firstIndex()}, last ${this.lastIndex()})`);
    return t;
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  isUpToDate(lastIndex: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lastIndex >= this.lastIndex());
  }

  /**
   * Append `ents` that follow (index, logTerm) if that entry matches; returns the
   * index of the last new entry, or undefined on a mismatch.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new RaftError("CORRUPT", `entry ${ci} conflicts with a committed entry (committed ${this.committed})`);
      }
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): number {
    const first = ents[0];
    if (!first) return this.lastIndex();
    if (first.index - 1 < this.committed) {
      throw new RaftError("CORRUPT", `append at ${first.index} would overwrite committed entries (committed ${this.committed})`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** The first entry whose term differs from ours (or that we lack), 0 if none. */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /** The largest index ≤ index whose term is ≤ term: where a probe may match. */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = index; ; i--) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
  }

  /** Entries from lo to the end, at most maxBytes (at least one). */
  entries(lo: number, maxBytes: number): Entry[] {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxBytes);
  }

  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new RaftError("COMPACTED", `entries from ${lo} are compacted (first ${first})`);
    if (hi > this.lastIndex() + 1) throw new RaftError("UNAVAILABLE", `slice [${lo}, ${hi}) beyond last ${this.lastIndex()}`);
    let ents: Entry[] = [];
    const off = this.unstable.offset;
    if (lo < off) {
      ents = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      // Storage cut the batch short: do not glue unstable entries after a gap.
      if (ents.length < Math.min(hi, off) - lo) return ents;
    }
    if (hi > off) {
      ents = ents.concat(this.unstable.slice(Math.max(lo, off), hi));
    }
    return limitSize(ents, maxBytes);
  }

  commitTo(c: number): void {
    if (c <= this.committed) return;
    if (c > this.lastIndex()) {
      throw new RaftError("CORRUPT", `commit ${c} is beyond the last index ${this.lastIndex()}`);
    }
    this.committed = c;
  }

  /** The commit rule: only an entry of the leader's own term is committed by counting. */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (i > this.committed || i < this.applied) {
      throw new RaftError("CORRUPT", `applied ${i} out of range [${this.applied}, ${this.committed}]`);
    }
    this.applied = i;
  }

  hasNextCommittedEnts(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  nextCommittedEnts(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed + 1 <= lo) return [];
    return this.slice(lo, this.committed + 1, maxBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }
}
