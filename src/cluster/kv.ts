// The replicated key-value store, with etcd's revision semantics:
// - one global revision, +1 for every command that changes at least one key;
// - per key: createRevision (the put that created it), modRevision (the last put),
//   version (puts since creation; a delete resets it, the next put makes it 1);
// - compare-and-set on modRevision (0 = "must not exist");
// - leases: a key may be attached to one lease; revoking or expiring the lease
//   deletes its keys in one revision.
// The store starts at revision 0, so no existing key ever has modRevision 0.
// Every mutating method checks everything first and changes nothing when it
// fails. No clock, no randomness: time arrives as arguments the leader stamped.
import { ClusterError } from "./errors.js";
import type { KeyValue, KvListResult, LeaseInfo } from "./types.js";

export interface KvLimits {
  maxKeyBytes: number;
  maxValueBytes: number;
}

interface Lease {
  id: number;
  ttlMs: number;
  expiresAtMs: number;
  keys: Set<string>;
}

/** UTF-8 length of a well-formed string (a lone surrogate counts as U+FFFD's 3 bytes). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** True when `s` has no unpaired surrogate (it is encodable as UTF-8). */
export const isWellFormed = (s: string): boolean => !/\p{Surrogate}/u.test(s);

// Map a UTF-16 code unit so that comparing mapped units orders strings by code
// point, which is the order of their UTF-8 bytes (etcd's and PostgreSQL's "C").
const rank = (c: number): number => (c >= 0xe000 ? c - 0x800 : c >= 0xd800 ? c + 0x2000 : c);

/** Order keys by their UTF-8 bytes. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}

/** Throws INVALID or TOO_LARGE for a key the store does not accept. */
export function checkKey(key: string, limits: KvLimits, what = "key"): void {
  if (typeof key !== "string" || key.length === 0) throw new ClusterError("INVALID", `${what} must be a non-empty string`);
  if (!isWellFormed(key)) throw new ClusterError("INVALID", `${what} is not valid UTF-8 (unpaired surrogate)`);
  if (key.includes("\u0000")) throw new ClusterError("INVALID", `${what} must not contain a NUL character`);
  const n = utf8Length(key);
  if (n > limits.maxKeyBytes) throw new ClusterError("TOO_LARGE", `${what} is ${n} bytes; kv_max_key_bytes is ${limits.maxKeyBytes}`);
}

/** Throws INVALID_JSON or TOO_LARGE for a value the store does not accept. */
export function checkValue(value: string, limits: KvLimits): void {
  if (typeof value !== "string") throw new ClusterError("INVALID_JSON", "value must be JSON text");
  const n = utf8Length(value);
  if (n > limits.maxValueBytes) throw new ClusterError("TOO_LARGE", `value is ${n} bytes; kv_max_value_bytes is ${limits.maxValueBytes}`);
  if (!isWellFormed(value)) throw new ClusterError("INVALID_JSON", "value is not valid UTF-8 (unpaired surrogate)");
  try {
    JSON.parse(value);
  } catch {
    throw new ClusterError("INVALID_JSON", `value is not valid JSON: ${value.length > 40 ? `${value.slice(0, 40)}...` : value}`);
  }
}

const copy = (kv: KeyValue): KeyValue => ({ ...kv });

export class CasFailed extends ClusterError {
  constructor(
    message: string,
    readonly current: KeyValue | undefined,
  ) {
    super("CAS_FAILED", message);
  }
}

export interface PutResult {
  revision: number;
  prev?: KeyValue;
}

export interface DeleteResult {
  revision: number;
  deleted: number;
  prev?: KeyValue;
}

export class KvStore {
  private rev = 0;
  private readonly entries = new Map<string, KeyValue>();
  /** Keys in compareKeys order. */
  private readonly sorted: string[] = [];
  private readonly leaseTable = new Map<number, Lease>();

  get revision(): number {
    return this.rev;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): KeyValue | undefined {
    const kv = this.entries.get(key);
    return kv && copy(kv);
  }

  /**
   * Entries whose key starts with `prefix` ("" = all), in key order, at most
   * `limit` (0 or absent = no limit), starting after `startAfter` when given;
   * keys starting with `exclude` (when given) are neither returned nor counted.
   */
  list(prefix: string, opts: { limit?: number; startAfter?: string; exclude?: string } = {}): KvListResult {
    const limit = opts.limit ?? 0;
    if (!Number.isSafeInteger(limit) || limit < 0) throw new ClusterError("INVALID", `limit must be a non-negative integer, got ${String(limit)}`);
    let i = this.lowerBound(prefix);
    if (opts.startAfter !== undefined) {
      const j = this.lowerBound(opts.startAfter);
      const after = this.sorted[j] === opts.startAfter ? j + 1 : j;
      i = Math.max(i, after);
    }
    const kvs: KeyValue[] = [];
    let count = 0;
    for (; i < this.sorted.length; i++) {
      const k = this.sorted[i]!;
      if (!k.startsWith(prefix)) break;
      if (opts.exclude && k.startsWith(opts.exclude)) continue;
      count++;
      if (limit === 0 || kvs.length < limit) kvs.push(copy(this.entries.get(k)!));
    }
    return { kvs, more: count > kvs.length, count };
  }

