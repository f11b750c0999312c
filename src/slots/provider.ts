// The sending side, on each node: the group's publication, the group slot and
// one node slot per peer in the local PostgreSQL (seed 004, "Replication slots
// created by PGD"), tables without a primary key made REPLICA IDENTITY FULL,
// and the group slot moved forward to what every peer has confirmed — and no
// further than a part's catch-up may need (see advanceGroupSlot).
//
// Only pgraft's own slots (prefix `bdr_`, named by naming.ts) are created,
// advanced or dropped; an operator's slots are never touched.
//
// A node slot is made once per membership of its peer, never again behind its
// back (issue 10): a slot that vanished (dropped by hand, or invalidated by
// max_slot_wal_keep_size) after its peer streamed from it means the peer may
// lack changes made here since, and a new slot would start now and skip them
// silently. Such a slot is `slot_lost` (node_slots, the log once, the health
// check) until the peer is resynced (parted and joined again; forgetting the
// peer clears it). "Its peer streamed from it": this process saw the slot, or
// the peer's origin for this node has progress (a slot missing at start; a
// peer that cannot be asked then gets a new slot, with a warning — its own
// receiver is the second line, see receiver.ts).
//
// The admin connection comes from a ReconnectingClient (reconnect.ts): each
// operation takes the live client once and uses it throughout, so a
// transaction never straddles two sessions.
import type pg from "pg";
import { connectClient, destroyClient, sqlState } from "./connection.js";
import { formatLsn, parseLsn } from "./lsn.js";
import { GROUP_SLOT_PLUGIN, NODE_SLOT_PLUGINS, withNodeSlotPlugin } from "./node-slot-plugin.js";
import { retireOrigin } from "./origins.js";
import { assertPgraftSlot, groupSlotName, nodeSlotName, publicationName } from "./naming.js";
import { REPLICA_IDENTITY_TABLE } from "./local-objects.js";
import { setReplicaIdentityFull } from "./replica-identity.js";
import { APPLY_LOCK_KEY, quoteIdent } from "./statements.js";
import { errorText, sleep, within, type SlotsLogger } from "./types.js";

export type SlotState = "streaming" | "catchup" | "disconnected" | "missing" | "inactive" | "slot_lost" | "unknown";

/** A group slot advance slower than this is logged at info (it decodes the WAL it passes). */
const SLOW_ADVANCE_MS = 1_000;

export interface SlotInfo {
  name: string;
  kind: "group" | "node";
  /** For a node slot: the peer that streams it. */
  peer?: string;
  /**
   * node slot: `streaming` (a peer streams it and is within the threshold),
   * `catchup` (streams it, further behind), `disconnected` (nobody streams it:
   * the peer is down), `missing` (not made yet), `slot_lost` (it vanished or
   * was invalidated after the peer streamed from it: see `error`); group
   * slot: `inactive` (never streamed) or `missing`; any: `unknown` (this
   * node's PostgreSQL cannot be reached now).
   */
  state: SlotState;
  /** Why the slot is `slot_lost` (and how to recover), or why its state is `unknown`. */
  error?: string;
  active: boolean;
  confirmedFlushLsn: string | null;
  restartLsn: string | null;
  /** Current WAL position − confirmed_flush_lsn: what the peer has not yet confirmed. */
  lagBytes: number | null;
  /** Current WAL position − restart_lsn: the WAL this slot keeps PostgreSQL from recycling. */
  retainedBytes: number | null;
}

export interface ProviderOptions {
  db: string;
  group: string;
  log: SlotsLogger;
  /** A streaming peer further behind than this is in catchup (default 1 MiB). */
  catchupThresholdBytes?: number;
}

interface SlotRow {
  slot_name: string;
  plugin: string | null;
  slot_type: string;
  database: string | null;
  active: string | boolean;
  wal_status: string | null;
  confirmed_flush_lsn: string | null;
  restart_lsn: string | null;
  lag: string | null;
  retained?: string | null;
}

