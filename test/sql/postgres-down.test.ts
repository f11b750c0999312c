// A node whose PostgreSQL is dead must not look healthy (issue 10, section 6).
// Three stock PostgreSQL 15 servers with a real sidecar beside each: a node's
// postmaster is killed (kill -9) or stopped (immediate) under its running
// sidecar. Until it is started again that node's /ready, /primary (on the
// leader) and /replica (on a follower) answer 503, /health stays 200 (the
// sidecar itself is fine) and says PostgreSQL is down, since when and why,
// pgraft_postgres_up is 0, and pgraft_health_check() on ANOTHER node reports
// the dead node. Started again, everything is healthy again without touching
// the sidecar. A member whose sidecar does not answer is "unknown" in the
// others' health check, never ok.
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import { isPostgresError } from "../../src/postgres/errors.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";
import { until, withCluster } from "./helpers.js";

interface HttpAnswer {
  code: number;
  body: Record<string, unknown> & { role?: string; postgres?: { status?: string; since?: string; error?: string; detail?: string } };
}

async function get(node: PgNode, path: string): Promise<HttpAnswer> {
  const r = await fetch(`http://127.0.0.1:${node.httpPort}${path}`, { signal: AbortSignal.timeout(5_000) });
  const text = await r.text();
  return { code: r.status, body: (path === "/metrics" ? { text } : JSON.parse(text)) as HttpAnswer["body"] };
}

