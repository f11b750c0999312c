// The sending side, on each node: the group's publication, the group slot and
// one node slot per peer in the local PostgreSQL (seed 004, "Replication slots
// created by PGD"), tables without a primary key made REPLICA IDENTITY FULL,
// and the group slot moved forward to what every peer has confirmed.
//
// Only pgraft's own slots (prefix `bdr_`, named by naming.ts) are created,
// advanced or dropped; an operator's slots are never touched.
import type pg from "pg";
import { sqlState } from "./connection.js";
import { formatLsn, parseLsn } from "./lsn.js";
import { assertPgraftSlot, groupSlotName, nodeSlotName, publicationName } from "./naming.js";
import { quoteIdent } from "./statements.js";
import { sleep, type SlotsLogger } from "./types.js";

export type SlotState = "streaming" | "catchup" | "disconnected" | "missing" | "inactive";

export interface SlotInfo {
  name: string;
  kind: "group" | "node";
  /** For a node slot: the peer that streams it. */
  peer?: string;
  /**
   * node slot: `streaming` (a peer streams it and is within the threshold),
   * `catchup` (streams it, further behind), `disconnected` (nobody streams it:
   * the peer is down), `missing`; group slot: `inactive` (never streamed) or `missing`.
   */
  state: SlotState;
  active: boolean;
  confirmedFlushLsn: string | null;
  restartLsn: string | null;
  /** Current WAL position − confirmed_flush_lsn: what the peer has not yet confirmed. */
  lagBytes: number | null;
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
  confirmed_flush_lsn: string | null;
  restart_lsn: string | null;
  lag: string | null;
}

const truthy = (v: string | boolean): boolean => v === true || v === "t" || v === "true";

