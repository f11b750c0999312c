// Warnings the operator commands give on stderr when they did what was asked
// but the result needs attention, as the SQL functions warn (issue 14 §3):
// add-node with an address that does not resolve, config set leaving the
// election timeout under 5 x the heartbeat interval. Exit 0 in each case.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConfigSource } from "../../src/gen/pgraft/v1/client_pb.js";
import { runCli, startFakeCluster, target, type FakeCluster } from "./helpers.js";

const entry = (name: string, value: string, defaultValue: string): Record<string, unknown> => ({
  name,
  value,
  defaultValue,
  source: ConfigSource.RUNTIME,
  description: "d",
  modRevision: 7n,
});

describe("operator warnings", () => {
  let fake: FakeCluster;
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  test("add-node with an address that does not resolve: the node is added, a warning on stderr, exit 0", async () => {
    const r = await runCli(["add-node", "9", "nohost.invalid:7409", ...target(fake, "warn-add-unresolved")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fake.requestsFor("warn-add-unresolved", "addMember").length, 1);
    assert.match(r.stdout, /added node 9/);
    assert.match(r.stderr, /^pgraft: warning: node 9 was added, but its address "nohost\.invalid" does not resolve here \(.+\): nothing can reach it until it does; "pgraft remove-node 9" takes it out again$/m);
  });

  test("add-node with an IP address or a name that resolves: no warning", async () => {
    for (const [clusterId, address] of [
      ["warn-add-ip", "127.0.0.1:7401"],
      ["warn-add-ipv6", "[::1]:7402"],
      ["warn-add-localhost", "localhost:7403"],
    ] as const) {
      const r = await runCli(["add-node", "3", address, ...target(fake, clusterId)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "", address);
    }
  });

  test("add-node --json with an unresolvable address: stdout stays one JSON document, the warning goes to stderr", async () => {
    const r = await runCli(["add-node", "9", "nohost.invalid:7409", "--json", ...target(fake, "warn-add-json")]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotThrow(() => JSON.parse(r.stdout) as unknown);
    assert.match(r.stderr, /^pgraft: warning: node 9 was added/m);
  });

  test("config set election_timeout under 5 x the heartbeat: set, warned on stderr, exit 0", async () => {
    fake.reply("warn-et", "configSet", { response: { entry: entry("election_timeout", "300ms", "1s"), previousValue: "1s" } });
    fake.reply("warn-et", "configGet", { response: { entries: [entry("heartbeat_interval", "100ms", "100ms")] } });
    const r = await runCli(["config", "set", "election_timeout", "300ms", ...target(fake, "warn-et")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^election_timeout: 1s -> 300ms$/m);
    assert.match(r.stderr, /^pgraft: warning: election_timeout \(300ms\) is under 5 x heartbeat_interval \(100ms\): .*500ms or more is safer$/m);
    assert.deepEqual(
      fake.requestsFor("warn-et", "configGet").map((x) => x.request["name"]),
      ["heartbeat_interval"],
    );
  });

  test("config set heartbeat_interval that brings the election timeout under 5 x: warned", async () => {
    fake.reply("warn-hb", "configSet", { response: { entry: entry("heartbeat_interval", "400ms", "100ms"), previousValue: "100ms" } });
    fake.reply("warn-hb", "configGet", { response: { entries: [entry("election_timeout", "1s", "1s")] } });
    const r = await runCli(["config", "set", "heartbeat_interval", "400ms", ...target(fake, "warn-hb")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^pgraft: warning: election_timeout \(1s\) is under 5 x heartbeat_interval \(400ms\)/m);
  });

  test("config set with a safe ratio, or another setting: no warning", async () => {
    fake.reply("warn-safe", "configSet", { response: { entry: entry("election_timeout", "500ms", "1s"), previousValue: "1s" } });
    fake.reply("warn-safe", "configGet", { response: { entries: [entry("heartbeat_interval", "100ms", "100ms")] } });
    const safe = await runCli(["config", "set", "election_timeout", "500ms", ...target(fake, "warn-safe")]);
    assert.equal(safe.code, 0, safe.stderr);
    assert.equal(safe.stderr, "");

    fake.reply("warn-other", "configSet", { response: { entry: entry("snapshot_interval", "10", "10000"), previousValue: "10000" } });
    const other = await runCli(["config", "set", "snapshot_interval", "10", ...target(fake, "warn-other")]);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(other.stderr, "");
    assert.deepEqual(fake.requestsFor("warn-other", "configGet"), []);
  });

  test("config set: a failed read of the other setting loses only the advice, not the exit code", async () => {
    fake.reply("warn-get-fails", "configSet", { response: { entry: entry("election_timeout", "300ms", "1s"), previousValue: "1s" } });
    fake.reply("warn-get-fails", "configGet", { error: { code: 14, details: "unavailable" } });
    const r = await runCli(["config", "set", "election_timeout", "300ms", ...target(fake, "warn-get-fails")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
  });
});