/** A sample's value from the node's /metrics; undefined when the series is absent. */
async function metric(node: PgNode, name: string): Promise<number | undefined> {
  const text = (await get(node, "/metrics")).body.text as string;
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

type Check = { check_name: string; severity: string; detail: string };

/** pgraft_health_check()'s postgres_nodes row as `node` reports it (undefined when there is none). */
async function postgresNodes(node: PgNode): Promise<Check | undefined> {
  return (await node.query<Check>("SELECT * FROM pgraft_health_check() WHERE check_name = 'postgres_nodes'")).rows[0];
}

/** The sidecar's log lines about its PostgreSQL changing state (component postgres-probe). */
function transitions(node: PgNode): { level: string; msg: string }[] {
  return node.sidecar
    .logRecords()
    .filter((r) => r.component === "postgres-probe" && typeof r.msg === "string" && /^local PostgreSQL is (up|down)/.test(r.msg))
    .map((r) => ({ level: String(r.level), msg: r.msg as string }));
}

/** Start the node's PostgreSQL again if a failed test left it stopped. */
async function ensureRunning(node: PgNode): Promise<void> {
  try {
    await node.pg.server.start();
  } catch (e) {
    if (!isPostgresError(e, "PG_ALREADY_RUNNING")) throw e;
  }
}

/** Every sign of health on `node` (and in the health check of `observer`) back. */
async function healthyAgain(c: PgCluster, node: PgNode, observer: PgNode): Promise<void> {
  await until(`node ${node.id}: /ready 200 and pgraft_postgres_up 1 again`, async () => (await get(node, "/ready")).code === 200 && (await metric(node, "pgraft_postgres_up")) === 1, 30_000);
  const health = await get(node, "/health");
  assert.equal(health.code, 200);
  assert.equal(health.body.postgres?.status, "up", JSON.stringify(health.body));
  const row = await until(`node ${observer.id}'s health check: every PostgreSQL up`, async () => {
    const r = await postgresNodes(observer);
    return r?.severity === "ok" ? r : undefined;
  }, 15_000);
  assert.match(row.detail, new RegExp(`^up on node ${c.nodes.map((x) => x.id).join(", node ")}$`));
}

describe("a node whose PostgreSQL is dead does not look healthy", () => {
  let cluster: PgCluster | undefined;
  const it = (name: string, fn: (t: TestContext, c: PgCluster) => Promise<void>): void => {
    test(name, withCluster(() => cluster, fn));
  };

  before(async () => {
    cluster = await startPgCluster({ nodes: 3, name: "pgdown" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  it("healthy cluster: every node reports its PostgreSQL up (/health body, pgraft_postgres_up 1, the health check's postgres_nodes row ok)", async (_t, c) => {
    for (const n of c.nodes) {
      const h = await until(`node ${n.id}: /health says postgres up`, async () => {
        const a = await get(n, "/health");
        return a.body.postgres?.status === "up" ? a : undefined;
      });
      assert.equal(h.code, 200);
      assert.match(h.body.postgres!.since ?? "", /^\d{4}-\d\d-\d\dT/);
      assert.equal(await metric(n, "pgraft_postgres_up"), 1);
      assert.equal((await postgresNodes(n))?.severity, "ok");
    }
  });

  it("the leader's PostgreSQL killed (-9): /primary and /ready 503, /leader and /health 200 with postgres down, pgraft_postgres_up 0, another node's health check names it; started again, all healthy with the same sidecar", async (t, c) => {
    const leader = await c.leader();
    const observer = c.nodes.find((x) => x.id !== leader.id)!;
    const pid = leader.sidecar.child?.pid;
    const logBefore = transitions(leader).length;
    await leader.pg.server.kill();
    try {
      const primary = await until(`node ${leader.id}: /primary 503 with its PostgreSQL down`, async () => {
        const a = await get(leader, "/primary");
        return a.code === 503 ? a : undefined;
      });
      // Still the Raft leader: /primary is 503 because of its PostgreSQL, and /leader (the Raft leader) stays 200.
      assert.equal(primary.body.role, "leader", JSON.stringify(primary.body));
      assert.equal(primary.body.postgres?.status, "down");
      assert.equal((await get(leader, "/leader")).code, 200);
      const ready = await get(leader, "/ready");
      assert.equal(ready.code, 503, JSON.stringify(ready.body));
      assert.equal(ready.body.postgres?.status, "down");

      const health = await get(leader, "/health");
      assert.equal(health.code, 200, "the sidecar itself is fine");
      assert.equal(health.body.status, "up");
      assert.equal(health.body.postgres?.status, "down");
      assert.match(health.body.postgres?.since ?? "", /^\d{4}-\d\d-\d\dT/);
      assert.ok((health.body.postgres?.error ?? "").length > 0, `the last probe's error: ${JSON.stringify(health.body.postgres)}`);
      assert.equal(await metric(leader, "pgraft_postgres_up"), 0);

      const row = await until(`node ${observer.id}'s health check to report node ${leader.id}'s PostgreSQL down`, async () => {
        const r = await postgresNodes(observer);
        return r?.severity === "critical" ? r : undefined;
      });
      t.diagnostic(`node ${observer.id}: postgres_nodes ${row.severity}: ${row.detail}`);
      assert.match(row.detail, new RegExp(`PostgreSQL down on node ${leader.id} since \\d{4}-\\d\\d-\\d\\dT[^:]+:\\d\\d:\\d\\d\\.\\d+Z: \\S`));
      assert.doesNotMatch(row.detail, new RegExp(`PostgreSQL down on node (?!${leader.id}\\b)`), "only the dead node is reported down");
      // The other node's view is the same through the seed's recipe filter.
      const alerts = (await observer.query<Check>("SELECT * FROM pgraft_health_check() WHERE severity IN ('warning', 'critical')")).rows.map((x) => x.check_name);
      assert.ok(alerts.includes("postgres_nodes"), alerts.join(","));
    } finally {
      await ensureRunning(leader);
    }
    await healthyAgain(c, leader, observer);
    await until(`node ${leader.id}: /primary 200 again (or another node leads)`, async () => {
      const a = await get(leader, "/primary");
      return a.code === 200 || a.body.role !== "leader";
    });
    assert.equal(leader.sidecar.child?.pid, pid, "the sidecar was not restarted");
    assert.equal(leader.sidecar.state, "running");
    // One line for going down and one for coming back, however many probes ran in between.
    const lines = transitions(leader).slice(logBefore);
    assert.deepEqual(
      lines.map((l) => [l.level, l.msg.replace(/:.*|\(.*$/s, "").trim()]),
      [
        ["warn", "local PostgreSQL is down"],
        ["info", "local PostgreSQL is up again"],
      ],
      JSON.stringify(lines),
    );
  });

  it("a follower's PostgreSQL stopped (immediate): /replica and /ready 503, /health 200 with postgres down; the leader's health check names it; started again, /replica 200", async (_t, c) => {
    const leader = await c.leader();
    const f = await c.follower();
    assert.equal((await get(f, "/replica")).code, 200, "a healthy follower first");
    await f.pg.server.stop({ mode: "immediate" });
    try {
      const replica = await until(`node ${f.id}: /replica 503`, async () => {
        const a = await get(f, "/replica");
        return a.code === 503 ? a : undefined;
      });
      assert.equal(replica.body.role, "follower", JSON.stringify(replica.body));
      assert.equal(replica.body.postgres?.status, "down");
      assert.equal((await get(f, "/ready")).code, 503);
      const health = await get(f, "/health");
      assert.equal(health.code, 200);
      assert.equal(health.body.postgres?.status, "down");
      assert.equal(await metric(f, "pgraft_postgres_up"), 0);
      const row = await until(`the leader's health check to report node ${f.id}'s PostgreSQL down`, async () => {
        const r = await postgresNodes(leader);
        return r?.severity === "critical" ? r : undefined;
      });
      assert.match(row.detail, new RegExp(`PostgreSQL down on node ${f.id} since `));
    } finally {
      await ensureRunning(f);
    }
    await healthyAgain(c, f, leader);
    await until(`node ${f.id}: /replica 200 again`, async () => (await get(f, "/replica")).code === 200);
  });

  it("a member whose sidecar does not answer is unknown (warning) in the others' health check, never ok", async (_t, c) => {
    const f = await c.follower();
    const observer = c.nodes.find((x) => x.id !== f.id)!;
    c.pauseSidecar(f.id);
    try {
      const row = await until(`node ${observer.id}'s health check: node ${f.id} unknown`, async () => {
        const r = await postgresNodes(observer);
        return r && r.severity !== "ok" ? r : undefined;
      });
      assert.equal(row.severity, "warning");
      assert.match(row.detail, new RegExp(`PostgreSQL state unknown on node ${f.id}: its sidecar did not answer within [\\d.]+ s`));
      assert.doesNotMatch(row.detail, new RegExp(`up on node (\\d+, node )*${f.id}\\b`));
    } finally {
      c.resumeSidecar(f.id);
    }
    await until(`node ${observer.id}'s health check: every PostgreSQL up again`, async () => (await postgresNodes(observer))?.severity === "ok");
  });
});
