// What the operator commands send: the cluster id on every request, and each
// flag in its request field.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runCli, startFakeCluster, target, type FakeCluster } from "./helpers.js";

describe("operator requests", { concurrency: true }, () => {
  let fake: FakeCluster;
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  const only = (clusterId: string, method: string): Record<string, unknown> => {
    const rs = fake.requestsFor(clusterId, method);
    assert.equal(rs.length, 1, `${method} requests: ${rs.length}`);
    return rs[0]!.request;
  };

  test("endpoint, cluster id and plaintext from PGRAFT_* variables", async () => {
    const r = await runCli(["status"], { PGRAFT_ENDPOINT: fake.address, PGRAFT_CLUSTER_ID: "req-env", PGRAFT_PLAINTEXT: "1" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(only("req-env", "status")["clusterId"], "req-env");
  });

  test("members --from-leader", async () => {
    const r = await runCli(["members", "--from-leader", ...target(fake, "req-members")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(only("req-members", "members")["fromLeader"], true);
  });

  test("add-node: id, address, name and the learner flag", async () => {
    const a = await runCli(["add-node", "4", "db4.example:7400", "--name", "db4", "--learner", ...target(fake, "req-add-learner")]);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /^added node 4 \(db4\) at db4\.example:7400 as a learner$/m);
    const learner = only("req-add-learner", "addMember");
    assert.deepEqual([learner["id"], learner["raftAddress"], learner["name"], learner["asLearner"]], [4, "db4.example:7400", "db4", true]);

    const v = await runCli(["add-node", "5", "[::1]:7405", ...target(fake, "req-add-voter")]);
    assert.equal(v.code, 0, v.stderr);
    const voter = only("req-add-voter", "addMember");
    assert.deepEqual([voter["id"], voter["raftAddress"], voter["name"], voter["asLearner"]], [5, "[::1]:7405", "", false]);
  });

  test("remove-node and promote-node send the id", async () => {
    const [rm, pr] = await Promise.all([
      runCli(["remove-node", "3", ...target(fake, "req-remove")]),
      runCli(["promote-node", "4", "--json", ...target(fake, "req-promote")]),
    ]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /^removed node 3$/m);
    assert.equal(only("req-remove", "removeMember")["id"], 3);
    assert.equal(pr.code, 0, pr.stderr);
    assert.deepEqual(JSON.parse(pr.stdout), { header: null, members: [], progress_from_leader: false });
    assert.equal(only("req-promote", "promoteMember")["id"], 4);
  });

  test("transfer-leader: the target, or 0 for the most up-to-date voter", async () => {
    fake.reply("req-transfer", "transferLeader", (req) => ({ response: { leaderId: Number(req["targetId"]) || 2 } }));
    fake.reply("req-transfer-any", "transferLeader", { response: { leaderId: 2 } });
    const [to3, any] = await Promise.all([
      runCli(["transfer-leader", "3", ...target(fake, "req-transfer")]),
      runCli(["transfer-leader", ...target(fake, "req-transfer-any")]),
    ]);
    assert.equal(to3.code, 0, to3.stderr);
    assert.equal(to3.stdout, "node 3 is now the leader\n");
    assert.equal(only("req-transfer", "transferLeader")["targetId"], 3);
    assert.equal(any.code, 0, any.stderr);
    assert.equal(only("req-transfer-any", "transferLeader")["targetId"], 0);
  });

  test("kv get --serializable", async () => {
    fake.reply("req-get", "kvGet", { response: { kv: { key: "k", value: "1" } } });
    const r = await runCli(["kv", "get", "k", "--serializable", ...target(fake, "req-get")]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([only("req-get", "kvGet")["key"], only("req-get", "kvGet")["serializable"]], ["k", true]);
  });

  test("kv put: the value as given, --if-mod-revision (absent unless given, 0 allowed) and --lease", async () => {
    for (const id of ["req-put", "req-put-create", "req-put-plain"]) fake.reply(id, "kvPut", { response: { succeeded: true, kv: { key: "k", modRevision: 8n, version: 3n } } });
    const [cas, create, plain] = await Promise.all([
      runCli(["kv", "put", "k", '{"a": [1, 2]}', "--if-mod-revision", "7", "--lease", "99", ...target(fake, "req-put")]),
      runCli(["kv", "put", "k", '"hello"', "--if-mod-revision", "0", ...target(fake, "req-put-create")]),
      runCli(["kv", "put", "k", "42", ...target(fake, "req-put-plain")]),
    ]);
    for (const r of [cas, create, plain]) assert.equal(r.code, 0, r.stderr);
    assert.equal(cas.stdout, 'stored "k": mod_revision 8, version 3\n');
    const c = only("req-put", "kvPut");
    assert.deepEqual([c["key"], c["value"], c["ifModRevision"], c["lease"]], ["k", '{"a": [1, 2]}', 7n, 99n]);
    const cr = only("req-put-create", "kvPut");
    assert.deepEqual([cr["value"], cr["ifModRevision"], cr["lease"]], ['"hello"', 0n, 0n]);
    assert.equal(only("req-put-plain", "kvPut")["ifModRevision"], undefined);
  });

  test("kv put whose compare fails: exit 1 with the current revision", async () => {
    fake.reply("req-put-cas", "kvPut", { response: { succeeded: false, kv: { key: "k", modRevision: 12n } } });
    const r = await runCli(["kv", "put", "k", "1", "--if-mod-revision", "7", ...target(fake, "req-put-cas")]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "pgraft: kv put \"k\": not written: the key's mod_revision is 12, not 7\n");
  });

  test("kv delete --if-mod-revision; kv list flags", async () => {
    fake.reply("req-del", "kvDelete", { response: { succeeded: true, deleted: 1n } });
    const [del, list] = await Promise.all([
      runCli(["kv", "delete", "k", "--if-mod-revision", "5", ...target(fake, "req-del")]),
      runCli(["kv", "list", "p/", "--keys-only", "--limit", "10", "--serializable", ...target(fake, "req-list")]),
    ]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, 'deleted "k"\n');
    assert.deepEqual([only("req-del", "kvDelete")["key"], only("req-del", "kvDelete")["ifModRevision"]], ["k", 5n]);
    assert.equal(list.code, 0, list.stderr);
    const l = only("req-list", "kvList");
    assert.deepEqual([l["prefix"], l["limit"], l["keysOnly"], l["serializable"], l["startAfter"]], ["p/", 10n, true, true, ""]);
  });
});
