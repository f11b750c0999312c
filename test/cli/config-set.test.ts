// pgraft config set/reset: a value that starts with a dash reaches the
// setting's validator (issue: commander took "-5s" for an unknown option), and
// the line after a change says what is true: it survives restarts, config save
// only marks the values as saved.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { after, before, describe, test } from "node:test";
import { normalize } from "../../src/cluster/config-registry.js";
import { ClusterError } from "../../src/cluster/errors.js";
import { ConfigSource } from "../../src/gen/pgraft/v1/client_pb.js";
import { runCli, startFakeCluster, target, type FakeCluster, type Reply } from "./helpers.js";

/** The fake answers ConfigSet as the sidecar does: the registry's own check of the value, its error as INVALID_ARGUMENT. */
const validatingSet: Reply = (req) => {
  const name = String(req["name"]);
  try {
    const value = normalize(name, String(req["value"]));
    return { response: { entry: { name, value, defaultValue: "1s", source: ConfigSource.RUNTIME, description: "d" }, previousValue: "1s" } };
  } catch (e) {
    assert.ok(e instanceof ClusterError);
    return { error: { code: grpc.status.INVALID_ARGUMENT, details: e.message, pgraftCode: e.code } };
  }
};

describe("pgraft config set", () => {
  let fake: FakeCluster;
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  test("a value starting with - is sent, and refused by the validator: invalid value, not an unknown option", async () => {
    fake.reply("cfg-neg", "configSet", validatingSet);
    const r = await runCli(["config", "set", "election_timeout", "-5s", ...target(fake, "cfg-neg")]);
    assert.equal(r.code, 1, r.stdout);
    assert.doesNotMatch(r.stderr, /unknown option/);
    assert.match(r.stderr, /invalid value for election_timeout: "-5s"/);
    assert.deepEqual(fake.requestsFor("cfg-neg", "configSet").map((x) => [x.request["name"], x.request["value"]]), [["election_timeout", "-5s"]]);
  });

  test("options still work around a dash value: before it, after it, and a flag's own value", async () => {
    fake.reply("cfg-neg-opts", "configSet", validatingSet);
    const after = await runCli(["config", "set", "election_timeout", "-1", "--json", ...target(fake, "cfg-neg-opts")]);
    assert.equal(after.code, 1);
    assert.match(after.stderr, /invalid value for election_timeout: "-1"/);
    const before = await runCli(["config", "set", "--json", ...target(fake, "cfg-neg-opts"), "election_timeout", "-.5s"]);
    assert.match(before.stderr, /invalid value for election_timeout: "-\.5s"/);
    const ok = await runCli(["config", "set", "election_timeout", "2s", "--json", ...target(fake, "cfg-neg-opts")]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { entry: { value: string } }).entry.value, "2s");
    const badTimeout = await runCli(["config", "set", "election_timeout", "2s", "--timeout", "-5s", ...target(fake, "cfg-neg-opts")]);
    assert.equal(badTimeout.code, 2);
    assert.match(badTimeout.stderr, /--timeout/);
    assert.deepEqual(
      fake.requestsFor("cfg-neg-opts", "configSet").map((x) => x.request["value"]),
      ["-1", "-.5s", "2s"],
    );
    // An unknown option is still one.
    const unknown = await runCli(["config", "set", "election_timeout", "2s", "--bogus", ...target(fake, "cfg-neg-opts")]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
  });

  test("set and reset say the change survives restarts; config save marks the values as saved (pgraft.saved_config)", async () => {
    fake.reply("cfg-hint", "configSet", validatingSet);
    fake.reply("cfg-hint", "configReset", { response: { entry: { name: "election_timeout", value: "1s", defaultValue: "1s", source: ConfigSource.DEFAULT, description: "d" }, previousValue: "2s" } });
    for (const args of [["set", "election_timeout", "2s"], ["reset", "election_timeout"]]) {
      const r = await runCli(["config", ...args, ...target(fake, "cfg-hint")]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /applies to every node now and survives restarts; "pgraft config save" marks the current values as the saved set, copied to the table pgraft\.saved_config/);
      assert.doesNotMatch(r.stdout, /to keep it across restarts/);
    }
  });
});
