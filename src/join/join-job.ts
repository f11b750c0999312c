// A join, as the joining node's sidecar runs it (issue 5, seed 004):
//
//   JOIN_START  the request is in the catalog (join_node_group); restartable
//   JOINING     slots for the joiner exist on every member; schema and rows are
//               copied from the source under one snapshot; the joiner's
//               progress for every origin is set to match that snapshot
//   CATCHUP     the joiner streams from every member, the members from it
//   PROMOTE → PROMOTING → ACTIVE   once every stream has caught up (the group
//               controller moves it; one node at a time may promote)
//
// Why nothing is lost or applied twice: the source's slot for the joiner is
// created with the exported snapshot, so the source's own changes stream from
// exactly where the copy ends. Every other member's slot for the joiner is a
// copy of that member's group slot (which never moves past what every member has
// applied), and the joiner resumes that member's origin at the LSN the source
// had applied when the snapshot was taken (its origin progress, read while no
// apply transaction could commit: see snapshot-copy.ts). A join interrupted before CATCHUP starts over from JOIN_START: the
// copied tables are dropped first (the database was empty when the join began).
import pg from "pg";
import type { DataNode } from "../cluster/node-groups.js";
import { dsnClientConfig } from "../postgres/dsn.js";
import { dropPgraftSlot, ensureOrigin, groupSlotName, leaveGroup, nodeSlotName, originName, publicationName, recreateOrigin, retireOrigin, unknownWriterOriginName, withNodeSlotPlugin } from "../slots/index.js";
import { copyFromSnapshot, userSchemas, userTables } from "./snapshot-copy.js";

export interface JoinRequest {
  /** The member the data is copied from. */
  source: string;
  synchronizeStructure: "all" | "none";
}

export interface JoinJobDeps {
  /** The joining node, as the catalog has it now. */
  self: DataNode;
  /** Every node of the catalog. */
  nodes: () => DataNode[];
  /** Move the joiner to a new state through Raft. */
  setState: (state: string) => Promise<void>;
  progress: (message: string) => void;
}

const qi = (s: string): string => `"${s.replace(/"/g, '""')}"`;

