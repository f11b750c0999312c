// What a node removes when it leaves a group, and origin ids that are never
// reused (issue 10 §2), against a real PostgreSQL 15 server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { dropSlots, leaveGroup, originName, recreateOrigin, retireOrigin, staleSlots } from "../../src/slots/index.js";
import { catchupSlotName, groupSlotName, nodeSlotName, publicationName } from "../../src/slots/naming.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";

const DB = "postgres";
const G = "g";

describe("leaving a group; retired origin ids", () => {
  let pg: TestPostgres | undefined;
  const q = <R extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]> => pg!.server.query<R>(sql, params);
  const slots = async (): Promise<string[]> => (await q<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots ORDER BY 1")).map((r) => r.slot_name);
  const makeSlot = (name: string): Promise<unknown> => q("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [name]);

  before(async () => {
    pg = await startTestPostgres();
    await q("CREATE TABLE t (id int PRIMARY KEY, note text)");
  });
  after(async () => {
    await pg?.destroy();
  });

  test("a dropped origin's id is never given to the next origin: rows of the old writer stay attributed to a retired id", async () => {
    const old = originName(DB, G, "gamma");
    await q("SELECT pg_replication_origin_create($1)", [old]);
    const oldId = Number((await q<{ id: string }>("SELECT roident::text AS id FROM pg_replication_origin WHERE roname = $1", [old]))[0]!.id);
    const c = await pg!.server.connect();
    try {
      await c.query("SELECT pg_replication_origin_session_setup($1)", [old]);
      await c.query("BEGIN; SELECT pg_replication_origin_xact_setup('0/0', now()); INSERT INTO t VALUES (1, 'by the old gamma'); COMMIT");
      await c.query("SELECT pg_replication_origin_session_reset()");
      assert.equal(await retireOrigin(c, old), true);
      assert.deepEqual((await c.query("SELECT 1 FROM pg_replication_origin WHERE roname = $1", [old])).rows, [], "the origin is gone");
      // The next origins, the same name again among them, get other ids.
      await c.query("SELECT pg_replication_origin_create($1)", [originName(DB, G, "delta")]);
      await recreateOrigin(c, old);
    } finally {
      await c.end();
    }
    const ids = await q<{ roname: string; id: string }>("SELECT roname, roident::text AS id FROM pg_replication_origin ORDER BY roident");
    const holder = ids.find((r) => Number(r.id) === oldId);
    assert.equal(holder?.roname, `pgraft_retired_${oldId}`, JSON.stringify(ids));
    const writer = await q<{ roname: string }>("SELECT r.roname FROM t, pg_xact_commit_timestamp_origin(t.xmin) v JOIN pg_replication_origin r ON r.roident = v.roident WHERE t.id = 1");
    assert.equal(writer[0]!.roname, `pgraft_retired_${oldId}`, "the old gamma's row is not the new origins'");
  });

  test("retiring an id below which others were freed retires those too, and a missing origin is no error", async () => {
    const names = ["a", "b", "c"].map((n) => originName(DB, "h", n));
    for (const n of names) await q("SELECT pg_replication_origin_create($1)", [n]);
    await q("SELECT pg_replication_origin_drop($1)", [names[0]]); // freed by someone else: a gap below b's id
    const c = await pg!.server.connect();
    try {
      const bId = Number((await c.query<{ id: string }>("SELECT roident::text AS id FROM pg_replication_origin WHERE roname = $1", [names[1]])).rows[0]!.id);
      assert.equal(await retireOrigin(c, names[1]!), true);
      assert.equal(await retireOrigin(c, names[1]!), false);
      const r = await c.query<{ id: string }>("SELECT roident::text AS id FROM pg_replication_origin WHERE roname = $1", [`pgraft_retired_${bId}`]);
      assert.equal(r.rows.length, 1);
      const next = await c.query<{ id: string }>("SELECT pg_replication_origin_create('someone_else')::text AS id");
      assert.ok(Number(next.rows[0]!.id) > bId, "no id at or below the retired one was free");
    } finally {
      await c.end();
    }
  });

  test("stale slots: only node slots of nodes no longer in the group, never the group slot, a member's, a catch-up slot or an operator's", async () => {
    const keep = [groupSlotName(DB, G), nodeSlotName(DB, G, "beta"), nodeSlotName(DB, G, "joiner"), catchupSlotName(DB, G, "beta", "joiner")];
    const gone = [nodeSlotName(DB, G, "ghost"), catchupSlotName(DB, G, "beta", "ghost")];
    for (const s of [...keep, ...gone, "operators_slot"]) await makeSlot(s);
    const dsn = pg!.server.keyValueDsn();
    const stale = await staleSlots({ localDsn: dsn, db: DB, group: G, self: "alpha", nodes: ["beta", "joiner"] });
    assert.deepEqual(stale.sort(), [...gone].sort());
    assert.deepEqual((await dropSlots(dsn, stale)).sort(), [...gone].sort());
    assert.deepEqual(await slots(), [...keep, "operators_slot"].sort());
  });

  test("leaving: every pgraft slot of the database, the publication and the given origins go; an operator's slot stays; twice is fine", async () => {
    await q(`CREATE PUBLICATION ${publicationName(DB, G)} FOR ALL TABLES`);
    const origins = [originName(DB, G, "beta"), originName(DB, G, "joiner")];
    for (const o of origins) await q("SELECT pg_replication_origin_create($1)", [o]);
    const dsn = pg!.server.keyValueDsn();
    const earlier = [originName(DB, G, "delta"), originName(DB, G, "gamma")]; // made by the first test
    const r = await leaveGroup({ localDsn: dsn, db: DB, group: G, origins: [...origins, ...earlier, originName(DB, G, "never-existed")] });
    assert.equal(r.publication, true);
    assert.deepEqual(r.origins, [...origins, ...earlier]);
    assert.equal(r.slots.length, 4);
    assert.deepEqual(await slots(), ["operators_slot"]);
    assert.deepEqual(await q("SELECT 1 FROM pg_publication"), []);
    assert.deepEqual(await q("SELECT roname FROM pg_replication_origin WHERE roname NOT LIKE 'pgraft\\_retired\\_%' AND roname NOT LIKE 'pgraft\\_postgres\\_h\\_%' AND roname <> 'someone_else'"), []);
    assert.deepEqual(await leaveGroup({ localDsn: dsn, db: DB, group: G, origins }), { slots: [], publication: false, origins: [] });
  });
});