const truthy = (v: string | boolean): boolean => v === true || v === "t" || v === "true";

/** A peer as the group slot's hold-back sees it: its node slot here, its origin (here and on every node), how to reach it. */
export interface HoldBackPeer {
  name: string;
  origin: string;
  dsn: string;
}

/**
 * A position the group slot may move to once every peer has caught up with
 * what this node had applied when it was recorded: `progress` is this node's
 * progress per origin then.
 */
interface Candidate {
  lsn: bigint;
  progress: Map<string, bigint>;
}

/** Candidates kept (one per maintenance tick at most; the oldest go first, which only holds the slot back longer). */
const MAX_CANDIDATES = 32;
/** How long a peer may take to answer the hold-back's progress question before the slot stays where it is this time. */
const PEER_TIMEOUT_MS = 5_000;

/** Where the provider gets its admin connection (a ReconnectingClient). */
export interface ClientSource {
  client(): Promise<pg.Client>;
}

/** A peer as ensureNodeSlot needs it: to ask, when its slot is missing, whether it has streamed from it before. */
export interface NodeSlotPeer {
  name: string;
  dsn: string;
  /** The peer's origin for this node (originName(db, group, this node)): progress there means it has streamed from us. */
  originForUs: string;
}

export type NodeSlotOutcome = "created" | "copied" | "exists" | "slot_lost";

export class Provider {
  readonly groupSlot: string;
  readonly publication: string;
  /** One operation at a time on the client (status polls and the maintenance timer may overlap). */
  private lock: Promise<unknown> = Promise.resolve();
  /** Where the group slot may go, oldest first (see advanceGroupSlot). */
  private candidates: Candidate[] = [];
  /** The client of the operation running now (exclusive() takes the live one from the source each time). */
  private client!: pg.Client;
  /** Node slots seen to exist in this process (while their peer was a peer). */
  private readonly seen = new Set<string>();
  /** Node slots lost, with why (see the header); cleared only when the peer is forgotten (dropNodeSlot). */
  private readonly lost = new Map<string, { peer: string; error: string; at: Date }>();

  constructor(
    private readonly source: ClientSource,
    private readonly opts: ProviderOptions,
  ) {
    this.groupSlot = groupSlotName(opts.db, opts.group);
    this.publication = publicationName(opts.db, opts.group);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const take = async (): Promise<T> => {
      this.client = await this.source.client();
      return fn();
    };
    const run = this.lock.then(take, take);
    this.lock = run.catch(() => undefined);
    return run;
  }

  nodeSlot(peer: string): string {
    return nodeSlotName(this.opts.db, this.opts.group, peer);
  }

  /** The group's publication: every table, every kind of change (truncate included). */
  ensurePublication(): Promise<void> {
    return this.exclusive(() => this.ensurePublicationNow());
  }

  private async ensurePublicationNow(): Promise<void> {
    const r = await this.client.query<{ puballtables: string }>("SELECT puballtables::text FROM pg_publication WHERE pubname = $1", [this.publication]);
    if (r.rows[0]) {
      if (r.rows[0].puballtables !== "true") throw new Error(`publication ${this.publication} exists but is not FOR ALL TABLES: it is not pgraft's; rename or drop it`);
      return;
    }
    try {
      await this.client.query(`CREATE PUBLICATION ${quoteIdent(this.publication)} FOR ALL TABLES`);
      this.opts.log.info("publication created", { publication: this.publication });
    } catch (e) {
      if (sqlState(e) !== "42710") throw e; // created meanwhile
    }
  }

  ensureGroupSlot(): Promise<"created" | "exists"> {
    return this.exclusive(() => this.ensureGroupSlotNow());
  }

  private async ensureGroupSlotNow(): Promise<"created" | "exists"> {
    return this.ensureSlot(this.groupSlot, GROUP_SLOT_PLUGIN);
  }

