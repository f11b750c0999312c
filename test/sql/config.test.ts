// Runtime configuration through SQL on a 3-node cluster (issue 14 §3): a
// setting goes back to its default with pgraft_reset_config on every node;
// pgraft_set_debug and the debug setting are one thing; the settings that do
// something reach every node's sidecar (log level, snapshot interval); those
// this version cannot change are refused saying why, changing nothing; and a
// node added but never heard from shows no last heartbeat.
import assert from "node:assert/strict";
import { after, before, describe, test, type TestContext } from "node:test";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";
import { scalar, sqlFails, until, withCluster } from "./helpers.js";

interface Row {
  name: string;
  value: string;
  overridden: boolean;
}

async function setting(n: PgNode, name: string): Promise<Row> {
  const r = await n.query<Row>("SELECT name, value, overridden FROM pgraft_get_config() WHERE name = $1", [name]);
  return r.rows[0]!;
}

/** The control-loop lines of node `n` that say a setting was applied. */
const applied = (n: PgNode, what: RegExp): string[] =>
  n.sidecar
    .logRecords()
    .filter((r) => r["component"] === "control-loop" && typeof r["msg"] === "string" && what.test(r["msg"]))
    .map((r) => String(r["msg"]));

describe("runtime configuration through SQL", () => {
  let cluster: PgCluster | undefined;
  const it = (name: string, fn: (t: TestContext, c: PgCluster) => Promise<void>): void => {
    test(name, withCluster(() => cluster, fn));
  };

  before(async () => {
    cluster = await startPgCluster({ nodes: 3, name: "config" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  it("pgraft_reset_config puts a setting back to its default on every node; an unknown name changes nothing", async (_t, c) => {
    const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
    await n1.query("SELECT pgraft_set_config('kv_max_key_bytes', '512')");
    await until("every node has the override", async () => (await Promise.all(c.nodes.map((n) => setting(n, "kv_max_key_bytes")))).every((r) => r.value === "512"));
    assert.equal(await scalar(n2, "SELECT pgraft_reset_config('KV_MAX_KEY_BYTES')"), true);
    for (const n of [n1, n2, n3]) {
      await until(`node ${n.id}: back to the default`, async () => {
        const r = await setting(n, "kv_max_key_bytes");
        return r.value === "1024" && !r.overridden;
      });
    }
    const e = await sqlFails(() => n3.query("SELECT pgraft_reset_config('no_such_setting')"));
    assert.equal(e.code, "22023");
    assert.match(e.message, /unknown setting "no_such_setting"; valid settings: debug, election_timeout/);
    // Resetting one that is not overridden is fine (and still the default).
    assert.equal(await scalar(n1, "SELECT pgraft_reset_config('kv_max_key_bytes')"), true);
    assert.equal((await setting(n1, "kv_max_key_bytes")).value, "1024");
  });

  it("pgraft_set_debug sets the debug setting, and every node's sidecar logs at debug until it is off again", async (_t, c) => {
    const n1 = c.node(1);
    await n1.query("SELECT pgraft_set_debug(true)");
    for (const n of c.nodes) {
      await until(`node ${n.id}: debug is on in the config`, async () => (await setting(n, "debug")).value === "true");
    }
    for (const n of c.nodes.filter((x) => x.id !== 1)) {
      await until(`node ${n.id}: its sidecar applied debug`, () => Promise.resolve(applied(n, /^applied log level debug/).length > 0));
    }
    await c.node(2).query("SELECT pgraft_set_config('debug', 'off')");
    for (const n of c.nodes) {
      await until(`node ${n.id}: debug off again`, async () => (await setting(n, "debug")).value === "false");
      if (n.id !== 2) await until(`node ${n.id}: back to info`, () => Promise.resolve(applied(n, /^applied log level info/).length > 0));
    }
  });

  it("snapshot_interval reaches every node's sidecar", async (_t, c) => {
    await c.node(3).query("SELECT pgraft_set_config('snapshot_interval', '500')");
    for (const n of c.nodes) {
      await until(`node ${n.id}: applied`, () => Promise.resolve(applied(n, /applied snapshot_interval: a snapshot every 500 entries/).length > 0));
    }
    await c.node(3).query("SELECT pgraft_reset_config('snapshot_interval')");
  });

  it("settings this version cannot change are refused (55P02) with the reason, and nothing changes", async (_t, c) => {
    for (const name of ["max_append_entries", "max_inflight_msgs"]) {
      for (const n of [c.node(1), c.node(2)]) {
        const e = await sqlFails(() => n.query("SELECT pgraft_set_config($1, '32')", [name]));
        assert.equal(e.code, "55P02", e.message);
        assert.match(e.message, new RegExp(`^${name} cannot be changed in this version: `));
        assert.equal((await setting(n, name)).overridden, false);
      }
    }
  });

  it("a node added but never heard from has NULL last_heartbeat_ms", async (_t, c) => {
    const n1 = c.node(1);
    await n1.query("SELECT pgraft_add_node(9, 'nohost.invalid', 1)");
    try {
      const row = await until("node 9 listed", async () => (await n1.query<{ last_heartbeat_ms: string | null; state: string }>("SELECT last_heartbeat_ms, state FROM pgraft_get_nodes() WHERE node_id = 9")).rows[0]);
      // Give the leader time to have tracked it for a while: still never heard from.
      await new Promise((r) => setTimeout(r, 500));
      const again = (await n1.query<{ last_heartbeat_ms: string | null; state: string }>("SELECT last_heartbeat_ms, state FROM pgraft_get_nodes() WHERE node_id = 9")).rows[0]!;
      assert.equal(row.last_heartbeat_ms, null);
      assert.equal(again.last_heartbeat_ms, null);
      assert.equal(again.state, "unreachable");
    } finally {
      await n1.query("SELECT pgraft_remove_node(9)");
    }
  });
});
