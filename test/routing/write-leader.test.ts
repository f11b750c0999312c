// The write leader of a data group (issue 12 §1, §3): three data nodes with
// their sidecars. The first ACTIVE node becomes write leader; every node shows
// the same routing (SQL view, pgraft_is_write_leader, /primary and /replica);
// commit scope majority sets each node's synchronous_standby_names; a
// switchover moves the leader with no write lost; kill -9 of the write
// leader's PostgreSQL moves it to the node with the most of its changes, and
// it comes back as a read node; bad input changes nothing.
import assert from "node:assert/strict";
import pg from "pg";
import { after, before, describe, test } from "node:test";
import { scalar, sqlFails, until } from "../sql/helpers.js";
import { runCli } from "../integration/harness.js";
import { boundedCall, formGroup, startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

interface Routing {
  node_group_name: string;
  write_lead: string | null;
  previous_write_lead: string | null;
  read_nodes: string[];
  commit_scope: string;
  switchover_target: string | null;
  change_reason: string | null;
}

const PASSWORD = "write-leader-test-password";

/** One query through a sidecar's proxy port (as an application would connect). */
async function viaProxy(n: PgNode, port: number, sql: string): Promise<unknown> {
  const cl = new pg.Client({ host: "127.0.0.1", port, user: n.pg.server.superuser, password: PASSWORD, database: "postgres", connectionTimeoutMillis: 10_000 });
  cl.on("error", () => undefined);
  await cl.connect();
  try {
    return Object.values((await cl.query(sql)).rows[0] as object)[0];
  } finally {
    await cl.end();
  }
}

const routing = async (n: PgNode): Promise<Routing> => (await n.query<Routing>("SELECT * FROM pgraft.node_group_routing_summary")).rows[0]!;
const httpCode = async (n: PgNode, path: string): Promise<number> => (await fetch(`http://127.0.0.1:${n.httpPort}${path}`)).status;

describe("the write leader of a data group", { timeout: 240_000 }, () => {
  let c: PgCluster | undefined;
  const names = ["alpha", "beta", "gamma"];

  before(async () => {
    c = await startPgCluster({ nodes: 3, name: "write-leader", password: PASSWORD });
    await c.nodes[0]!.query("CREATE TABLE probe (n int PRIMARY KEY, at text)");
    await formGroup(c, "g1", names);
  });

  after(async () => {
    await c?.destroy();
  });

  const leaderEverywhere = (name: string, timeoutMs = 15_000): Promise<true> =>
    until(
      `every node to route g1's writes to ${name}`,
      async () => {
        for (const n of c!.nodes) if ((await routing(n)).write_lead !== name) return false;
        return true as const;
      },
      timeoutMs,
    );

  test("the first ACTIVE node leads; every node agrees, in SQL and over HTTP", async (t) => {
    try {
      await leaderEverywhere("alpha");
      const [n1, n2, n3] = c!.nodes as [PgNode, PgNode, PgNode];
      await until("both others as read nodes", async () => (await routing(n2)).read_nodes.length === 2);
      const r = await routing(n3);
      assert.deepEqual([...r.read_nodes].sort(), ["beta", "gamma"]);
      assert.equal(r.commit_scope, "local");
      assert.equal(r.switchover_target, null);
      assert.deepEqual(await Promise.all(c!.nodes.map((n) => scalar<boolean>(n, "SELECT pgraft_is_write_leader()"))), [true, false, false]);
      assert.equal(await httpCode(n1, "/primary"), 200);
      assert.equal(await httpCode(n2, "/primary"), 503);
      await until("/replica on beta and gamma", async () => (await httpCode(n2, "/replica")) === 200 && (await httpCode(n3, "/replica")) === 200);
      assert.equal(await httpCode(n1, "/replica"), 503);
      // The proxies: read-write to alpha from any node, read-only to a read node.
      for (const n of c!.nodes) assert.equal(await viaProxy(n, n.proxyPort, "SELECT pgraft_is_write_leader()"), true, `node ${n.id}'s read-write proxy`);
      assert.equal(await viaProxy(n1, n1.proxyReadOnlyPort, "SELECT pgraft_is_write_leader()"), false, "the read-only proxy");
      const metrics = await (await fetch(`http://127.0.0.1:${n2.httpPort}/metrics`)).text();
      for (const line of ['pgraft_write_leader{group="g1",node="alpha"} 1', "pgraft_is_write_leader 0", 'pgraft_commit_scope{group="g1",scope="local"} 1', 'pgraft_proxy_connections_accepted_total{proxy="read-write"} 1']) {
        assert.ok(metrics.split("\n").includes(line), `/metrics has ${line}`);
      }
    } catch (e) {
      t.diagnostic(c!.tails(30));
      throw e;
    }
  });

  test("commit scope majority: every node waits for ANY 1 of the other two; local clears it", async () => {
    const [n1, n2] = c!.nodes as [PgNode, PgNode, PgNode];
    await n2.query("SELECT bdr.alter_node_group_option('g1', 'default_commit_scope', 'majority')");
    for (const [i, n] of c!.nodes.entries()) {
      const others = names.filter((_, j) => j !== i).map((x) => `"pgraft_${x}"`);
      await until(`${names[i]}'s synchronous_standby_names`, async () => (await scalar<string>(n, "SHOW synchronous_standby_names")) === `ANY 1 (${others.join(", ")})`);
    }
    assert.equal((await routing(n1)).commit_scope, "majority");
    // A commit on the leader returns (a receiver confirms it), and is on a majority by then.
    await n1.query("INSERT INTO probe VALUES (1, 'majority')");
    const on = await Promise.all(c!.nodes.slice(1).map((n) => scalar<number>(n, "SELECT count(*)::int FROM probe WHERE n = 1")));
    assert.ok(on.includes(1), `the row is on another node when COMMIT returns (${on.join(",")})`);
    await n1.query("SELECT pgraft.alter_node_group_option('g1', 'default_commit_scope', 'local')");
    await until("synchronous_standby_names cleared everywhere", async () => {
      for (const n of c!.nodes) if ((await scalar<string>(n, "SHOW synchronous_standby_names")) !== "") return false;
      return true;
    });
    await n1.query("SELECT pgraft.alter_node_group_option('g1', 'default_commit_scope', 'majority')");
  });

  test("bad input: clear errors, nothing changed", async () => {
    const n2 = c!.nodes[1]!;
    const before = await routing(n2);
    for (const sql of ["SELECT pgraft.routing_leadership_transfer('nope', 'beta')", "SELECT pgraft.routing_leadership_transfer('g1', 'nobody')", "SELECT bdr.alter_node_group_option('nope', 'default_commit_scope', 'local')"]) {
      assert.equal((await sqlFails(() => n2.query(sql))).code, "42704", `${sql}: undefined_object, as for every unknown node`);
    }
    const cases: [string, unknown[], RegExp][] = [
      ["SELECT pgraft.routing_leadership_transfer('nope', 'beta')", [], /node group "nope" does not exist/],
      ["SELECT pgraft.routing_leadership_transfer('g1', 'nobody')", [], /node "nobody" does not exist/],
      ["SELECT pgraft.routing_leadership_transfer('g1', NULL)", [], /leader_name must not be NULL/],
      ["SELECT pgraft.routing_leadership_transfer('g1', 'beta', 'sideways')", [], /transfer_method must be one of strict, fast/],
      ["SELECT pgraft.routing_leadership_transfer('g1', 'beta', 'strict', 'soon')", [], /transfer_timeout must be a duration/],
      ["SELECT bdr.alter_node_group_option('g1', 'default_commit_scope', 'everyone')", [], /commit scope "everyone" does not exist \(known: local, majority\)/],
      ["SELECT bdr.alter_node_group_option('g1', 'colour', 'blue')", [], /unknown option "colour"/],
      ["SELECT bdr.alter_node_group_option('nope', 'default_commit_scope', 'local')", [], /node group "nope" does not exist/],
    ];
    for (const [sql, params, re] of cases) {
      const e = await sqlFails(() => n2.query(sql, params));
      assert.match(e.message, re, sql);
    }
    const after = await routing(n2);
    assert.deepEqual({ ...after, read_nodes: [...after.read_nodes].sort() }, { ...before, read_nodes: [...before.read_nodes].sort() });
  });

  test("a switchover to a lagging node or to one whose PostgreSQL is down is refused; nothing changes", async (t) => {
    const n1 = c!.nodes[0]!;
    try {
      await leaderEverywhere("alpha");
      // The lagging node: beta or gamma, whichever is not the Raft leader (its sidecar is frozen, and a frozen Raft
      // leader would hold every call up for an election); the call goes to the other one.
      const raft = await c!.leaderIndex();
      const lagging = raft === 1 ? c!.nodes[2]! : c!.nodes[1]!;
      const caller = lagging === c!.nodes[1]! ? c!.nodes[2]! : c!.nodes[1]!;
      const name = names[lagging.id - 1]!;
      c!.pauseSidecar(lagging.id);
      try {
        await n1.query("INSERT INTO probe SELECT g, 'lag' FROM generate_series(1000, 1100) g");
        const lag = await sqlFails(() => caller.query("SELECT pgraft.routing_leadership_transfer('g1', $1, 'strict', '1s')", [name]));
        assert.match(lag.message, new RegExp(`node ${name} is \\d+ bytes behind the write leader alpha and did not catch up within 1000 ms; nothing changed`));
      } finally {
        c!.resumeSidecar(lagging.id);
      }
      assert.equal((await routing(caller)).write_lead, "alpha");
      assert.equal((await routing(caller)).switchover_target, null);
      await lagging.pg.server.kill();
      try {
        const down = await sqlFails(() => caller.query("SELECT pgraft.routing_leadership_transfer('g1', $1)", [name]));
        assert.match(down.message, new RegExp(`the target ${name}'s PostgreSQL does not answer .*; nothing changed`));
      } finally {
        await lagging.pg.server.start();
      }
      assert.equal((await routing(caller)).write_lead, "alpha");
      await until(`${name} a read node again`, async () => (await routing(caller)).read_nodes.includes(name), 30_000);
    } catch (e) {
      t.diagnostic(c!.tails(30));
      throw e;
    }
  });

  test("switchover (strict) to beta under writes: beta leads, holds every acknowledged write, alpha reads", async (t) => {
    const [n1, n2] = c!.nodes as [PgNode, PgNode, PgNode];
    try {
      await leaderEverywhere("alpha");
      const out = await boundedCall(n2, "SELECT pgraft.routing_leadership_transfer('g1', 'beta')", [], 60);
      assert.match(out, /beta is the write leader of group g1 \(was alpha; strict/);
      await leaderEverywhere("beta");
      const r = await routing(n1);
      assert.equal(r.previous_write_lead, "alpha");
      assert.match(r.change_reason ?? "", /switchover \(strict\) from alpha/);
      assert.equal(await scalar<boolean>(n2, "SELECT pgraft_is_write_leader()"), true);
      await until("/primary on beta", async () => (await httpCode(n2, "/primary")) === 200 && (await httpCode(n1, "/primary")) === 503);
      const again = await boundedCall(n1, "SELECT pgraft.routing_leadership_transfer('g1', 'beta')", [], 30);
      assert.match(again, /already the write leader/);
    } catch (e) {
      t.diagnostic(c!.tails(30));
      throw e;
    }
  });

  test("pgraft switchover (the CLI) moves it back to alpha; pgraft status shows where each group's writes go", async () => {
    const n3 = c!.nodes[2]!;
    const cli = (args: string[]) => runCli([...args, "--endpoint", `127.0.0.1:${n3.raftPort}`, "--cluster-id", c!.clusterId, "--plaintext"], { timeoutMs: 60_000 });
    const bad = await cli(["switchover", "--group", "g1", "--to", "alpha", "--method", "sideways"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--method must be one of strict, fast/);
    const unknown = await cli(["switchover", "--group", "g1", "--to", "nobody"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /node "nobody" does not exist/);
    const ok = await cli(["switchover", "--group", "g1", "--to", "alpha"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /alpha is the write leader of group g1 \(was beta; strict/);
    const st = await cli(["status"]);
    assert.match(st.stdout, /write_leader\[g1\]:\s+alpha \(commit scope majority; read nodes /);
    const js = JSON.parse((await cli(["status", "--json"])).stdout) as { routing: { group: string; write_leader: string; previous_write_leader: string }[] };
    assert.deepEqual(
      js.routing.map((r) => [r.group, r.write_leader, r.previous_write_leader]),
      [["g1", "alpha", "beta"]],
    );
    await leaderEverywhere("alpha");
  });

  test("kill -9 of the write leader's PostgreSQL: another node leads within seconds; the old one comes back as a read node", async (t) => {
    const [n1] = c!.nodes as [PgNode, PgNode, PgNode];
    try {
      await leaderEverywhere("alpha");
      const killedAt = Date.now();
      await n1.pg.server.kill();
      const next = await until(
        "a new write leader",
        async () => {
          const w = (await routing(c!.nodes[1]!)).write_lead;
          return w && w !== "alpha" ? w : undefined;
        },
        15_000,
        50,
      );
      t.diagnostic(`new write leader ${next} ${Date.now() - killedAt} ms after the kill`);
      const r = await routing(c!.nodes[2]!);
      assert.match(r.change_reason ?? "", /failover: alpha unhealthy/);
      await n1.pg.server.start();
      await until("alpha back as a read node", async () => (await routing(c!.nodes[1]!)).read_nodes.includes("alpha"), 30_000);
      assert.equal((await routing(c!.nodes[1]!)).write_lead, next, "the leader stays where it moved");
    } catch (e) {
      t.diagnostic(c!.tails(30));
      throw e;
    }
  });
});
