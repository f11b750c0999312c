// Durable snapshot files: `snap-<term hex16>-<index hex16>.snap`, each
//
//   [magic "PGRS"][u32 version][u32 crc32c of everything after this field]
//   [u64 index][u64 term][u32 #voters][u32 voter]...[u32 #learners][u32 learner]...
//   [u64 data length][data]
//
// (all little-endian; u64 as two u32 halves, low first). A snapshot is written
// to a temp file, fsynced, renamed into place and the directory fsynced, so a
// crash leaves either the old set of snapshots or the new one, never a partial file
// under a real name. A file that fails its checksum is reported and skipped in
// favour of the next older one.
import { join } from "node:path";
import { RaftError } from "../errors.js";
import type { Snapshot } from "../types.js";
import { crc32c } from "./crc32c.js";
import { nodeFs, type FsLayer } from "./fs-layer.js";
import { hex32 } from "./record.js";

const MAGIC = 0x53524750; // "PGRS" as u32 LE
const VERSION = 1;
const SNAP_RE = /^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
const TMP_RE = /^snap-.*\.tmp$/;
const TWO_32 = 0x1_0000_0000;

const hex16 = (n: number): string => n.toString(16).padStart(16, "0");
export const snapshotFileName = (term: number, index: number): string => `snap-${hex16(term)}-${hex16(index)}.snap`;

function checkU64(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RaftError("INVALID_ARGUMENT", `snapshot ${what} must be a non-negative safe integer, got ${n}`);
}

function checkU32(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RaftError("INVALID_ARGUMENT", `snapshot ${what} must be a u32, got ${n}`);
}

/** Encode a snapshot file (exported for tests). */
export function encodeSnapshot(s: Snapshot): Uint8Array {
  const { index, term, conf } = s.meta;
  checkU64("index", index);
  checkU64("term", term);
  for (const id of [...conf.voters, ...conf.learners]) checkU32("member id", id);
  const headLen = 12 + 16 + 4 + 4 * conf.voters.length + 4 + 4 * conf.learners.length + 8;
  const out = new Uint8Array(headLen + s.data.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, VERSION, true);
  let at = 12;
  const u32 = (n: number): void => {
    v.setUint32(at, n, true);
    at += 4;
  };
  const u64 = (n: number): void => {
    u32(n % TWO_32);
    u32(Math.floor(n / TWO_32));
  };
  u64(index);
  u64(term);
  u32(conf.voters.length);
  for (const id of conf.voters) u32(id);
  u32(conf.learners.length);
  for (const id of conf.learners) u32(id);
  u64(s.data.byteLength);
  out.set(s.data, at);
  v.setUint32(8, crc32c(out.subarray(12)), true);
  return out;
}

/** Decode a snapshot file; a string says why it is not a valid one. */
export function decodeSnapshot(buf: Uint8Array): Snapshot | string {
  if (buf.byteLength < 12 + 16 + 4 + 4 + 8) return `too short (${buf.byteLength} bytes)`;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint32(0, true) !== MAGIC) return "bad magic";
  const version = v.getUint32(4, true);
  if (version !== VERSION) return `unsupported version ${version}`;
  const want = v.getUint32(8, true);
  const got = crc32c(buf.subarray(12));
  if (want !== got) return `crc mismatch (stored ${hex32(want)}, computed ${hex32(got)})`;
  // The CRC matched, so what follows was written by encodeSnapshot; bounds are still checked so a bug cannot read past the end.
  let at = 12;
  const need = (n: number): boolean => at + n <= buf.byteLength;
  const u32 = (): number => {
    const x = v.getUint32(at, true);
    at += 4;
    return x;
  };
  const u64 = (): number | undefined => {
    const lo = u32();
    const hi = u32();
    return hi > 0x1fffff ? undefined : hi * TWO_32 + lo;
  };
  const index = u64();
  const term = u64();
  if (index === undefined || term === undefined) return "index/term out of range";
  const ids = (): number[] | undefined => {
    if (!need(4)) return undefined;
    const n = u32();
    if (!need(4 * n)) return undefined;
    const out: number[] = [];
    for (let k = 0; k < n; k++) out.push(u32());
    return out;
  };
  const voters = ids();
  const learners = ids();
  if (!voters || !learners || !need(8)) return "truncated membership";
  const len = u64();
  if (len === undefined || at + len !== buf.byteLength) return `data length ${String(len)} does not match the file size`;
  return { meta: { index, term, conf: { voters, learners } }, data: buf.slice(at) };
}

interface Candidate {
  name: string;
  term: number;
  index: number;
}

