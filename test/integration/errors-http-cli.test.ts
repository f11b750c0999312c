// Bad input against real sidecar processes: over gRPC (wrong cluster id,
// invalid JSON, unknown or invalid settings, a duplicate join) nothing changes
// and the status code says why; at the CLI, bad command lines exit at once with
// a clear message. Plus the HTTP routing endpoints and /metrics.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { TestCluster, errorText, freePorts, type PB, pb, runCli, statusOf, waitFor, withLogs, type ClusterTestBody } from "./harness.js";

/** Assert that `p` rejects with grpc status `code` and a message matching `details`. */
async function rejectsWith(p: Promise<unknown>, code: grpc.status, details: RegExp, what: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.equal(statusOf(e), code, `${what}: expected ${grpc.status[code]}, got ${errorText(e)}`);
    assert.match(errorText(e), details, what);
    return;
  }
  assert.fail(`${what}: expected ${grpc.status[code]}, but the call succeeded`);
}

function httpGet(port: number, path: string): Promise<{ code: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, timeout: 5_000 }, (r) => {
      let body = "";
      r.setEncoding("utf8");
      r.on("data", (c: string) => (body += c));
      r.on("end", () => res({ code: r.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on("error", rej);
    req.end();
  });
}

describe("bad input over gRPC, and HTTP endpoints, on a 3-node cluster", () => {
  let cluster: TestCluster | undefined;
  const it = (name: string, fn: ClusterTestBody): void => {
    test(name, withLogs(() => cluster, fn));
  };

  before(async () => {
    cluster = await TestCluster.start({ nodes: 3, name: "errors" });
  });
  after(async () => {
    await cluster?.destroy();
  });

  it("a request for another cluster is refused with FAILED_PRECONDITION and changes nothing", async (_t, c) => {
    const l = await c.leader();
    await c.write("cid", "original");
    const mismatch = new RegExp(`cluster id mismatch: expected ${c.clusterId}, got other-cluster`);
    for (const id of c.live()) {
      const cl = c.client(id);
      await rejectsWith(cl.status({ clusterId: "other-cluster" }), grpc.status.FAILED_PRECONDITION, mismatch, `Status on node ${id}`);
      await rejectsWith(cl.kvPut({ clusterId: "other-cluster", key: "cid", value: '"changed"' }), grpc.status.FAILED_PRECONDITION, mismatch, `KvPut on node ${id}`);
      await rejectsWith(cl.kvGet({ clusterId: "other-cluster", key: "cid" }), grpc.status.FAILED_PRECONDITION, mismatch, `KvGet on node ${id}`);
      await rejectsWith(cl.removeMember({ clusterId: "other-cluster", id: 2 }), grpc.status.FAILED_PRECONDITION, mismatch, `RemoveMember on node ${id}`);
    }
    await rejectsWith(c.client(l.id).kvPut({ clusterId: "", key: "cid", value: "1" }), grpc.status.FAILED_PRECONDITION, /got \(empty\)/, "empty cluster id");
    for (const id of c.live()) assert.equal(await c.get(id, "cid"), "original");
    assert.deepEqual((await c.status(l.id)).voters, [1, 2, 3]);
  });

  it("a value that is not JSON is refused with INVALID_ARGUMENT, through the leader and through a follower", async (_t, c) => {
    const l = await c.leader();
    const follower = c.live().find((id) => id !== l.id)!;
    await c.write("json", { valid: true });
    const before = await c.client(l.id).kvGet({ clusterId: c.clusterId, key: "json" });
    for (const [via, value] of [
      [l.id, "{not json"],
      [follower, "undefined"],
      [follower, ""],
      [l.id, "{'single': 'quotes'}"],
    ] as const) {
      await rejectsWith(
        c.client(via).kvPut({ clusterId: c.clusterId, key: "json", value }),
        grpc.status.INVALID_ARGUMENT,
        /not valid JSON/,
        `KvPut ${JSON.stringify(value)} through node ${via}`,
      );
    }
    const after = await c.client(l.id).kvGet({ clusterId: c.clusterId, key: "json" });
    assert.deepEqual(after.kv, before.kv, "the pair is untouched (same value and revisions)");
    assert.equal(after.header?.revision, before.header?.revision, "the store's revision did not move");
    await rejectsWith(c.client(follower).kvGet({ clusterId: c.clusterId, key: "" }), grpc.status.INVALID_ARGUMENT, /key must not be empty/, "KvGet of an empty key");
  });

  it("an unknown setting or an invalid value is refused with INVALID_ARGUMENT; config get still shows the old value", async (_t, c) => {
    const l = await c.leader();
    const follower = c.live().find((id) => id !== l.id)!;
    const set = (via: number, name: string, value: string): Promise<PB.ConfigSetResponse> =>
      c.client(via).configSet({ clusterId: c.clusterId, name, value }, { timeoutMs: 10_000 });
    const get = async (via: number, name: string): Promise<PB.ConfigEntry> => {
      const r = await c.client(via).configGet({ clusterId: c.clusterId, name });
      assert.equal(r.entries.length, 1, `config get ${name} on node ${via}`);
      return r.entries[0]!;
    };

    // A valid change first, so "the old value" is not just the default.
    const ok = await set(follower, "kv_max_key_bytes", "512");
    assert.equal(ok.entry?.value, "512");
    assert.equal(ok.previousValue, "1024");
    for (const id of c.live()) await waitFor(`node ${id} to apply kv_max_key_bytes=512`, async () => (await get(id, "kv_max_key_bytes")).value === "512");

    await rejectsWith(set(l.id, "no_such_setting", "1"), grpc.status.INVALID_ARGUMENT, /unknown setting/, "ConfigSet of an unknown name");
    await rejectsWith(set(follower, "no_such_setting", "1"), grpc.status.INVALID_ARGUMENT, /unknown setting/, "ConfigSet of an unknown name, forwarded");
    await rejectsWith(c.client(l.id).configGet({ clusterId: c.clusterId, name: "no_such_setting" }), grpc.status.INVALID_ARGUMENT, /unknown setting/, "ConfigGet of an unknown name");
    await rejectsWith(set(l.id, "kv_max_key_bytes", "lots"), grpc.status.INVALID_ARGUMENT, /invalid value for kv_max_key_bytes/, "a value that is no integer");
    await rejectsWith(set(follower, "kv_max_key_bytes", "0"), grpc.status.INVALID_ARGUMENT, /must be between/, "a value out of range");
    await rejectsWith(set(l.id, "debug", "maybe"), grpc.status.INVALID_ARGUMENT, /invalid value for debug/, "a boolean that is not one");
    await rejectsWith(set(l.id, "heartbeat_interval", "900ms"), grpc.status.INVALID_ARGUMENT, /at least/, "a heartbeat that breaks election >= 2 x heartbeat");

    for (const id of c.live()) {
      const e = await get(id, "kv_max_key_bytes");
      assert.equal(e.value, "512", `node ${id} keeps the old value`);
      assert.equal(e.source, pb.ConfigSource.RUNTIME);
      const hb = await get(id, "heartbeat_interval");
      assert.equal(hb.source, pb.ConfigSource.DEFAULT, `node ${id}: heartbeat_interval was not overridden`);
      assert.equal((await get(id, "debug")).value, "false");
    }
    // The setting is in force: a key over 512 bytes is refused.
    await rejectsWith(c.put(l.id, "k".repeat(600), 1), grpc.status.INVALID_ARGUMENT, /512/, "a key longer than kv_max_key_bytes");
  });

  it("a join with a member's id at another address is refused with ALREADY_EXISTS", async (_t, c) => {
    const l = await c.leader();
    const follower = c.live().find((id) => id !== l.id)!;
    const [port] = await freePorts(1);
    for (const via of [l.id, follower]) {
      await rejectsWith(
        c.client(via).join({ clusterId: c.clusterId, id: 2, name: "impostor", raftAddress: `127.0.0.1:${port}` }, { timeoutMs: 10_000 }),
        grpc.status.ALREADY_EXISTS,
        /node id 2 is already a member/,
        `Join through node ${via}`,
      );
    }
    // Another id at a member's address is refused as well.
    await rejectsWith(
      c.client(l.id).join({ clusterId: c.clusterId, id: 9, name: "squatter", raftAddress: c.node(3).address }, { timeoutMs: 10_000 }),
      grpc.status.ALREADY_EXISTS,
      /already belongs to node 3/,
      "Join at a member's address",
    );
    // Joining again exactly as the member is (same id and address) is not an error.
    const same = await c.client(l.id).join({ clusterId: c.clusterId, id: 2, name: "node2", raftAddress: c.node(2).address }, { timeoutMs: 10_000 });
    assert.deepEqual(same.members.map((m) => m.id).sort(), [1, 2, 3]);
    const members = (await c.client(l.id).members({ clusterId: c.clusterId, fromLeader: true })).members;
    assert.deepEqual(members.map((m) => [m.id, m.raftAddress]).sort(), [1, 2, 3].map((id) => [id, c.node(id).address]));
    assert.deepEqual((await c.status(l.id)).learners, []);
  });

  it("HTTP: /primary and /leader answer 200 only on the leader, /replica only on followers; /metrics has the Raft series", async (_t, c) => {
    const l = await c.leader();
    for (const id of c.live()) {
      const port = c.node(id).httpPort;
      const leader = id === l.id;
      const primary = await httpGet(port, "/primary");
      assert.equal(primary.code, leader ? 200 : 503, `/primary on node ${id}: ${primary.body}`);
      assert.equal((await httpGet(port, "/leader")).code, leader ? 200 : 503, `/leader on node ${id}`);
      const replica = await httpGet(port, "/replica");
      assert.equal(replica.code, leader ? 503 : 200, `/replica on node ${id}: ${replica.body}`);
      const health = await httpGet(port, "/health");
      assert.equal(health.code, 200);
      assert.equal((JSON.parse(health.body) as { node_id: number }).node_id, id);
      // These sidecars have no --postgres-dsn: the routes answer on Raft state alone, and say so.
      assert.deepEqual((JSON.parse(health.body) as { postgres: unknown }).postgres, { status: "not_configured", detail: "no local PostgreSQL configured" });
      assert.equal((await httpGet(port, "/ready")).code, 200);
      assert.equal((await httpGet(port, "/no-such-endpoint")).code, 404);

      const metrics = await httpGet(port, "/metrics");
      assert.equal(metrics.code, 200);
      const term = /^pgraft_raft_term (\d+)$/m.exec(metrics.body);
      assert.ok(term, `node ${id}: /metrics has pgraft_raft_term`);
      assert.ok(Number(term[1]) >= l.term, `node ${id}: pgraft_raft_term ${term[1]} >= ${l.term}`);
      const changes = /^pgraft_raft_leader_changes_total (\d+)$/m.exec(metrics.body);
      assert.ok(changes, `node ${id}: /metrics has pgraft_raft_leader_changes_total`);
      assert.ok(Number(changes[1]) >= 1, `node ${id}: saw at least one leader change`);
      assert.match(metrics.body, new RegExp(`^pgraft_raft_is_leader ${leader ? 1 : 0}$`, "m"));
      assert.doesNotMatch(metrics.body, /^pgraft_postgres_/m, `node ${id}: no PostgreSQL, no pgraft_postgres_* series`);
    }
  });

  it("a timing setting is checked against the timing the nodes run with; a valid one is applied everywhere", async (_t, c) => {
    const l = await c.leader();
    // 300ms fits the registry's default election timeout (1s), not the 500ms these nodes run with.
    await rejectsWith(
      c.client(l.id).configSet({ clusterId: c.clusterId, name: "heartbeat_interval", value: "300ms" }, { timeoutMs: 10_000 }),
      grpc.status.INVALID_ARGUMENT,
      /election timeout \(500ms\) under twice the heartbeat interval \(300ms\)/,
      "heartbeat_interval 300ms with a 500ms election timeout",
    );
    await rejectsWith(
      c.client(l.id).configSet({ clusterId: c.clusterId, name: "election_timeout", value: "80ms" }, { timeoutMs: 10_000 }),
      grpc.status.INVALID_ARGUMENT,
      /under twice the heartbeat interval \(50ms\)/,
      "election_timeout 80ms with a 50ms heartbeat",
    );
    for (const id of c.live()) {
      const rows = (await c.client(id).configGet({ clusterId: c.clusterId })).entries;
      for (const name of ["heartbeat_interval", "election_timeout"]) {
        assert.equal(rows.find((r) => r.name === name)?.source, pb.ConfigSource.DEFAULT, `node ${id}: ${name} not overridden`);
      }
    }

    const ok = await c.client(l.id).configSet({ clusterId: c.clusterId, name: "election_timeout", value: "600ms" }, { timeoutMs: 10_000 });
    assert.equal(ok.entry?.value, "600ms");
    for (const id of c.live()) {
      await waitFor(
        `node ${id} to apply the new election timeout`,
        () => c.node(id).logRecords().some((r) => typeof r.msg === "string" && r.msg.startsWith("applied timing: heartbeat 50ms, election timeout 600ms")),
        { context: () => c.tails() },
      );
    }
    assert.equal((await c.write("after-timing", 1)).succeeded, true);
    for (const id of c.live()) {
      assert.ok(!c.node(id).logRecords().some((r) => typeof r.msg === "string" && r.msg.startsWith("control loop cycle failed")), `node ${id}: no failed control-loop cycle`);
    }
  });
});

describe("pgraft sidecar: bad command lines", () => {
  let dir = "";
  let ports: number[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-it-cli-"));
    ports = await freePorts(4);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const base = (name: string): string[] => [
    "sidecar",
    "--node-id", "1",
    "--cluster-id", "cli",
    "--data-dir", join(dir, name),
    "--plaintext",
    "--listen", `127.0.0.1:${ports[0]!}`,
    "--http-listen", `127.0.0.1:${ports[1]!}`,
  ];
  const initial = ["--initial-cluster", `1=127.0.0.1:${ports[0]!},2=127.0.0.1:${ports[2]!}`];

  test("a heartbeat not under half the election timeout: exit 2 and the rule", async () => {
    for (const [hb, el] of [
      ["500ms", "500ms"],
      ["600ms", "500ms"],
      ["300ms", "500ms"],
    ] as const) {
      const r = await runCli([...base("hb"), ...initial, "--heartbeat-interval", hb, "--election-timeout", el]);
      assert.equal(r.code, 2, `heartbeat ${hb}, election ${el}: exit code (stderr: ${r.stderr})`);
      assert.match(r.stderr, new RegExp(`election timeout \\(${el}\\) must be at least twice the heartbeat interval \\(${hb}\\)`));
      assert.match(r.stderr, /^pgraft sidecar: /);
    }
  });

  test("--join with --initial-cluster: exit 2", async () => {
    const r = await runCli([...base("both"), ...initial, "--join", `127.0.0.1:${ports[2]!}`]);
    assert.equal(r.code, 2, `stderr: ${r.stderr}`);
    assert.match(r.stderr, /--initial-cluster \(bootstrap\) and --join cannot be used together/);
  });

  test("a fresh data dir with neither --initial-cluster nor --join: non-zero exit, says what to give", async () => {
    const r = await runCli([...base("fresh"), "--heartbeat-interval", "50ms", "--election-timeout", "500ms"]);
    assert.notEqual(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.equal(r.signal, null);
    assert.match(r.stderr, /holds no cluster yet: give --initial-cluster to bootstrap one or --join to join one/);
    assert.match(r.stderr, new RegExp(join(dir, "fresh").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  });

  test("a --listen port another process holds: non-zero exit naming the address and the flag, without grpc-js's wording", async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(ports[3], "127.0.0.1", () => r()));
    try {
      const args = base("busy").map((a) => (a === `127.0.0.1:${ports[0]!}` ? `127.0.0.1:${ports[3]!}` : a));
      const r = await runCli([...args, "--initial-cluster", `1=127.0.0.1:${ports[3]!}`, "--heartbeat-interval", "50ms", "--election-timeout", "500ms"]);
      assert.notEqual(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${ports[3]!} \\(--listen\\): listen EADDRINUSE`));
      assert.doesNotMatch(r.stderr, /No address added/);
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }
  });

  test("missing required options: exit 2 naming each", async () => {
    const r = await runCli(["sidecar", "--plaintext"]);
    assert.equal(r.code, 2, `stderr: ${r.stderr}`);
    assert.match(r.stderr, /--node-id is required/);
    assert.match(r.stderr, /--cluster-id is required/);
    assert.match(r.stderr, /--data-dir is required/);
  });
});
