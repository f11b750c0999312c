// The replicated catalog of data nodes and groups (seed 004): creation, the join
// and part state machine, the one-promoter rule, drops, and snapshots.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ClusterState } from "../../src/cluster/state.js";
import { MAX_NAME_BYTES, nameId } from "../../src/cluster/node-groups.js";
import { Log, hex } from "./helpers.js";

function twoNodes(): Log {
  const l = new Log();
  l.ok({ op: "pgd.node.create", name: "a", dsn: "host=10.0.0.1 dbname=app", kind: "data", dbname: "app", raftMemberId: 1 });
  l.ok({ op: "pgd.node.create", name: "b", dsn: "postgresql://10.0.0.2/app", kind: "data", dbname: "app", raftMemberId: 2 });
  l.ok({ op: "pgd.group.create", name: "g", creator: "a" });
  return l;
}

const join = ["JOIN_START", "JOINING", "CATCHUP", "PROMOTE", "PROMOTING", "ACTIVE"];

describe("node groups", () => {
  test("create: ids from names, sequence numbers, the creator active in its group", () => {
    const l = twoNodes();
    const [a, b] = l.state.dataNodes();
    assert.equal(a!.nodeId, nameId("node", "a"));
    assert.deepEqual([a!.seqId, b!.seqId], [1, 2]);
    assert.deepEqual([a!.group, a!.state, a!.targetState], ["g", "ACTIVE", "ACTIVE"]);
    assert.deepEqual([b!.group, b!.state], ["", "CREATED"]);
    assert.equal(l.state.nodeGroups()[0]!.groupId, nameId("group", "g"));
  });

  test("a join walks the seed's states; skipping one is refused and changes nothing", () => {
    const l = twoNodes();
    const skip = l.fail({ op: "pgd.node.state", name: "b", state: "CATCHUP" });
    assert.match(skip.message, /cannot go from CREATED to CATCHUP/);
    assert.equal(l.state.dataNodes()[1]!.state, "CREATED");
    l.ok({ op: "pgd.node.state", name: "b", state: "JOIN_START", group: "g" });
    for (const s of join.slice(1)) {
      const r = l.ok({ op: "pgd.node.state", name: "b", state: s });
      assert.equal(r.dataNode?.state, s);
      assert.equal(r.dataNode?.targetState, "ACTIVE");
    }
    assert.equal(l.state.dataNodes()[1]!.group, "g");
  });

  test("only one regular node at a time in PROMOTE/PROMOTING; subscriber-only nodes are exempt", () => {
    const l = twoNodes();
    l.ok({ op: "pgd.node.create", name: "c", dsn: "host=c", kind: "data", dbname: "app" });
    l.ok({ op: "pgd.node.create", name: "s", dsn: "host=s", kind: "subscriber-only", dbname: "app" });
    for (const n of ["b", "c", "s"]) {
      l.ok({ op: "pgd.node.state", name: n, state: "JOIN_START", group: "g" });
      for (const s of ["JOINING", "CATCHUP"]) l.ok({ op: "pgd.node.state", name: n, state: s });
    }
    l.ok({ op: "pgd.node.state", name: "b", state: "PROMOTE" });
    assert.match(l.fail({ op: "pgd.node.state", name: "c", state: "PROMOTE" }).message, /only one node at a time/);
    l.ok({ op: "pgd.node.state", name: "s", state: "PROMOTE" });
    l.ok({ op: "pgd.node.state", name: "b", state: "PROMOTING" });
    l.ok({ op: "pgd.node.state", name: "b", state: "ACTIVE" });
    l.ok({ op: "pgd.node.state", name: "c", state: "PROMOTE" });
  });

  test("a failed join starts over; a part ends PARTED; drops need PARTED (or force); a group with nodes stays", () => {
    const l = twoNodes();
    l.ok({ op: "pgd.node.state", name: "b", state: "JOIN_START", group: "g" });
    l.ok({ op: "pgd.node.state", name: "b", state: "JOINING" });
    l.ok({ op: "pgd.node.state", name: "b", state: "CREATED" });
    assert.match(l.fail({ op: "pgd.node.drop", name: "a" }).message, /part it first/);
    assert.match(l.fail({ op: "pgd.group.drop", name: "g" }).message, /still has nodes: a/);
    for (const s of ["PART_START", "PARTING", "PART_CATCHUP", "PARTED"]) assert.equal(l.ok({ op: "pgd.node.state", name: "a", state: s }).dataNode?.targetState, "PARTED");
    assert.match(l.fail({ op: "pgd.node.state", name: "a", state: "ACTIVE" }).message, /cannot go from PARTED/);
    l.ok({ op: "pgd.node.drop", name: "a" });
    l.ok({ op: "pgd.group.drop", name: "g" });
    l.ok({ op: "pgd.node.drop", name: "b" });
    assert.deepEqual(l.state.dataNodes(), []);
  });

  test("bad input is refused with a clear error and changes nothing", () => {
    const l = twoNodes();
    const strip = (): string => new TextDecoder().decode(l.state.snapshot()).replace(/"appliedIndex":\d+/, "");
    const before = strip();
    const cases: [Parameters<Log["fail"]>[0], RegExp][] = [
      [{ op: "pgd.node.create", name: "a", dsn: "host=x", kind: "data", dbname: "app" }, /already exists/],
      [{ op: "pgd.node.create", name: "", dsn: "host=x", kind: "data", dbname: "app" }, /must not be empty/],
      [{ op: "pgd.node.create", name: "x".repeat(MAX_NAME_BYTES + 1), dsn: "host=x", kind: "data", dbname: "app" }, /longer than 63 bytes/],
      [{ op: "pgd.node.create", name: "x", dsn: " ", kind: "data", dbname: "app" }, /DSN must not be empty/],
      [{ op: "pgd.node.create", name: "x", dsn: "host=x", kind: "nope", dbname: "app" }, /kind "nope"/],
      [{ op: "pgd.group.create", name: "g" }, /already exists/],
      [{ op: "pgd.group.create", name: "h", parent: "missing" }, /parent group "missing" does not exist/],
      [{ op: "pgd.group.create", name: "h", creator: "a" }, /already belongs to group "g"/],
      [{ op: "pgd.node.state", name: "zz", state: "JOIN_START", group: "g" }, /does not exist/],
      [{ op: "pgd.node.state", name: "b", state: "FLYING" }, /unknown node state/],
      [{ op: "pgd.node.state", name: "b", state: "JOIN_START", group: "nope" }, /group "nope" does not exist/],
      [{ op: "pgd.node.interface", name: "b", dsn: "" }, /DSN must not be empty/],
      [{ op: "pgd.group.drop", name: "nope" }, /does not exist/],
    ];
    for (const [cmd, re] of cases) assert.match(l.fail(cmd).message, re, JSON.stringify(cmd));
    assert.equal(strip(), before);
  });

  test("snapshot and restore keep every node and group, byte for byte; an old snapshot without them restores empty", () => {
    const l = twoNodes();
    l.ok({ op: "pgd.node.state", name: "b", state: "JOIN_START", group: "g" });
    const snap = l.state.snapshot();
    const s2 = new ClusterState();
    s2.restore(snap);
    assert.equal(hex(s2.snapshot()), hex(snap));
    assert.deepEqual(s2.dataNodes(), l.state.dataNodes());
    const old = JSON.parse(new TextDecoder().decode(snap)) as Record<string, unknown>;
    delete old["nodeGroups"];
    const s3 = new ClusterState();
    s3.restore(new TextEncoder().encode(JSON.stringify(old)));
    assert.deepEqual(s3.dataNodes(), []);
    const broken = { ...old, nodeGroups: { nextSeq: 1, groups: [], nodes: [{ name: "x" }] } };
    assert.throws(() => s3.restore(new TextEncoder().encode(JSON.stringify(broken))), /node groups: malformed node/);
  });
});
