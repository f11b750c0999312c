// Runtime configuration beyond parsing: which settings can change (issue 14 §3),
// the log index of each setting's last change (mod_revision), and the log level
// the debug / log_level settings give a sidecar.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkChangeable, SETTINGS } from "../../src/cluster/config-registry.js";
import { isClusterError } from "../../src/cluster/errors.js";
import { ClusterState } from "../../src/cluster/state.js";
import { effectiveLogLevel } from "../../src/daemon/logger.js";
import { Log } from "./helpers.js";

describe("settings this version cannot change", () => {
  test("max_append_entries and max_inflight_msgs are refused with NOT_CHANGEABLE (55P02) saying why; their default is accepted", () => {
    for (const [name, why] of [
      ["max_append_entries", /cannot be changed in this version: the Raft core bounds each AppendEntries message by size/],
      ["max_inflight_msgs", /cannot be changed in this version: each follower's flow-control window/],
    ] as const) {
      assert.throws(
        () => checkChangeable(name, "32"),
        (e: unknown) => isClusterError(e, "NOT_CHANGEABLE") && e.sqlstate === "55P02" && why.test(e.message),
      );
      assert.doesNotThrow(() => checkChangeable(name, SETTINGS.find((s) => s.name === name)!.default));
    }
    for (const name of ["debug", "log_level", "snapshot_interval", "failover_enabled", "heartbeat_interval", "election_timeout", "kv_max_key_bytes", "kv_max_value_bytes"]) {
      const spec = SETTINGS.find((s) => s.name === name)!;
      assert.equal(spec.fixed, undefined, name);
    }
  });

  test("failover_enabled and failover_timeout describe the write leader's failover (src/routing reads them)", () => {
    assert.match(SETTINGS.find((s) => s.name === "failover_enabled")!.description, /Automatic failover of each data group's write leader/);
    assert.match(SETTINGS.find((s) => s.name === "failover_timeout")!.description, /before another node takes the group's writes/);
  });
});

describe("mod_revision: the log index of a setting's last change", () => {
  test("0 until changed; the index of the set, then of the reset; kept by a snapshot", () => {
    const log = new Log();
    const row = (st: ClusterState, name: string) => st.config().find((r) => r.name === name)!;
    assert.ok(log.state.config().every((r) => r.modIndex === 0));
    const before = log.state.snapshot();
    log.ok({ op: "kv.put", key: "a", value: "1" });
    const setAt = log.next;
    log.ok({ op: "config.set", name: "heartbeat_interval", value: "75ms" });
    assert.equal(row(log.state, "heartbeat_interval").modIndex, setAt);
    assert.equal(row(log.state, "election_timeout").modIndex, 0);
    log.ok({ op: "kv.put", key: "b", value: "2" });
    const resetAt = log.next;
    const r = log.ok({ op: "config.reset", name: "heartbeat_interval" });
    assert.equal(r.setting?.modIndex, resetAt);
    assert.equal(r.setting?.value, "100ms");
    assert.equal(r.setting?.overridden, false);
    // A refused change changes nothing, its index included.
    log.fail({ op: "config.set", name: "election_timeout", value: "150ms" });
    assert.equal(row(log.state, "election_timeout").modIndex, 0);
    const copy = new ClusterState();
    copy.restore(log.state.snapshot());
    assert.equal(row(copy, "heartbeat_interval").modIndex, resetAt);
    assert.deepEqual(copy.snapshot(), log.state.snapshot());
    // A state never configured at run time snapshots as it always did (no changedAt), and such snapshots restore.
    assert.ok(!new TextDecoder().decode(before).includes("changedAt"));
    const old = new ClusterState();
    old.restore(before);
    assert.ok(old.config().every((x) => x.modIndex === 0));
  });

  test("a snapshot with a malformed changedAt is refused and the state kept", () => {
    const log = new Log();
    log.ok({ op: "config.set", name: "debug", value: "on" });
    const good = JSON.parse(new TextDecoder().decode(log.state.snapshot())) as { config: { changedAt: unknown } };
    for (const bad of [[["debug", 0]], [["nope", 3]], [["debug", "3"]], "x"]) {
      good.config.changedAt = bad;
      const st = new ClusterState();
      assert.throws(() => st.restore(new TextEncoder().encode(JSON.stringify(good))), (e: unknown) => isClusterError(e, "CORRUPT_SNAPSHOT"));
      assert.ok(st.config().every((x) => x.modIndex === 0));
    }
  });
});

describe("the log level the replicated settings give a sidecar", () => {
  test("debug wins; a log_level set at run time wins over the sidecar's flag; else the flag", () => {
    const log = new Log();
    assert.equal(effectiveLogLevel(log.state, "warn"), "warn", "nothing set: the flag");
    log.ok({ op: "config.set", name: "log_level", value: "error" });
    assert.equal(effectiveLogLevel(log.state, "warn"), "error");
    log.ok({ op: "config.set", name: "debug", value: "true" });
    assert.equal(effectiveLogLevel(log.state, "warn"), "debug");
    log.ok({ op: "config.set", name: "log_level", value: "trace" });
    assert.equal(effectiveLogLevel(log.state, "warn"), "trace", "debug never lowers trace");
    log.ok({ op: "config.reset", name: "debug" });
    log.ok({ op: "config.reset", name: "log_level" });
    assert.equal(effectiveLogLevel(log.state, "warn"), "warn");
  });
});
