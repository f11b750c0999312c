// The one place that names the data plane's objects in PostgreSQL: the group's
// publication, the group slot, the node slots and the replication origins.
//
// Seed 004: on every node, one group slot `bdr_<db>_<group>` and one node slot
// per peer `bdr_<db>_<group>_<node>` (and, while a part catches up, a copy of
// the group slot `bdr_<db>_<group>_pc_<hash>`); identifiers longer than PostgreSQL's
// 63 bytes are shortened by "replacing the final section of the string with a
// hash of the string itself". Slot names may only hold [a-z0-9_], so a part
// that is not already in that alphabet is cleaned (lower-cased, anything else
// → `_`) and, because cleaning loses information ("A-b" and "a_b" would meet),
// always carries the hash of its original text. Parts that are clean and fit
// are kept verbatim, so the seed's example names come out exactly as written
// (`bdr_mydb_mygroup_beta`).
//
// When the whole name is too long, the longest parts are cut first, to a common
// length (water-filling), each cut part ending in a 7-hex-digit hash of its
// original text (the seed's example uses 7 digits too). The result is stable
// (a pure function of the inputs) and ≤ 63 bytes.
//
// Caveat, shared with the seed's scheme: `_` is both the separator and a legal
// character, so (db "a_b", group "c") and (db "a", group "b_c") give the same
// verbatim name. Names are unique for distinct inputs otherwise (up to 28-bit
// hash collisions of shortened parts).
import { createHash } from "node:crypto";

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. */
export const MAX_NAME_BYTES = 63;
/** Every slot pgraft creates starts with this; operators must not use it for theirs (seed 004). */
export const SLOT_PREFIX = "bdr_";
/** Replication origins (one per upstream peer) start with this. */
export const ORIGIN_PREFIX = "pgraft_";
const HASH_LEN = 7;
const CLEAN = /^[a-z0-9_]+$/;

/** The first 7 hex digits of the SHA-256 of `s` (UTF-8). */
export function shortHash(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex").slice(0, HASH_LEN);
}

/** `s` in the slot alphabet: lower case, anything but [a-z0-9_] → `_`. */
export function cleanPart(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_]/g, "_");
}

/** `s` cut to `budget` characters, the last 7 being the hash of the original. */
function hashed(original: string, budget: number): string {
  return cleanPart(original).slice(0, Math.max(0, budget - HASH_LEN)) + shortHash(original);
}

/**
 * `prefix_part1_part2…` within 63 bytes (all ASCII, so bytes = characters).
 * Exported for tests; use the named functions below.
 */
export function composeName(prefix: string, parts: readonly string[]): string {
  // Unclean parts always carry a hash (cleaning is lossy); clean parts stay verbatim while they fit.
  const first = parts.map((p) => (CLEAN.test(p) ? p : hashed(p, Math.max(cleanPart(p).length + HASH_LEN, HASH_LEN + 1))));
  const fixed = prefix.length + parts.length; // the prefix and one `_` before each part
  const room = MAX_NAME_BYTES - fixed;
  const total = first.reduce((n, p) => n + p.length, 0);
  if (total <= room) return [prefix, ...first].join("_");
  // Water-filling: the largest cap L with sum(min(len, L)) <= room; parts longer than L are cut to L.
  let cap = room;
  while (cap > HASH_LEN + 1 && first.reduce((n, p) => n + Math.min(p.length, cap), 0) > room) cap--;
  const cut = first.map((p, i) => (p.length <= cap ? p : hashed(parts[i]!, cap)));
  const name = [prefix, ...cut].join("_");
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new Error(`cannot fit a name for ${JSON.stringify(parts)} in ${MAX_NAME_BYTES} bytes`);
  return name;
}

/** The group slot on every node: `bdr_<db>_<group>` (seed 004). */
export function groupSlotName(db: string, group: string): string {
  return composeName("bdr", [db, group]);
}

/** The slot on a node that peer `peer` streams from: `bdr_<db>_<group>_<peer>` (seed 004). */
export function nodeSlotName(db: string, group: string, peer: string): string {
  return composeName("bdr", [db, group, peer]);
}

/** The group's publication (FOR ALL TABLES), named like the group slot. */
export function publicationName(db: string, group: string): string {
  return composeName("bdr", [db, group]);
}

/**
 * The replication origin for changes from `peer`. Origins are cluster-wide
 * (one catalog for every database of a server), so the name carries the
 * database and group as well as the peer.
 */
export function originName(db: string, group: string, peer: string): string {
  return composeName("pgraft", [db, group, peer]);
}

/**
 * The slot on `source` that node `local` streams to catch up on a parting
 * node's changes (part): a copy of the source's group slot, dropped once the
 * catch-up is done. `bdr_<db>_<group>_pc_<hash of local and parting>`, so
 * every (catching-up node, parting node) pair has its own and a retry finds
 * the stale one of an earlier attempt. (Only a node literally named
 * `pc_<those 7 hex digits>` could share it with a node slot.)
 */
export function catchupSlotName(db: string, group: string, local: string, parting: string): string {
  return composeName("bdr", [db, group, CATCHUP_PART, shortHash(`${local}\u0000${parting}`)]);
}

/** The fixed part of catch-up slot names (after db and group). */
export const CATCHUP_PART = "pc";

/** True for slots pgraft owns (the `bdr_` prefix); anything else belongs to the operator and is never touched. */
export function isPgraftSlot(name: string): boolean {
  return name.startsWith(SLOT_PREFIX);
}

/** Throws unless `name` is one of pgraft's slots: the guard in front of every drop or advance. */
export function assertPgraftSlot(name: string): void {
  if (!isPgraftSlot(name)) throw new Error(`refusing to touch replication slot ${JSON.stringify(name)}: it is not pgraft's (no "${SLOT_PREFIX}" prefix)`);
}

/**
 * The application_name of node `local`'s receivers on every peer (PostgreSQL
 * keeps 63 bytes of it): commit scope majority names them in each node's
 * synchronous_standby_names (src/routing/commit-scope.ts).
 */
export function receiverApplicationName(local: string): string {
  return `pgraft_${local}`.slice(0, 63);
}