export class SnapshotStore {
  private readonly fs: FsLayer;
  private readonly warn: (msg: string) => void;
  // All operations run one at a time: a purge must not delete what a concurrent save is renaming into place.
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    fs?: FsLayer,
    onWarning?: (msg: string) => void,
  ) {
    this.fs = fs ?? nodeFs;
    this.warn = onWarning ?? (() => {});
  }

  /** Write `s` atomically and durably. */
  save(s: Snapshot): Promise<void> {
    return this.serial(() => this.doSave(s));
  }

  /** The newest snapshot whose checksum verifies, or undefined if there is none. Removes leftover temp files. */
  loadNewest(): Promise<Snapshot | undefined> {
    return this.serial(() => this.doLoad());
  }

  /** Delete all but the `keep` newest valid snapshots (corrupt files newer than those are left for inspection). */
  purge(keep = 2): Promise<void> {
    return this.serial(() => this.doPurge(keep));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private async doSave(s: Snapshot): Promise<void> {
    const bytes = encodeSnapshot(s);
    await this.fs.mkdirp(this.dir);
    const name = snapshotFileName(s.meta.term, s.meta.index);
    const tmp = join(this.dir, `${name}.tmp`);
    const h = await this.fs.open(tmp, "overwrite");
    try {
      await this.fs.write(h, bytes);
      // The data must be durable before the rename makes it visible under the real name.
      await this.fs.fsync(h);
    } catch (e) {
      await this.fs.close(h).catch(() => {});
      await this.fs.unlink(tmp).catch(() => {});
      throw e;
    }
    await this.fs.close(h);
    await this.fs.rename(tmp, join(this.dir, name));
    // ...and the rename itself durable before save() reports success.
    await this.fs.fsyncDir(this.dir);
  }

  private async list(): Promise<{ snaps: Candidate[]; tmps: string[] }> {
    await this.fs.mkdirp(this.dir);
    const snaps: Candidate[] = [];
    const tmps: string[] = [];
    for (const name of await this.fs.readdir(this.dir)) {
      const m = SNAP_RE.exec(name);
      if (m) snaps.push({ name, term: parseInt(m[1]!, 16), index: parseInt(m[2]!, 16) });
      else if (TMP_RE.test(name)) tmps.push(name);
    }
    // Newest first: highest index, then highest term.
    snaps.sort((a, b) => b.index - a.index || b.term - a.term);
    return { snaps, tmps };
  }

  private async read(c: Candidate): Promise<Snapshot | string> {
    const r = decodeSnapshot(await this.fs.readFile(join(this.dir, c.name)));
    if (typeof r === "string") return r;
    // The name is what we sort by, so it must agree with the checksummed contents.
    if (r.meta.index !== c.index || r.meta.term !== c.term) return `contents are for index ${r.meta.index} term ${r.meta.term}, not what the name says`;
    return r;
  }

  private async doLoad(): Promise<Snapshot | undefined> {
    const { snaps, tmps } = await this.list();
    // A temp file is a save that crashed before its rename: never acknowledged, safe to drop.
    for (const t of tmps) await this.fs.unlink(join(this.dir, t));
    if (tmps.length) await this.fs.fsyncDir(this.dir);
    const bad: string[] = [];
    for (const c of snaps) {
      const r = await this.read(c);
      if (typeof r !== "string") return r;
      const msg = `${join(this.dir, c.name)}: corrupt snapshot: ${r}`;
      bad.push(msg);
      this.warn(`${msg}; falling back to an older snapshot`);
    }
    // Silently starting without a snapshot would pair an empty state machine with a log that starts after it.
    if (bad.length) throw new RaftError("CORRUPT", `no valid snapshot in ${this.dir}: ${bad.join("; ")}`);
    return undefined;
  }

  private async doPurge(keep: number): Promise<void> {
    if (!Number.isInteger(keep) || keep < 1) throw new RaftError("INVALID_ARGUMENT", `purge must keep at least one snapshot, got ${keep}`);
    const { snaps } = await this.list();
    let kept = 0;
    const doomed: Candidate[] = [];
    for (const c of snaps) {
      if (kept >= keep) {
        doomed.push(c);
        continue;
      }
      // Count only snapshots that verify, so a corrupt newest file never causes the last good one to be deleted.
      const r = await this.read(c);
      if (typeof r !== "string") kept++;
      else if (kept > 0) doomed.push(c);
    }
    for (const c of doomed) await this.fs.unlink(join(this.dir, c.name));
    if (doomed.length) await this.fs.fsyncDir(this.dir);
  }
}