  /**
   * The slot `peer` streams from. `fromGroupSlot`: a copy of the group slot,
   * so the peer starts at the oldest position every member has confirmed
   * (what a join or part needs); otherwise a new slot starts now.
   *
   * Made only for a peer that has not streamed from it before (see the
   * header): `slot_lost` when it vanished or was invalidated after that
   * (logged once; it is not made again). A missing slot whose peer cannot be
   * asked is made (with a warning): a new peer must not miss what is written
   * here meanwhile.
   */
  ensureNodeSlot(peer: NodeSlotPeer, o: { fromGroupSlot?: boolean } = {}): Promise<NodeSlotOutcome> {
    return this.exclusive(() => this.ensureNodeSlotNow(peer, o));
  }

  private async ensureNodeSlotNow(peer: NodeSlotPeer, o: { fromGroupSlot?: boolean } = {}): Promise<NodeSlotOutcome> {
    const name = this.nodeSlot(peer.name);
    if (this.lost.has(name)) return "slot_lost";
    const row = await this.slotRow(name);
    if (row) {
      if (this.lostIfInvalid(peer.name, name, row)) return "slot_lost";
      const r = await this.ensureSlot(name, "node");
      this.seen.add(name);
      return r;
    }
    if (this.seen.has(name)) {
      this.markLost(peer.name, name, "vanished (dropped?) while this node ran");
      return "slot_lost";
    }
    const streamed = await peerHasStreamed(peer);
    if (streamed === undefined) {
      // Made anyway: a new peer (a joiner's first start with a member down) must not lose what is written here meanwhile.
      // Its receiver still refuses a slot that stands beyond what it confirmed in its process (receiver.ts).
      this.opts.log.warn("node slot missing and its peer cannot be asked whether it streamed from it before: made now", { slot: name, peer: peer.name });
    } else if (streamed) {
      this.markLost(peer.name, name, `is missing, though ${peer.name} has streamed from it (its origin ${peer.originForUs} has progress)`);
      return "slot_lost";
    }
    const made = await this.makeNodeSlot(peer.name, name, o);
    this.seen.add(name);
    return made;
  }

  private async makeNodeSlot(peer: string, name: string, o: { fromGroupSlot?: boolean }): Promise<"created" | "copied" | "exists"> {
    if (!o.fromGroupSlot) return this.ensureSlot(name, "node");
    try {
      const { plugin } = await withNodeSlotPlugin((p) => this.client.query("SELECT pg_copy_logical_replication_slot($1, $2, false, $3)", [this.groupSlot, name, p]));
      this.opts.log.info("node slot copied from the group slot", { slot: name, peer, plugin });
      return "copied";
    } catch (e) {
      if (sqlState(e) === "42710") return this.ensureSlot(name, "node");
      throw e;
    }
  }

  private async slotRow(name: string): Promise<SlotRow | undefined> {
    const r = await this.client.query<SlotRow>(
      `SELECT slot_name, plugin, slot_type, database, active::text AS active, wal_status, confirmed_flush_lsn::text, restart_lsn::text,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag,
              pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
         FROM pg_replication_slots WHERE slot_name = $1`,
      [name],
    );
    return r.rows[0];
  }

  /** `kind`: a node slot (node-slot-plugin.ts), or the group slot, which is always pgoutput (copies of it relay by origin name). */
  private async ensureSlot(name: string, kind: "node" | typeof GROUP_SLOT_PLUGIN): Promise<"created" | "exists"> {
    assertPgraftSlot(name);
    const row = await this.slotRow(name);
    if (row) {
      const db = (await this.client.query<{ db: string }>("SELECT current_database() AS db")).rows[0]?.db;
      const plugins = kind === "node" ? NODE_SLOT_PLUGINS : [GROUP_SLOT_PLUGIN];
      if (row.slot_type !== "logical" || !plugins.includes(row.plugin ?? "") || row.database !== db) {
        throw new Error(`replication slot ${name} exists but is not a ${plugins.join(" or ")} slot of database ${db} (${row.slot_type}, ${row.plugin}, ${row.database}): it was not made by pgraft for this group`);
      }
      return "exists";
    }
    try {
      // Waits for transactions running now to end (a consistent starting point for decoding).
      const create = (p: string) => this.client.query("SELECT pg_create_logical_replication_slot($1, $2)", [name, p]);
      let plugin: string = kind;
      if (kind === "node") ({ plugin } = await withNodeSlotPlugin(create));
      else await create(kind);
      this.opts.log.info("replication slot created", { slot: name, plugin });
      return "created";
    } catch (e) {
      if (sqlState(e) === "42710") return "exists"; // created meanwhile
      throw e;
    }
  }