async function withClient<T>(dsn: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(dsnClientConfig(dsn, { application_name: "pgraft_join", connectionTimeoutMillis: 10_000 }));
  c.on("error", () => {});
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Remove what an interrupted attempt copied. Only ever called for a database
 * the join found empty (no user schema, no table): with 'all' everything in it
 * came from the join; with 'none' only the rows did.
 */
async function dropCopiedData(dsn: string, sync: "all" | "none"): Promise<number> {
  return withClient(dsn, async (c) => {
    const tables = await userTables(c);
    if (sync === "none") {
      for (const t of tables) await c.query(`TRUNCATE ${qi(t.schema)}.${qi(t.table)} CASCADE`);
      return tables.length;
    }
    for (const s of await userSchemas(c)) await c.query(`DROP SCHEMA ${qi(s)} CASCADE`);
    for (const t of await userTables(c)) await c.query(`DROP TABLE IF EXISTS ${qi(t.schema)}.${qi(t.table)} CASCADE`);
    return tables.length;
  });
}

/**
 * What an earlier membership of this node's name, or an earlier attempt of
 * this join, may have left, and what a rejoin must not reuse (issue 10): on
 * the joiner, every pgraft slot in its database (a member streaming an old
 * slot would take the join's own copy for new inserts, and changes made here
 * after a part for the group's); on every member, its slot for the joiner and
 * its origin for the joiner (an old origin's progress would skip, or re-apply,
 * the new node's changes). Retired origins keep their ids (src/slots/origins.ts).
 */
async function clearLeftovers(self: DataNode, members: DataNode[], progress: (m: string) => void): Promise<void> {
  const db = self.dbname;
  const group = self.group;
  const slot = nodeSlotName(db, group, self.name);
  const here = await leaveGroup({ localDsn: self.dsn, db, group, origins: [] });
  for (const s of here.slots) progress(`dropped the stale slot ${s} here`);
  for (const m of members) {
    await withClient(m.dsn, async (c) => {
      if (await dropPgraftSlot(c, slot)) progress(`dropped the stale slot ${slot} on ${m.name}`);
      const origin = originName(db, group, self.name);
      if (await retireOrigin(c, origin)) progress(`retired ${m.name}'s old origin ${origin}`);
    });
  }
}

export async function runJoin(req: JoinRequest, d: JoinJobDeps): Promise<void> {
  const self = d.self;
  const group = self.group;
  const db = self.dbname;
  const members = d.nodes().filter((n) => n.group === group && n.name !== self.name && n.state === "ACTIVE");
  const source = members.find((n) => n.name === req.source);
  if (!source) throw new Error(`the join source ${JSON.stringify(req.source)} is not an active member of group ${JSON.stringify(group)}`);
  const slot = nodeSlotName(db, group, self.name);

  // Every member's data plane must have made its publication and group slot: a slot created on the source before
  // its publication could never be decoded ("publication does not exist" at every position before it), and the
  // other members' slots for us are copies of their group slots. A member's data plane starts within a tick of
  // it becoming a member, so this is a short wait (the join is retried).
  for (const m of members) {
    const ready = await withClient(m.dsn, async (c) =>
      (
        await c.query<{ ok: string }>(
          "SELECT (EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AND EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2))::text AS ok",
          [publicationName(db, group), groupSlotName(db, group)],
        )
      ).rows[0]?.ok === "true",
    );
    if (!ready) throw new Error(`member ${m.name} has not set up its publication and group slot yet (its sidecar does so once it is a member); the join retries`);
  }

  if (self.state === "JOINING") {
    // An earlier attempt got this far and stopped: start over.
    const dropped = await dropCopiedData(self.dsn, req.synchronizeStructure);
    d.progress(`restarting an interrupted join (removed ${dropped} copied table(s))`);
    await d.setState("CREATED");
    await d.setState("JOIN_START");
  }
  await d.setState("JOINING");

  // A clean start whatever an earlier membership under this name (or an earlier attempt) left behind.
  await clearLeftovers(self, members, d.progress);

  // Slots for the joiner: on every other member a fresh copy of its group slot; on the source, made with the snapshot below.
  for (const m of members) {
    if (m.name === source.name) continue;
    await withClient(m.dsn, async (c) => {
      await withNodeSlotPlugin((p) => c.query("SELECT pg_copy_logical_replication_slot($1, $2, false, $3)", [groupSlotName(db, group), slot, p]));
      d.progress(`slot ${slot} on ${m.name} (a copy of its group slot)`);
    });
  }

  // The joiner's origins: one per member, new (rows are copied under them), and one for rows of writers no member knows.
  const unknown = unknownWriterOriginName(db, group);
  await withClient(self.dsn, async (c) => {
    for (const m of members) await recreateOrigin(c, originName(db, group, m.name));
    await ensureOrigin(c, unknown);
  });

  const r = await copyFromSnapshot({
    sourceDsn: source.dsn,
    targetDsn: self.dsn,
    slotName: slot,
    synchronizeStructure: req.synchronizeStructure,
    progress: d.progress,
    origins: {
      source: originName(db, group, source.name),
      members: members.filter((m) => m.name !== source.name).map((m) => originName(db, group, m.name)),
      unknown,
    },
  });
  d.progress(`copied ${r.tables} table(s), ${r.rows} row(s) from ${source.name}; its changes stream from ${r.consistentPoint}`);

  // The joiner's progress per origin, consistent with the snapshot.
  await withClient(self.dsn, async (c) => {
    for (const m of members) {
      if (m.name === source.name) continue; // the slot itself starts at the snapshot
      const origin = originName(db, group, m.name);
      const lsn = r.originProgress.get(origin);
      if (!lsn) continue; // the source had applied nothing of m's: stream it all from the copied group slot
      await c.query("SELECT pg_replication_origin_advance($1, $2::pg_lsn)", [origin, lsn]);
      d.progress(`origin ${origin} resumes at ${lsn}`);
    }
  });
  await d.setState("CATCHUP");
}
