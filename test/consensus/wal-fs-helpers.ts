// Reusable file-system layers for WAL and snapshot-store tests:
//  - CountingFs wraps another layer, counts fsyncs and can stall or fail them,
//    and tracks how many bytes of each file were covered by a completed fsync.
//  - MemFs is an in-memory layer that separately tracks what is durable, so a
//    test can "crash" at any instant and continue from only the fsynced state.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TestContext } from "node:test";
import type { FsHandle, FsLayer, OpenMode } from "../../src/consensus/wal/fs-layer.js";
import { EntryType, type Entry } from "../../src/consensus/types.js";
import { decodeRecord, type WalRecord } from "../../src/consensus/wal/record.js";

/** A fresh directory under os.tmpdir(), removed when the test ends (pass or fail). */
export async function tempDir(t: TestContext, prefix = "pgraft-wal-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const fsError = (code: string, op: string, path: string): Error =>
  Object.assign(new Error(`${code}: ${op} '${path}'`), { code });

export interface CountingFsOptions {
  /** Awaited at the start of every file fsync; may reject to simulate EIO. */
  beforeFsync?: (path: string, n: number) => Promise<void>;
}

export class CountingFs implements FsLayer {
  fsyncs = 0;
  dirFsyncs = 0;
  writes = 0;
  bytes = 0;
  /** Bytes handed to write() per path (sizes at open included). */
  readonly written = new Map<string, number>();
  /** Bytes per path known durable: the written size when a completed fsync started. */
  readonly durable = new Map<string, number>();
  /** One row per completed file fsync. */
  readonly fsyncLog: { path: string; durableBytes: number }[] = [];
  /** Resolves the promise returned by fsyncStarted() for the nth fsync. */
  private startedWaiters: { n: number; resolve: () => void }[] = [];
  private started = 0;

  constructor(
    readonly inner: FsLayer,
    readonly opts: CountingFsOptions = {},
  ) {}

  /** File fsyncs started so far (completed or not). */
  get fsyncsStarted(): number {
    return this.started;
  }

  /** A promise that resolves once `n` file fsyncs have started. */
  fsyncStarted(n: number): Promise<void> {
    if (this.started >= n) return Promise.resolve();
    return new Promise((resolve) => this.startedWaiters.push({ n, resolve }));
  }

  async open(path: string, mode: OpenMode): Promise<FsHandle> {
    const size = mode === "append" ? await this.inner.size(path).catch(() => 0) : 0;
    const h = await this.inner.open(path, mode);
    this.written.set(path, size);
    if (mode === "overwrite") this.durable.set(path, 0);
    return h;
  }
  async write(h: FsHandle, data: Uint8Array): Promise<void> {
    this.writes++;
    this.bytes += data.byteLength;
    // Count before the await: the bytes are in flight and a later fsync covers them.
    this.written.set(h.path, (this.written.get(h.path) ?? 0) + data.byteLength);
    await this.inner.write(h, data);
  }
  async fsync(h: FsHandle): Promise<void> {
    const n = ++this.started;
    for (const w of this.startedWaiters.filter((w) => w.n <= n)) w.resolve();
    this.startedWaiters = this.startedWaiters.filter((w) => w.n > n);
    // Only what was written before the fsync started is covered by it.
    const covered = this.written.get(h.path) ?? 0;
    if (this.opts.beforeFsync) await this.opts.beforeFsync(h.path, n);
    await this.inner.fsync(h);
    this.fsyncs++;
    this.durable.set(h.path, Math.max(this.durable.get(h.path) ?? 0, covered));
    this.fsyncLog.push({ path: h.path, durableBytes: covered });
  }
  close(h: FsHandle): Promise<void> {
    return this.inner.close(h);
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.inner.readFile(path);
  }
  readdir(dir: string): Promise<string[]> {
    return this.inner.readdir(dir);
  }
  unlink(path: string): Promise<void> {
    return this.inner.unlink(path);
  }
  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }
  mkdirp(dir: string): Promise<void> {
    return this.inner.mkdirp(dir);
  }
  async truncate(path: string, len: number): Promise<void> {
    await this.inner.truncate(path, len);
    this.written.set(path, len);
  }
  async fsyncDir(dir: string): Promise<void> {
    await this.inner.fsyncDir(dir);
    this.dirFsyncs++;
  }
  size(path: string): Promise<number> {
    return this.inner.size(path);
  }
}

