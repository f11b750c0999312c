// A node slot dropped by hand (issue 10, section 4): alpha and beta form a
// group (three sidecars, so one can restart with the Raft cluster up);
// while alpha writes, the slot beta streams alpha's changes from is dropped
// on alpha. That stream must stop with a clear error — pgraft.node_slots on
// alpha, pgraft.node_catchup_info on beta, both logs, both health checks —
// and stay stopped across restarts of both sidecars: the slot is never made
// again (a new one would start after the rows written meanwhile, which beta
// would then silently never get). The documented resync (part beta, drop it,
// empty its database, join it again) brings the group back: both nodes hold
// the same rows and nothing is reported lost.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep, until } from "../sql/helpers.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

const SLOT = "bdr_postgres_g1_beta";

async function contents(n: PgNode): Promise<string> {
  const r = await n.query<{ n: string; h: string | null }>("SELECT count(*)::text AS n, md5(string_agg(t::text, ',' ORDER BY id)) AS h FROM app.t t");
  return `${r.rows[0]!.n}/${r.rows[0]!.h ?? ""}`;
}

const writers = new Set<{ stop(): Promise<number> }>();

/** Inserts and updates on `n` until stopped; returns the commits. */
function load(n: PgNode, prefix: string): { stop(): Promise<number> } {
  let running = true;
  let committed = 0;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      try {
        if (i % 2 === 0) await n.query("INSERT INTO app.t (id, v, who) VALUES ($1, $2, $3)", [`${prefix}-${i}`, i, prefix]);
        else await n.query("UPDATE app.t SET v = v + 1, who = $1 WHERE id = $2", [prefix, `seed-${(i % 50) + 1}`]);
        committed++;
      } catch {
        await sleep(50);
      }
      await sleep(5);
    }
  })();
  const w = {
    async stop() {
      running = false;
      await loop;
      writers.delete(w);
      return committed;
    },
  };
  writers.add(w);
  return w;
}

type Check = { check_name: string; severity: string; detail: string };

async function dataPlaneCheck(n: PgNode): Promise<Check | undefined> {
  return (await n.query<Check>("SELECT * FROM pgraft_health_check() WHERE check_name = 'data_plane'")).rows[0];
}

async function slotState(n: PgNode, target: string): Promise<string | undefined> {
  return (await n.query<{ state: string }>("SELECT state FROM pgraft.node_slots WHERE target_name = $1", [target])).rows[0]?.state;
}

async function streamState(n: PgNode, from: string): Promise<string | undefined> {
  return (await n.query<{ state: string }>("SELECT state FROM pgraft.node_catchup_info WHERE node_name = $1", [from])).rows[0]?.state;
}