  /** A node slot that PostgreSQL invalidated (max_slot_wal_keep_size): lost. */
  private lostIfInvalid(peer: string, name: string, row: SlotRow): boolean {
    if (row.wal_status !== "lost") return false;
    this.markLost(peer, name, "was invalidated by PostgreSQL (wal_status lost: it fell behind max_slot_wal_keep_size)");
    return true;
  }

  private markLost(peer: string, name: string, how: string): void {
    if (this.lost.has(name)) return;
    const error =
      `replication slot ${name}, which ${peer} streams this node's changes from, ${how}: ${peer} may lack changes made here since it last confirmed. ` +
      `The slot is not made again (a new one would start now and skip them silently); resync ${peer}: part it, drop it, empty its database and join it again (README: "Resyncing a node")`;
    this.lost.set(name, { peer, error, at: new Date() });
    this.opts.log.error("node slot lost", { slot: name, peer, error });
  }

  /**
   * Drop the node slot of a parted peer. A walsender still streaming it is
   * terminated first (the peer is leaving). False when there was none. The
   * peer's slot is then no longer known here, nor lost: a new membership of
   * the same name gets a new slot.
   */
  dropNodeSlot(peer: string, timeoutMs = 10_000): Promise<boolean> {
    const name = this.nodeSlot(peer);
    return this.exclusive(async () => {
      const dropped = await this.dropSlotNow(name, timeoutMs, { peer });
      this.seen.delete(name);
      this.lost.delete(name);
      return dropped;
    });
  }

  /** Drop one of pgraft's slots here (a walsender streaming it is terminated first). False when there was none. */
  dropSlot(name: string, timeoutMs = 10_000): Promise<boolean> {
    return this.exclusive(() => this.dropSlotNow(name, timeoutMs, {}));
  }

  private async dropSlotNow(name: string, timeoutMs: number, fields: Record<string, unknown>): Promise<boolean> {
    const dropped = await dropPgraftSlot(this.client, name, timeoutMs);
    if (dropped) this.opts.log.info("replication slot dropped", { slot: name, ...fields });
    return dropped;
  }

  /**
   * Drop the replication origin of a parted peer, its id retired (origins.ts:
   * rows it wrote must never look like a later peer's). False when there was
   * none; throws (55006) while an applier still holds it.
   */
  dropOrigin(origin: string): Promise<boolean> {
    return this.exclusive(async () => {
      const dropped = await retireOrigin(this.client, origin);
      if (dropped) this.opts.log.info("replication origin dropped (its id retired)", { origin });
      return dropped;
    });
  }

  /**
   * REPLICA IDENTITY FULL on every published table without a primary key
   * (with the default identity PostgreSQL would refuse UPDATE and DELETE on it
   * once it is in a FOR ALL TABLES publication, and the receiving side finds
   * its rows by their old values). Returns the tables changed.
   */
  ensureReplicaIdentity(): Promise<string[]> {
    return this.exclusive(() => this.ensureReplicaIdentityNow());
  }

