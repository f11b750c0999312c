// Bad input to the SQL API, on the leader and on a follower of a 3-node
// cluster (and a 1-node cluster for the last voter): NULL and out-of-range
// ids, adding an existing node, removing the last voter, unknown settings,
// invalid values, keys and values over their size limits, and calls by roles
// without pgraft_monitor / pgraft_admin. Each is refused with a SQLSTATE a
// script can branch on and a message that says what was wrong, and nothing
// changes: membership, configuration, leader and KV are as before, and the KV
// revision shows that no write went through.
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import { settingNames } from "../../src/cluster/config-registry.js";
import { FUNCTIONS, type SqlType } from "../../src/sqlapi/catalog.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";
import { clusterSnapshot, scalar, sqlFails, withCluster } from "./helpers.js";

/** KV keys written before the tests; every bad call must leave them alone. */
const KEYS = { "bad/a": { a: 1, nested: [1, 2, 3] }, "bad/b": "text value", "bad/c": 42 } as const;
/** A lower value limit than the default 1 MiB (set before the baseline), so "value too large" is cheap to provoke. */
const VALUE_LIMIT = 256;

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

interface Expect {
  code: string;
  message: RegExp;
  hint?: RegExp;
}

describe("bad input to the SQL API: a clear error, and nothing changed", () => {
  let cluster: PgCluster | undefined;
  let single: PgCluster | undefined;
  let baseline: unknown;
  let revision = 0;

  before(async () => {
    const started = await Promise.allSettled([startPgCluster({ nodes: 3, name: "bad" }), startPgCluster({ nodes: 1, name: "bad-single" })]);
    if (started[0].status === "fulfilled") cluster = started[0].value;
    if (started[1].status === "fulfilled") single = started[1].value;
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const leader = await cluster!.leader();
    await leader.query("SELECT pgraft_set_config('kv_max_value_bytes', $1)", [String(VALUE_LIMIT)]);
    for (const [k, v] of Object.entries(KEYS)) await leader.query("SELECT pgraft_kv_put($1, $2::jsonb)", [k, JSON.stringify(v)]);
    revision = Number(await scalar(leader, "SELECT pgraft_kv_put('bad/probe', '0')"));
    baseline = await clusterSnapshot(leader, Object.keys(KEYS));
  });
  after(async () => {
    await Promise.all([cluster?.destroy(), single?.destroy()]);
  });

  const it = (name: string, fn: (t: TestContext, c: PgCluster) => Promise<void>): void => {
    test(name, withCluster(() => cluster, fn));
  };

  /** Leader and follower: every bad call is tried on both. */
  const both = async (c: PgCluster): Promise<PgNode[]> => [await c.leader(), await c.follower()];

  /** Membership, config, leader and keys as before on every node, and no KV write since the last check. */
  async function assertUnchanged(c: PgCluster, writes = 0): Promise<void> {
    for (const n of c.nodes) assert.deepEqual(await clusterSnapshot(n, Object.keys(KEYS)), baseline, `nothing changed, as node ${n.id} sees it`);
    const next = Number(await scalar(c.nodes[0]!, "SELECT pgraft_kv_put('bad/probe', '0')"));
    assert.equal(next, revision + writes + 1, `no KV write went through (revision ${next} after ${revision}, ${writes} expected)`);
    revision = next;
  }

  async function rejects(nodes: PgNode[], sql: string, want: Expect, params?: unknown[]): Promise<void> {
    for (const n of nodes) {
      const e = await sqlFails(() => n.query(sql, params));
      assert.equal(e.code, want.code, `${sql} on node ${n.id}: SQLSTATE ${e.code} (${e.message})`);
      assert.match(e.message, want.message, `${sql} on node ${n.id}`);
      if (want.hint) assert.match(e.hint ?? "", want.hint, `${sql} on node ${n.id}: hint`);
    }
  }

  it("NULL for any argument of any function: 22004 naming the argument", async (_t, c) => {
    const valid: Record<SqlType, string> = { integer: "4", bigint: "4", boolean: "true", text: "'bad/x'", jsonb: "'1'", "double precision": "1", "text[]": "'{}'" };
    const nodes = await both(c);
    let calls = 0;
    for (const f of FUNCTIONS) {
      for (const [i, a] of f.args.entries()) {
        const args = f.args.map((x, j) => (j === i ? `NULL::${x.type}` : `${valid[x.type]}::${x.type}`));
        await rejects(nodes, `SELECT ${f.name}(${args.join(", ")})`, { code: "22004", message: new RegExp(`^${f.name}: ${a.name} must not be NULL$`) });
        calls++;
      }
    }
    assert.ok(calls >= 12, `${calls} NULL calls`);
    await assertUnchanged(c);
  });

  it("out-of-range and unknown node ids and ports: 22023 with the range, 42704 with the members", async (_t, c) => {
    const nodes = await both(c);
    for (const id of [0, -1, -2147483648]) {
      const range = new RegExp(`node_id must be in 1\\.\\.2147483647, got ${id}$`);
      await rejects(nodes, `SELECT pgraft_remove_node(${id})`, { code: "22023", message: range });
      await rejects(nodes, `SELECT pgraft_transfer_leadership(${id})`, { code: "22023", message: range });
      await rejects(nodes, `SELECT pgraft_add_node(${id}, '127.0.0.1', 7000)`, { code: "22023", message: range });
    }
    for (const sql of ["SELECT pgraft_remove_node(99)", "SELECT pgraft_transfer_leadership(99)"]) {
      await rejects(nodes, sql, { code: "42704", message: /node 99 is not a member of the cluster$/, hint: /^members: 1, 2, 3$/ });
    }
    // Beyond integer: PostgreSQL itself finds no such function.
    await rejects(nodes, "SELECT pgraft_remove_node(2147483648)", { code: "42883", message: /function pgraft_remove_node\(bigint\) does not exist/ });
    for (const port of [0, -1, 65536, 70000]) {
      await rejects(nodes, `SELECT pgraft_add_node(4, '127.0.0.1', ${port})`, { code: "22023", message: new RegExp(`port must be in 1\\.\\.65535, got ${port}$`) });
    }
    await rejects(nodes, "SELECT pgraft_add_node(4, '', 7000)", { code: "22023", message: /address must not be empty$/ });
    await rejects(nodes, "SELECT pgraft_add_node(4, '   ', 7000)", { code: "22023", message: /address must not be empty$/ });
    await rejects(nodes, "SELECT pgraft_add_node(4, 'two words', 7000)", { code: "22023", message: /"two words" is not a host name or IP address$/ });
    await rejects(nodes, "SELECT pgraft_add_node(4, 'a/b', 7000)", { code: "22023", message: /"a\/b" is not a host name or IP address$/ });
    await assertUnchanged(c);
  });

  it("adding an existing node, or a new id at a member's address: 42710", async (_t, c) => {
    const nodes = await both(c);
    for (const m of c.nodes) {
      await rejects(nodes, `SELECT pgraft_add_node(${m.id}, '127.0.0.1', ${m.raftPort})`, { code: "42710", message: new RegExp(`node ${m.id} is already a member of the cluster$`) });
      await rejects(nodes, `SELECT pgraft_add_node(${m.id}, '10.0.0.1${m.id}', 700${m.id})`, { code: "42710", message: new RegExp(`node ${m.id} is already a member`) });
    }
    await rejects(nodes, `SELECT pgraft_add_node(4, '127.0.0.1', ${c.node(2).raftPort})`, { code: "42710", message: new RegExp(`address 127\\.0\\.0\\.1:${c.node(2).raftPort} already belongs to node 2$`) });
    await assertUnchanged(c);
  });

  test("removing the last voter: 55000, and the 1-node cluster still works", async () => {
    const n = single!.nodes[0]!;
    const before = await clusterSnapshot(n);
    const e = await sqlFails(() => n.query("SELECT pgraft_remove_node(1)"));
    assert.equal(e.code, "55000");
    assert.match(e.message, /^pgraft_remove_node: node 1 is the last voter; removing it would leave no cluster$/);
    assert.deepEqual(await clusterSnapshot(n), before);
    assert.equal(await scalar(n, "SELECT pgraft_is_leader()"), true);
    assert.equal(await scalar(n, "SELECT pgraft_quorum_met()"), true);
    assert.ok(Number(await scalar(n, "SELECT pgraft_kv_put('still', 'true')")) > 0);
  });

  it("unknown setting names: 22023, and the message lists every valid setting", async (_t, c) => {
    const nodes = await both(c);
    const list = settingNames().join(", ");
    for (const name of ["no_such_setting", "", "pgraft.nope", "heartbeat", "heartbeat_interval;"]) {
      await rejects(nodes, "SELECT pgraft_set_config($1, '1')", { code: "22023", message: new RegExp(`^unknown setting ${escapeRe(JSON.stringify(name))}; valid settings: ${list}$`) }, [name]);
    }
    await assertUnchanged(c);
  });

  it("invalid setting values: 22023 saying what is expected or allowed", async (_t, c) => {
    const nodes = await both(c);
    const cases: [string, string, RegExp][] = [
      ["heartbeat_interval", "abc", /^invalid value for heartbeat_interval: "abc" \(expected a duration such as 75ms or 1s\)$/],
      ["heartbeat_interval", "75 parsecs", /^invalid value for heartbeat_interval: "75 parsecs" \(expected a duration/],
      ["heartbeat_interval", "-75ms", /^invalid value for heartbeat_interval: "-75ms"/],
      ["heartbeat_interval", "5ms", /^invalid value for heartbeat_interval: "5ms" \(must be between 10ms and 1m\)$/],
      ["heartbeat_interval", "2m", /^invalid value for heartbeat_interval: "2m" \(must be between 10ms and 1m\)$/],
      ["election_timeout", "0.5ms", /^invalid value for election_timeout: "0\.5ms" \(expected a duration/],
      ["election_timeout", "60ms", /election_timeout must be at least 2 x heartbeat_interval$/],
      ["failover_enabled", "maybe", /^invalid value for failover_enabled: "maybe" \(expected a boolean: true\/false, on\/off, yes\/no or 1\/0\)$/],
      ["failover_enabled", "", /^invalid value for failover_enabled: "" \(expected a boolean/],
      ["log_level", "loud", /^invalid value for log_level: "loud" \(expected one of trace, debug, info, warn, error\)$/],
      ["kv_max_key_bytes", "0", /^invalid value for kv_max_key_bytes: "0" \(must be between 1 and 65536\)$/],
      ["kv_max_key_bytes", "1.5", /^invalid value for kv_max_key_bytes: "1\.5" \(expected a number of bytes such as 1024 or 64kB\)$/],
      ["kv_max_value_bytes", "9MB", /^invalid value for kv_max_value_bytes: "9MB" \(must be between 1 and 8388608\)$/],
      ["snapshot_interval", "10", /^invalid value for snapshot_interval: "10" \(must be between 100 and 10000000\)$/],
      ["max_inflight_msgs", "lots", /^invalid value for max_inflight_msgs: "lots" \(expected a whole number\)$/],
    ];
    for (const [name, value, message] of cases) await rejects(nodes, "SELECT pgraft_set_config($1, $2)", { code: "22023", message }, [name, value]);
    // A boolean argument PostgreSQL cannot read is refused before the call.
    await rejects(nodes, "SELECT pgraft_set_debug('maybe')", { code: "22P02", message: /invalid input syntax for type boolean: "maybe"/ });
    await assertUnchanged(c);
  });

  it("KV keys and values over their limits: 54000 naming the setting; empty keys and invalid JSON are refused too", async (_t, c) => {
    const nodes = await both(c);
    await rejects(nodes, "SELECT pgraft_kv_put(repeat('k', 1025), '1')", { code: "54000", message: /^key is 1025 bytes; kv_max_key_bytes is 1024$/ });
    // The limit is in UTF-8 bytes, not characters: 513 x 'é' is 1026 bytes.
    await rejects(nodes, "SELECT pgraft_kv_put(repeat('é', 513), '1')", { code: "54000", message: /^key is 1026 bytes; kv_max_key_bytes is 1024$/ });
    await rejects(nodes, `SELECT pgraft_kv_put('bad/a', to_jsonb(repeat('v', ${VALUE_LIMIT})))`, {
      code: "54000",
      message: new RegExp(`^value is ${VALUE_LIMIT + 2} bytes; kv_max_value_bytes is ${VALUE_LIMIT}$`),
    });
    await rejects(nodes, "SELECT pgraft_kv_put('', '1')", { code: "22023", message: /^key must be a non-empty string$/ });
    await rejects(nodes, "SELECT pgraft_kv_put('bad/a', 'not json')", { code: "22P02", message: /invalid input syntax for type json/ });
    await assertUnchanged(c);
    // At the limits exactly: accepted (then removed again, so the baseline holds).
    const [leader] = nodes;
    const key = "k".repeat(1024);
    assert.ok(Number(await scalar(leader!, "SELECT pgraft_kv_put($1, to_jsonb(repeat('v', $2)))", [key, VALUE_LIMIT - 2])) > revision);
    assert.equal(await scalar(leader!, "SELECT pgraft_kv_delete($1)", [key]), true);
    await assertUnchanged(c, 2);
  });

  it("a session that got an error goes on working", async (_t, c) => {
    const s = await (await c.follower()).connect();
    try {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(s.query("SELECT pgraft_remove_node(99)"), { code: "42704" });
        assert.deepEqual((await s.query("SELECT pgraft_kv_get('bad/c') AS v")).rows, [{ v: 42 }]);
      }
    } finally {
      await s.end();
    }
    await assertUnchanged(c);
  });

  it("roles without pgraft_monitor/pgraft_admin get 42501; pgraft_monitor may monitor but not change; pgraft_admin may change", async (_t, c) => {
    const leader = await c.leader();
    const follower = await c.follower();
    await Promise.all(c.nodes.map((n) => n.query("DROP ROLE IF EXISTS app_user")));
    await Promise.all(c.nodes.map((n) => n.query("CREATE ROLE app_user LOGIN PASSWORD 'app-pw'")));
    const sessions = await Promise.all([leader, follower].map((n) => n.connect({ user: "app_user", password: "app-pw" })));
    try {
      const monitorCalls = ["SELECT pgraft_get_leader()", "SELECT * FROM pgraft_get_nodes()", "SELECT pgraft_kv_get('bad/a')", "SELECT * FROM pgraft_health_check()", "SELECT * FROM pgraft_get_config()"];
      const adminCalls = [
        "SELECT pgraft_kv_put('bad/a', '0')",
        "SELECT pgraft_kv_delete('bad/a')",
        "SELECT pgraft_set_config('failover_enabled', 'false')",
        "SELECT pgraft_remove_node(3)",
        "SELECT pgraft_transfer_leadership(3)",
        "SELECT pgraft_set_debug(true)",
        "SELECT pgraft_save_config()",
      ];
      const denied = async (sql: string): Promise<void> => {
        for (const s of sessions) {
          const e = await sqlFails(() => s.query(sql));
          assert.equal(e.code, "42501", `${sql}: ${e.message}`);
          assert.match(e.message, /^permission denied for (function pgraft_\w+|schema pgraft|table saved_config)$/, sql);
        }
      };
      for (const sql of [...monitorCalls, ...adminCalls, "SELECT * FROM pgraft.saved_config"]) await denied(sql);
      await assertUnchanged(c);

      await Promise.all(c.nodes.map((n) => n.query("GRANT pgraft_monitor TO app_user")));
      for (const s of sessions) {
        for (const sql of monitorCalls) await s.query(sql);
        assert.deepEqual((await s.query("SELECT pgraft_kv_get('bad/b') AS v")).rows, [{ v: "text value" }]);
        await s.query("SELECT * FROM pgraft.saved_config");
      }
      for (const sql of adminCalls) await denied(sql);
      // The session now has a connection to the sidecar (opened by the monitor calls, as the shim's owner); dblink itself
      // is not callable by the role, so that connection cannot be reused to make a change.
      for (const s of sessions) {
        for (const sql of [
          "SELECT * FROM pgraft.dblink('pgraft_sidecar', 'SELECT pgraft_kv_put(''bad/a'', ''666'')') AS t(r bigint)",
          "SELECT pgraft.dblink_send_query('pgraft_sidecar', 'SELECT pgraft_kv_put(''bad/a'', ''666'')')",
          "SELECT pgraft._send('SELECT pgraft_kv_put(''bad/a'', ''666'')')",
          "SELECT * FROM dblink('pgraft_sidecar', 'SELECT pgraft_kv_put(''bad/a'', ''666'')') AS t(r bigint)",
        ]) {
          const e = await sqlFails(() => s.query(sql));
          assert.ok(["42501", "42883"].includes(e.code), `${sql}: ${e.code} ${e.message}`);
        }
      }
      await assertUnchanged(c);

      await Promise.all(c.nodes.map((n) => n.query("GRANT pgraft_admin TO app_user")));
      for (const s of sessions) {
        assert.ok(Number((await s.query<{ r: string }>("SELECT pgraft_kv_put('bad/admin', '1') AS r")).rows[0]!.r) > revision);
        assert.deepEqual((await s.query("SELECT pgraft_kv_delete('bad/admin') AS d")).rows, [{ d: true }]);
        assert.deepEqual((await s.query("SELECT pgraft_set_debug(false) AS m")).rows.length, 1);
      }
      // pgraft_set_debug sets the replicated debug setting: back to the default, as an admin may.
      await sessions[0]!.query("SELECT pgraft_reset_config('debug')");
      await assertUnchanged(c, 4);
    } finally {
      await Promise.all(sessions.map((s) => s.end().catch(() => undefined)));
      await Promise.all(c.nodes.map((n) => n.query("DROP ROLE IF EXISTS app_user").catch(() => undefined)));
    }
  });

  // Last: it changes the config.
  test(
    "kv_max_value_bytes above 1 MiB lets a SQL caller store a value that large",
    async () => {
      const leader = await cluster!.leader();
      await leader.query("SELECT pgraft_set_config('kv_max_value_bytes', '2MB')");
      const r = await leader.query("SELECT pgraft_kv_put('bad/large', to_jsonb(repeat('v', 1500000)))");
      assert.equal(r.rows.length, 1);
    },
  );
});
