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
    // Rows of other versions: three written one by one here, one applied from member c, one from a writer no member knows.
    for (const id of [501, 502, 503]) await src.server.query(`INSERT INTO app.accounts VALUES (${id}, ${id}, 'own')`);
    await src.server.query(`
      SELECT pg_replication_origin_create('pgraft_gone');
      SELECT pg_replication_origin_session_setup('pgraft_node_c');
      BEGIN; SELECT pg_replication_origin_xact_setup('0/0', '2020-01-01 00:00:00.123456+00'); UPDATE app.accounts SET note = 'from c' WHERE id = 7; COMMIT;
      SELECT pg_replication_origin_session_reset();
      SELECT pg_replication_origin_session_setup('pgraft_gone');
      BEGIN; SELECT pg_replication_origin_xact_setup('0/0', '2021-01-01 00:00:00+00'); UPDATE app.accounts SET note = 'from gone' WHERE id = 8; COMMIT;
      SELECT pg_replication_origin_session_reset();`);
    await dst.server.query("SELECT pg_replication_origin_create(x) FROM unnest(ARRAY['pgraft_src', 'pgraft_node_c', 'pgraft_unknown']) x");
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
      origins: { source: "pgraft_src", members: ["pgraft_node_c"], unknown: "pgraft_unknown" },
      afterSnapshot: async () => {
        await src!.server.query("INSERT INTO app.accounts VALUES (100000, 1, 'after the snapshot'); SELECT pg_replication_origin_advance('pgraft_node_c', '0/FFFFFFF')");
      },
    });
    assert.match(r.consistentPoint, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.deepEqual([...r.originProgress], [["pgraft_node_c", "0/1234ABC"]], "origin progress as of the snapshot, not after");
    assert.equal(r.tables, 2);
    assert.equal(r.rows, 553);
    const sum = async (db: TestPostgres, where = ""): Promise<string> =>
      ((await db.server.query<{ h: string }>(`SELECT md5(string_agg(a::text, ',' ORDER BY id)) AS h FROM app.accounts a ${where}`))[0]!.h);
    assert.equal(await sum(dst!), await sum(src!, "WHERE id < 100000"));
    assert.equal((await dst!.server.query("SELECT 1 FROM app.accounts WHERE id = 100000")).length, 0);
    const slots = await src!.server.query<{ slot_name: string; plugin: string }>("SELECT slot_name, plugin FROM pg_replication_slots");
    assert.deepEqual(slots, [{ slot_name: "bdr_postgres_g_joiner", plugin: "test_decoding" }]);
    // Every copied row keeps its version: the source's commit time, and its writer as the joiner's origin for it.
    const versions = async (db: TestPostgres, names: Record<string, string>): Promise<string[]> =>
      (
        await db.server.query<{ v: string }>(
          `SELECT a.id || ' ' || v.timestamp || ' ' || coalesce(r.roname, 'local') AS v FROM app.accounts a, pg_xact_commit_timestamp_origin(a.xmin) v
            LEFT JOIN pg_replication_origin r ON r.roident = v.roident WHERE a.id < 100000 ORDER BY a.id`,
        )
      ).map((x) => x.v.replace(/\S+$/, (o) => names[o] ?? o));
    const onSource = await versions(src!, { local: "pgraft_src", pgraft_gone: "pgraft_unknown" });
    assert.deepEqual(await versions(dst!, {}), onSource);
    assert.equal(new Set(onSource.map((v) => v.split(" ").slice(1).join(" "))).size, 6, "six versions: the bulk insert, three single inserts, c's and the unknown writer's");
    assert.ok(onSource.some((v) => v.startsWith("7 2020-01-01 00:00:00.123456+00 pgraft_node_c")), onSource.join("\n"));
    const cols = await dst!.server.query<{ data_type: string }>("SELECT data_type FROM information_schema.columns WHERE table_schema = 'app' AND column_name = 'balance'");
    assert.equal(cols[0]!.data_type, "numeric");
    // Each copied table has statistics at once (ANALYZE after its copy), not whenever autovacuum comes by.
    const analyzed = await dst!.server.query<{ t: string }>("SELECT DISTINCT schemaname || '.' || tablename AS t FROM pg_stats WHERE schemaname IN ('app', 'public') ORDER BY 1");
    assert.deepEqual(analyzed.map((x) => x.t), ["app.accounts", "public.events"]);
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
