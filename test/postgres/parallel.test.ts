// Two servers side by side, as a pgraft node pair will be: separate ports,
// data dirs and sockets, and logical replication from one to the other with
// the settings we write (wal_level=logical, slots, workers) over a SCRAM login.
import assert from "node:assert/strict";
import { test } from "node:test";
import pg from "pg";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("two servers in parallel; logical replication from one to the other", async () => {
  const started = await Promise.allSettled([startTestPostgres(), startTestPostgres()]);
  const servers = started.filter((r): r is PromiseFulfilledResult<TestPostgres> => r.status === "fulfilled").map((r) => r.value);
  try {
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const [a, b] = servers.map((s) => s.server) as [TestPostgres["server"], TestPostgres["server"]];
    assert.notEqual(a.port, b.port);
    assert.notEqual(a.dataDir, b.dataDir);
    const dirs = await Promise.all([a, b].map(async (s) => (await s.query<{ d: string }>("select current_setting('data_directory') as d"))[0]?.d));
    assert.deepEqual(dirs, [a.dataDir, b.dataDir]);

    await a.query("create table t (id int primary key, v text)");
    await b.query("create table t (id int primary key, v text)");
    await a.query("insert into t values (1, 'copied by the initial sync')");
    await a.query("create publication pub for table t");
    // The subscriber connects to the publisher over TCP with its password: the key/value DSN as CREATE SUBSCRIPTION takes it.
    await b.query(`create subscription sub connection ${pg.escapeLiteral(a.keyValueDsn())} publication pub`);
    await a.query("insert into t values (2, 'streamed')");
    const rows = await waitFor("the subscriber to have both rows", async () => {
      const r = await b.query<{ id: number; v: string }>("select id, v from t order by id");
      return r.length === 2 ? r : undefined;
    });
    assert.deepEqual(rows, [
      { id: 1, v: "copied by the initial sync" },
      { id: 2, v: "streamed" },
    ]);
    await b.query("drop subscription sub");
  } finally {
    await Promise.all(servers.map((s) => s.destroy()));
  }
});
