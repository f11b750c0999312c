// Each node's PostgreSQL address (src/daemon/postgres-address.ts): where it
// comes from (--postgres-advertise, else the --postgres-dsn's host and port,
// as libpq reads them), and the publisher that records it in the replicated
// store only when the store lacks it or holds another, retrying a failed write
// after a pause rather than every control-loop cycle.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../src/config/errors.js";
import { resolveSidecarConfig, type RawConfig } from "../../src/config/sidecar-config.js";
import { postgresAddressKey, PostgresAddressPublisher, recordedPostgresAddress } from "../../src/daemon/postgres-address.js";
import { dsnAddress } from "../../src/postgres/dsn.js";
import { Log } from "../cluster/helpers.js";

const base: RawConfig = { nodeId: "1", clusterId: "c", dataDir: "/tmp/x", plaintext: true };

function problems(flags: RawConfig): string[] {
  try {
    resolveSidecarConfig(flags, {});
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

describe("where the address comes from", () => {
  test("the DSN's host and port, in either form, with libpq's defaults", () => {
    assert.equal(dsnAddress("host=10.0.0.5 port=5433 dbname=app"), "10.0.0.5:5433");
    assert.equal(dsnAddress("postgresql://u:secret@db.example:6000/app"), "db.example:6000");
    assert.equal(dsnAddress("dbname=app"), "localhost:5432");
    assert.equal(dsnAddress("postgresql://u@[::1]:5439/d"), "[::1]:5439");
    assert.equal(dsnAddress("host=/var/run/postgresql port=5432"), "/var/run/postgresql:5432", "a socket directory as given");
  });

  test("--postgres-advertise wins; without it the DSN's; none without a PostgreSQL", () => {
    assert.equal(resolveSidecarConfig({ ...base, postgresDsn: "host=127.0.0.1 port=5544 user=postgres" }, {}).postgresAdvertise, "127.0.0.1:5544");
    assert.equal(resolveSidecarConfig({ ...base, postgresDsn: "host=127.0.0.1 port=5544", postgresAdvertise: "pg-0.pg.svc:5432" }, {}).postgresAdvertise, "pg-0.pg.svc:5432");
    assert.equal(resolveSidecarConfig({ ...base, postgresDsn: "host=127.0.0.1" }, { PGRAFT_POSTGRES_ADVERTISE: "10.1.2.3:6432" }).postgresAdvertise, "10.1.2.3:6432");
    assert.equal(resolveSidecarConfig(base, {}).postgresAdvertise, undefined);
  });

  test("a malformed --postgres-advertise, or one without --postgres-dsn, is refused", () => {
    assert.match(problems({ ...base, postgresDsn: "host=x", postgresAdvertise: "no-port" }).join(), /--postgres-advertise: .*port/);
    assert.match(problems({ ...base, postgresDsn: "host=x", postgresAdvertise: "h:99999" }).join(), /--postgres-advertise: /);
    assert.match(problems({ ...base, postgresAdvertise: "h:5432" }).join(), /--postgres-advertise: needs --postgres-dsn/);
  });
});

describe("the publisher", () => {
  test("writes when the store lacks the address or holds another, not when it holds this one, never without a leader", async () => {
    const log = new Log();
    const puts: [string, string][] = [];
    const p = new PostgresAddressPublisher(2, "127.0.0.1:5433", (key, value) => {
      puts.push([key, value]);
      log.ok({ op: "kv.put", key, value });
      return Promise.resolve();
    });
    assert.equal(await p.publish(log.state, false, 0), undefined, "no leader: nothing sent");
    assert.match((await p.publish(log.state, true, 0))!, /recorded this node's PostgreSQL address 127\.0\.0\.1:5433/);
    assert.deepEqual(puts, [[postgresAddressKey(2), '"127.0.0.1:5433"']]);
    assert.equal(recordedPostgresAddress(log.state, 2), "127.0.0.1:5433");
    assert.equal(await p.publish(log.state, true, 1), undefined, "already recorded");
    log.ok({ op: "kv.put", key: postgresAddressKey(2), value: '"10.9.9.9:5432"' });
    assert.ok(await p.publish(log.state, true, 2), "another address recorded (an earlier flag): written again");
    assert.equal(recordedPostgresAddress(log.state, 2), "127.0.0.1:5433");
    assert.equal(puts.length, 2);
  });

  test("a failed write is retried after a pause, not every cycle", async () => {
    const log = new Log();
    let calls = 0;
    let fail = true;
    const p = new PostgresAddressPublisher(1, "h:1", (key, value) => {
      calls++;
      if (fail) return Promise.reject(new Error("no leader reachable"));
      log.ok({ op: "kv.put", key, value });
      return Promise.resolve();
    });
    assert.match((await p.publish(log.state, true, 1_000))!, /could not record .* \(will retry\): no leader reachable/);
    assert.equal(await p.publish(log.state, true, 2_000), undefined);
    assert.equal(calls, 1);
    fail = false;
    assert.match((await p.publish(log.state, true, 6_000))!, /recorded/);
    assert.equal(calls, 2);
  });

  test("a value that is not a JSON string reads as no address", () => {
    const log = new Log();
    log.ok({ op: "kv.put", key: postgresAddressKey(3), value: "42" });
    assert.equal(recordedPostgresAddress(log.state, 3), undefined);
  });
});
