// The sidecar going away under a SQL call: paused (SIGSTOP, so it accepts
// nothing and answers nothing) or killed (-9) before or during the call. The
// call must fail with a clear error rather than hang — statement_timeout
// interrupts a call waiting for an answer (the shim waits in short
// interruptible sleeps), the dblink connect_timeout (5 s, or statement_timeout
// when that is shorter) bounds opening a connection to a sidecar that does not
// answer, and a dead sidecar is a connection error (SQLSTATE class 08) at once,
// saying which sidecar address is unreachable — and the same session must
// work again once the sidecar is back (the shim replaces a busy or broken
// connection).
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import type pg from "pg";
import { startPgCluster, type PgCluster } from "../support/pg-cluster.js";
import { sqlFails, until, withCluster } from "./helpers.js";

/** A rejected query's error and how long it took. */
async function timedFailure(f: () => Promise<unknown>): Promise<{ code: string; message: string; detail?: string; hint?: string; where?: string; ms: number }> {
  const t0 = Date.now();
  const e = await sqlFails(f);
  return { ...e, ms: Date.now() - t0 };
}

async function kvGet(s: pg.Client, key: string): Promise<unknown> {
  return (await s.query<{ v: unknown }>("SELECT pgraft_kv_get($1) AS v", [key])).rows[0]?.v;
}

