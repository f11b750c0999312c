// The settings check: a server without track_commit_timestamp (and with too
// few slots) is refused at start with the exact fix; a fix made with ALTER
// SYSTEM but not yet in effect says "restart".
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { checkSettings, DataPlane, SettingsError } from "../../src/slots/index.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";
import { textTypes } from "./support.js";

describe("settings check", () => {
  let server: TestPostgres;
  let client: pg.Client;

  before(async () => {
    server = await startTestPostgres({ settings: { track_commit_timestamp: false, max_replication_slots: 3 } });
    client = new pg.Client({ ...server.server.clientConfig(), types: textTypes });
    client.on("error", () => {});
    await client.connect();
  });

  after(async () => {
    await client?.end().catch(() => undefined);
    await server?.destroy();
  });

  test("track_commit_timestamp off and too few slots: each problem with its exact fix", async () => {
    const report = await checkSettings(client, { peers: 2 });
    assert.equal(report.ok, false);
    const ts = report.problems.find((p) => p.setting === "track_commit_timestamp");
    assert.ok(ts, JSON.stringify(report));
    assert.equal(ts.current, "off");
    assert.equal(ts.restart, true);
    assert.equal(ts.fix, "ALTER SYSTEM SET track_commit_timestamp = on; then restart PostgreSQL (this setting only takes effect at server start)");
    const slots = report.problems.find((p) => p.setting === "max_replication_slots");
    assert.ok(slots, JSON.stringify(report));
    assert.match(slots.required, /^>= 5 \(2 node slots \+ 1 group slot/);
    assert.match(slots.fix, /^ALTER SYSTEM SET max_replication_slots = 5; then restart PostgreSQL/);
    assert.equal(report.problems.some((p) => p.setting === "wal_level"), false, "wal_level is logical already");
  });

  test("DataPlane.start refuses with the fixes in its message, and creates nothing", async () => {
    await assert.rejects(
      DataPlane.start({ localDsn: server.server.keyValueDsn(), nodeName: "a", nodeId: 1, group: "g", db: "postgres", peers: [{ name: "b", id: 2, dsn: "host=127.0.0.1 port=1" }] }),
      (e: unknown) => {
        assert.ok(e instanceof SettingsError);
        assert.match(e.message, /track_commit_timestamp is off, needs on .*: ALTER SYSTEM SET track_commit_timestamp = on; then restart PostgreSQL/);
        return true;
      },
    );
    const slots = await client.query("SELECT slot_name FROM pg_replication_slots");
    assert.equal(slots.rowCount, 0);
  });

  test("changed with ALTER SYSTEM but not restarted: the fix is the restart", async () => {
    await client.query("ALTER SYSTEM SET track_commit_timestamp = on");
    await client.query("SELECT pg_reload_conf()");
    // pg_settings.pending_restart follows the reload once the postmaster has re-read the files.
    let fix = "";
    for (let i = 0; i < 50 && !/restart PostgreSQL so/.test(fix); i++) {
      await new Promise((r) => setTimeout(r, 100));
      fix = (await checkSettings(client, { peers: 2 })).problems.find((p) => p.setting === "track_commit_timestamp")?.fix ?? "";
    }
    assert.match(fix, /not yet in effect: restart PostgreSQL so track_commit_timestamp takes effect/);
  });

  test("a server configured by pgraft's own settings passes", async () => {
    const good = await startTestPostgres();
    const c = new pg.Client({ ...good.server.clientConfig(), types: textTypes });
    try {
      await c.connect();
      const report = await checkSettings(c, { peers: 4 });
      assert.deepEqual(report.problems, []);
      assert.equal(report.ok, true);
    } finally {
      await c.end().catch(() => undefined);
      await good.destroy();
    }
  });
});
