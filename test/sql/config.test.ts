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
    assert.match(e.message, /unknown setting "no_such_setting"; valid settings: conflict_log_origin_change, debug, election_timeout/);
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

  it("an election timeout under 5 x the heartbeat is accepted with a warning; under 2 x it is refused and nothing changes", async (_t, c) => {
    const s = await c.node(2).connect();
    const notices: string[] = [];
    s.on("notice", (m) => notices.push(`${m.severity ?? ""}: ${m.message ?? ""}`));
    try {
      await s.query("SELECT pgraft_set_config('election_timeout', '1s')");
      await s.query("SELECT pgraft_set_config('heartbeat_interval', '100ms')");
      assert.deepEqual(notices, [], "10 x: no warning");
      await s.query("SELECT pgraft_set_config('election_timeout', '300ms')");
      assert.deepEqual(notices, [
        "WARNING: election_timeout (300ms) is under 5 x heartbeat_interval (100ms): a heartbeat delayed by a busy host or network can start needless elections; 500ms or more is safer",
      ]);
      const e = await sqlFails(() => s.query("SELECT pgraft_set_config('heartbeat_interval', '200ms')"));
      assert.equal(e.code, "22023");
      assert.match(e.message, /at least 2 x heartbeat_interval/);
      assert.equal((await setting(c.node(2), "heartbeat_interval")).value, "100ms");
    } finally {
      await s.query("SELECT pgraft_reset_config('election_timeout')").catch(() => undefined);
      await s.query("SELECT pgraft_reset_config('heartbeat_interval')").catch(() => undefined);
      await s.end();
    }
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

  it("adding a node whose address does not resolve warns; a node added but never heard from has NULL last_heartbeat_ms", async (_t, c) => {
    const n1 = c.node(1);
    const s = await n1.connect();
    const notices: { severity?: string; message: string }[] = [];
    s.on("notice", (m) => notices.push({ ...(m.severity ? { severity: m.severity } : {}), message: m.message ?? "" }));
    try {
      assert.equal((await s.query<{ ok: boolean }>("SELECT pgraft_add_node(9, 'nohost.invalid', 1) AS ok")).rows[0]!.ok, true);
      // An address that resolves (an IP literal needs no lookup): no warning.
      assert.equal((await s.query<{ ok: boolean }>("SELECT pgraft_add_node(10, '127.0.0.1', 1) AS ok")).rows[0]!.ok, true);
    } finally {
      await s.end();
    }
    assert.equal(notices.length, 1, JSON.stringify(notices));
    assert.equal(notices[0]!.severity, "WARNING");
    assert.match(notices[0]!.message, /^node 9 was added, but its address "nohost\.invalid" does not resolve here \(ENOTFOUND\): nothing can reach it until it does; pgraft_remove_node\(9\) takes it out again$/);
    await n1.query("SELECT pgraft_remove_node(10)");
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
