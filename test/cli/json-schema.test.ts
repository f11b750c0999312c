// One documented JSON schema per command: each `pgraft <command> --json`
// prints exactly the document shown for it in docs/cli-json.md, for the same
// answer of the (fake) sidecar. A change of the output must change the doc.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigSource, MemberRole, PostgresState, RaftState } from "../../src/gen/pgraft/v1/client_pb.js";
import { runCli, startFakeCluster, target, type FakeCluster } from "./helpers.js";

const DOC = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "docs", "cli-json.md");

/** The first ```json block after each "## `pgraft …`" heading, by the heading's command. */
function documented(): Map<string, unknown> {
  const text = readFileSync(DOC, "utf8");
  const out = new Map<string, unknown>();
  for (const m of text.matchAll(/^## `pgraft ([^`]+)`[^\n]*\n[\s\S]*?```json\n([\s\S]*?)```/gm)) out.set(m[1]!, JSON.parse(m[2]!));
  return out;
}

const header = { clusterId: "prod", memberId: 2, leaderId: 1, raftTerm: 7n, revision: 42n, appliedIndex: 120n };
const leaderHeader = { ...header, memberId: 1 };
const members = [
  // The leader's own row as the sidecar sends it: heartbeat 0, no progress state (it does not replicate to itself).
  { id: 1, name: "alpha", raftAddress: "10.0.0.1:7400", role: MemberRole.VOTER, isLeader: true, matchIndex: 120n, lagEntries: 0n, reachable: true, lastHeartbeatMs: 0n, progressState: "" },
  { id: 2, name: "beta", raftAddress: "10.0.0.2:7400", role: MemberRole.VOTER, isLeader: false, matchIndex: 118n, lagEntries: 2n, reachable: true, lastHeartbeatMs: 35n, replicationLagBytes: 512n, progressState: "replicate" },
  { id: 3, name: "gamma", raftAddress: "10.0.0.3:7400", role: MemberRole.LEARNER, isLeader: false, matchIndex: 0n, lagEntries: 120n, reachable: false, lastHeartbeatMs: -1n, progressState: "probe" },
];
const kv = { key: "configs/maintenance", value: '{"window": "02:00 UTC"}', createRevision: 40n, modRevision: 42n, version: 3n, lease: 0n };
const routing = { group: "g1", writeLeader: "alpha", previousWriteLeader: "", readNodes: ["beta", "gamma"], commitScope: "majority", switchoverTarget: "", changedUnixMs: 1718000000000n, reason: "the group had no write leader" };
const entry = { name: "heartbeat_interval", value: "75ms", defaultValue: "100ms", source: ConfigSource.RUNTIME, description: "how often the leader sends heartbeats", modRevision: 42n };

/** command (as in the doc's heading) → the arguments, the method the fake answers, its answer. */
const CASES: [string, string[], string, Record<string, unknown>][] = [
  ["status --json", ["status"], "status", { header, nodeId: 2, name: "beta", state: RaftState.FOLLOWER, term: 7n, leaderId: 1, commitIndex: 120n, appliedIndex: 120n, firstIndex: 1n, lastIndex: 120n, voters: [1, 2], learners: [3], version: "0.1.0", quorumMet: true, postgres: { state: PostgresState.UP, sinceUnixMs: 1718000000000n, error: "", checkedUnixMs: 1718000042000n }, routing: [routing] }],
  ["members --json", ["members"], "members", { header, members }],
  ["members --from-leader --json", ["members", "--from-leader"], "members", { header: leaderHeader, members }],
  ["kv get --json", ["kv", "get", "configs/maintenance"], "kvGet", { header, kv }],
  ["kv put --json", ["kv", "put", "configs/maintenance", '{"window": "02:00 UTC"}'], "kvPut", { header, succeeded: true, kv }],
  ["kv delete --json", ["kv", "delete", "configs/maintenance"], "kvDelete", { header, succeeded: true, deleted: 1n }],
  ["kv list --json", ["kv", "list", "configs/"], "kvList", { header, kvs: [kv], more: false, count: 1n }],
  ["config get --json", ["config", "get", "heartbeat_interval"], "configGet", { header, entries: [entry] }],
  ["config set --json", ["config", "set", "heartbeat_interval", "75ms"], "configSet", { header, entry, previousValue: "100ms" }],
  ["transfer-leader --json", ["transfer-leader", "2"], "transferLeader", { header, leaderId: 2 }],
  ["switchover --json", ["switchover", "--group", "g1", "--to", "beta"], "switchover", { header, message: "node beta is the write leader of group g1 (was alpha; strict: it had every write)", routing: { ...routing, writeLeader: "beta", previousWriteLeader: "alpha", readNodes: ["alpha", "gamma"], reason: "switchover (strict) from alpha", changedUnixMs: 1718000050000n } }],
];

describe("the documented JSON of every command (docs/cli-json.md)", { concurrency: true }, () => {
  let fake: FakeCluster;
  const doc = documented();
  before(async () => {
    fake = await startFakeCluster();
  });
  after(() => fake?.stop());

  for (const [name, args, method, response] of CASES) {
    test(`pgraft ${name}`, async () => {
      const clusterId = `schema-${name.replace(/\W+/g, "-")}`;
      fake.reply(clusterId, method, { response: { ...response, header: { ...(response["header"] as object), clusterId: "prod" } } });
      const r = await runCli([...args, "--json", ...target(fake, clusterId)]);
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse(r.stdout) as unknown;
      // PGRAFT_PRINT_JSON=DIR writes each document to DIR/<command>.json (to update the doc after a deliberate change).
      if (process.env.PGRAFT_PRINT_JSON) writeFileSync(join(process.env.PGRAFT_PRINT_JSON, `${name}.json`), JSON.stringify(got, null, 2) + "\n");
      assert.ok(doc.has(name), `docs/cli-json.md has no "## \`pgraft ${name}\`" section with a json block`);
      assert.deepEqual(got, doc.get(name));
    });
  }
});