  private async ensureReplicaIdentityNow(): Promise<string[]> {
    const r = await this.client.query<{ oid: string; name: string }>(
      `SELECT c.oid::text AS oid, format('%I.%I', n.nspname, c.relname) AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND c.relreplident = 'd'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)`,
    );
    const changed: string[] = [];
    for (const { oid, name } of r.rows) {
      try {
        await setReplicaIdentityFull(this.client, oid, name);
        changed.push(name);
      } catch (e) {
        // dropped meanwhile (42P01), or not ours to alter: next sweep tries again
        this.opts.log.warn("could not set REPLICA IDENTITY FULL", { table: name, error: (e as Error).message });
      }
    }
    if (changed.length) this.opts.log.info("tables without a primary key set to REPLICA IDENTITY FULL", { tables: changed });
    await this.restoreReplicaIdentity();
    return changed;
  }

  /**
   * A table this sweep set to FULL that has a primary key now (a key added
   * after CREATE TABLE, as pg_restore, pgbench -i and most migrations do) goes
   * back to DEFAULT: FULL logs every updated row whole, for nothing once a key
   * finds it. A FULL set by anyone else is left alone, and so is one changed
   * since by a user (the record goes).
   */
  private async restoreReplicaIdentity(): Promise<void> {
    await this.client.query(
      `DELETE FROM ${REPLICA_IDENTITY_TABLE} r WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = r.relid AND c.relreplident = 'f')`,
    );
    const r = await this.client.query<{ oid: string; name: string }>(
      `SELECT c.oid::text AS oid, format('%I.%I', n.nspname, c.relname) AS name
         FROM ${REPLICA_IDENTITY_TABLE} r JOIN pg_class c ON c.oid = r.relid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)`,
    );
    const restored: string[] = [];
    for (const { oid, name } of r.rows) {
      try {
        await this.client.query(`BEGIN; ALTER TABLE ${name} REPLICA IDENTITY DEFAULT; DELETE FROM ${REPLICA_IDENTITY_TABLE} WHERE relid = ${Number(oid)}; COMMIT`);
        restored.push(name);
      } catch (e) {
        await this.client.query("ROLLBACK").catch(() => undefined);
        this.opts.log.warn("could not set REPLICA IDENTITY back to DEFAULT", { table: name, error: (e as Error).message });
      }
    }
    if (restored.length) this.opts.log.info("tables that have a primary key now set back to REPLICA IDENTITY DEFAULT", { tables: restored });
  }

  /**
   * Move the group slot forward. The slot is what a joining node's slots are
   * copied from and what a part's catch-up streams (catchup.ts), so it must
   * keep (a) every change of this node that some peer has not confirmed, and
   * (b) every change this node applied from a third node O that some peer X
   * may still lack: if O then disappears, X catches up on O's changes from
   * here, from this slot's position on.
   *
   * So the slot only moves to a candidate: a position L recorded together
   * with this node's progress V per origin, read while no apply transaction
   * can be committing (the applier holds APPLY_LOCK shared in each one), so
   * that everything applied here that ends before L is counted in V. L is the
   * oldest position every peer's node slot here has confirmed at that moment,
   * which is rule (a). The slot moves to the newest candidate for which every
   * peer X has every other peer O's changes up to V[O]: X's durable progress
   * for O's origin (read from X's PostgreSQL), or what X has confirmed on its
   * node slot on O, has reached it (a peer that cannot be asked holds the slot
   * where it is). Then any of O's changes X still lacks came after V[O], was
   * applied here after L, and is still in this slot's stream.
   */
  async advanceGroupSlot(peers: HoldBackPeer[]): Promise<{ from: string; to: string } | undefined> {
    if (!peers.length) return undefined;
    const open = await this.exclusive(() => this.recordCandidate(peers));
    if (!open?.length) return undefined;
    // Outside the lock on the admin client: a peer that does not answer must not hold up status polls.
    const seen = new Map<string, PeerView>();
    for (const p of peers) {
      try {
        seen.set(p.name, await peerView(p, peers, this.opts));
      } catch (e) {
        this.opts.log.debug("group slot held: a peer's progress cannot be read", { slot: this.groupSlot, peer: p.name, error: errorText(e) });
        return undefined;
      }
    }
    // What X has of O's changes: up to its progress for O's origin, and up to what it confirmed on O's node slot
    // for it (it confirms only what it has durably applied, or positions with nothing of O's before them left to
    // apply). The second covers what a joiner got in its snapshot and a stretch where O wrote nothing.
    const has = (x: HoldBackPeer, o: HoldBackPeer): bigint => {
      const progress = seen.get(x.name)!.progress.get(o.origin) ?? 0n;
      const confirmed = seen.get(o.name)!.confirmed.get(x.name) ?? 0n;
      return progress > confirmed ? progress : confirmed;
    };
    const lacking = (c: Candidate): string | undefined => {
      for (const x of peers) {
        for (const o of peers) {
          if (o === x) continue;
          const need = c.progress.get(o.origin) ?? 0n;
          const have = has(x, o);
          if (have < need) return `${x.name} has ${o.name}'s changes up to ${formatLsn(have)}, this node up to ${formatLsn(need)}`;
        }
      }
      return undefined;
    };
    const to = [...open].reverse().find((c) => lacking(c) === undefined);
    if (!to) {
      this.opts.log.debug("group slot held back: a peer lacks changes this node applied from another", { slot: this.groupSlot, why: lacking(open[0]!) });
      return undefined;
    }
    return this.exclusive(() => this.moveGroupSlot(to));
  }

