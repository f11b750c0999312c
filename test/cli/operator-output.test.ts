// What the operator commands print: aligned tables and key: value lines for
// people, one parseable JSON document with stable keys for --json.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConfigSource, MemberRole, RaftState } from "../../src/gen/pgraft/v1/client_pb.js";
import { runCli, startFakeCluster, target, type FakeCluster } from "./helpers.js";

const header = (clusterId: string, memberId: number, leaderId: number) => ({ clusterId, memberId, leaderId, raftTerm: 7n, revision: 42n, appliedIndex: 120n });

const members = [
  { id: 1, name: "alpha", raftAddress: "10.0.0.1:7400", role: MemberRole.VOTER, isLeader: true, matchIndex: 120n, lagEntries: 0n, reachable: true, lastHeartbeatMs: 0n },
  { id: 2, name: "beta", raftAddress: "10.0.0.2:7400", role: MemberRole.VOTER, isLeader: false, matchIndex: 118n, lagEntries: 2n, reachable: true, lastHeartbeatMs: 35n },
  { id: 14, name: "gamma-learner", raftAddress: "10.0.0.14:7400", role: MemberRole.LEARNER, isLeader: false, matchIndex: 0n, lagEntries: 120n, reachable: false, lastHeartbeatMs: -1n },
];

const statusResponse = (clusterId: string) => ({
  header: header(clusterId, 1, 1),
  nodeId: 1,
  name: "alpha",
  state: RaftState.LEADER,
  term: 7n,
  leaderId: 1,
  commitIndex: 120n,
  appliedIndex: 119n,
  firstIndex: 3n,
  lastIndex: 121n,
  voters: [2, 1],
  learners: [],
  version: "0.1.0",
  quorumMet: true,
});

/** The column where each header cell starts. */
const columnStarts = (headerLine: string, names: readonly string[]): number[] => names.map((n) => headerLine.indexOf(n));

