// A durable, segmented write-ahead log for the Raft core's entries and hard state.
//
// On disk: a directory of segment files `<seq hex16>-<first index hex16>.wal`
// (first index = the log's last index + 1 when the segment was created, 0 if
// unknown), so lexical order is creation order. Each segment starts with a SegmentHeader
// record and the then-current HardState (so deleting older segments never loses
// the latest HardState), followed by Entry / HardState / SnapshotMark records.
// A later Entry record for index i replaces i and everything after it: that is
// how a conflicting suffix is truncated without rewriting files, and why replay
// must see the segments in order.
//
// Durability: save() resolves only after the fsync that covers its bytes.
// Saves that arrive while an fsync runs wait for the next batch, which writes
// them all with one write and covers them with one fsync (group commit).
import { join } from "node:path";
import { RaftError } from "../errors.js";
import type { Entry, HardState } from "../types.js";
import { nodeFs, type FsHandle, type FsLayer } from "./fs-layer.js";
import { decodeRecord, encodeRecords, isRecordAt, RecordType, type WalRecord } from "./record.js";

export interface WalOptions {
  dir: string;
  /** Rotate to a new segment once the current one reaches this size. Default 64 MiB. */
  segmentBytes?: number;
  fs?: FsLayer;
  onWarning?: (msg: string) => void;
}

export interface WalRecovery {
  /** {term:0,vote:0,commit:0} if none was ever saved. */
  hardState: HardState;
  /** Contiguous, ascending, conflicting suffixes already resolved. */
  entries: Entry[];
  /** The last snapshot mark still on disk: the log was replaced by a snapshot at (index, term). */
  snapshot?: { index: number; term: number };
  /** Set when a torn or corrupt tail of the last segment was cut off (also passed to onWarning). */
  tornTail?: { file: string; offset: number; droppedBytes: number };
}

export interface WalStats {
  /** File and directory fsyncs issued. */
  fsyncs: number;
  bytesWritten: number;
  /** Segment files currently on disk. */
  segments: number;
  /** save() calls that completed durably. */
  saves: number;
}

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const ZERO_HS: HardState = { term: 0, vote: 0, commit: 0 };
const SEGMENT_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

const hex16 = (n: number): string => n.toString(16).padStart(16, "0");
export const segmentName = (seq: number, firstIndex: number): string => `${hex16(seq)}-${hex16(firstIndex)}.wal`;

const sameHs = (a: HardState, b: HardState): boolean => a.term === b.term && a.vote === b.vote && a.commit === b.commit;

const corrupt = (file: string, offset: number, why: string): RaftError =>
  new RaftError("CORRUPT", `${file}: corrupt record at offset ${offset}: ${why}`);

interface SegmentInfo {
  seq: number;
  name: string;
  /** Highest entry (or snapshot mark) index written to the segment; 0 if none. */
  maxIndex: number;
}

interface OpenSegment {
  info: SegmentInfo;
  handle: FsHandle;
  size: number;
}

interface Pending {
  bytes: Uint8Array;
  maxIndex: number;
  /** Logical last index once this save is applied (undefined: unknown, fresh log). */
  lastAfter: number | undefined;
  hardState: HardState | undefined;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * The log as replay (and save validation) sees it: the entries since the last
 * snapshot mark, or, when there are none, the index the log is known to end at.
 */
class LogState {
  entries: Entry[] = [];
  /** Last index when `entries` is empty; undefined = unknown (fresh log or everything released). */
  base: number | undefined;

  get last(): number | undefined {
    const e = this.entries[this.entries.length - 1];
    return e ? e.index : this.base;
  }

  /** Apply an entry; returns an error message if it would leave a gap. */
  append(e: Entry): string | undefined {
    const last = this.last;
    if (last !== undefined && e.index > last + 1) return `entry ${e.index} does not follow the last index ${last}: entries are missing`;
    const first = this.entries[0]?.index;
    if (first !== undefined && e.index >= first) this.entries.length = e.index - first;
    else this.entries.length = 0; // truncation below everything we still hold
    this.entries.push(e);
    return undefined;
  }

  mark(index: number): void {
    this.entries = [];
    this.base = index;
  }
}

export class Wal {
  readonly stats: WalStats = { fsyncs: 0, bytesWritten: 0, segments: 0, saves: 0 };