  /**
   * Record a candidate (under APPLY_LOCK, so no apply transaction is half
   * committed) and return the candidates ahead of the group slot that every
   * peer's node slot has confirmed, oldest first.
   */
  private async recordCandidate(peers: HoldBackPeer[]): Promise<Candidate[] | undefined> {
    const group = await this.slotRow(this.groupSlot);
    if (!group?.confirmed_flush_lsn) return undefined;
    const from = parseLsn(group.confirmed_flush_lsn);
    const slots = peers.map((p) => this.nodeSlot(p.name));
    let row: { lsn: string | null; n: number; progress: string | null } | undefined;
    await this.client.query("BEGIN");
    try {
      await this.client.query("SET LOCAL lock_timeout = '2s'");
      await this.client.query("SELECT pg_advisory_xact_lock($1)", [APPLY_LOCK_KEY]);
      const r = await this.client.query<{ lsn: string | null; n: number; progress: string | null }>(
        `SELECT (SELECT min(confirmed_flush_lsn)::text FROM pg_replication_slots WHERE slot_name = ANY($1)) AS lsn,
                (SELECT count(confirmed_flush_lsn)::int FROM pg_replication_slots WHERE slot_name = ANY($1)) AS n,
                (SELECT json_object_agg(roname, pg_replication_origin_progress(roname, false)::text)
                   FROM pg_replication_origin WHERE roname = ANY($2))::text AS progress`,
        [slots, peers.map((p) => p.origin)],
      );
      row = r.rows[0];
      await this.client.query("COMMIT");
    } catch (e) {
      await this.client.query("ROLLBACK").catch(() => undefined);
      // 55P03: appliers kept the lock busy; older candidates may still do
      if (sqlState(e) !== "55P03") throw e;
    }
    if (row?.lsn && Number(row.n) === slots.length) {
      const lsn = parseLsn(row.lsn);
      const progress = new Map<string, bigint>();
      for (const [origin, v] of Object.entries(JSON.parse(row.progress ?? "{}") as Record<string, string | null>)) progress.set(origin, v ? parseLsn(v) : 0n);
      const last = this.candidates[this.candidates.length - 1];
      if (lsn > from && (!last || lsn > last.lsn)) {
        this.candidates.push({ lsn, progress });
        if (this.candidates.length > MAX_CANDIDATES) this.candidates.shift();
      }
    }
    this.candidates = this.candidates.filter((c) => c.lsn > from);
    // (a) again: a node slot made again since (a peer that joined anew) starts later than the candidates before it.
    const now = await this.client.query<{ lsn: string | null; n: number }>(
      "SELECT min(confirmed_flush_lsn)::text AS lsn, count(confirmed_flush_lsn)::int AS n FROM pg_replication_slots WHERE slot_name = ANY($1)",
      [slots],
    );
    const confirmed = now.rows[0];
    if (!confirmed?.lsn || Number(confirmed.n) !== slots.length) return undefined;
    const upTo = parseLsn(confirmed.lsn);
    return this.candidates.filter((c) => c.lsn <= upTo);
  }

