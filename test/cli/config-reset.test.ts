// pgraft config reset NAME: the request it sends and what it prints (issue 14 §3).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConfigSource } from "../../src/gen/pgraft/v1/client_pb.js";
import { runCli, startFakeCluster, target, type FakeCluster } from "./helpers.js";

describe("pgraft config reset", () => {
  let fake: FakeCluster;
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  test("sends ConfigReset with the name and says what the value was and is now", async () => {
    fake.reply("cfg-reset", "configReset", {
      response: { entry: { name: "heartbeat_interval", value: "100ms", defaultValue: "100ms", source: ConfigSource.DEFAULT, description: "d", modRevision: 42n }, previousValue: "75ms" },
    });
    const r = await runCli(["config", "reset", "heartbeat_interval", ...target(fake, "cfg-reset")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^heartbeat_interval: 75ms -> 100ms \(the default\)$/m);
    assert.deepEqual(
      fake.requestsFor("cfg-reset", "configReset").map((x) => x.request["name"]),
      ["heartbeat_interval"],
    );
  });

  test("an empty name is a usage error and sends nothing", async () => {
    const r = await runCli(["config", "reset", " ", ...target(fake, "cfg-reset-empty")]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the setting name must not be empty/);
    assert.deepEqual(fake.requestsFor("cfg-reset-empty"), []);
  });
});