  private readonly fs: FsLayer;
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly warn: (msg: string) => void;
  /** Segments on disk, oldest first; the last one is `cur`. */
  private readonly segments: SegmentInfo[];
  private cur: OpenSegment;

  // Logical state: what the log will be once every accepted save is written.
  private logicalLast: number | undefined;
  private hardState: HardState;
  // Writer state: what has been written by completed batches.
  private writerLast: number | undefined;
  private writerHs: HardState;

  private queue: Pending[] = [];
  private writer: Promise<void> | undefined;
  private releaseChain: Promise<void> = Promise.resolve();
  private failure: unknown;
  private closing: Promise<void> | undefined;

  private constructor(opts: Required<Omit<WalOptions, "onWarning">> & { warn: (msg: string) => void }, segments: SegmentInfo[], cur: OpenSegment, lastIndex: number | undefined, hs: HardState) {
    this.fs = opts.fs;
    this.dir = opts.dir;
    this.segmentBytes = opts.segmentBytes;
    this.warn = opts.warn;
    this.segments = segments;
    this.cur = cur;
    this.logicalLast = this.writerLast = lastIndex;
    this.hardState = this.writerHs = hs;
    this.stats.segments = segments.length;
  }

  /**
   * The index the log ends at once every accepted save is written (last entry,
   * or the snapshot mark / segment start when there are no entries); undefined
   * for a log that has never known an index. The next save's first entry may
   * not be above lastIndex + 1.
   */
  get lastIndex(): number | undefined {
    return this.logicalLast;
  }

  /** Open (creating `dir` if needed) and recover the log. Throws RaftError CORRUPT on damage that is not a torn tail. */
  static async open(opts: WalOptions): Promise<{ wal: Wal; recovery: WalRecovery }> {
    const fs = opts.fs ?? nodeFs;
    const dir = opts.dir;
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) {
      throw new RaftError("INVALID_ARGUMENT", `segmentBytes must be a positive integer, got ${segmentBytes}`);
    }
    const warn = opts.onWarning ?? (() => {});
    let fsyncs = 0;
    await fs.mkdirp(dir);

    const found: { seq: number; name: string }[] = [];
    for (const name of (await fs.readdir(dir)).sort()) {
      const m = SEGMENT_RE.exec(name);
      if (m) found.push({ seq: parseInt(m[1]!, 16), name });
    }
    // Segments are only ever removed from the front (releaseTo), so any hole in
    // the sequence means a file was lost: replaying around it could resurrect
    // entries the missing segment truncated.
    for (let k = 1; k < found.length; k++) {
      const prev = found[k - 1]!;
      const s = found[k]!;
      if (s.seq !== prev.seq + 1) {
        throw corrupt(join(dir, s.name), 0, `segment sequence jumps from ${prev.seq} (${prev.name}) to ${s.seq}: a segment is missing or duplicated`);
      }
    }

    const log = new LogState();
    let hs: HardState = ZERO_HS;
    let snapshot: { index: number; term: number } | undefined;
    let tornTail: WalRecovery["tornTail"];
    const infos: SegmentInfo[] = [];
    let lastSize = 0;
    let lastHasHs = false;
    let nextSeq = 1;