  private async moveGroupSlot(to: Candidate): Promise<{ from: string; to: string } | undefined> {
    const group = await this.slotRow(this.groupSlot);
    if (!group?.confirmed_flush_lsn) return undefined;
    const from = parseLsn(group.confirmed_flush_lsn);
    this.candidates = this.candidates.filter((c) => c.lsn > to.lsn);
    if (to.lsn <= from) return undefined;
    assertPgraftSlot(this.groupSlot);
    const t0 = Date.now();
    await this.client.query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", [this.groupSlot, formatLsn(to.lsn)]);
    const ms = Date.now() - t0;
    // Advancing decodes the WAL in between: after a bulk load that takes a while, and operators should see it.
    const fields = { slot: this.groupSlot, from: formatLsn(from), to: formatLsn(to.lsn), bytes: Number(to.lsn - from), ms };
    if (ms >= SLOW_ADVANCE_MS) this.opts.log.info("group slot advanced", fields);
    else this.opts.log.debug("group slot advanced", fields);
    return { from: formatLsn(from), to: formatLsn(to.lsn) };
  }

  /** The group slot and the node slots of `peers`, as seed 004's bdr.node_slots shows them. */
  slots(peers: string[]): Promise<SlotInfo[]> {
    return this.exclusive(() => this.slotsNow(peers));
  }

  /** The same rows without asking PostgreSQL (it cannot be reached: `error` says why): `unknown`, or `slot_lost` as known here. */
  offlineSlots(peers: string[], error: string): SlotInfo[] {
    const row = (name: string, kind: "group" | "node", peer?: string): SlotInfo => {
      const lost = this.lost.get(name);
      return {
        name,
        kind,
        ...(peer !== undefined ? { peer } : {}),
        state: lost ? "slot_lost" : "unknown",
        error: lost ? lost.error : error,
        active: false,
        confirmedFlushLsn: null,
        restartLsn: null,
        lagBytes: null,
        retainedBytes: null,
      };
    };
    return [row(this.groupSlot, "group"), ...peers.map((p) => row(this.nodeSlot(p), "node", p))];
  }

  /** The node slots lost here (see the header), by peer. */
  lostSlots(): { slot: string; peer: string; error: string; at: Date }[] {
    return [...this.lost].map(([slot, l]) => ({ slot, ...l }));
  }

  private async slotsNow(peers: string[]): Promise<SlotInfo[]> {
    const threshold = BigInt(this.opts.catchupThresholdBytes ?? 1 << 20);
    const info = (name: string, kind: "group" | "node", row: SlotRow | undefined, peer?: string): SlotInfo => {
      if (kind === "node" && peer !== undefined) {
        // A node slot seen here that is gone now, or invalidated: lost (it stays so, even if one appears again).
        if (row) {
          if (!this.lostIfInvalid(peer, name, row)) this.seen.add(name);
        } else if (this.seen.has(name)) this.markLost(peer, name, "vanished (dropped?) while this node ran");
      }
      const lost = this.lost.get(name);
      const lag = row?.lag ? BigInt(row.lag) : null;
      const active = row ? truthy(row.active) : false;
      let state: SlotState;
      if (lost) state = "slot_lost";
      else if (!row) state = "missing";
      else if (kind === "group") state = "inactive";
      else if (!active) state = "disconnected";
      else state = lag !== null && lag > threshold ? "catchup" : "streaming";
      return {
        name,
        kind,
        ...(peer !== undefined ? { peer } : {}),
        state,
        ...(lost ? { error: lost.error } : {}),
        active,
        confirmedFlushLsn: row?.confirmed_flush_lsn ?? null,
        restartLsn: row?.restart_lsn ?? null,
        lagBytes: lag === null ? null : Number(lag),
        retainedBytes: row?.retained ? Number(row.retained) : null,
      };
    };
    const out = [info(this.groupSlot, "group", await this.slotRow(this.groupSlot))];
    for (const p of peers) out.push(info(this.nodeSlot(p), "node", await this.slotRow(this.nodeSlot(p)), p));
    return out;
  }
}

