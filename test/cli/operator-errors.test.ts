// How the operator commands fail: exit 1 and one line on stderr for a request
// that failed (with a hint for the codes an operator can act on), exit 2 for a
// bad invocation found before anything is sent.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { closedPort, runCli, startFakeCluster, target, type CliResult, type FakeCluster } from "./helpers.js";

/** Exactly one line on stderr, nothing on stdout. */
function oneLineError(r: CliResult, code: number): string {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^pgraft: [^\n]+\n$/, r.stderr);
  return r.stderr.trimEnd();
}

describe("operator errors", { concurrency: true }, () => {
  let fake: FakeCluster;
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  test("NOT_LEADER with the leader's id: exit 1, the server's message and the leader named", async () => {
    fake.reply("err-not-leader", "removeMember", {
      error: { code: grpc.status.FAILED_PRECONDITION, details: "not the leader; the leader is node 2", pgraftCode: "NOT_LEADER", leaderId: 2 },
    });
    const line = oneLineError(await runCli(["remove-node", "3", ...target(fake, "err-not-leader")]), 1);
    assert.match(line, /^pgraft: remove node 3: not the leader; the leader is node 2 \[NOT_LEADER\]; hint: the leader is node 2: /);
  });

  test("NOT_LEADER without a leader: no leader is known", async () => {
    fake.reply("err-no-leader", "kvPut", { error: { code: grpc.status.UNAVAILABLE, details: "no leader", pgraftCode: "NOT_LEADER", leaderId: 0 } });
    const line = oneLineError(await runCli(["kv", "put", "k", "1", ...target(fake, "err-no-leader")]), 1);
    assert.match(line, /^pgraft: kv put "k": no leader \[NOT_LEADER\]; hint: no leader is known/);
  });

  test("cluster id mismatch: points at --cluster-id", async () => {
    fake.reply("err-mismatch", "status", { error: { code: grpc.status.FAILED_PRECONDITION, details: "cluster id mismatch: expected prod, got err-mismatch" } });
    const line = oneLineError(await runCli(["status", ...target(fake, "err-mismatch")]), 1);
    assert.match(line, /^pgraft: status: cluster id mismatch: expected prod, got err-mismatch \[FAILED_PRECONDITION\]; hint: .*--cluster-id/);
  });

  test("no answer within --timeout: DEADLINE_EXCEEDED with the timeout named", async () => {
    // Had the CLI waited for the late (successful) answer, it would exit 0.
    fake.reply("err-slow", "members", { response: {}, delayMs: 3_000 });
    const line = oneLineError(await runCli(["members", "--timeout", "300ms", ...target(fake, "err-slow")]), 1);
    assert.match(line, /^pgraft: members: .*\[DEADLINE_EXCEEDED\]; hint: no answer within 300ms \(--timeout\)/);
  });

  test("unreachable endpoint: exit 1, is the sidecar running there?", async () => {
    const port = await closedPort();
    const line = oneLineError(await runCli(["status", "--endpoint", `127.0.0.1:${port}`, "--cluster-id", "c", "--plaintext"]), 1);
    assert.match(line, new RegExp(`^pgraft: status: cannot connect to 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*; hint: is the sidecar running at 127\\.0\\.0\\.1:${port}\\?$`));
  });

  test("usage errors exit 2 before anything is sent", async () => {
    const cases: [string[], RegExp][] = [
      [["status", "--endpoint", fake.address, "--plaintext"], /^pgraft: status: --cluster-id is required \(or set \$PGRAFT_CLUSTER_ID\)$/],
      [["status", "--endpoint", "localhost", "--cluster-id", "err-usage", "--plaintext"], /^pgraft: status: --endpoint: "localhost" is not host:port$/],
      [["kv", "put", "greeting", "hello", ...target(fake, "err-usage")], /^pgraft: kv put: the value must be JSON text: .*; to store it as a string, pass the JSON string: '"hello"'$/],
      [["remove-node", "three", ...target(fake, "err-usage")], /^pgraft: remove-node: node id must be an integer in 1\.\.4294967295, got "three"$/],
      [["kv", "put", "k", ...target(fake, "err-usage")], /^pgraft: kv put: missing required argument 'json-value'$/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((r, i) => assert.match(oneLineError(r, 2), cases[i]![1]));
    assert.deepEqual(fake.requestsFor("err-usage"), []);
    assert.deepEqual(fake.requestsFor(""), []);
  });
});
