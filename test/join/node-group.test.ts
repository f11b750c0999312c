// Node groups end to end (issue 5): 3 PostgreSQL 15 servers with their
// sidecars. Node 1 has data and creates the group; nodes 2 and 3 join while
// writers keep inserting on the members (nothing may be lost or applied
// twice); all three converge, concurrent updates of one row resolve the same
// way everywhere with the conflict logged, and a parted node's slots are gone.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep, until } from "../sql/helpers.js";
import { boundedCall, startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

/** An ordered hash of every user table's rows. */
async function contentHash(n: PgNode): Promise<string> {
  const r = await n.query<{ h: string }>(`SELECT
    (SELECT md5(coalesce(string_agg(a::text, ',' ORDER BY id), '')) FROM app.accounts a) || '/' ||
    (SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY id), '')) FROM app.events e) || '/' ||
    (SELECT md5(coalesce(string_agg(l::text, ',' ORDER BY l::text), '')) FROM app.log l) AS h`);
  return r.rows[0]!.h;
}

/** Every writer started, so the file's `after` stops any a failed test left running (else the process never exits). */
const writers = new Set<{ stop(): Promise<string[]> }>();

/** Insert unique rows on `n` until stopped; returns the ids that committed. */
function writer(n: PgNode, prefix: string): { stop(): Promise<string[]> } {
  let running = true;
  const done: string[] = [];
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const id = `${prefix}-${i}`;
      try {
        await n.query("INSERT INTO app.events (id, at) VALUES ($1, now())", [id]);
        done.push(id);
      } catch {
        // a restart of the table during a join's schema copy is not expected here; any failure just means "not committed"
      }
      await sleep(5);
    }
  })();
  const w = {
    async stop() {
      running = false;
      await loop;
      return done;
    },
  };
  writers.add(w);
  return w;
}