describe("a node slot dropped by hand", { timeout: 600_000 }, () => {
  let c: PgCluster | undefined;
  const dsn = (n: PgNode): string => n.pg.server.passfileDsn();

  async function join(n: PgNode, via: PgNode): Promise<void> {
    const s = await n.connect();
    try {
      await s.query("SET statement_timeout = '120s'");
      await s.query("SELECT bdr.join_node_group($1)", [dsn(via)]);
    } finally {
      await s.end();
    }
  }

  before(async () => {
    c = await startPgCluster({ nodes: 3, name: "slot-lost" });
    const [n1, n2] = c.nodes as [PgNode, PgNode];
    try {
      await n1.query(`CREATE SCHEMA app; CREATE TABLE app.t (id text PRIMARY KEY, v int NOT NULL, who text);
        INSERT INTO app.t SELECT 'seed-' || g, 0, 'seed' FROM generate_series(1, 50) g;`);
      await n1.query("SELECT pgraft.create_node('alpha', $1)", [dsn(n1)]);
      await n1.query("SELECT bdr.create_node_group('g1')");
      await n2.query("SELECT bdr.create_node('beta', $1)", [dsn(n2)]);
      await join(n2, n1);
    } catch (e) {
      process.stderr.write(c.tails(60));
      throw e;
    }
  });

  after(async () => {
    await Promise.all([...writers].map((w) => w.stop()));
    await c?.destroy();
  });

  test("the stream stops with the error in node_slots, the logs and the health check, stays stopped across sidecar restarts, and a resync repairs the group", async (t) => {
    const [n1, n2] = c!.nodes as [PgNode, PgNode];
    try {
      const w = load(n1, "a");
      try {
        await until("beta to stream from alpha", async () => (await streamState(n2, "alpha")) === "streaming", 30_000);
        await sleep(500);
        // Dropped by hand: its walsender is terminated first (beta reconnects at once, so until the drop wins).
        await until("the slot to be dropped on alpha", async () => {
          await n1.query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [SLOT]);
          try {
            await n1.query("SELECT pg_drop_replication_slot($1)", [SLOT]);
            return true;
          } catch (e) {
            if ((e as { code?: string }).code === "42704") return true;
            return undefined;
          }
        }, 30_000, 20);
        await sleep(1_000); // rows written after the drop: beta must never get them through a new slot
      } finally {
        t.diagnostic(`alpha committed ${await w.stop()} transactions`);
      }

      // The stream stops, and both ends say so.
      await until("alpha's node_slots to show the slot lost", async () => (await slotState(n1, "beta")) === "slot_lost", 30_000);
      await until("beta's stream from alpha to show the slot lost", async () => (await streamState(n2, "alpha")) === "slot_lost", 60_000);
      for (const [n, names] of [
        [n1, /bdr_postgres_g1_beta.*resync beta: part it, drop it, empty its database and join it again/],
        [n2, /bdr_postgres_g1_beta on alpha .*resync node beta: part it, drop it, empty its database and join it again/],
      ] as const) {
        const h = await dataPlaneCheck(n);
        assert.equal(h?.severity, "critical", `node ${n.id}'s health check: ${JSON.stringify(h)}`);
        assert.match(h.detail, names);
      }
      const lostLogs = (n: PgNode, msg: string): number => n.sidecar.logRecords().filter((r) => r["msg"] === msg && r["level"] === "error").length;
      assert.equal(lostLogs(n1, "node slot lost"), 1, "alpha logs the lost slot once");
      assert.equal(lostLogs(n2, "replication from peer stopped: slot lost"), 1, "beta logs its stopped stream once");

      // Neither sidecar's restart makes the slot again or lets beta stream past what it lacks.
      await c!.killSidecar(1);
      await c!.restartSidecar(1);
      await until("alpha's restarted data plane to find the slot lost", async () => (await slotState(n1, "beta")) === "slot_lost", 60_000);
      await c!.killSidecar(2);
      await c!.restartSidecar(2);
      await until("beta's restarted receiver to find the slot lost", async () => (await streamState(n2, "alpha")) === "slot_lost", 60_000);
      await sleep(2_000);
      assert.equal((await n1.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [SLOT])).rows.length, 0, "the slot was not made again");
      assert.equal(await slotState(n1, "beta"), "slot_lost");
      assert.equal(await streamState(n2, "alpha"), "slot_lost");
      const rows = async (n: PgNode): Promise<Map<string, number>> => new Map((await n.query<{ id: string; v: number }>("SELECT id, v FROM app.t")).rows.map((r) => [r.id, r.v]));
      const [onAlpha, onBeta] = await Promise.all([rows(n1), rows(n2)]);
      const missing = [...onAlpha].filter(([id, v]) => onBeta.get(id) !== v).length;
      t.diagnostic(`rows of alpha's that beta lacks (or holds older): ${missing}`);
      assert.ok(missing > 0, "beta lacks what alpha wrote after the drop — and says so");

      // The documented resync: part beta, drop it, empty its database, join it again.
      assert.match((await n1.query<{ part_node: string }>("SELECT bdr.part_node('beta')")).rows[0]!.part_node, /parted/);
      await until("beta to leave", async () => (await n2.query("SELECT 1 FROM pg_replication_slots")).rows.length === 0, 60_000);
      await n1.query("SELECT bdr.drop_node('beta')");
      await n2.query("DROP SCHEMA app CASCADE");
      await n2.query("SELECT bdr.create_node('beta', $1)", [dsn(n2)]);
      const w2 = load(n1, "r");
      try {
        await join(n2, n1);
        await sleep(1_000);
      } finally {
        await w2.stop();
      }
      const same = await until("alpha and beta to hold the same rows", async () => {
        const [a, b] = await Promise.all([contents(n1), contents(n2)]);
        return a === b ? a : undefined;
      }, 90_000, 250);
      t.diagnostic(`converged after the resync: ${same}`);
      for (const n of [n1, n2]) {
        await until(`node ${n.id}'s health check to report the data plane ok`, async () => (await dataPlaneCheck(n))?.severity === "ok", 60_000, 250);
      }
      assert.equal(await slotState(n1, "beta"), "streaming");
      assert.equal(await streamState(n2, "alpha"), "streaming");
    } catch (e) {
      t.diagnostic(c!.tails(60));
      throw e;
    }
  });
});