/** What the hold-back learns from a peer: its durable progress per origin, and how far each other peer has confirmed its node slot there. */
interface PeerView {
  progress: Map<string, bigint>;
  confirmed: Map<string, bigint>;
}

async function peerView(p: HoldBackPeer, peers: HoldBackPeer[], o: { db: string; group: string }): Promise<PeerView> {
  const c = await connectClient(p.dsn, "pgraft_holdback", () => undefined, { connectionTimeoutMillis: PEER_TIMEOUT_MS, statement_timeout: PEER_TIMEOUT_MS });
  try {
    // pg_replication_origin_progress(…, true) flushes what it reports: a crash there cannot take it back.
    const r = await c.query<{ roname: string; lsn: string | null }>(
      "SELECT roname, pg_replication_origin_progress(roname, true)::text AS lsn FROM pg_replication_origin WHERE roname = ANY($1)",
      [peers.map((q) => q.origin)],
    );
    const others = peers.filter((q) => q !== p);
    const slots = others.map((q) => nodeSlotName(o.db, o.group, q.name));
    const s = await c.query<{ slot_name: string; lsn: string | null }>("SELECT slot_name, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ANY($1)", [slots]);
    const bySlot = new Map(s.rows.map((x) => [x.slot_name, x.lsn ? parseLsn(x.lsn) : 0n]));
    return {
      progress: new Map(r.rows.map((x) => [x.roname, x.lsn ? parseLsn(x.lsn) : 0n])),
      confirmed: new Map(others.map((q, i) => [q.name, bySlot.get(slots[i]!) ?? 0n])),
    };
  } finally {
    await within(c.end(), 2_000);
    destroyClient(c);
  }
}

/**
 * Whether `p` has streamed from its node slot here before: its origin for
 * this node has progress (set at its first session, or by its join).
 * Undefined when it cannot be asked now.
 */
async function peerHasStreamed(p: NodeSlotPeer): Promise<boolean | undefined> {
  let c: pg.Client | undefined;
  try {
    c = await connectClient(p.dsn, "pgraft_slotcheck", () => undefined, { connectionTimeoutMillis: PEER_TIMEOUT_MS, statement_timeout: PEER_TIMEOUT_MS });
    const r = await c.query<{ lsn: string | null }>("SELECT pg_replication_origin_progress(roname, false)::text AS lsn FROM pg_replication_origin WHERE roname = $1", [p.originForUs]);
    const lsn = r.rows[0]?.lsn;
    return lsn !== undefined && lsn !== null && parseLsn(lsn) > 0n;
  } catch {
    return undefined;
  } finally {
    if (c) {
      await within(c.end(), 2_000);
      destroyClient(c);
    }
  }
}

/**
 * Drop one of pgraft's slots on the server `client` is connected to (a
 * walsender still streaming it is terminated first, and the drop retried
 * while it exits). False when there was no such slot.
 */
export async function dropPgraftSlot(client: pg.Client, name: string, timeoutMs = 10_000): Promise<boolean> {
  assertPgraftSlot(name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await client.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [name]);
    try {
      const r = await client.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [name]);
      return (r.rowCount ?? 0) > 0;
    } catch (e) {
      // 55006: still active (the walsender has not exited yet, or the peer reconnected)
      if (sqlState(e) !== "55006" || Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}