class Inode {
  data = new Uint8Array(0);
  /** Contents as of the last fsync. */
  durable = new Uint8Array(0);
}

class MemHandle implements FsHandle {
  closed = false;
  constructor(
    readonly path: string,
    readonly inode: Inode,
  ) {}
}

export interface MemFsOptions {
  /** Awaited inside every file fsync (e.g. `() => new Promise(setImmediate)`) so other work interleaves. */
  fsyncDelay?: () => Promise<void>;
}

export interface CrashOptions {
  /**
   * How many of a file's unsynced appended bytes survive (default 0: only
   * fsynced bytes survive). Models a torn write: a prefix of what was in flight.
   */
  keepUnsynced?: (path: string, unsyncedBytes: number) => number;
}

/**
 * In-memory FsLayer with a strict durability model: file contents are durable
 * only after fsync of that file, and directory changes (create, rename,
 * unlink) only after fsyncDir of the parent. Directories themselves are always durable.
 */
export class MemFs implements FsLayer {
  fsyncs = 0;
  dirFsyncs = 0;
  private readonly dirs = new Set<string>(["/"]);
  private readonly names = new Map<string, Inode>();
  private readonly durableNames = new Map<string, Inode>();

  constructor(readonly opts: MemFsOptions = {}) {}

  /** A new MemFs holding what would be on disk after a power failure now. This instance keeps running. */
  crash(opts: CrashOptions = {}): MemFs {
    const out = new MemFs(this.opts);
    for (const d of this.dirs) out.dirs.add(d);
    const copies = new Map<Inode, Inode>();
    for (const [path, ino] of this.durableNames) {
      let c = copies.get(ino);
      if (!c) {
        c = new Inode();
        let bytes = ino.durable;
        const unsynced = ino.data.byteLength - ino.durable.byteLength;
        // Only an append past the durable contents can leave a torn prefix behind.
        if (opts.keepUnsynced && unsynced > 0 && startsWith(ino.data, ino.durable)) {
          const keep = Math.max(0, Math.min(unsynced, opts.keepUnsynced(path, unsynced)));
          bytes = ino.data.slice(0, ino.durable.byteLength + keep);
        }
        c.data = bytes.slice();
        c.durable = bytes.slice();
        copies.set(ino, c);
      }
      out.names.set(path, c);
      out.durableNames.set(path, c);
    }
    return out;
  }

  /** Current (not necessarily durable) contents. */
  contents(path: string): Uint8Array {
    const ino = this.names.get(path);
    if (!ino) throw fsError("ENOENT", "contents", path);
    return ino.data.slice();
  }

  /** Contents as of the last fsync of the file. */
  durableContents(path: string): Uint8Array {
    const ino = this.names.get(path);
    if (!ino) throw fsError("ENOENT", "durableContents", path);
    return ino.durable.slice();
  }

  /** Replace a file's contents, durably (for setting up damaged files). */
  setContents(path: string, data: Uint8Array): void {
    let ino = this.names.get(path);
    if (!ino) {
      if (!this.dirs.has(dirname(path))) throw fsError("ENOENT", "setContents", path);
      ino = new Inode();
      this.names.set(path, ino);
      this.durableNames.set(path, ino);
    }
    ino.data = data.slice();
    ino.durable = data.slice();
  }

  exists(path: string): boolean {
    return this.names.has(path);
  }

