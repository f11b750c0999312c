// A join whose source dies mid-copy restarts cleanly (issue 5): the joiner's
// half-copied tables are dropped, the source's slot for it is made again, and
// once the source is back the join finishes with identical contents and no
// stray slot.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep, until } from "../sql/helpers.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

const hash = async (n: PgNode): Promise<string> =>
  (await n.query<{ h: string }>("SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS h FROM app.big t")).rows[0]!.h;

describe("a join whose source dies", { timeout: 180_000 }, () => {
  let c: PgCluster | undefined;

  before(async () => {
    c = await startPgCluster({ nodes: 2, name: "join-restart" });
    const [n1] = c.nodes as [PgNode];
    await n1.query(`CREATE SCHEMA app; CREATE TABLE app.big (id int PRIMARY KEY, pad text);
      INSERT INTO app.big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;`);
    await n1.query("SELECT pgraft.create_node('src', $1)", [n1.pg.server.passfileDsn()]);
    await n1.query("SELECT bdr.create_node_group('g')");
  });

  after(async () => {
    await c?.destroy();
  });

  test("is restarted from the beginning once the source is back, and finishes with the same rows", async (t) => {
    const [n1, n2] = c!.nodes as [PgNode, PgNode];
    try {
      await n2.query("SELECT bdr.create_node('dst', $1)", [n2.pg.server.passfileDsn()]);
      await n2.query("SELECT bdr.join_node_group($1, wait_for_completion := false)", [n1.pg.server.passfileDsn()]);
      await until("the join to be copying", async () => (await n2.query<{ s: string }>("SELECT peer_state_name AS s FROM pgraft.local_node_summary")).rows[0]?.s === "JOINING", 30_000, 20);
      await n1.pg.server.kill();
      await sleep(1_500);
      await n1.pg.server.start();
      await until("the join to finish", async () => (await n2.query<{ s: string }>("SELECT peer_state_name AS s FROM pgraft.local_node_summary")).rows[0]?.s === "ACTIVE", 120_000);
      assert.match(n2.sidecar.tail(400), /restarting an interrupted join/, "the first attempt failed with its source and the join started over");
      assert.equal(await hash(n2), await hash(n1));
      const slots = await n1.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots ORDER BY 1");
      assert.deepEqual(slots.rows.map((r) => r.slot_name), ["bdr_postgres_g", "bdr_postgres_g_dst"]);
      await n1.query("INSERT INTO app.big VALUES (0, 'after the join')");
      await until("a new row to reach the joined node", async () => (await n2.query("SELECT 1 FROM app.big WHERE id = 0")).rows.length === 1, 30_000);
    } catch (e) {
      t.diagnostic(c!.tails(60));
      throw e;
    }
  });
});
