// Replication origins whose ids are never reused.
//
// A row's writer is read from its xmin's commit record: (commit time, origin
// id). PostgreSQL gives a new origin the lowest free id, so an origin dropped
// and a new one created later (a peer parted, another — or the same name
// again — joined) would make every row the old peer wrote look as if the new
// one had: last-update-wins would then compare them under the wrong node id,
// and the fast path would even take them for the new peer's own rows.
//
// So an origin is never just dropped: in the same transaction its id is taken
// again by a placeholder named `pgraft_retired_<id>` (never a member's name,
// so its rows' writer is "unknown", which loses ties). Placeholders hold no
// progress, so they cost no replication-state slot; an id stays retired for
// the life of the server.
import type pg from "pg";
import { composeName } from "./naming.js";

/** The placeholder that keeps a dropped origin's id from being reused. */
export function retiredOriginName(roident: number): string {
  return `pgraft_retired_${roident}`;
}

/**
 * The origin a join gives copied rows whose writer the source did not know
 * either (a node long gone, or a retired id): never a member's, so such rows
 * lose ties to any member's change, as they do on the source.
 */
export function unknownWriterOriginName(db: string, group: string): string {
  return composeName("pgraft", [db, group]);
}

/**
 * Drop origin `name` (if it exists) and retire its id. True when there was
 * one. Throws 55006 while a session still holds it.
 */
export async function retireOrigin(client: pg.Client, name: string): Promise<boolean> {
  await client.query("BEGIN");
  try {
    const r = await client.query<{ roident: string }>("SELECT roident::text FROM pg_replication_origin WHERE roname = $1", [name]);
    const id = r.rows[0] ? Number(r.rows[0].roident) : undefined;
    if (id === undefined) {
      await client.query("COMMIT");
      return false;
    }
    await client.query("SELECT pg_replication_origin_drop($1)", [name]);
    // The lowest free id goes to the next create: retire ids below ours that were free (dropped by someone else) too,
    // until ours is taken. Creates of other sessions wait for this transaction (pg_replication_origin is locked).
    for (let taken = 0; taken !== id; ) {
      const free = await client.query<{ id: string }>("SELECT min(g)::text AS id FROM generate_series(1, 65535) g WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roident = g)");
      const c = await client.query<{ id: string }>("SELECT pg_replication_origin_create($1)::text AS id", [retiredOriginName(Number(free.rows[0]!.id))]);
      taken = Number(c.rows[0]!.id);
      if (taken > id) throw new Error(`retiring origin ${name}: its id ${id} was not free after the drop (got ${taken})`);
    }
    await client.query("COMMIT");
    return true;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** Retire origin `name` if it exists, then create it anew (no progress, a new id). */
export async function recreateOrigin(client: pg.Client, name: string): Promise<void> {
  await retireOrigin(client, name);
  await client.query("SELECT pg_replication_origin_create($1)", [name]);
}

/** Create origin `name` unless it exists. */
export async function ensureOrigin(client: pg.Client, name: string): Promise<void> {
  await client.query("SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)", [name]);
}