describe("operator output", { concurrency: true }, () => {
  let fake: FakeCluster;
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  test("status: key: value lines, aligned, no JSON", async () => {
    fake.reply("out-status", "status", { response: statusResponse("out-status") });
    const r = await runCli(["status", ...target(fake, "out-status")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const lines = r.stdout.trimEnd().split("\n");
    const values = new Map(lines.map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
    assert.equal(values.get("node"), "1");
    assert.equal(values.get("name"), "alpha");
    assert.equal(values.get("state"), "leader");
    assert.equal(values.get("term"), "7");
    assert.equal(values.get("leader"), "1");
    assert.equal(values.get("commit_index"), "120");
    assert.equal(values.get("applied_index"), "119");
    assert.equal(values.get("first_index"), "3");
    assert.equal(values.get("last_index"), "121");
    assert.equal(values.get("voters"), "1, 2");
    assert.equal(values.get("learners"), "none");
    assert.equal(values.get("quorum_met"), "yes");
    assert.equal(values.get("version"), "0.1.0");
    // Values start in one column.
    const starts = new Set(lines.map((l) => l.length - l.slice(l.indexOf(":") + 1).trimStart().length));
    assert.equal(starts.size, 1, r.stdout);
    assert.doesNotMatch(r.stdout, /[{}]/);
  });

  test("status --json: one document, proto field names, every field present, numbers as numbers, lower-case state", async () => {
    fake.reply("out-status-json", "status", { response: statusResponse("out-status-json") });
    const r = await runCli(["status", "--json", ...target(fake, "out-status-json")]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(doc["node_id"], 1);
    assert.equal(doc["name"], "alpha");
    assert.equal(doc["state"], "leader");
    assert.equal(doc["term"], 7);
    assert.equal(doc["leader_id"], 1);
    assert.equal(doc["commit_index"], 120);
    assert.deepEqual(doc["voters"], [2, 1]);
    assert.deepEqual(doc["learners"], []);
    assert.equal(doc["quorum_met"], true);
    assert.equal(doc["version"], "0.1.0");
    // Zero values are there too: the keys do not depend on the values.
    assert.equal(doc["elections_started"], 0);
    assert.deepEqual((doc["header"] as Record<string, unknown>)["cluster_id"], "out-status-json");
  });

  test("members from the leader: aligned table with progress and the leader starred", async () => {
    fake.reply("out-members", "members", { response: { header: header("out-members", 1, 1), members } });
    const r = await runCli(["members", ...target(fake, "out-members")]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    const cols = ["ID", "NAME", "ADDRESS", "ROLE", "LEADER", "MATCH", "LAG", "REACHABLE", "LAST HEARTBEAT"];
    const starts = columnStarts(lines[0]!, cols);
    assert.ok(starts.every((s, i) => s >= 0 && (i === 0 || s > starts[i - 1]!)), lines[0]);
    assert.equal(lines.length, 4, r.stdout);
    const cell = (line: string, i: number): string => line.slice(starts[i], starts[i + 1] ?? line.length).trim();
    const row = (id: string): string => lines.find((l) => cell(l, 0) === id)!;
    assert.deepEqual(
      cols.map((_, i) => cell(row("1"), i)),
      ["1", "alpha", "10.0.0.1:7400", "voter", "*", "120", "0", "yes", "0ms ago"], // as --json: last_heartbeat_ms 0
    );
    assert.deepEqual(
      cols.map((_, i) => cell(row("2"), i)),
      ["2", "beta", "10.0.0.2:7400", "voter", "", "118", "2", "yes", "35ms ago"],
    );
    assert.deepEqual(
      cols.map((_, i) => cell(row("14"), i)),
      ["14", "gamma-learner", "10.0.0.14:7400", "learner", "", "0", "120", "no", "never"],
    );
  });

  test("members from a follower: progress columns blank, with a pointer to --from-leader", async () => {
    fake.reply("out-members-f", "members", { response: { header: header("out-members-f", 2, 1), members } });
    const r = await runCli(["members", ...target(fake, "out-members-f")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /--from-leader/);
    const row = r.stdout.split("\n").find((l) => l.startsWith("2 "))!;
    assert.match(row, /voter\s+-\s+-\s+-\s+-$/);
  });

  test("members --json from the leader: the members with their fields, numbers as numbers, never heard from as null", async () => {
    fake.reply("out-members-json", "members", { response: { header: header("out-members-json", 1, 1), members } });
    const r = await runCli(["members", "--json", ...target(fake, "out-members-json")]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { members: Record<string, unknown>[] };
    assert.equal(doc.members.length, 3);
    assert.deepEqual(doc.members[2], {
      id: 14,
      name: "gamma-learner",
      raft_address: "10.0.0.14:7400",
      role: "learner",
      is_leader: false,
      match_index: 0,
      lag_entries: 120,
      reachable: false,
      last_heartbeat_ms: null,
      replication_lag_bytes: 0,
      progress_state: null,
    });
    assert.equal((doc as unknown as Record<string, unknown>)["progress_from_leader"], true);
  });

  test("kv get: key: value lines; --json has the pair", async () => {
    const kv = { key: "app/config", value: '{"replicas":3}', createRevision: 5n, modRevision: 9n, version: 2n, lease: 0n };
    fake.reply("out-kv-get", "kvGet", { response: { header: header("out-kv-get", 1, 1), kv } });
    const human = await runCli(["kv", "get", "app/config", ...target(fake, "out-kv-get")]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^key:\s+app\/config$/m);
    assert.match(human.stdout, /^value:\s+\{"replicas":3\}$/m);
    assert.match(human.stdout, /^mod_revision:\s+9$/m);
    assert.match(human.stdout, /^lease:\s+none$/m);
    const json = await runCli(["kv", "get", "app/config", "--json", ...target(fake, "out-kv-get")]);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as { kv: Record<string, unknown> };
    assert.deepEqual(doc.kv, { key: "app/config", value: { replicas: 3 }, create_revision: 5, mod_revision: 9, version: 2, lease: 0 });
  });

  test("kv get of a missing key: exit 1, message on stderr, nothing on stdout", async () => {
    fake.reply("out-kv-missing", "kvGet", { response: { header: header("out-kv-missing", 1, 1) } });
    const human = await runCli(["kv", "get", "nope", ...target(fake, "out-kv-missing")]);
    assert.equal(human.code, 1);
    assert.equal(human.stdout, "");
    assert.equal(human.stderr, 'pgraft: kv get "nope": key not found\n');
  });

  test("kv list: a table; --keys-only: one key a line; pages are followed", async () => {
    const all = ["a/1", "a/2", "a/3", "a/4", "a/5"].map((key, i) => ({ key, value: `{"n": ${i}}`, modRevision: BigInt(10 + i), version: 1n }));
    // Pages of at most 2 pairs, whatever the limit asked.
    fake.reply("out-kv-list", "kvList", (req) => {
      const after = String(req["startAfter"]);
      const rest = all.filter((kv) => kv.key > after);
      const asked = Number(req["limit"]);
      const n = Math.min(2, asked || 2);
      return { response: { header: header("out-kv-list", 1, 1), kvs: rest.slice(0, n), more: rest.length > n, count: BigInt(all.length) } };
    });
    const table = await runCli(["kv", "list", "a/", ...target(fake, "out-kv-list")]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^KEY\s+MOD_REVISION\s+VERSION\s+LEASE\s+VALUE$/);
    assert.equal(lines.length, 6, table.stdout);
    assert.match(lines[1]!, /^a\/1\s+10\s+1\s+-\s+\{"n":0\}$/);
    assert.deepEqual(
      fake.requestsFor("out-kv-list", "kvList").map((r) => r.request["startAfter"]),
      ["", "a/2", "a/4"],
    );

    const keys = await runCli(["kv", "list", "a/", "--keys-only", "--limit", "3", ...target(fake, "out-kv-list")]);
    assert.equal(keys.code, 0, keys.stderr);
    assert.equal(keys.stdout, "a/1\na/2\na/3\n");
    assert.match(keys.stderr, /3 of 5 keys shown/);

    const json = await runCli(["kv", "list", "a/", "--json", "--limit", "3", ...target(fake, "out-kv-list")]);
    const doc = JSON.parse(json.stdout) as { kvs: { key: string; value: unknown }[]; more: boolean; count: number };
    assert.deepEqual(
      doc.kvs.map((k) => k.key),
      ["a/1", "a/2", "a/3"],
    );
    assert.equal(doc.more, true);
    assert.equal(doc.count, 5);
    assert.deepEqual(doc.kvs[1]!.value, { n: 1 });
  });

  test("config get / set / save", async () => {
    const entry = (name: string, value: string, source: ConfigSource) => ({ name, value, defaultValue: "100ms", source, description: `the ${name}`, modRevision: 0n });
    fake.reply("out-config", "configGet", (req) =>
      req["name"]
        ? { response: { entries: [entry("heartbeat_interval", "75ms", ConfigSource.RUNTIME)] } }
        : { response: { entries: [entry("heartbeat_interval", "75ms", ConfigSource.RUNTIME), entry("election_timeout", "1s", ConfigSource.DEFAULT)] } },
    );
    fake.reply("out-config", "configSet", { response: { entry: entry("heartbeat_interval", "75ms", ConfigSource.RUNTIME), previousValue: "100ms" } });
    fake.reply("out-config", "configSave", { response: { entries: [entry("heartbeat_interval", "75ms", ConfigSource.SAVED)] } });
    const all = await runCli(["config", "get", ...target(fake, "out-config")]);
    assert.equal(all.code, 0, all.stderr);
    const lines = all.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^NAME\s+VALUE\s+DEFAULT\s+SOURCE\s+DESCRIPTION$/);
    assert.match(lines[1]!, /^election_timeout\s+1s\s+100ms\s+default\s+the election_timeout$/);
    assert.match(lines[2]!, /^heartbeat_interval\s+75ms\s+100ms\s+runtime\s+the heartbeat_interval$/);
    assert.equal(lines[1]!.indexOf("1s"), lines[0]!.indexOf("VALUE"));

    const one = await runCli(["config", "get", "heartbeat_interval", ...target(fake, "out-config")]);
    assert.match(one.stdout, /^value:\s+75ms$/m);
    assert.match(one.stdout, /^source:\s+runtime$/m);

    const set = await runCli(["config", "set", "heartbeat_interval", "75ms", ...target(fake, "out-config")]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^heartbeat_interval: 100ms -> 75ms$/m);
    assert.deepEqual(fake.requestsFor("out-config", "configSet").map((r) => [r.request["name"], r.request["value"]]), [["heartbeat_interval", "75ms"]]);

    const save = await runCli(["config", "save", "--json", ...target(fake, "out-config")]);
    assert.equal(save.code, 0, save.stderr);
    const doc = JSON.parse(save.stdout) as { entries: { name: string; source: string }[]; header: unknown };
    assert.deepEqual(doc.entries.map((e) => [e.name, e.source]), [["heartbeat_interval", "saved"]]);
    assert.equal(doc.header, null);
  });
  test("members --json from a follower: what only the leader knows is null, never false or 0", async () => {
    fake.reply("out-members-fj", "members", { response: { header: header("out-members-fj", 2, 1), members } });
    const r = await runCli(["members", "--json", ...target(fake, "out-members-fj")]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { members: Record<string, unknown>[]; progress_from_leader: boolean };
    assert.equal(doc.progress_from_leader, false);
    for (const m of doc.members) {
      for (const f of ["match_index", "lag_entries", "reachable", "last_heartbeat_ms", "replication_lag_bytes", "progress_state"]) assert.equal(m[f], null, `${String(m["id"])}.${f}`);
      assert.equal(typeof m["id"], "number");
      assert.match(String(m["role"]), /^(voter|learner)$/);
    }
  });

  test("kv list: long keys and values are cut, control characters escaped, short rows not padded to the longest key", async () => {
    const longKey = "k/" + "x".repeat(200);
    const kvs = [
      { key: "a", value: '"short"', modRevision: 1n, version: 1n },
      { key: "b\u001b[31mred\nline", value: JSON.stringify("tab\there\u0007"), modRevision: 2n, version: 1n },
      { key: longKey, value: JSON.stringify({ v: "y".repeat(300) }), modRevision: 3n, version: 1n },
    ];
    fake.reply("out-kv-wide", "kvList", { response: { header: header("out-kv-wide", 1, 1), kvs, more: false, count: 3n } });
    const r = await runCli(["kv", "list", ...target(fake, "out-kv-wide")]);
    assert.equal(r.code, 0, r.stderr);
    const raw = [...r.stdout].filter((c) => c !== "\n" && (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));
    assert.deepEqual(raw, [], "nothing raw but the line ends");
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 4, r.stdout);
    assert.ok(lines.every((l) => l.length <= 48 + 2 + 12 + 2 + 7 + 2 + 5 + 2 + 64), r.stdout);
    assert.match(lines[2]!, /^b\\x1b\[31mred\\nline\s/);
    assert.ok(lines[2]!.includes(String.raw`"tab\there\u0007"`), lines[2]); // a JSON string's escapes stay as JSON writes them
    assert.match(lines[3]!, /^k\/x+… /);
    assert.match(lines[3]!, /…$/);
    assert.match(r.stderr, /cut at 48 and 64 characters/);
    const keys = await runCli(["kv", "list", "--keys-only", ...target(fake, "out-kv-wide")]);
    assert.equal(keys.stdout.split("\n")[1], String.raw`b\x1b[31mred\nline`);
    const json = await runCli(["kv", "list", "--json", ...target(fake, "out-kv-wide")]);
    const doc = JSON.parse(json.stdout) as { kvs: { key: string; value: unknown }[] };
    assert.equal(doc.kvs[2]!.key, longKey); // JSON keeps them whole
    assert.deepEqual(doc.kvs[1]!.value, "tab\there\u0007");
  });
});