describe("the sidecar paused or killed under a SQL call", () => {
  let cluster: PgCluster | undefined;
  const it = (name: string, fn: (t: TestContext, c: PgCluster) => Promise<void>): void => {
    test(name, withCluster(() => cluster, fn));
  };

  before(async () => {
    cluster = await startPgCluster({ nodes: 3, name: "failure" });
    await (await cluster.leader()).query("SELECT pgraft_kv_put('x', '\"value of x\"')");
  });
  after(async () => {
    await cluster?.destroy();
  });

  it("paused sidecar, open connection: statement_timeout cancels the call (57014); the same session works after SIGCONT", async (_t, c) => {
    const f = await c.follower();
    const s = await f.connect();
    try {
      assert.equal(await kvGet(s, "x"), "value of x", "the session has its connection to the sidecar");
      await s.query("SET statement_timeout = '2s'");
      c.pauseSidecar(f.id);
      try {
        const e = await timedFailure(() => s.query("SELECT pgraft_kv_get('x')"));
        assert.equal(e.code, "57014");
        assert.equal(e.message, "canceling statement due to statement timeout");
        assert.ok(e.ms >= 1_900 && e.ms < 4_000, `cancelled after ${e.ms} ms`);
      } finally {
        c.resumeSidecar(f.id);
      }
      // The interrupted call left the connection busy: the next call replaces it.
      assert.equal(await kvGet(s, "x"), "value of x");
      assert.equal(await kvGet(s, "x"), "value of x");
    } finally {
      await s.end();
    }
  });

  it("paused sidecar, new session: opening the connection gives up after the connect timeout (08001), or after statement_timeout when that is shorter (57014)", async (_t, c) => {
    const f = await c.follower();
    const [plain, limited] = await Promise.all([f.connect(), f.connect()]);
    try {
      await limited.query("SET statement_timeout = '3s'");
      c.pauseSidecar(f.id);
      let errors;
      try {
        errors = await Promise.all([plain, limited].map((s) => timedFailure(() => s.query("SELECT pgraft_kv_get('x')"))));
      } finally {
        c.resumeSidecar(f.id);
      }
      const [a, b] = errors;
      assert.equal(a!.code, "08001");
      assert.match(a!.message, /^the pgraft sidecar at 127\.0\.0\.1:\d+ is unreachable$/);
      assert.match(a!.detail ?? "", /^connection to server at "127\.0\.0\.1", port \d+ failed: timeout expired$/);
      assert.ok(a!.ms >= 4_500 && a!.ms < 8_000, `gave up after ${a!.ms} ms (connect_timeout 5 s)`);
      // The first call of a session honours statement_timeout too: the connect timeout is derived from it
      // (dblink_connect itself cannot be interrupted), and the error is the usual statement timeout.
      assert.equal(b!.code, "57014", `${b!.code} ${b!.message} ${b!.detail ?? ""}`);
      assert.equal(b!.message, "canceling statement due to statement timeout");
      assert.match(b!.detail ?? "", /^the pgraft sidecar at 127\.0\.0\.1:\d+ did not accept a connection within statement_timeout \(3s\)$/);
      assert.ok(b!.ms < 4_500, `gave up after ${b!.ms} ms (statement_timeout 3 s)`);
      for (const s of [plain, limited]) assert.equal(await kvGet(s, "x"), "value of x", "the same session works once the sidecar answers");
    } finally {
      await Promise.all([plain.end(), limited.end()]);
    }
  });

  it("kill -9 while a call is in flight: the call fails at once (08006); calls while it is down fail fast (08001); after a restart the same session works", async (_t, c) => {
    const f = await c.follower();
    const s = await f.connect();
    try {
      assert.equal(await kvGet(s, "x"), "value of x");
      // Paused first, so the call is certainly in flight (sent, unanswered) when the process dies.
      c.pauseSidecar(f.id);
      const inFlight = timedFailure(() => s.query("SELECT pgraft_kv_get('x')"));
      await new Promise((r) => setTimeout(r, 300));
      const killedAt = Date.now();
      await c.killSidecar(f.id);
      const e = await inFlight;
      assert.equal(e.code, "08006");
      assert.match(e.message, /server closed the connection unexpectedly/);
      assert.ok(Date.now() - killedAt < 3_000, `failed ${Date.now() - killedAt} ms after the kill`);

      for (let i = 0; i < 2; i++) {
        const down = await timedFailure(() => s.query("SELECT pgraft_kv_get('x')"));
        assert.equal(down.code, "08001");
        assert.match(down.message, /^the pgraft sidecar at 127\.0\.0\.1:\d+ is unreachable$/);
        assert.match(down.detail ?? "", /Connection refused/);
        assert.match(down.hint ?? "", /sidecar is running/);
        // A short context: the call, not dblink's internals.
        assert.doesNotMatch(down.where ?? "", /dblink/);
        assert.ok((down.where ?? "").split("\n").length <= 3, down.where);
        assert.ok(down.ms < 2_000, `failed after ${down.ms} ms`);
      }
      await c.restartSidecar(f.id);
      assert.equal(await kvGet(s, "x"), "value of x");
    } finally {
      await s.end();
    }
  });

  it("kill -9 of the leader's idle sidecar: its SQL calls fail fast (class 08), the other nodes go on, and after a restart the same session works", async (_t, c) => {
    const leader = await c.leader();
    const s = await leader.connect();
    try {
      assert.equal(await kvGet(s, "x"), "value of x");
      await c.killSidecar(leader.id);
      const e = await timedFailure(() => s.query("SELECT pgraft_kv_put('x', '\"lost\"')"));
      assert.match(e.code, /^08/, `${e.code} ${e.message}`);
      assert.ok(e.ms < 2_000, `failed after ${e.ms} ms`);
      // The others elect a new leader and take writes through SQL.
      const other = c.nodes.find((n) => n.id !== leader.id)!;
      await until("a write through another node", async () => (await other.query("SELECT pgraft_kv_put('x', '\"after failover\"')")).rows.length === 1, 15_000);
      await c.restartSidecar(leader.id);
      assert.equal(await kvGet(s, "x"), "after failover", "the restarted node's session reads the write made while it was down");
      assert.equal((await s.query<{ l: number }>("SELECT pgraft_get_leader() AS l")).rows[0]!.l === null, false);
    } finally {
      await s.end();
    }
  });
  it("no leader (the two other sidecars paused): pgraft_get_nodes() on the third lists every member from its own view, NULL where only a leader knows", async (_t, c) => {
    const [self, ...others] = c.nodes;
    for (const o of others) c.pauseSidecar(o.id);
    try {
      await until("node 1 to lose the leader", async () => (await self!.query<{ l: number | null }>("SELECT pgraft_get_leader() AS l")).rows[0]!.l === null, 15_000);
      const r = await self!.query<Record<string, unknown>>("SELECT node_id, state, match_index, reachable, lag_entries, last_heartbeat_ms, address, postgres_address FROM pgraft_get_nodes() ORDER BY node_id");
      assert.deepEqual(r.rows.map((x) => x.node_id), [1, 2, 3]);
      const me = r.rows[0]!;
      assert.ok(["follower", "pre-candidate", "candidate"].includes(me.state as string), `its own state: ${String(me.state)}`);
      for (const x of r.rows.slice(1)) assert.equal(x.state, "unknown");
      assert.equal(me.reachable, true, "a node reaches itself");
      for (const x of r.rows) {
        assert.deepEqual([x.match_index, x.lag_entries, x.last_heartbeat_ms], [null, null, null], `node ${String(x.node_id)}: only a leader knows these`);
        if (x !== me) assert.equal(x.reachable, null, `node ${String(x.node_id)}: reachability unknown without a leader`);
        assert.equal(x.address, "127.0.0.1");
        assert.equal(x.postgres_address, `127.0.0.1:${c.node(x.node_id as number).pg.server.port}`);
      }
      // A part needs a majority: without one, part_node says so (after its read barrier gives up), not "does not exist".
      await assert.rejects(self!.query("SELECT bdr.part_node('nobody')"), (e: unknown) => (e as { code?: string }).code === "55000" && /parting needs a majority of the cluster, and this node sees none/.test((e as Error).message));
    } finally {
      for (const o of others) c.resumeSidecar(o.id);
    }
    await c.leader(15_000);
  });
});
