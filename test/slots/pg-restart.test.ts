// A PostgreSQL restart under a running sidecar (issue 10, section 3): a group
// of two nodes with their sidecars, both writing (inserts and updates); node
// alpha's PostgreSQL is restarted as `pg_ctl restart -m fast` and then
// `-m immediate` would (SIGINT / SIGQUIT to the postmaster, then a start on
// the same data dir and port) while its sidecar keeps running. Every
// connection that sidecar holds must come back by itself: afterwards the
// nodes hold the same rows, pgraft.node_slots answers on both, the health
// check is clean, and alpha's group slot moves past what was written after
// the restart (the WAL it held is released) — with the same sidecar process.
// Nothing is applied twice: a table without a primary key would then hold a
// row twice, and the other table an insert_exists conflict (the nodes write
// disjoint rows).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sleep, until } from "../sql/helpers.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

const SEED_ROWS = 100;

/** An order-independent fingerprint of app.t and app.log. */
async function contents(n: PgNode): Promise<string> {
  const r = await n.query<{ n: string; h: string | null; ln: string; lh: string | null }>(
    `SELECT (SELECT count(*) FROM app.t)::text AS n, (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM app.t t) AS h,
            (SELECT count(*) FROM app.log)::text AS ln, (SELECT md5(string_agg(l::text, ',' ORDER BY l::text)) FROM app.log l) AS lh`,
  );
  const x = r.rows[0]!;
  return `${x.n}/${x.h ?? ""} log ${x.ln}/${x.lh ?? ""}`;
}

/** Every writer started, so `after` stops any a failed test left running. */
const writers = new Set<{ stop(): Promise<number> }>();

/**
 * Inserts of new rows and updates of the seed rows this node owns (alpha the
 * even ones, beta the odd ones: no conflicts needed to converge), one- and
 * several-statement transactions, until stopped. Failures (the server is
 * restarting) are only counted as not committed. Returns the commits.
 */
