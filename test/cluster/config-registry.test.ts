// The runtime settings registry: the seed's syntax ('75ms', '900ms', 'false'),
// canonical forms, bounds, cross-setting rules and typed errors (SQLSTATE 22023).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  formatDuration,
  getSetting,
  normalize,
  parseBoolean,
  parseDurationMs,
  parseInteger,
  parseSetting,
  resolveSettings,
  SETTINGS,
  settingNames,
  validateCombination,
} from "../../src/cluster/config-registry.js";
import { ClusterError, isClusterError } from "../../src/cluster/errors.js";

function throwsCode(f: () => unknown, code: ClusterError["code"], message?: RegExp | string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isClusterError(e), `expected a ClusterError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.sqlstate, "22023");
    if (typeof message === "string") assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    return true;
  });
}

describe("config registry", () => {
  test("the required settings exist with the documented defaults", () => {
    const d = Object.fromEntries(SETTINGS.map((s) => [s.name, s.default]));
    assert.deepEqual(d, {
      conflict_log_origin_change: "false",
      debug: "false",
      election_timeout: "1s",
      failover_enabled: "true",
      failover_timeout: "1s",
      heartbeat_interval: "100ms",
      kv_max_key_bytes: "1024",
      kv_max_value_bytes: "1048576",
      log_level: "info",
      max_append_entries: "64",
      max_inflight_msgs: "256",
      snapshot_interval: "10000",
    });
    assert.deepEqual(settingNames(), [...settingNames()].sort(), "sorted by name");
    const s = resolveSettings(new Map());
    assert.equal(s.heartbeatIntervalMs, 100);
    assert.equal(s.electionTimeoutMs, 1000);
    assert.equal(s.kvMaxValueBytes, 1024 * 1024);
    assert.equal(s.failoverEnabled, true);
    assert.equal(s.logLevel, "info");
  });

  test("every default is canonical, within its bounds and described", () => {
    for (const s of SETTINGS) {
      assert.equal(normalize(s.name, s.default), s.default, s.name);
      assert.ok(s.description.length > 10, s.name);
    }
  });

  test("the seed's values: '75ms', '900ms', 'false', 'true'", () => {
    assert.equal(normalize("heartbeat_interval", "75ms"), "75ms");
    assert.equal(normalize("election_timeout", "900ms"), "900ms");
    assert.equal(normalize("failover_enabled", "false"), "false");
    assert.equal(normalize("failover_enabled", "true"), "true");
    assert.equal(parseSetting("heartbeat_interval", "75ms"), 75);
    assert.equal(parseSetting("failover_enabled", "false"), false);
  });

  test("durations: units, decimals exactly, bare ms, canonical text", () => {
    assert.equal(parseDurationMs("75ms"), 75);
    assert.equal(parseDurationMs("1s"), 1000);
    assert.equal(parseDurationMs("1.5s"), 1500);
    assert.equal(parseDurationMs("1.1s"), 1100); // not 1100.0000000000002
    assert.equal(parseDurationMs("0.075s"), 75);
    assert.equal(parseDurationMs("2m"), 120_000);
    assert.equal(parseDurationMs("2min"), 120_000);
    assert.equal(parseDurationMs("1h"), 3_600_000);
    assert.equal(parseDurationMs("250"), 250);
    assert.equal(parseDurationMs(" 75 MS "), 75);
    assert.equal(parseDurationMs("1.0"), 1);
    for (const bad of ["", "abc", "-5ms", "1.5", "0.5ms", "1.0001s", "5 sec", "1e3", "ms", "1s2", "0x10"]) {
      assert.equal(parseDurationMs(bad), undefined, bad);
    }
    assert.equal(formatDuration(75), "75ms");
    assert.equal(formatDuration(1500), "1500ms");
    assert.equal(formatDuration(1000), "1s");
    assert.equal(formatDuration(120_000), "2m");
    assert.equal(formatDuration(0), "0ms");
    assert.equal(normalize("election_timeout", "1.5s"), "1500ms");
    assert.equal(normalize("election_timeout", "1000"), "1s");
    assert.equal(normalize("election_timeout", "0.5m"), "30s");
  });

  test("booleans, integers with byte units, enums", () => {
    for (const w of ["true", "on", "yes", "1", "TRUE", " On "]) assert.equal(parseBoolean(w), true, w);
    for (const w of ["false", "off", "no", "0", "No"]) assert.equal(parseBoolean(w), false, w);
    for (const w of ["", "2", "maybe", "tru"]) assert.equal(parseBoolean(w), undefined, w);
    assert.equal(normalize("debug", "on"), "true");
    assert.equal(parseInteger("64kB", true), 65_536);
    assert.equal(parseInteger("64kB", false), undefined);
    assert.equal(normalize("kv_max_value_bytes", "2MB"), String(2 * 1024 * 1024));
    assert.equal(normalize("kv_max_value_bytes", "1MiB"), "1048576");
    assert.equal(normalize("snapshot_interval", "+500"), "500");
    assert.equal(normalize("log_level", "DEBUG"), "debug");
  });

  test("malformed values: INVALID_VALUE with the expected form in the message", () => {
    throwsCode(() => normalize("heartbeat_interval", "abc"), "INVALID_VALUE", 'invalid value for heartbeat_interval: "abc" (expected a duration such as 75ms or 1s)');
    throwsCode(() => normalize("failover_enabled", "maybe"), "INVALID_VALUE", /invalid value for failover_enabled: "maybe" \(expected a boolean/);
    throwsCode(() => normalize("snapshot_interval", "1.5"), "INVALID_VALUE", /expected a whole number/);
    throwsCode(() => normalize("snapshot_interval", "10kB"), "INVALID_VALUE");
    throwsCode(() => normalize("log_level", "verbose"), "INVALID_VALUE", /expected one of trace, debug, info, warn, error/);
    throwsCode(() => normalize("debug", 1 as unknown as string), "INVALID_VALUE");
  });

  test("bounds: OUT_OF_RANGE naming the bounds", () => {
    throwsCode(() => normalize("heartbeat_interval", "5ms"), "OUT_OF_RANGE", 'invalid value for heartbeat_interval: "5ms" (must be between 10ms and 1m)');
    throwsCode(() => normalize("heartbeat_interval", "0"), "OUT_OF_RANGE");
    throwsCode(() => normalize("election_timeout", "6m"), "OUT_OF_RANGE");
    throwsCode(() => normalize("kv_max_key_bytes", "0"), "OUT_OF_RANGE", /between 1 and 65536/);
    throwsCode(() => normalize("kv_max_value_bytes", "1GB"), "OUT_OF_RANGE");
    throwsCode(() => normalize("snapshot_interval", "99"), "OUT_OF_RANGE");
    assert.equal(normalize("heartbeat_interval", "10ms"), "10ms", "the bound itself is allowed");
  });

  test("unknown settings list the valid names; names are case- and prefix-tolerant", () => {
    throwsCode(() => normalize("heartbeat", "75ms"), "UNKNOWN_SETTING", /unknown setting "heartbeat"; valid settings: conflict_log_origin_change, debug, election_timeout, failover_enabled, failover_timeout, heartbeat_interval/);
    throwsCode(() => getSetting(""), "UNKNOWN_SETTING");
    throwsCode(() => getSetting("constructor"), "UNKNOWN_SETTING");
    assert.equal(getSetting("pgraft.Heartbeat_Interval").name, "heartbeat_interval");
  });

  test("election_timeout must be at least 2 x heartbeat_interval", () => {
    validateCombination(new Map([["heartbeat_interval", "75ms"], ["election_timeout", "900ms"]]));
    validateCombination(new Map([["heartbeat_interval", "500ms"]])); // 1s = 2 x 500ms: allowed
    throwsCode(
      () => validateCombination(new Map([["heartbeat_interval", "600ms"]])),
      "INCOMPATIBLE_SETTINGS",
      "election_timeout (1s) must be at least 2 x heartbeat_interval (600ms), i.e. at least 1200ms",
    );
    throwsCode(() => resolveSettings(new Map([["election_timeout", "150ms"]])), "INCOMPATIBLE_SETTINGS", /election_timeout \(150ms\).*heartbeat_interval \(100ms\)/);
  });
});
