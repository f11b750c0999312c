// What a parted node removes from its own PostgreSQL (issue 10): everything
// that could feed the group again or hold WAL back. Its slots (the group slot,
// one per former peer, any catch-up slot) would let a member stream changes
// made here after the part — or a later join's own copy, taken for new
// inserts — into the group; its publication names the group; its origins for
// the former peers hold replication state and their progress would be wrong
// for any future membership. Origins are retired, not just dropped, so rows
// written by those peers never look like a later node's (origins.ts).
//
// staleSlots()/dropSlots() are the members' side of the same: a node slot here
// for a node that is no longer in the group (parted while this node's sidecar
// was down, so it never saw the part) would hold WAL back for ever.
import type pg from "pg";
import { connectClient } from "./connection.js";
import { catchupSlotName, groupSlotName, isPgraftSlot, nodeSlotName, publicationName } from "./naming.js";
import { retireOrigin } from "./origins.js";
import { dropPgraftSlot } from "./provider.js";
import { quoteIdent } from "./statements.js";

export interface LeaveGroupOptions {
  /** This node's database (superuser). */
  localDsn: string;
  db: string;
  group: string;
  /** The origins to retire: this node's origins for every other node of the group (originName), and the join's unknown-writer origin. */
  origins: string[];
}

export interface LeaveGroupResult {
  slots: string[];
  publication: boolean;
  origins: string[];
}

/** Drop every pgraft slot of this database, the group's publication, and retire the given origins. Idempotent. */
export async function leaveGroup(o: LeaveGroupOptions): Promise<LeaveGroupResult> {
  const c = await connectClient(o.localDsn, "pgraft_leave");
  try {
    const out: LeaveGroupResult = { slots: [], publication: false, origins: [] };
    const slots = await c.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots WHERE database = current_database() ORDER BY 1");
    for (const s of slots.rows) {
      if (isPgraftSlot(s.slot_name) && (await dropPgraftSlot(c, s.slot_name))) out.slots.push(s.slot_name);
    }
    const pub = publicationName(o.db, o.group);
    const p = await c.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [pub]);
    if (p.rows.length) {
      await c.query(`DROP PUBLICATION ${quoteIdent(pub)}`);
      out.publication = true;
    }
    for (const origin of o.origins) if (await retireOrigin(c, origin)) out.origins.push(origin);
    return out;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export interface StaleSlotsOptions {
  localDsn: string;
  db: string;
  group: string;
  /** This node's name. */
  self: string;
  /** Every other node of the group that is not PARTED (joining ones too: their slots here are being made). */
  nodes: string[];
}

/**
 * The pgraft slots of this database that no node of the group can need: not
 * the group slot, nor a node slot of a node in `nodes`, nor a part's catch-up
 * slot between two of them.
 */
export async function staleSlots(o: StaleSlotsOptions): Promise<string[]> {
  const everyone = [o.self, ...o.nodes];
  const keep = new Set([groupSlotName(o.db, o.group), ...o.nodes.map((n) => nodeSlotName(o.db, o.group, n))]);
  for (const a of everyone) for (const b of o.nodes) if (a !== b) keep.add(catchupSlotName(o.db, o.group, a, b));
  return withLocal(o.localDsn, async (c) => {
    const slots = await c.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots WHERE database = current_database() AND slot_type = 'logical' ORDER BY 1");
    return slots.rows.map((s) => s.slot_name).filter((n) => isPgraftSlot(n) && !keep.has(n));
  });
}

/** Drop these pgraft slots of this database (their walsenders terminated first); returns those that existed. */
export async function dropSlots(localDsn: string, names: string[]): Promise<string[]> {
  return withLocal(localDsn, async (c) => {
    const dropped: string[] = [];
    for (const n of names) if (await dropPgraftSlot(c, n)) dropped.push(n);
    return dropped;
  });
}

async function withLocal<T>(dsn: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await connectClient(dsn, "pgraft_slots_sweep");
  try {
    return await f(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}