    for (let k = 0; k < found.length; k++) {
      const { seq, name } = found[k]!;
      const path = join(dir, name);
      const isLast = k === found.length - 1;
      const data = await fs.readFile(path);
      const info: SegmentInfo = { seq, name, maxIndex: 0 };
      let off = 0;
      let sawHeader = false;
      let hasHs = false;
      let torn: { reason: string } | undefined;
      for (;;) {
        const r = decodeRecord(data, off);
        if (r.kind === "end") break;
        if (r.kind === "invalid") throw corrupt(path, off, r.reason);
        if (r.kind === "torn") {
          // Only the last segment can have been mid-write at a crash: rotation
          // happens after the previous segment's last batch was fsynced.
          if (!isLast) throw corrupt(path, off, `${r.reason} (in a segment that is not the last)`);
          // A torn write leaves nothing valid behind it. A checksummed record
          // after the bad one means damage inside the log, which we must not cut away.
          const later = findRecordAfter(data, off);
          if (later !== undefined) throw corrupt(path, off, `${r.reason}; a valid record follows at offset ${later}`);
          torn = { reason: r.reason };
          break;
        }
        const rec = r.record;
        if (!sawHeader) {
          if (rec.type !== RecordType.SegmentHeader) throw corrupt(path, off, "segment does not start with a segment header");
          if (rec.seq !== seq) throw corrupt(path, off, `segment header says sequence ${rec.seq}, file name says ${seq}`);
          // The header records the log's last index when the segment was created.
          if (rec.firstIndex > 0) {
            const last = log.last;
            if (last === undefined) log.base = rec.firstIndex - 1;
            else if (last !== rec.firstIndex - 1) {
              throw corrupt(path, off, `segment was created after index ${rec.firstIndex - 1} but the log before it ends at ${last}: entries are missing`);
            }
          }
          sawHeader = true;
        } else {
          switch (rec.type) {
            case RecordType.SegmentHeader:
              throw corrupt(path, off, "unexpected segment header inside a segment");
            case RecordType.Entry: {
              const err = log.append(rec.entry);
              if (err) throw corrupt(path, off, err);
              info.maxIndex = Math.max(info.maxIndex, rec.entry.index);
              break;
            }
            case RecordType.HardState:
              hs = rec.hardState;
              hasHs = true;
              break;
            case RecordType.SnapshotMark:
              log.mark(rec.index);
              snapshot = { index: rec.index, term: rec.term };
              info.maxIndex = Math.max(info.maxIndex, rec.index);
              break;
          }
        }
        off = r.next;
      }

      if (!sawHeader) {
        if (!isLast) throw corrupt(path, 0, "segment has no header");
        // Creation of this segment was interrupted before it became durable:
        // nothing in it was ever acknowledged. Drop the whole file.
        tornTail = { file: path, offset: 0, droppedBytes: data.byteLength };
        warn(`${path}: incomplete new segment (${data.byteLength} bytes, ${torn?.reason ?? "empty"}); removing it`);
        await fs.unlink(path);
        await fs.fsyncDir(dir);
        fsyncs++;
        nextSeq = seq;
        continue;
      }
      if (torn) {
        tornTail = { file: path, offset: off, droppedBytes: data.byteLength - off };
        warn(`${path}: torn tail at offset ${off} (${torn.reason}); truncating ${data.byteLength - off} bytes`);
        // Cut the tail so new records follow the good prefix directly; the
        // fsync below makes the truncation durable before anything is appended.
        await fs.truncate(path, off);
      }
      infos.push(info);
      lastSize = off;
      lastHasHs = hasHs;
      nextSeq = seq + 1;
    }

    const lastIndex = log.last;
    let cur: OpenSegment;
    let bytesWritten = 0;
    const lastInfo = infos[infos.length - 1];
    if (lastInfo) {
      const handle = await fs.open(join(dir, lastInfo.name), "append");
      cur = { info: lastInfo, handle, size: lastSize };
      // A segment whose initial HardState record was torn away gets one now, so
      // releasing older segments can never lose the latest HardState.
      if (!lastHasHs) {
        const b = encodeRecords([{ type: RecordType.HardState, hardState: hs }]);
        await fs.write(handle, b);
        cur.size += b.byteLength;
        bytesWritten += b.byteLength;
      }
      if (!lastHasHs || tornTail) {
        await fs.fsync(handle);
        fsyncs++;
      }
    } else {
      const info: SegmentInfo = { seq: nextSeq, name: segmentName(nextSeq, lastIndex === undefined ? 0 : lastIndex + 1), maxIndex: 0 };
      const { handle, size } = await createSegment(fs, dir, info, lastIndex, hs);
      cur = { info, handle, size };
      infos.push(info);
      bytesWritten += size;
      fsyncs += 2;
    }

    const wal = new Wal({ dir, segmentBytes, fs, warn }, infos, cur, lastIndex, hs);
    wal.stats.fsyncs = fsyncs;
    wal.stats.bytesWritten = bytesWritten;
    const recovery: WalRecovery = { hardState: { ...hs }, entries: log.entries };
    if (snapshot) recovery.snapshot = snapshot;
    if (tornTail) recovery.tornTail = tornTail;
    return { wal, recovery };
  }