  private lowerBound(key: string): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys(this.sorted[mid]!, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private compare(key: string, ifModRevision: number | undefined): KeyValue | undefined {
    const cur = this.entries.get(key);
    if (ifModRevision === undefined) return cur;
    const actual = cur?.modRevision ?? 0;
    if (actual !== ifModRevision) {
      const want = ifModRevision === 0 ? "not to exist" : `to have modRevision ${ifModRevision}`;
      const got = cur ? `its modRevision is ${actual}` : "it does not exist";
      throw new CasFailed(`compare failed: expected key ${JSON.stringify(key)} ${want}, but ${got}`, cur && copy(cur));
    }
    return cur;
  }

  /** Put; throws ClusterError (INVALID, INVALID_JSON, TOO_LARGE, NOT_FOUND for the lease, CAS_FAILED) with nothing changed. */
  put(key: string, value: string, limits: KvLimits, opts: { leaseId?: number; ifModRevision?: number } = {}): PutResult {
    checkKey(key, limits);
    checkValue(value, limits);
    const leaseId = opts.leaseId ?? 0;
    const lease = leaseId ? this.leaseTable.get(leaseId) : undefined;
    if (leaseId && !lease) throw new ClusterError("NOT_FOUND", `lease ${leaseId} not found`);
    const cur = this.compare(key, opts.ifModRevision);
    // All checks passed: mutate.
    const rev = ++this.rev;
    if (cur && cur.lease !== leaseId) this.leaseTable.get(cur.lease)?.keys.delete(key);
    lease?.keys.add(key);
    if (!cur) this.sorted.splice(this.lowerBound(key), 0, key);
    this.entries.set(key, {
      key,
      value,
      createRevision: cur ? cur.createRevision : rev,
      modRevision: rev,
      version: cur ? cur.version + 1 : 1,
      lease: leaseId,
    });
    return cur ? { revision: rev, prev: copy(cur) } : { revision: rev };
  }

  /** Delete one key; throws CAS_FAILED or NOT_FOUND with nothing changed. */
  delete(key: string, opts: { ifModRevision?: number } = {}): DeleteResult {
    if (typeof key !== "string" || key.length === 0) throw new ClusterError("INVALID", "key must be a non-empty string");
    const cur = this.compare(key, opts.ifModRevision);
    if (!cur) throw new ClusterError("NOT_FOUND", `key ${JSON.stringify(key)} not found`);
    this.rev++;
    this.removeKeys([key]);
    return { revision: this.rev, deleted: 1, prev: copy(cur) };
  }

  /** Delete every key under a non-empty prefix; one revision when at least one key goes. */
  deletePrefix(prefix: string): DeleteResult {
    if (typeof prefix !== "string" || prefix.length === 0) throw new ClusterError("INVALID", "prefix must be a non-empty string");
    const lo = this.lowerBound(prefix);
    let hi = lo;
    while (hi < this.sorted.length && this.sorted[hi]!.startsWith(prefix)) hi++;
    if (hi === lo) return { revision: this.rev, deleted: 0 };
    this.rev++;
    this.removeKeys(this.sorted.slice(lo, hi));
    return { revision: this.rev, deleted: hi - lo };
  }

  private removeKeys(keys: readonly string[]): void {
    for (const k of keys) {
      const kv = this.entries.get(k);
      if (!kv) continue;
      if (kv.lease) this.leaseTable.get(kv.lease)?.keys.delete(k);
      this.entries.delete(k);
    }
    if (keys.length === 1) {
      const i = this.lowerBound(keys[0]!);
      if (this.sorted[i] === keys[0]) this.sorted.splice(i, 1);
    } else if (keys.length > 1) {
      const gone = new Set(keys);
      let w = 0;
      for (const k of this.sorted) if (!gone.has(k)) this.sorted[w++] = k;
      this.sorted.length = w;
    }
  }

  // ---------------------------------------------------------------- leases

  lease(id: number): LeaseInfo | undefined {
    const l = this.leaseTable.get(id);
    return l && leaseInfo(l);
  }

  leases(): LeaseInfo[] {
    return [...this.leaseTable.values()].sort((a, b) => a.id - b.id).map(leaseInfo);
  }

  /** Ids of the leases whose deadline is at or before `nowMs`, ascending: what a leader proposes to expire. */
  expiredLeases(nowMs: number): number[] {
    return [...this.leaseTable.values()]
      .filter((l) => l.expiresAtMs <= nowMs)
      .map((l) => l.id)
      .sort((a, b) => a - b);
  }

  grantLease(id: number, ttlMs: number, nowMs: number): LeaseInfo {
    if (this.leaseTable.has(id)) throw new ClusterError("ALREADY_EXISTS", `lease ${id} already exists`);
    const l: Lease = { id, ttlMs, expiresAtMs: nowMs + ttlMs, keys: new Set() };
    this.leaseTable.set(id, l);
    return leaseInfo(l);
  }

  /**
   * Extend the lease to nowMs + ttl. A deadline never moves back, so a leader
   * whose clock runs behind the previous one's cannot shorten a lease.
   */
  keepAlive(id: number, nowMs: number): LeaseInfo {
    const l = this.leaseTable.get(id);
    if (!l) throw new ClusterError("NOT_FOUND", `lease ${id} not found`);
    l.expiresAtMs = Math.max(l.expiresAtMs, nowMs + l.ttlMs);
    return leaseInfo(l);
  }

  /** Remove a lease and delete its keys (one revision if there were any). */
  revokeLease(id: number): DeleteResult {
    const l = this.leaseTable.get(id);
    if (!l) throw new ClusterError("NOT_FOUND", `lease ${id} not found`);
    return this.dropLeases([l]);
  }

  /**
   * Remove those of `ids` that exist and whose deadline is at or before nowMs;
   * others (unknown, or kept alive since the leader looked) are left alone.
   */
  expireLeases(ids: readonly number[], nowMs: number): DeleteResult & { expired: number[] } {
    const due = [...new Set(ids)]
      .sort((a, b) => a - b)
      .map((id) => this.leaseTable.get(id))
      .filter((l): l is Lease => l !== undefined && l.expiresAtMs <= nowMs);
    return { ...this.dropLeases(due), expired: due.map((l) => l.id) };
  }

  private dropLeases(leases: readonly Lease[]): DeleteResult {
    const keys = leases.flatMap((l) => [...l.keys]);
    for (const l of leases) this.leaseTable.delete(l.id);
    if (keys.length === 0) return { revision: this.rev, deleted: 0 };
    this.rev++;
    this.removeKeys(keys);
    return { revision: this.rev, deleted: keys.length };
  }

  // ---------------------------------------------------------------- snapshot

  /** Plain, deterministic form: entries in key order, leases by id. */
  dump(): KvDump {
    return {
      revision: this.rev,
      kvs: this.sorted.map((k) => {
        const e = this.entries.get(k)!;
        return [e.key, e.value, e.createRevision, e.modRevision, e.version, e.lease];
      }),
      leases: this.leases().map((l) => [l.id, l.ttlMs, l.expiresAtMs]),
    };
  }

  /** Rebuild from dump(); throws CORRUPT_SNAPSHOT for anything inconsistent. */
  static load(d: unknown): KvStore {
    const bad = (why: string): ClusterError => new ClusterError("CORRUPT_SNAPSHOT", `snapshot kv: ${why}`);
    const isNat = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
    if (typeof d !== "object" || d === null) throw bad("not an object");
    const { revision, kvs, leases } = d as Record<string, unknown>;
    if (!isNat(revision) || !Array.isArray(kvs) || !Array.isArray(leases)) throw bad("missing revision, kvs or leases");
    const s = new KvStore();
    s.rev = revision;
    for (const row of leases as unknown[]) {
      if (!Array.isArray(row) || row.length !== 3 || !row.every(isNat)) throw bad("malformed lease");
      const [id, ttlMs, expiresAtMs] = row as [number, number, number];
      if (id === 0 || ttlMs === 0 || s.leaseTable.has(id)) throw bad(`bad or duplicate lease ${id}`);
      s.leaseTable.set(id, { id, ttlMs, expiresAtMs, keys: new Set() });
    }
    let last: string | undefined;
    for (const row of kvs as unknown[]) {
      if (!Array.isArray(row) || row.length !== 6) throw bad("malformed entry");
      const [key, value, createRevision, modRevision, version, lease] = row as unknown[];
      if (typeof key !== "string" || key === "" || typeof value !== "string") throw bad("malformed entry");
      if (!isNat(createRevision) || !isNat(modRevision) || !isNat(version) || !isNat(lease)) throw bad(`malformed entry ${JSON.stringify(key)}`);
      if (createRevision < 1 || createRevision > modRevision || modRevision > revision || version < 1) throw bad(`inconsistent revisions for ${JSON.stringify(key)}`);
      if (last !== undefined && compareKeys(last, key) >= 0) throw bad("entries out of order");
      if (lease) {
        const l = s.leaseTable.get(lease);
        if (!l) throw bad(`key ${JSON.stringify(key)} names unknown lease ${lease}`);
        l.keys.add(key);
      }
      s.entries.set(key, { key, value, createRevision, modRevision, version, lease });
      s.sorted.push(key);
      last = key;
    }
    return s;
  }
}

export interface KvDump {
  revision: number;
  /** [key, value, createRevision, modRevision, version, lease] in key order. */
  kvs: [string, string, number, number, number, number][];
  /** [id, ttlMs, expiresAtMs] by id. */
  leases: [number, number, number][];
}

function leaseInfo(l: Lease): LeaseInfo {
  return { id: l.id, ttlMs: l.ttlMs, expiresAtMs: l.expiresAtMs, keys: [...l.keys].sort(compareKeys) };
}