export class Provider {
  readonly groupSlot: string;
  readonly publication: string;
  /** One operation at a time on the client (status polls and the maintenance timer may overlap). */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly client: pg.Client,
    private readonly opts: ProviderOptions,
  ) {
    this.groupSlot = groupSlotName(opts.db, opts.group);
    this.publication = publicationName(opts.db, opts.group);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
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
    return this.ensureSlot(this.groupSlot);
  }

  /**
   * The slot `peer` streams from. `fromGroupSlot`: a copy of the group slot,
   * so the peer starts at the oldest position every member has confirmed
   * (what a join or part needs); otherwise a new slot starts now.
   */
  ensureNodeSlot(peer: string, o: { fromGroupSlot?: boolean } = {}): Promise<"created" | "copied" | "exists"> {
    return this.exclusive(() => this.ensureNodeSlotNow(peer, o));
  }

  private async ensureNodeSlotNow(peer: string, o: { fromGroupSlot?: boolean } = {}): Promise<"created" | "copied" | "exists"> {
    const name = this.nodeSlot(peer);
    if (!o.fromGroupSlot) return this.ensureSlot(name);
    if (await this.slotRow(name)) return this.ensureSlot(name);
    try {
      await this.client.query("SELECT pg_copy_logical_replication_slot($1, $2)", [this.groupSlot, name]);
      this.opts.log.info("node slot copied from the group slot", { slot: name, peer });
      return "copied";
    } catch (e) {
      if (sqlState(e) === "42710") return this.ensureSlot(name);
      throw e;
    }
  }

  private async slotRow(name: string): Promise<SlotRow | undefined> {
    const r = await this.client.query<SlotRow>(
      `SELECT slot_name, plugin, slot_type, database, active::text AS active, confirmed_flush_lsn::text, restart_lsn::text,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag
         FROM pg_replication_slots WHERE slot_name = $1`,
      [name],
    );
    return r.rows[0];
  }

  private async ensureSlot(name: string): Promise<"created" | "exists"> {
    assertPgraftSlot(name);
    const row = await this.slotRow(name);
    if (row) {
      const db = (await this.client.query<{ db: string }>("SELECT current_database() AS db")).rows[0]?.db;
      if (row.slot_type !== "logical" || row.plugin !== "pgoutput" || row.database !== db) {
        throw new Error(`replication slot ${name} exists but is not a pgoutput slot of database ${db} (${row.slot_type}, ${row.plugin}, ${row.database}): it was not made by pgraft for this group`);
      }
      return "exists";
    }
    try {
      // Waits for transactions running now to end (a consistent starting point for decoding).
      await this.client.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [name]);
      this.opts.log.info("replication slot created", { slot: name });
      return "created";
    } catch (e) {
      if (sqlState(e) === "42710") return "exists"; // created meanwhile
      throw e;
    }
  }

  /**
   * Drop the node slot of a parted peer. A walsender still streaming it is
   * terminated first (the peer is leaving). False when there was none.
   */
  dropNodeSlot(peer: string, timeoutMs = 10_000): Promise<boolean> {
    return this.exclusive(() => this.dropNodeSlotNow(peer, timeoutMs));
  }

  private async dropNodeSlotNow(peer: string, timeoutMs = 10_000): Promise<boolean> {
    const name = this.nodeSlot(peer);
    assertPgraftSlot(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.client.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [name]);
      try {
        const r = await this.client.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [name]);
        if (r.rowCount) this.opts.log.info("replication slot dropped", { slot: name, peer });
        return (r.rowCount ?? 0) > 0;
      } catch (e) {
        // 55006: still active (the walsender has not exited yet, or the peer reconnected)
        if (sqlState(e) !== "55006" || Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
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
    const r = await this.client.query<{ name: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND c.relreplident = 'd'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)`,
    );
    const changed: string[] = [];
    for (const { name } of r.rows) {
      try {
        await this.client.query(`ALTER TABLE ${name} REPLICA IDENTITY FULL`);
        changed.push(name);
      } catch (e) {
        // dropped meanwhile (42P01), or not ours to alter: next sweep tries again
        this.opts.log.warn("could not set REPLICA IDENTITY FULL", { table: name, error: (e as Error).message });
      }
    }
    if (changed.length) this.opts.log.info("tables without a primary key set to REPLICA IDENTITY FULL", { tables: changed });
    return changed;
  }

  /**
   * Move the group slot to the oldest position every peer in `peers` has
   * confirmed (the smallest confirmed_flush_lsn of their node slots). Nothing
   * moves while a peer's slot is missing, or when that position is not ahead.
   */
  advanceGroupSlot(peers: string[]): Promise<{ from: string; to: string } | undefined> {
    return this.exclusive(() => this.advanceGroupSlotNow(peers));
  }

  private async advanceGroupSlotNow(peers: string[]): Promise<{ from: string; to: string } | undefined> {
    const group = await this.slotRow(this.groupSlot);
    if (!group?.confirmed_flush_lsn) return undefined;
    let min: bigint | undefined;
    for (const p of peers) {
      const row = await this.slotRow(this.nodeSlot(p));
      if (!row?.confirmed_flush_lsn) return undefined;
      const lsn = parseLsn(row.confirmed_flush_lsn);
      if (min === undefined || lsn < min) min = lsn;
    }
    if (min === undefined) return undefined;
    const from = parseLsn(group.confirmed_flush_lsn);
    if (min <= from) return undefined;
    assertPgraftSlot(this.groupSlot);
    await this.client.query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", [this.groupSlot, formatLsn(min)]);
    this.opts.log.debug("group slot advanced", { slot: this.groupSlot, from: formatLsn(from), to: formatLsn(min) });
    return { from: formatLsn(from), to: formatLsn(min) };
  }

  /** The group slot and the node slots of `peers`, as seed 004's bdr.node_slots shows them. */
  slots(peers: string[]): Promise<SlotInfo[]> {
    return this.exclusive(() => this.slotsNow(peers));
  }

  private async slotsNow(peers: string[]): Promise<SlotInfo[]> {
    const threshold = BigInt(this.opts.catchupThresholdBytes ?? 1 << 20);
    const info = (name: string, kind: "group" | "node", row: SlotRow | undefined, peer?: string): SlotInfo => {
      const lag = row?.lag ? BigInt(row.lag) : null;
      const active = row ? truthy(row.active) : false;
      let state: SlotState;
      if (!row) state = "missing";
      else if (kind === "group") state = "inactive";
      else if (!active) state = "disconnected";
      else state = lag !== null && lag > threshold ? "catchup" : "streaming";
      return {
        name,
        kind,
        ...(peer !== undefined ? { peer } : {}),
        state,
        active,
        confirmedFlushLsn: row?.confirmed_flush_lsn ?? null,
        restartLsn: row?.restart_lsn ?? null,
        lagBytes: lag === null ? null : Number(lag),
      };
    };
    const out = [info(this.groupSlot, "group", await this.slotRow(this.groupSlot))];
    for (const p of peers) out.push(info(this.nodeSlot(p), "node", await this.slotRow(this.nodeSlot(p)), p));
    return out;
  }
}