  /**
   * Durably append entries and/or a hard state; resolves after the fsync that covers them.
   * Entries whose first index is <= the last written index replace the log from that index on.
   * `snapshot` (written first) records that the log was replaced by a snapshot at
   * (index, term): the log is then empty and the next entry must be index + 1.
   * Rejects with INVALID_ARGUMENT (writing nothing) if the entries would leave a
   * gap or are not consecutive; with STOPPED after close() or an I/O failure.
   */
  save(entries: Entry[], hardState?: HardState, snapshot?: { index: number; term: number }): Promise<void> {
    if (this.closing) return Promise.reject(new RaftError("STOPPED", "the WAL is closed"));
    if (this.failure !== undefined) return Promise.reject(this.stoppedByFailure());
    const recs: WalRecord[] = [];
    let last = this.logicalLast;
    let maxIndex = 0;
    let hsToWrite: HardState | undefined;
    let bytes: Uint8Array;
    try {
      if (snapshot) {
        recs.push({ type: RecordType.SnapshotMark, index: snapshot.index, term: snapshot.term });
        last = maxIndex = snapshot.index;
      }
      for (let k = 0; k < entries.length; k++) {
        const e = entries[k]!;
        if (!Number.isSafeInteger(e.index) || e.index < 1) throw new RaftError("INVALID_ARGUMENT", `entry index must be a positive integer, got ${e.index}`);
        if (k === 0) {
          if (last !== undefined && e.index > last + 1) {
            throw new RaftError("INVALID_ARGUMENT", `entries start at ${e.index} but the log ends at ${last}: that would leave a gap`);
          }
        } else if (e.index !== entries[k - 1]!.index + 1) {
          throw new RaftError("INVALID_ARGUMENT", `entries are not consecutive: ${entries[k - 1]!.index} then ${e.index}`);
        }
        recs.push({ type: RecordType.Entry, entry: e });
        last = e.index;
        maxIndex = Math.max(maxIndex, e.index);
      }
      // An unchanged hard state is already durable: skip the record.
      if (hardState && !sameHs(hardState, this.hardState)) {
        hsToWrite = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
        recs.push({ type: RecordType.HardState, hardState: hsToWrite });
      }
      // Encoding copies the data and validates every number, so a bad save is rejected before anything changes.
      bytes = encodeRecords(recs);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    this.logicalLast = last;
    if (hsToWrite) this.hardState = hsToWrite;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ bytes, maxIndex, lastAfter: last, hardState: hsToWrite, resolve, reject });
      this.kick();
    });
  }

  /**
   * Delete the oldest segment files all of whose entries are <= index (call it
   * once a snapshot at `index` is durable). Never deletes the segment being written.
   */
  releaseTo(index: number): Promise<void> {
    if (this.closing) return Promise.reject(new RaftError("STOPPED", "the WAL is closed"));
    // Serialized so concurrent calls never race on the same file.
    const run = this.releaseChain.then(() => this.release(index));
    this.releaseChain = run.catch(() => {});
    return run;
  }

  /** Wait for accepted saves and releases to finish, then close. Later save() calls reject with STOPPED. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    await this.writer;
    await this.releaseChain;
    await this.fs.close(this.cur.handle);
  }

  private stoppedByFailure(): RaftError {
    const msg = this.failure instanceof Error ? this.failure.message : String(this.failure);
    return new RaftError("STOPPED", `the WAL stopped after a write failure: ${msg}`);
  }

  private kick(): void {
    this.writer ??= this.drain();
  }

  /** The single writer: takes everything queued, writes it, fsyncs once, repeats. Never rejects. */
  private async drain(): Promise<void> {
    // Let every save issued in the current synchronous run join the first batch.
    await Promise.resolve();
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0);
        try {
          await this.writeBatch(batch);
        } catch (err) {
          // After a failed write or fsync the file's durable contents are unknown
          // (the kernel may have dropped dirty pages), so the WAL refuses further work.
          this.failure = err ?? new Error("write failed");
          this.warn(`WAL write failed; refusing further saves: ${err instanceof Error ? err.message : String(err)}`);
          for (const p of batch) p.reject(err);
          const stopped = this.stoppedByFailure();
          for (const p of this.queue.splice(0)) p.reject(stopped);
          return;
        }
        for (const p of batch) {
          this.stats.saves++;
          p.resolve();
        }
      }
    } finally {
      this.writer = undefined;
    }
  }

  private async writeBatch(batch: Pending[]): Promise<void> {
    let total = 0;
    let maxIndex = 0;
    for (const p of batch) {
      total += p.bytes.byteLength;
      maxIndex = Math.max(maxIndex, p.maxIndex);
    }
    if (total === 0) return; // only barriers / no-op saves: nothing new to make durable

    // Rotation happens between batches, so a segment only ever ends with a
    // fully fsynced batch and only the last segment can have a torn tail.
    let target = this.cur;
    let rotated = false;
    if (this.cur.size >= this.segmentBytes) {
      const seq = this.cur.info.seq + 1;
      const firstIndex = this.writerLast === undefined ? 0 : this.writerLast + 1;
      const info: SegmentInfo = { seq, name: segmentName(seq, firstIndex), maxIndex: 0 };
      const prefix = segmentPrefix(info, this.writerLast, this.writerHs);
      target = { info, handle: await this.fs.open(join(this.dir, info.name), "append"), size: 0 };
      rotated = true;
      await this.fs.write(target.handle, prefix);
      target.size += prefix.byteLength;
      this.stats.bytesWritten += prefix.byteLength;
    }

    const buf = new Uint8Array(total);
    let at = 0;
    for (const p of batch) {
      buf.set(p.bytes, at);
      at += p.bytes.byteLength;
    }
    target.info.maxIndex = Math.max(target.info.maxIndex, maxIndex);
    await this.fs.write(target.handle, buf);
    target.size += total;
    this.stats.bytesWritten += total;
    await this.fs.fsync(target.handle);
    this.stats.fsyncs++;
    if (rotated) {
      // The new file's directory entry must be durable too, or a crash could lose the whole segment.
      await this.fs.fsyncDir(this.dir);
      this.stats.fsyncs++;
      const old = this.cur;
      this.cur = target;
      this.segments.push(target.info);
      this.stats.segments = this.segments.length;
      try {
        await this.fs.close(old.handle);
      } catch (err) {
        // The old segment is fully durable; a failed close costs a descriptor, not data.
        this.warn(`closing ${old.info.name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    for (const p of batch) {
      this.writerLast = p.lastAfter;
      if (p.hardState) this.writerHs = p.hardState;
    }
  }

  private async release(index: number): Promise<void> {
    // Only a prefix of segments may go, oldest first: deleting a later segment
    // while keeping an earlier one could resurrect entries the later one
    // truncated, and replay treats a hole in the sequence as corruption. The
    // directory fsync after each unlink keeps the on-disk set a contiguous suffix even across a crash.
    for (;;) {
      const s = this.segments[0];
      if (!s || this.segments.length <= 1 || s === this.cur.info || s.maxIndex > index) return;
      await this.fs.unlink(join(this.dir, s.name));
      this.segments.shift();
      this.stats.segments = this.segments.length;
      await this.fs.fsyncDir(this.dir);
      this.stats.fsyncs++;
    }
  }
}

/** Header + current HardState: how every segment begins. */
function segmentPrefix(info: SegmentInfo, lastIndex: number | undefined, hs: HardState): Uint8Array {
  return encodeRecords([
    { type: RecordType.SegmentHeader, seq: info.seq, firstIndex: lastIndex === undefined ? 0 : lastIndex + 1 },
    { type: RecordType.HardState, hardState: hs },
  ]);
}

/** Create a segment durably (file contents and directory entry): 2 fsyncs. */
async function createSegment(fs: FsLayer, dir: string, info: SegmentInfo, lastIndex: number | undefined, hs: HardState): Promise<{ handle: FsHandle; size: number }> {
  const handle = await fs.open(join(dir, info.name), "append");
  const prefix = segmentPrefix(info, lastIndex, hs);
  await fs.write(handle, prefix);
  await fs.fsync(handle);
  await fs.fsyncDir(dir);
  return { handle, size: prefix.byteLength };
}

/** Offset of the first valid record starting after `off`, if any. */
function findRecordAfter(data: Uint8Array, off: number): number | undefined {
  // Every offset, not just the one the bad length field points to: that length may be the damaged part.
  for (let p = off + 1; p < data.byteLength; p++) if (isRecordAt(data, p)) return p;
  return undefined;
}