  async open(path: string, mode: OpenMode): Promise<FsHandle> {
    await Promise.resolve();
    if (!this.dirs.has(dirname(path))) throw fsError("ENOENT", "open", path);
    let ino = this.names.get(path);
    if (!ino) {
      ino = new Inode();
      this.names.set(path, ino);
    } else if (mode === "overwrite") {
      ino.data = new Uint8Array(0);
    }
    return new MemHandle(path, ino);
  }
  async write(h: FsHandle, data: Uint8Array): Promise<void> {
    await Promise.resolve();
    const mh = h as MemHandle;
    if (mh.closed) throw fsError("EBADF", "write", h.path);
    const next = new Uint8Array(mh.inode.data.byteLength + data.byteLength);
    next.set(mh.inode.data);
    next.set(data, mh.inode.data.byteLength);
    mh.inode.data = next;
  }
  async fsync(h: FsHandle): Promise<void> {
    const mh = h as MemHandle;
    if (mh.closed) throw fsError("EBADF", "fsync", h.path);
    // What is covered is decided when the fsync starts; bytes written meanwhile are not.
    const snap = mh.inode.data.slice();
    if (this.opts.fsyncDelay) await this.opts.fsyncDelay();
    else await Promise.resolve();
    mh.inode.durable = snap;
    this.fsyncs++;
  }
  async close(h: FsHandle): Promise<void> {
    await Promise.resolve();
    (h as MemHandle).closed = true;
  }
  async readFile(path: string): Promise<Uint8Array> {
    await Promise.resolve();
    const ino = this.names.get(path);
    if (!ino) throw fsError("ENOENT", "readFile", path);
    return ino.data.slice();
  }
  async readdir(dir: string): Promise<string[]> {
    await Promise.resolve();
    if (!this.dirs.has(dir)) throw fsError("ENOENT", "readdir", dir);
    const out: string[] = [];
    for (const p of this.names.keys()) if (dirname(p) === dir) out.push(p.slice(dir.length + 1));
    for (const d of this.dirs) if (d !== dir && dirname(d) === dir) out.push(d.slice(dir.length + 1));
    return out;
  }
  async unlink(path: string): Promise<void> {
    await Promise.resolve();
    if (!this.names.delete(path)) throw fsError("ENOENT", "unlink", path);
  }
  async rename(from: string, to: string): Promise<void> {
    await Promise.resolve();
    const ino = this.names.get(from);
    if (!ino) throw fsError("ENOENT", "rename", from);
    if (!this.dirs.has(dirname(to))) throw fsError("ENOENT", "rename", to);
    this.names.delete(from);
    this.names.set(to, ino);
  }
  async mkdirp(dir: string): Promise<void> {
    await Promise.resolve();
    for (let d = dir; !this.dirs.has(d); d = dirname(d)) this.dirs.add(d);
  }
  async truncate(path: string, len: number): Promise<void> {
    await Promise.resolve();
    const ino = this.names.get(path);
    if (!ino) throw fsError("ENOENT", "truncate", path);
    const next = new Uint8Array(len);
    next.set(ino.data.subarray(0, Math.min(len, ino.data.byteLength)));
    ino.data = next;
  }
  async fsyncDir(dir: string): Promise<void> {
    await Promise.resolve();
    if (!this.dirs.has(dir)) throw fsError("ENOENT", "fsyncDir", dir);
    for (const p of [...this.durableNames.keys()]) if (dirname(p) === dir && this.names.get(p) !== this.durableNames.get(p)) this.durableNames.delete(p);
    for (const [p, ino] of this.names) if (dirname(p) === dir) this.durableNames.set(p, ino);
    this.dirFsyncs++;
  }
  async size(path: string): Promise<number> {
    await Promise.resolve();
    const ino = this.names.get(path);
    if (!ino) throw fsError("ENOENT", "size", path);
    return ino.data.byteLength;
  }
}

function startsWith(a: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.byteLength > a.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (a[i] !== prefix[i]) return false;
  return true;
}

// ---- shared helpers for building and inspecting logs ----


/** Entries lo..hi (inclusive) at `term`, with data that names them so mix-ups show. */
export function ents(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) {
    out.push({ index: i, term, type: i % 7 === 0 ? EntryType.ConfChange : EntryType.Normal, data: new TextEncoder().encode(`e${i}t${term}`) });
  }
  return out;
}

/** Comparable form of entries (Uint8Array → string). */
export const plain = (es: readonly Entry[]): { index: number; term: number; type: number; data: string }[] =>
  es.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Buffer.from(e.data).toString("hex") }));

/** Every whole record of a segment file with its byte range; stops at the first bad one. */
export function parseRecords(buf: Uint8Array): { offset: number; next: number; record: WalRecord }[] {
  const out: { offset: number; next: number; record: WalRecord }[] = [];
  let off = 0;
  for (;;) {
    const r = decodeRecord(buf, off);
    if (r.kind !== "ok") return out;
    out.push({ offset: r.offset, next: r.next, record: r.record });
    off = r.next;
  }
}

export const walFiles = (names: string[]): string[] => names.filter((n) => n.endsWith(".wal")).sort();