function load(n: PgNode, prefix: string, parity: 0 | 1): { stop(): Promise<number> } {
  let running = true;
  let committed = 0;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const seed = 2 * (i % (SEED_ROWS / 2)) + parity + 1;
      try {
        if (i % 3 === 0) {
          await n.query(
            `BEGIN; INSERT INTO app.t (id, v, who) SELECT '${prefix}-${i}-' || g, g, '${prefix}' FROM generate_series(1, 5) g;
             UPDATE app.t SET v = v + 1, who = '${prefix}' WHERE id = 'seed-${seed}'; COMMIT;`,
          );
        } else if (i % 3 === 1) {
          await n.query(`BEGIN; INSERT INTO app.t (id, v, who) VALUES ('${prefix}-${i}', ${i}, '${prefix}'); INSERT INTO app.log VALUES ('${prefix}-${i}', ${i}); COMMIT;`);
        } else {
          await n.query("UPDATE app.t SET v = v + 1, who = $1 WHERE id = $2", [prefix, `seed-${seed}`]);
        }
        committed++;
      } catch {
        await n.query("ROLLBACK").catch(() => undefined);
        await sleep(50);
      }
      await sleep(2);
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

describe("PostgreSQL restarted under a running sidecar", { timeout: 400_000 }, () => {
  let c: PgCluster | undefined;
  // Interface DSNs carry no password (they are in the replicated catalog): libpq's password file has it.
  const dsn = (n: PgNode): string => n.pg.server.passfileDsn();

  before(async () => {
    c = await startPgCluster({ nodes: 2, name: "pg-restart" });
    const [n1, n2] = c.nodes as [PgNode, PgNode];
    try {
      await n1.query(`CREATE SCHEMA app; CREATE TABLE app.t (id text PRIMARY KEY, v int NOT NULL, who text); CREATE TABLE app.log (msg text, n int);
        INSERT INTO app.t SELECT 'seed-' || g, 0, 'seed' FROM generate_series(1, ${SEED_ROWS}) g;`);
      await n1.query("SELECT pgraft.create_node('alpha', $1)", [dsn(n1)]);
      await n1.query("SELECT bdr.create_node_group('g1')");
      await n2.query("SELECT bdr.create_node('beta', $1)", [dsn(n2)]);
      const s = await n2.connect();
      try {
        await s.query("SET statement_timeout = '120s'");
        await s.query("SELECT bdr.join_node_group($1)", [dsn(n1)]);
      } finally {
        await s.end();
      }
    } catch (e) {
      process.stderr.write(c.tails(60));
      throw e;
    }
  });

  after(async () => {
    await Promise.all([...writers].map((w) => w.stop()));
    await c?.destroy();
  });

  for (const mode of ["fast", "immediate"] as const) {
    test(`pg_ctl restart -m ${mode} of alpha's PostgreSQL under load: the same sidecar recovers every connection, the group converges and its slot advances`, async (t) => {
      const [n1, n2] = c!.nodes as [PgNode, PgNode];
      const pid = n1.sidecar.child?.pid;
      const logFrom = n1.sidecar.logRecords().length;
      try {
        const w1 = load(n1, `a${mode}`, 0);
        const w2 = load(n2, `b${mode}`, 1);
        let commits: number[];
        try {
          await sleep(1_500);
          await n1.pg.server.stop({ mode });
          await n1.pg.server.start();
          await sleep(2_000);
        } finally {
          commits = await Promise.all([w1.stop(), w2.stop()]);
        }
        t.diagnostic(`commits during the test: alpha ${commits[0]}, beta ${commits[1]}`);
        assert.ok(commits[0]! > 0 && commits[1]! > 0, "both nodes wrote");

        let converged: string;
        try {
          converged = await until("both nodes to hold the same rows", async () => {
            const [a, b] = await Promise.all([contents(n1), contents(n2)]);
            return a === b ? a : undefined;
          }, 90_000, 250);
        } catch (e) {
          await explainDifference(t, n1, n2);
          throw e;
        }
        t.diagnostic(`converged: ${converged}`);
        for (const n of [n1, n2]) {
          const doubled = await n.query("SELECT msg FROM app.log GROUP BY msg HAVING count(*) > 1 LIMIT 5");
          assert.deepEqual(doubled.rows, [], `node ${n.id}: no row of the table without a primary key applied twice`);
          // The only conflicts: the first update from beta of a seed row alpha wrote (its writer changes). An insert applied twice would be insert_exists.
          const conflicts = await n.query(
            "SELECT conflict_type, key::text, count(*)::int AS n FROM pgraft.conflict_history WHERE conflict_type <> 'update_origin_change' OR key::text NOT LIKE '%seed-%' GROUP BY 1, 2 LIMIT 5",
          );
          assert.deepEqual(conflicts.rows, [], `node ${n.id}: no conflict but a seed row's change of writer`);
        }

        // pgraft.node_slots answers on both nodes, with the node slots streaming again.
        for (const n of [n1, n2]) {
          await until(`node ${n.id}'s node_slots to show its node slot streaming`, async () => {
            const r = await n.query<{ slot_name: string; state: string; is_group_slot: boolean }>("SELECT slot_name, state, is_group_slot FROM pgraft.node_slots");
            return r.rows.length === 2 && r.rows.every((x) => x.is_group_slot || x.state === "streaming");
          }, 60_000, 250);
        }

        // Alpha's group slot moves past what was written after the restart (the maintenance tick: every 10 s).
        const mark = (await n1.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l;
        const held = async (): Promise<{ confirmed: string; restart: string; retained: number }> => {
          const r = await n1.query<{ confirmed: string; restart: string; retained: string }>(
            `SELECT confirmed_flush_lsn::text AS confirmed, restart_lsn::text AS restart, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
               FROM pg_replication_slots WHERE slot_name = 'bdr_postgres_g1'`,
          );
          return { ...r.rows[0]!, retained: Number(r.rows[0]!.retained) };
        };
        const before = await held();
        // Something to confirm past the mark on each side, so both node slots move beyond it.
        await n1.query("INSERT INTO app.t VALUES ($1, 0, 'mark')", [`mark-a-${mode}`]);
        await n2.query("INSERT INTO app.t VALUES ($1, 0, 'mark')", [`mark-b-${mode}`]);
        // Its restart point follows a tick or two later (PostgreSQL moves it to a candidate found while decoding).
        const after = await until("alpha's group slot to advance past the mark and release the WAL before it", async () => {
          const h = await held();
          return (await lsnAtLeast(n1, h.confirmed, mark)) && (await lsnAtLeast(n1, h.restart, mark)) ? h : undefined;
        }, 120_000, 500);
        t.diagnostic(`group slot: confirmed ${before.confirmed} → ${after.confirmed}, restart ${before.restart} → ${after.restart}, WAL held ${before.retained} → ${after.retained} bytes`);
        t.diagnostic(`alpha's slots: ${JSON.stringify((await n1.query("SELECT slot_name, restart_lsn::text, confirmed_flush_lsn::text, catalog_xmin::text, active FROM pg_replication_slots")).rows)}`);
        t.diagnostic(`alpha's transactions: ${JSON.stringify((await n1.query("SELECT pid, application_name, backend_xid::text, backend_xmin::text, xact_start::text, state, left(query, 80) AS q FROM pg_stat_activity WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL")).rows)}`);
        t.diagnostic(`alpha's prepared: ${JSON.stringify((await n1.query("SELECT gid, prepared::text FROM pg_prepared_xacts")).rows)}`);
        assert.ok(await lsnAfter(n1, after.restart, before.restart), "the group slot's restart point moved forward");

        // The health check is clean on both nodes.
        for (const n of [n1, n2]) {
          await until(`node ${n.id}'s health check to show no critical row`, async () => {
            const r = await n.query<{ check_name: string; severity: string }>("SELECT check_name, severity FROM pgraft_health_check()");
            return r.rows.every((x) => x.severity !== "critical");
          }, 30_000, 250);
        }

        assert.equal(n1.sidecar.child?.pid, pid, "alpha's sidecar is the same process");
        assert.equal(n1.sidecar.state, "running");
        const records = n1.sidecar.logRecords().slice(logFrom);
        const msgs = records.map((r) => String(r["msg"]));
        // The shim installer's connection came back too: it verified the shim in the restarted server.
        assert.ok(msgs.some((m) => /^local PostgreSQL: shim .* verified/.test(m)), "the shim installer reconnected");
        // Each outage is logged once per connection, not once per retry or tick.
        const warnings = records.filter((r) => isLevel(r, "warn")).map((r) => String(r["msg"]));
        t.diagnostic(`alpha's warnings since the restart: ${JSON.stringify(warnings)}`);
        assert.equal(msgs.filter((m) => m === "data plane maintenance failed").length, 0, "no failed maintenance tick");
        for (const m of new Set(warnings)) assert.ok(warnings.filter((x) => x === m).length <= 2, `logged once per outage, not per retry: ${m}`);
      } catch (e) {
        t.diagnostic(c!.tails(80));
        throw e;
      }
    });
  }

  test("a sidecar started while its PostgreSQL is down: its data plane starts once the server is up, with one warning per distinct error", async (t) => {
    const [n1, n2] = c!.nodes as [PgNode, PgNode];
    try {
      await c!.stopSidecar(1);
      await n1.pg.server.stop({ mode: "fast" });
      const logFrom = n1.sidecar.logRecords().length;
      // The sidecar starts (restartSidecar waits for its shim, which needs the server); the server follows once the
      // data plane's start has failed, and then for a few more ticks.
      const started = c!.restartSidecar(1);
      const failedStart = (): boolean => n1.sidecar.logRecords().slice(logFrom).some((r) => r["msg"] === "node group reconcile failed; retrying");
      try {
        await until("the data plane's start to fail while the server is down", () => Promise.resolve(failedStart() || undefined), 20_000, 100);
        await sleep(3_000);
      } finally {
        await n1.pg.server.start();
        await started;
      }
      await n2.query("INSERT INTO app.t VALUES ('after-down-start', 0, 'beta')");
      await until("beta's row on alpha", async () => (await n1.query("SELECT 1 FROM app.t WHERE id = 'after-down-start'")).rows.length === 1, 60_000, 250);
      await until("alpha's node_slots to show its node slot streaming", async () => (await n1.query<{ state: string }>("SELECT state FROM pgraft.node_slots WHERE NOT is_group_slot")).rows.every((r) => r.state === "streaming"), 60_000, 250);
      const records = n1.sidecar.logRecords().slice(logFrom);
      const reconcile = records.filter((r) => r["msg"] === "node group reconcile failed; retrying" && isLevel(r, "warn")).map((r) => String(r["err"]));
      t.diagnostic(`reconcile warnings while the server was down: ${JSON.stringify(reconcile)}`);
      assert.ok(reconcile.length >= 1, "the data plane's start failed while the server was down");
      assert.equal(new Set(reconcile).size, reconcile.length, "each distinct error warned once, not every tick");
    } catch (e) {
      t.diagnostic(c!.tails(60));
      throw e;
    }
  });
});

/** A log record's level (pino's number or its name). */
function isLevel(r: Record<string, unknown>, level: "warn" | "error"): boolean {
  return r["level"] === level || r["level"] === { warn: 40, error: 50 }[level];
}

/** Which rows differ, and where each stream stands: what the logs alone cannot say. */
async function explainDifference(t: { diagnostic(m: string): void }, n1: PgNode, n2: PgNode): Promise<void> {
  const rows = async (n: PgNode): Promise<Map<string, string>> => {
    const r = await n.query<{ id: string; row: string }>(
      "SELECT id, t::text || ' ts ' || coalesce(pg_xact_commit_timestamp(t.xmin)::text, '?') || ' origin ' || coalesce((pg_xact_commit_timestamp_origin(t.xmin)).roident::text, '?') AS row FROM app.t t",
    );
    return new Map(r.rows.map((x) => [x.id, x.row]));
  };
  const [a, b] = await Promise.all([rows(n1), rows(n2)]);
  const diff = [...new Set([...a.keys(), ...b.keys()])].filter((id) => a.get(id)?.split(" ts ")[0] !== b.get(id)?.split(" ts ")[0]);
  t.diagnostic(`${diff.length} rows of app.t differ: ${JSON.stringify(diff.slice(0, 12).map((id) => ({ id, alpha: a.get(id) ?? null, beta: b.get(id) ?? null })))}`);
  for (const n of [n1, n2]) {
    const logs = await n.query("SELECT msg, count(*)::int AS n FROM app.log GROUP BY msg HAVING count(*) > 1 LIMIT 5");
    t.diagnostic(`node ${n.id}: doubled log rows ${JSON.stringify(logs.rows)}; catchup ${JSON.stringify((await n.query("SELECT * FROM pgraft.node_catchup_info")).rows)}`);
    t.diagnostic(`node ${n.id}: origins ${JSON.stringify((await n.query("SELECT * FROM pg_replication_origin_status")).rows)}; slots ${JSON.stringify((await n.query("SELECT slot_name, confirmed_flush_lsn::text, active FROM pg_replication_slots")).rows)}`);
    t.diagnostic(`node ${n.id}: conflicts ${JSON.stringify((await n.query("SELECT conflict_type, resolution, key::text, remote_commit_lsn::text, local_commit_ts::text, remote_commit_ts::text FROM pgraft.conflict_history ORDER BY id DESC LIMIT 8")).rows)}`);
  }
}

/** a > b, as LSNs. */
async function lsnAfter(n: PgNode, a: string, b: string): Promise<boolean> {
  return (await n.query<{ ok: boolean }>("SELECT $1::pg_lsn > $2::pg_lsn AS ok", [a, b])).rows[0]!.ok;
}

/** a >= b, as LSNs. */
async function lsnAtLeast(n: PgNode, a: string, b: string): Promise<boolean> {
  return (await n.query<{ ok: boolean }>("SELECT $1::pg_lsn >= $2::pg_lsn AS ok", [a, b])).rows[0]!.ok;
}
