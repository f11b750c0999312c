// The few file-system operations the WAL and the snapshot store need, behind an
// interface so tests can inject layers that count fsyncs, stall them, or
// simulate a crash that keeps only what was made durable.
//
// What they hold (the replicated catalog, KV values, DSNs) is nobody else's
// business: the real layer creates files 0600 and directories 0700 whatever
// the umask, and tightens one it opens or a directory it is asked to make when
// it finds them wider (written by an older version).
import { chmod, open, readFile, readdir, unlink, rename, mkdir, truncate, stat, type FileHandle } from "node:fs/promises";

/** An open file. Opaque to callers: only the layer that opened it may use it. */
export interface FsHandle {
  readonly path: string;
}

/**
 * "append": create if missing, every write goes to the end (O_APPEND).
 * "overwrite": create or truncate to empty, writes are sequential from 0.
 */
export type OpenMode = "append" | "overwrite";

export interface FsLayer {
  open(path: string, mode: OpenMode): Promise<FsHandle>;
  /** Write all of `data` at the handle's position (the end for "append"). */
  write(h: FsHandle, data: Uint8Array): Promise<void>;
  /** Make everything written through `h` durable (fsync(2)). */
  fsync(h: FsHandle): Promise<void>;
  close(h: FsHandle): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  /** Names (not paths) of the entries of `dir`. */
  readdir(dir: string): Promise<string[]>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** mkdir -p */
  mkdirp(dir: string): Promise<void>;
  truncate(path: string, len: number): Promise<void>;
  /** Make creations, renames and unlinks in `dir` durable. */
  fsyncDir(dir: string): Promise<void>;
  /** Size in bytes of the file at `path`. */
  size(path: string): Promise<number>;
}

class NodeHandle implements FsHandle {
  constructor(
    readonly path: string,
    readonly fh: FileHandle,
  ) {}
}

function nodeHandle(h: FsHandle): NodeHandle {
  if (!(h instanceof NodeHandle)) throw new TypeError(`handle for ${h.path} was not opened by nodeFs`);
  return h;
}

/** Mode of every file the WAL and the snapshot store write. */
export const FILE_MODE = 0o600;
/** Mode of their directories. */
export const DIR_MODE = 0o700;

/** The real file system (node:fs/promises). */
export const nodeFs: FsLayer = {
  async open(path, mode) {
    const fh = await open(path, mode === "append" ? "a" : "w", FILE_MODE);
    try {
      // The mode above applies to a new file only (and minus the umask): make an existing one private too.
      if (((await fh.stat()).mode & 0o777) !== FILE_MODE) await fh.chmod(FILE_MODE);
    } catch (e) {
      await fh.close();
      throw e;
    }
    return new NodeHandle(path, fh);
  },
  async write(h, data) {
    const { fh } = nodeHandle(h);
    // write(2) may be short; loop until every byte is handed to the kernel.
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await fh.write(data, done, data.byteLength - done, null);
      done += bytesWritten;
    }
  },
  async fsync(h) {
    await nodeHandle(h).fh.sync();
  },
  async close(h) {
    await nodeHandle(h).fh.close();
  },
  async readFile(path) {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  async readdir(dir) {
    return readdir(dir);
  },
  async unlink(path) {
    await unlink(path);
  },
  async rename(from, to) {
    await rename(from, to);
  },
  async mkdirp(dir) {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (((await stat(dir)).mode & 0o077) !== 0) await chmod(dir, DIR_MODE);
  },
  async truncate(path, len) {
    await truncate(path, len);
  },
  async fsyncDir(dir) {
    // A directory's entries become durable only through an fsync of the directory itself.
    const fh = await open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async size(path) {
    return (await stat(path)).size;
  },
};
