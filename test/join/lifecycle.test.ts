// A node's life in a group while the members keep UPDATING (issue 10, §1 and
// §2), on 3 PostgreSQL 15 servers with their sidecars:
//  - gamma joins while alpha and beta update existing rows (with and without a
//    primary key): copied rows keep the source's versions, so no update
//    committed between the snapshot and the end of the copy is lost on gamma;
//  - gamma is parted (its slots, publication and origins go, on it and for it
//    on the members), gets a row written after the part, is dropped, emptied,
//    created again and joins again under the same name while alpha updates:
//    every node ends identical, with every committed update, without the row
//    written after the part, without doubled rows in the table without a key,
//    and rows the old gamma wrote are not taken for the new gamma's (origin ids
//    are never reused).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep, until } from "../sql/helpers.js";
import { boundedCall, startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

const ROWS = 300;

/** Every user table's rows, hashed in order. */
async function contentHash(n: PgNode): Promise<string> {
  const r = await n.query<{ h: string }>(`SELECT
    (SELECT md5(coalesce(string_agg(a::text, ',' ORDER BY id), '')) FROM app.accounts a) || '/' ||
    (SELECT md5(coalesce(string_agg(l::text, ',' ORDER BY l::text), '')) FROM app.nopk l) AS h`);
  return r.rows[0]!.h;
}

interface Updater {
  /** id → the last value whose UPDATE committed. */
  readonly last: Map<number, number>;
  stop(): Promise<Map<number, number>>;
}
const updaters = new Set<Updater>();

/** Update rows `ids` of app.accounts on `n` round-robin (and, with `nopk`, one row of the table without a key) until stopped. */
function updater(n: PgNode, ids: number[], tag: string, nopk = false): Updater {
  let running = true;
  const last = new Map<number, number>();
  const loop = (async () => {
    for (let i = 1; running; i++) {
      const id = ids[i % ids.length]!;
      try {
        await n.query("UPDATE app.accounts SET v = $2, note = $3 WHERE id = $1", [id, i, `${tag} ${i}`]);
        last.set(id, i);
        if (nopk && i % 10 === 0) await n.query("UPDATE app.nopk SET n = $1 WHERE msg = 'updated by alpha'", [i]);
      } catch {
        // not committed: not expected, and the final check says which value each row must have
      }
      await sleep(4);
    }
  })();
  const u: Updater = {
    last,
    async stop() {
      running = false;
      await loop;
      return last;
    },
  };
  updaters.add(u);
  return u;
}

describe("a node's lifecycle while members update", { timeout: 300_000 }, () => {
  let c: PgCluster | undefined;
  const dsn = (n: PgNode): string => n.pg.server.passfileDsn();

  before(async () => {
    c = await startPgCluster({ nodes: 3, name: "lifecycle" });
    const [n1, n2] = c.nodes as [PgNode, PgNode];
    await n1.query(`
      CREATE SCHEMA app;
      CREATE TABLE app.accounts (id int PRIMARY KEY, v int NOT NULL, note text);
      CREATE TABLE app.nopk (msg text, n int, cur int DEFAULT 0); -- column names the copy's DO block must not confuse with its variables
      INSERT INTO app.accounts SELECT g, 0, 'initial' FROM generate_series(1, ${ROWS}) g;
      INSERT INTO app.nopk VALUES ('updated by alpha', 0), ('constant', 1), ('constant', 1);`);
    await n1.query("SELECT pgraft.create_node('alpha', $1)", [dsn(n1)]);
    await n1.query("SELECT bdr.create_node_group('g')");
    await n2.query("SELECT bdr.create_node('beta', $1)", [dsn(n2)]);
    await boundedCall(n2, "SELECT bdr.join_node_group($1)", [dsn(n1)], 120);
  });

  after(async () => {
    await Promise.all([...updaters].map((u) => u.stop()));
    await c?.destroy();
  });

  /** Every node holds the same rows, and each row the last value its writer committed. */
  async function converged(t: { diagnostic(m: string): void }, nodes: PgNode[], writers: Map<number, number>[]): Promise<void> {
    try {
      await until("every node to hold the same rows", async () => {
        const h = await Promise.all(nodes.map(contentHash));
        return h.every((x) => x === h[0]) ? h : undefined;
      }, 90_000);
    } catch (e) {
      for (const n of nodes) {
        const conflicts = await n.query("SELECT conflict_type, resolution, count(*)::int AS n FROM pgraft.conflict_history GROUP BY 1, 2");
        t.diagnostic(`node ${n.id}: conflicts ${JSON.stringify(conflicts.rows)}; nopk ${JSON.stringify((await n.query("SELECT * FROM app.nopk ORDER BY 1, 2")).rows)}`);
      }
      t.diagnostic(c!.tails(60));
      throw e;
    }
    for (const n of nodes) {
      const rows = new Map((await n.query<{ id: number; v: number }>("SELECT id, v FROM app.accounts")).rows.map((r) => [r.id, r.v]));
      for (const w of writers) {
        const lost = [...w].filter(([id, v]) => rows.get(id) !== v);
        assert.deepEqual(lost.slice(0, 5).map(([id, v]) => `${id}: want ${v}, have ${rows.get(id)}`), [], `node ${n.id}: ${lost.length} committed updates lost`);
      }
      assert.equal(rows.size, ROWS, `node ${n.id}: no row missing or added`);
      assert.equal((await n.query("SELECT 1 FROM app.nopk")).rows.length, 3, `node ${n.id}: the table without a primary key keeps its 3 rows`);
    }
  }

  test("a node joins while the members update existing rows: every node converges with every update", async (t) => {
    const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
    const half = ROWS / 2;
    const ua = updater(n1, Array.from({ length: half - 10 }, (_, i) => i + 1), "alpha", true);
    const ub = updater(n2, Array.from({ length: half }, (_, i) => half + i + 1), "beta");
    try {
      await n3.query("SELECT pgraft.create_node('gamma', $1)", [dsn(n3)]);
      await boundedCall(n3, "SELECT pgraft.join_node_group($1, 'g')", [dsn(n1)], 120);
      await sleep(1_000);
    } finally {
      await Promise.all([ua.stop(), ub.stop()]);
    }
    t.diagnostic(`${ua.last.size + ub.last.size} rows updated during the join`);
    await converged(t, [n1, n2, n3], [ua.last, ub.last]);
  });

  test("part, drop, empty and rejoin under the same name while a member updates: clean rejoin, nothing lost, doubled or resurrected", async (t) => {
    const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
    // Rows only gamma writes, so that alpha and beta hold rows whose writer is the old gamma.
    const gammaRows = Array.from({ length: 10 }, (_, i) => ROWS / 2 - 9 + i);
    const ug = updater(n3, gammaRows, "old gamma");
    await sleep(500);
    const byOldGamma = await ug.stop();
    await converged(t, [n1, n2, n3], [byOldGamma]);

    const ua = updater(n1, Array.from({ length: 100 }, (_, i) => i + 1), "alpha", true);
    try {
      assert.match((await n1.query<{ part_node: string }>("SELECT bdr.part_node('gamma')")).rows[0]!.part_node, /parted/);

      // Nothing on gamma can feed the group again, and the members hold nothing for it.
      await until("gamma to remove its slots, publication and origins", async () => {
        const left = await n3.query<{ what: string }>(`
          SELECT 'slot ' || slot_name AS what FROM pg_replication_slots
          UNION ALL SELECT 'publication ' || pubname FROM pg_publication
          UNION ALL SELECT 'origin ' || roname FROM pg_replication_origin WHERE roname NOT LIKE 'pgraft\\_retired\\_%'`);
        return left.rows.length === 0 ? true : undefined;
      }, 30_000);
      for (const n of [n1, n2]) {
        await until(`node ${n.id} to drop its slot and origin for gamma`, async () => {
          const left = await n.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE '%gamma%' UNION ALL SELECT 1 FROM pg_replication_origin WHERE roname LIKE '%gamma%'");
          return left.rows.length === 0 ? true : undefined;
        }, 30_000);
      }

      // Written on gamma after the part: never reaches the group.
      await n3.query("INSERT INTO app.accounts VALUES (100000, 1, 'written on gamma after its part'); INSERT INTO app.nopk VALUES ('written on gamma after its part', 0)");
      await n1.query("SELECT bdr.drop_node('gamma')");
      await n3.query("DROP SCHEMA app CASCADE");
      await n3.query("SELECT pgraft.create_node('gamma', $1)", [dsn(n3)]);
      await boundedCall(n3, "SELECT pgraft.join_node_group($1, 'g')", [dsn(n1)], 120);
      await sleep(1_000);
    } finally {
      await ua.stop();
    }
    await converged(t, [n1, n2, n3], [ua.last]);
    for (const n of [n1, n2, n3]) {
      assert.equal((await n.query("SELECT 1 FROM app.accounts WHERE id = 100000")).rows.length, 0, `node ${n.id}: the row written on gamma after its part`);
      // The old gamma's rows: their writer is a retired origin id, not the new gamma's origin.
      const writers = await n.query<{ roname: string | null }>(
        `SELECT DISTINCT r.roname FROM app.accounts a, pg_xact_commit_timestamp_origin(a.xmin) v LEFT JOIN pg_replication_origin r ON r.roident = v.roident WHERE a.id = ANY ($1)`,
        [[...byOldGamma.keys()]],
      );
      for (const w of writers.rows) assert.ok(w.roname === null || !w.roname.endsWith("_gamma"), `node ${n.id}: a row the old gamma wrote is attributed to ${w.roname}`);
    }
    const summary = await n1.query<{ node_name: string; peer_state_name: string }>("SELECT node_name, peer_state_name FROM bdr.node_summary ORDER BY node_name");
    assert.deepEqual(summary.rows.map((r) => `${r.node_name} ${r.peer_state_name}`), ["alpha ACTIVE", "beta ACTIVE", "gamma ACTIVE"]);
  });
});