describe("node groups over logical replication", { timeout: 240_000 }, () => {
  let c: PgCluster | undefined;
  const dsn = (n: PgNode): string => n.pg.server.passfileDsn();

  before(async () => {
    c = await startPgCluster({ nodes: 3, name: "groups" });
    const [n1] = c.nodes;
    await n1!.query(`
      CREATE SCHEMA app;
      CREATE TABLE app.accounts (id int PRIMARY KEY, balance numeric(40,12) NOT NULL, note text);
      CREATE TABLE app.events (id text PRIMARY KEY, at timestamptz NOT NULL);
      CREATE TABLE app.log (msg text, n numeric);
      INSERT INTO app.accounts SELECT g, g * 0.000000000001 + 12345678901234567890, repeat('x', g % 3000) FROM generate_series(1, 200) g;
      INSERT INTO app.log VALUES ('no primary key', 0.1), ('no primary key', 0.1);`);
  });

  after(async () => {
    await Promise.all([...writers].map((w) => w.stop()));
    await c?.destroy();
  });

  test("create a group, join two nodes while the members write, converge with nothing lost or doubled", async (t) => {
    try {
      await joinTwo(t);
    } catch (e) {
      t.diagnostic(c!.tails(80));
      throw e;
    }
  });

  async function joinTwo(t: { diagnostic(m: string): void }): Promise<void> {
    const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
    await n1.query("SELECT pgraft.create_node('alpha', $1)", [dsn(n1)]);
    await n1.query("SELECT bdr.create_node_group('g1')");
    assert.equal((await n1.query<{ slot: string }>("SELECT bdr.local_group_slot_name() AS slot")).rows[0]!.slot, "bdr_postgres_g1");

    // The writers stop however the joins end: a writer left running would keep this test file from ever exiting.
    const w1 = writer(n1, "a");
    let w2: ReturnType<typeof writer> | undefined;
    try {
      await n2.query("SELECT bdr.create_node('beta', $1)", [dsn(n2)]);
      await boundedCall(n2, "SELECT bdr.join_node_group($1)", [dsn(n1)], 90);
      w2 = writer(n2, "b");
      await n3.query("SELECT pgraft.create_node('gamma', $1)", [dsn(n3)]);
      await boundedCall(n3, "SELECT pgraft.join_node_group($1, 'g1')", [dsn(n2)], 90);
      await sleep(1_000);
    } finally {
      await Promise.all([w1.stop(), w2?.stop()]);
    }
    const ids = [...(await w1.stop()), ...((await w2?.stop()) ?? [])];
    t.diagnostic(`${ids.length} rows written during the joins`);

    const summary = await n3.query<{ node_name: string; peer_state_name: string }>("SELECT node_name, peer_state_name FROM bdr.node_summary ORDER BY node_seq_id");
    assert.deepEqual(summary.rows, [
      { node_name: "alpha", peer_state_name: "ACTIVE" },
      { node_name: "beta", peer_state_name: "ACTIVE" },
      { node_name: "gamma", peer_state_name: "ACTIVE" },
    ]);
    let hashes: string[];
    try {
      hashes = await until("all three nodes to hold the same rows", async () => {
        const h = await Promise.all([n1, n2, n3].map(contentHash));
        return h.every((x) => x === h[0]) ? h : undefined;
      }, 60_000);
    } catch (e) {
      // Which rows differ, and where each node's streams stand: what the logs alone cannot say.
      const want = new Set(ids);
      for (const n of [n1, n2, n3]) {
        const have = (await n.query<{ id: string }>("SELECT id FROM app.events")).rows.map((r) => r.id);
        const missing = ids.filter((id) => !have.includes(id));
        const extra = have.filter((id) => !want.has(id));
        t.diagnostic(`node ${n.id}: ${have.length} rows; missing ${missing.length} (${missing.slice(0, 10).join(", ")}); not written by the test ${extra.length} (${extra.slice(0, 10).join(", ")})`);
        const info = await n.query("SELECT * FROM pgraft.node_catchup_info");
        t.diagnostic(`node ${n.id} catchup info: ${JSON.stringify(info.rows)}`);
        const origins = await n.query("SELECT external_id, remote_lsn::text, local_lsn::text FROM pg_replication_origin_status");
        t.diagnostic(`node ${n.id} origins: ${JSON.stringify(origins.rows)}`);
        const activity = await n.query("SELECT pid, application_name AS app, state, wait_event_type AS wt, wait_event AS w, left(query, 150) AS q FROM pg_stat_activity WHERE application_name LIKE 'pgraft%'");
        t.diagnostic(`node ${n.id} sessions: ${JSON.stringify(activity.rows)}`);
      }
      throw e;
    }
    t.diagnostic(`converged: ${hashes[0]}`);
    for (const n of [n1, n2, n3]) {
      const rows = await n.query<{ id: string }>("SELECT id FROM app.events ORDER BY id");
      assert.deepEqual(rows.rows.map((r) => r.id).sort(), [...ids].sort(), `node ${n.id}: every committed insert exactly once`);
      assert.equal((await n.query("SELECT * FROM app.log")).rows.length, 2, `node ${n.id}: the table without a primary key`);
    }
    const slots = await n1.query<{ slot_name: string; state: string }>("SELECT slot_name, state FROM pgraft.node_slots ORDER BY slot_name");
    assert.deepEqual(
      slots.rows.map((r) => r.slot_name),
      ["bdr_postgres_g1", "bdr_postgres_g1_beta", "bdr_postgres_g1_gamma"],
    );
    await until("node 1's node slots to stream", async () => (await n1.query<{ state: string }>("SELECT state FROM pgraft.node_slots WHERE NOT is_group_slot")).rows.every((r) => r.state === "streaming"), 60_000);
  }

  test("concurrent updates of one row resolve the same way on every node and are logged as conflicts", async () => {
    const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
    // Both updated and then committed together, so neither node has applied the other's change before its own commits
    // (two autocommit UPDATEs could run one after the other's arrival: no conflict then, and nothing logged).
    const sessions = [await n1.connect(), await n2.connect()];
    try {
      await Promise.all(sessions.map((s, i) => s.query(`BEGIN; UPDATE app.accounts SET note = 'from ${i ? "beta" : "alpha"}' WHERE id = 7`)));
      await Promise.all(sessions.map((s) => s.query("COMMIT")));
    } finally {
      await Promise.all(sessions.map((s) => s.end().catch(() => undefined)));
    }
    const notes = await until("node 7's note to agree everywhere", async () => {
      const v = await Promise.all([n1, n2, n3].map(async (n) => (await n.query<{ note: string }>("SELECT note FROM app.accounts WHERE id = 7")).rows[0]!.note));
      return v.every((x) => x === v[0]) ? v : undefined;
    }, 60_000);
    assert.ok(["from alpha", "from beta"].includes(notes[0]!));
    await until("a conflict row", async () => {
      const r = await Promise.all([n1, n2].map((n) => n.query("SELECT 1 FROM pgraft.conflict_history")));
      return r.some((x) => x.rows.length > 0);
    }, 15_000);
  });

  test("kill -9 a node's PostgreSQL and sidecar while the others write: its slots show disconnected, then catchup/streaming, converged", async (t) => {
    const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
    const slotState = async (): Promise<string | undefined> =>
      (await n1.query<{ state: string }>("SELECT state FROM pgraft.node_slots WHERE target_name = 'beta'")).rows[0]?.state;
    await c!.killSidecar(2);
    await n2.pg.server.kill();
    const w = writer(n1, "k");
    await until("node 1's slot for beta to show disconnected", async () => (await slotState()) === "disconnected", 20_000);
    await sleep(1_000);
    await n2.pg.server.start();
    await c!.restartSidecar(2);
    const seen = new Set<string>();
    await until("node 1's slot for beta to stream again", async () => {
      const s = await slotState();
      if (s) seen.add(s);
      return s === "streaming";
    }, 60_000);
    t.diagnostic(`slot states seen after the restart: ${[...seen].join(", ")}`);
    const ids = await w.stop();
    assert.ok(ids.length > 0);
    await until("all three nodes to hold the same rows again", async () => {
      const h = await Promise.all([n1, n2, n3].map(contentHash));
      return h.every((x) => x === h[0]);
    }, 60_000);
    for (const n of [n2, n3]) {
      const got = await n.query("SELECT 1 FROM app.events WHERE id = ANY ($1)", [ids]);
      assert.equal(got.rows.length, ids.length, `node ${n.id} has every row written while beta was down`);
    }
  });

  test("part a node while the others write: converged without it, its slots gone everywhere", async () => {
    const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
    const w = writer(n1, "p");
    const r = await n2.query<{ part_node: string }>("SELECT bdr.part_node('gamma')");
    assert.match(r.rows[0]!.part_node, /parted/);
    const ids = await w.stop();
    assert.ok(ids.length > 0);
    await until("nodes 1 and 2 to agree", async () => (await contentHash(n1)) === (await contentHash(n2)), 60_000);
    for (const n of [n1, n2]) {
      await until(`node ${n.id} to drop gamma's slot`, async () => (await n.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE '%gamma%'")).rows.length === 0, 60_000);
    }
    const st = await n1.query<{ peer_state_name: string }>("SELECT peer_state_name FROM pgraft.node_summary WHERE node_name = 'gamma'");
    assert.equal(st.rows[0]!.peer_state_name, "PARTED");
    await n1.query("SELECT bdr.drop_node('gamma')");
    void n3;
  });

  test("bad input: clear errors, nothing changed", async () => {
    const [n1, , n3] = c!.nodes as [PgNode, PgNode, PgNode];
    const fails = async (n: PgNode, sql: string, params: unknown[], code: string, re: RegExp): Promise<void> => {
      await assert.rejects(n.query(sql, params), (e: unknown) => (e as { code?: string }).code === code && re.test((e as Error).message), sql);
    };
    await fails(n1, "SELECT bdr.join_node_group($1)", [dsn(n1)], "55000", /already in group "g1"/);
    await fails(n1, "SELECT bdr.create_node('x', $1)", [dsn(n1)], "42710", /already node "alpha"/);
    await fails(n3, "SELECT bdr.join_node_group('host=127.0.0.1 port=1 dbname=postgres')", [], "08001", /cannot connect/);
    await fails(n3, "SELECT bdr.join_node_group('not a dsn')", [], "22023", /key=value/);
    await fails(n3, "SELECT bdr.join_node_group('host=127.0.0.1 port=abc dbname=postgres')", [], "22023", /invalid port "abc"/);
    await fails(n3, "SELECT bdr.join_node_group('hots=127.0.0.1 dbname=postgres')", [], "22023", /invalid connection option "hots"/);
    await fails(n1, "SELECT bdr.part_node('nobody')", [], "42704", /does not exist/);
    await fails(n1, "SELECT bdr.join_node_group($1, synchronize_structure := 'some')", [dsn(n1)], "22023", /synchronize_structure/);
    await fails(n1, "SELECT bdr.drop_node_group('g1')", [], "22023", /still has nodes/);
    await fails(n3, "SELECT bdr.create_node(repeat('x', 64), $1)", [dsn(n3)], "22023", /longer than 63 bytes/);
    await fails(n3, "SELECT bdr.create_node('x', $1, 'quantum')", [dsn(n3)], "22023", /kind "quantum"/);
    await fails(n1, "SELECT bdr.create_node_group(NULL)", [], "22004", /must not be NULL/);
    await fails(n1, "SELECT bdr.alter_node_interface('alpha', 'mysql://x')", [], "22023", /postgresql:\/\//);
    await fails(n1, "SELECT bdr.alter_node_interface('nobody', $1)", [dsn(n1)], "42704", /does not exist/);
    const summary = await n1.query("SELECT node_name, peer_state_name FROM bdr.node_summary ORDER BY 1");
    assert.deepEqual(summary.rows, [{ node_name: "alpha", peer_state_name: "ACTIVE" }, { node_name: "beta", peer_state_name: "ACTIVE" }], "nothing changed");
  });

  test("the remaining nodes part (the last one at once); then the nodes and the empty group are dropped", async () => {
    const [n1] = c!.nodes as [PgNode];
    assert.match((await n1.query<{ part_node: string }>("SELECT bdr.part_node('beta')")).rows[0]!.part_node, /parted/);
    assert.match((await n1.query<{ part_node: string }>("SELECT bdr.part_node('alpha')")).rows[0]!.part_node, /parted/);
    await n1.query("SELECT bdr.drop_node('alpha'), bdr.drop_node('beta')");
    await n1.query("SELECT bdr.drop_node_group('g1')");
    assert.equal((await n1.query("SELECT * FROM bdr.node_summary")).rows.length, 0);
  });
});
