// The data half of a join against two real PostgreSQL servers: schema and rows
// copied under one exported snapshot (a change committed after it is not
// copied), the slot's consistent point returned, origin progress as of the
// snapshot, and a non-empty joining database refused.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { checkTargetEmpty, copyFromSnapshot, JoinCopyError } from "../../src/join/snapshot-copy.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";

describe("join: copy under one snapshot", () => {
  let src: TestPostgres | undefined;
  let dst: TestPostgres | undefined;

  before(async () => {
    [src, dst] = await Promise.all([startTestPostgres(), startTestPostgres()]);
    await src.server.query(`
      CREATE SCHEMA app;
      CREATE TABLE app.accounts (id bigint PRIMARY KEY, balance numeric(30,10) NOT NULL, note text);
      CREATE TABLE public.events (at timestamptz NOT NULL, payload jsonb);
      SELECT pg_replication_origin_create('pgraft_node_c');
      SELECT pg_replication_origin_advance('pgraft_node_c', '0/1234ABC');
      INSERT INTO app.accounts SELECT g, g * 0.1 + 1e-10, repeat('é', g % 7) FROM generate_series(1, 500) g;
      INSERT INTO public.events SELECT now(), jsonb_build_object('n', g) FROM generate_series(1, 50) g;`);
  });

  after(async () => {
    await Promise.all([src?.destroy(), dst?.destroy()]);
  });

  test("rows and schema at the snapshot; later commits are not copied; consistent point and origin progress returned", async () => {
    const r = await copyFromSnapshot({
      sourceDsn: src!.server.keyValueDsn(),
      targetDsn: dst!.server.dsn(),
      slotName: "bdr_postgres_g_joiner",
      synchronizeStructure: "all",
      parallel: 2,
      afterSnapshot: async () => {
        await src!.server.query("INSERT INTO app.accounts VALUES (100000, 1, 'after the snapshot'); SELECT pg_replication_origin_advance('pgraft_node_c', '0/FFFFFFF')");
      },
    });
    assert.match(r.consistentPoint, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.deepEqual([...r.originProgress], [["pgraft_node_c", "0/1234ABC"]], "origin progress as of the snapshot, not after");
    assert.equal(r.tables, 2);
    assert.equal(r.rows, 550);
    const sum = async (db: TestPostgres, where = ""): Promise<string> =>
      ((await db.server.query<{ h: string }>(`SELECT md5(string_agg(a::text, ',' ORDER BY id)) AS h FROM app.accounts a ${where}`))[0]!.h);
    assert.equal(await sum(dst!), await sum(src!, "WHERE id < 100000"));
    assert.equal((await dst!.server.query("SELECT 1 FROM app.accounts WHERE id = 100000")).length, 0);
    const slots = await src!.server.query<{ slot_name: string; plugin: string }>("SELECT slot_name, plugin FROM pg_replication_slots");
    assert.deepEqual(slots, [{ slot_name: "bdr_postgres_g_joiner", plugin: "pgoutput" }]);
    const cols = await dst!.server.query<{ data_type: string }>("SELECT data_type FROM information_schema.columns WHERE table_schema = 'app' AND column_name = 'balance'");
    assert.equal(cols[0]!.data_type, "numeric");
  });

  test("a joining database with schemas, tables or rows is refused, naming them", async () => {
    await assert.rejects(checkTargetEmpty(dst!.server.dsn(), "all"), (e: unknown) => e instanceof JoinCopyError && e.sqlstate === "55000" && /schema\(s\) app/.test(e.message));
    await assert.rejects(checkTargetEmpty(dst!.server.dsn(), "none"), /already has rows in app\.accounts/);
    await dst!.server.query("TRUNCATE app.accounts, public.events");
    await checkTargetEmpty(dst!.server.dsn(), "none");
    await dst!.server.query("DROP SCHEMA app CASCADE");
    await assert.rejects(checkTargetEmpty(dst!.server.dsn(), "all"), /1 table\(s\) \(public\.events\)/);
    await dst!.server.query("DROP TABLE public.events");
    await checkTargetEmpty(dst!.server.dsn(), "all");
  });
});
