// ClusterState as a StateMachine: idempotent replay, snapshots, membership from
// ConfChange entries, runtime configuration with saved flags, bad entries.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeCommand, encodeMemberContext } from "../../src/cluster/commands.js";
import { isClusterError } from "../../src/cluster/errors.js";
import { ClusterState } from "../../src/cluster/state.js";
import type { StateMachine } from "../../src/consensus/driver.js";
import { EntryType } from "../../src/consensus/types.js";
import { confEntry, hex, Log, normal, text } from "./helpers.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function populated(): Log {
  const l = Log.with({ members: [{ id: 1, name: "n1", raftAddress: "10.0.0.11:7400" }, { id: 2, raftAddress: "10.0.0.12:7400" }] });
  l.ok({ op: "lease.grant", leaseId: 5, ttlMs: 3000, nowMs: 1000 });
  l.put("configs/maintenance", { window: "02:00 UTC", duration: "30m" });
  l.put("svc/a", "x", { leaseId: 5 });
  l.put("svc/b", [1, 2, 3]);
  l.put("svc/b", { "\u00e9": "\u{1F600}" });
  l.ok({ op: "kv.delete", key: "configs/maintenance" });
  l.ok({ op: "config.set", name: "heartbeat_interval", value: "75ms" });
  l.ok({ op: "config.set", name: "election_timeout", value: "900ms" });
  l.ok({ op: "config.save" });
  l.ok({ op: "config.set", name: "failover_enabled", value: "false" });
  l.conf({ type: "addLearner", nodeId: 3, context: encodeMemberContext({ name: "n3", raftAddress: "10.0.0.13:7400", httpAddress: "10.0.0.13:8008" }) });
  l.ok({ op: "member.update", id: 3, postgresDsn: "host=10.0.0.13 dbname=app user=pgraft" });
  return l;
}

function answers(s: ClusterState): unknown {
  return {
    applied: s.appliedIndex,
    revision: s.revision,
    kv: s.kvList(""),
    leases: s.leases(),
    members: s.members(),
    conf: s.confState(),
    config: s.config(),
    settings: s.settings(),
  };
}

describe("ClusterState", () => {
  test("implements the driver's StateMachine interface", () => {
    const sm: StateMachine = new ClusterState();
    assert.equal(typeof sm.apply, "function");
  });

  test("snapshot -> restore gives the same bytes and the same answers", () => {
    const l = populated();
    const bytes = l.state.snapshot();
    const copy = new ClusterState();
    copy.restore(bytes);
    assert.equal(hex(copy.snapshot()), hex(bytes));
    assert.deepEqual(answers(copy), answers(l.state));
    // ...and both continue identically.
    const e = normal(l.next, encodeCommand({ op: "kv.put", key: "svc/b", value: "7" }));
    assert.deepEqual(copy.apply(e), l.state.apply(e));
    assert.equal(hex(copy.snapshot()), hex(l.state.snapshot()));
    assert.deepEqual(copy.kvGet("svc/b"), { key: "svc/b", value: "7", createRevision: 3, modRevision: 6, version: 3, lease: 0 });
  });

  test("the snapshot is canonical: the same state reached another way has the same bytes", () => {
    const a = new Log();
    const b = new Log();
    a.ok({ op: "config.set", name: "debug", value: "on" });
    a.ok({ op: "config.set", name: "log_level", value: "warn" });
    a.ok({ op: "lease.grant", leaseId: 9, ttlMs: 10, nowMs: 0 });
    a.ok({ op: "lease.grant", leaseId: 2, ttlMs: 10, nowMs: 0 });
    a.put("y", 2, { leaseId: 9 });
    a.put("x", 1, { leaseId: 9 });
    // (A setting's last change is at the same log index in both: it is part of the state, as mod_revision.)
    b.ok({ op: "config.set", name: "debug", value: "yes" });
    b.ok({ op: "config.set", name: "log_level", value: "WARN" });
    b.ok({ op: "lease.grant", leaseId: 2, ttlMs: 10, nowMs: 0 });
    b.ok({ op: "lease.grant", leaseId: 9, ttlMs: 10, nowMs: 0 });
    b.put("y", 2, { leaseId: 9 });
    b.put("x", 1, { leaseId: 9 });
    assert.equal(text(a.state.snapshot()), text(b.state.snapshot()));
    b.put("x", 1, { leaseId: 9 }); // same value again: a new revision, so a different state
    assert.notEqual(text(a.state.snapshot()), text(b.state.snapshot()));
  });

  test("entries at or below appliedIndex are skipped (replay after a newer snapshot)", () => {
    const l = new Log();
    const entries = [1, 2, 3].map((i) => normal(i, encodeCommand({ op: "kv.put", key: "k", value: String(i) })));
    for (const e of entries) assert.ok(l.state.apply(e).ok);
    const snap = l.state.snapshot();
    const restarted = new ClusterState();
    restarted.restore(snap);
    for (const e of entries) {
      const r = restarted.apply(e);
      assert.ok(!r.ok && r.code === "ALREADY_APPLIED");
    }
    assert.equal(hex(restarted.snapshot()), hex(snap));
    assert.equal(restarted.kvGet("k")?.version, 3);
    const r4 = restarted.apply(normal(4, encodeCommand({ op: "kv.put", key: "k", value: "4" })));
    assert.ok(r4.ok);
    assert.equal(restarted.kvGet("k")?.version, 4);
    // Gaps are normal: the driver does not pass empty entries.
    assert.ok(restarted.apply(normal(10, encodeCommand({ op: "noop" }))).ok);
    assert.equal(restarted.appliedIndex, 10);
  });

  test("bad entries fail deterministically, change nothing but the applied index, never throw", () => {
    const l = new Log();
    l.put("k", 1);
    const before = text(l.state.snapshot());
    for (const data of [enc("garbage"), enc('{"v":1,"op":"kv.put","key":"k"}'), enc('{"v":9,"op":"noop"}'), new Uint8Array([0xff])]) {
      const r = l.raw(data);
      assert.ok(!r.ok);
      assert.ok(["INVALID", "UNSUPPORTED_VERSION"].includes(r.code), r.code);
    }
    const r = l.state.apply({ term: 1, index: l.next++, type: 7 as EntryType, data: new Uint8Array() });
    assert.ok(!r.ok && r.code === "INVALID");
    assert.ok(l.state.apply(confEntry(l.next++, { type: "removeNode", nodeId: 42 })).ok === false);
    const badCc = l.state.apply({ term: 1, index: l.next++, type: EntryType.ConfChange, data: new Uint8Array([1]) });
    assert.ok(!badCc.ok && badCc.code === "INVALID");
    const after = JSON.parse(text(l.state.snapshot())) as { appliedIndex: number };
    after.appliedIndex = 1;
    assert.equal(JSON.stringify(after), before);
    assert.equal(l.state.appliedIndex, l.next - 1);
    assert.ok(l.raw(new Uint8Array()).ok, "an empty Normal entry is a no-op");
  });

  test("restore refuses corrupt snapshots and keeps the current state", () => {
    const l = populated();
    const good = text(l.state.snapshot());
    const target = populated();
    target.put("extra", 1);
    const mine = text(target.state.snapshot());
    const mutate = (f: (o: Record<string, unknown>) => void): Uint8Array => {
      const o = JSON.parse(good) as Record<string, unknown>;
      f(o);
      return enc(JSON.stringify(o));
    };
    type Snap = { kv: { kvs: unknown[][]; leases: unknown[][]; revision: number }; members: Record<string, unknown>[]; config: { overrides: unknown[][] } };
    const corrupt = [
      enc("{"),
      enc("[]"),
      mutate((o) => (o["v"] = 2)),
      mutate((o) => (o["format"] = "other")),
      mutate((o) => (o["appliedIndex"] = -1)),
      mutate((o) => ((o as unknown as Snap).kv.kvs = [...(o as unknown as Snap).kv.kvs].reverse())),
      mutate((o) => ((o as unknown as Snap).kv.revision = 1)),
      mutate((o) => ((o as unknown as Snap).kv.leases = [])),
      mutate((o) => ((o as unknown as Snap).members[0]!["role"] = "boss")),
      mutate((o) => ((o as unknown as Snap).config.overrides = [["heartbeat_interval", "0.075s"]])),
      mutate((o) => ((o as unknown as Snap).config.overrides = [["nope", "1"]])),
      mutate((o) => ((o as unknown as Snap).config.overrides = [["heartbeat_interval", "600ms"]])),
    ];
    for (const c of corrupt) {
      assert.throws(
        () => target.state.restore(c),
        (e: unknown) => isClusterError(e, "CORRUPT_SNAPSHOT"),
        text(c).slice(0, 80),
      );
      assert.equal(text(target.state.snapshot()), mine);
    }
  });

  test("restore of empty bytes is the initial state (with the founding members)", () => {
    const l = populated();
    l.state.restore(new Uint8Array());
    assert.equal(l.state.appliedIndex, 0);
    assert.equal(l.state.revision, 0);
    assert.deepEqual(
      l.state.members().map((m) => [m.id, m.name]),
      [
        [1, "n1"],
        [2, "node2"],
      ],
    );
    assert.equal(text(l.state.snapshot()), text(Log.with({ members: [{ id: 1, name: "n1", raftAddress: "10.0.0.11:7400" }, { id: 2, raftAddress: "10.0.0.12:7400" }] }).state.snapshot()));
  });
});

describe("members", () => {
  test("ConfChange entries add, promote, demote and remove members; context carries the address", () => {
    const l = Log.with({ members: [{ id: 1, name: "n1", raftAddress: "a1:7400" }] });
    const r = l.conf({ type: "addLearner", nodeId: 2, context: encodeMemberContext({ name: "n2", raftAddress: "a2:7400", httpAddress: "a2:8008" }) });
    assert.ok(r.ok);
    assert.deepEqual(r.member, { id: 2, name: "n2", raftAddress: "a2:7400", httpAddress: "a2:8008", role: "learner" });
    assert.deepEqual(l.state.confState(), { voters: [1], learners: [2] });
    l.conf({ type: "addVoter", nodeId: 2 });
    assert.deepEqual(l.state.member(2), { id: 2, name: "n2", raftAddress: "a2:7400", httpAddress: "a2:8008", role: "voter" });
    l.conf({ type: "addVoter", nodeId: 3 }); // no context: a default name until member.update
    assert.deepEqual(l.state.member(3), { id: 3, name: "node3", raftAddress: "", role: "voter" });
    l.conf({ type: "addLearner", nodeId: 3 }); // demote
    assert.deepEqual(l.state.confState(), { voters: [1, 2], learners: [3] });
    l.conf({ type: "removeNode", nodeId: 2 });
    assert.deepEqual(
      l.state.members().map((m) => m.id),
      [1, 3],
    );
  });

  test("changes the Raft core ignores are ignored here too, with INVALID", () => {
    const l = Log.with({ members: [{ id: 1 }] });
    for (const cc of [
      { type: "addVoter", nodeId: 1 },
      { type: "removeNode", nodeId: 9 },
      { type: "removeNode", nodeId: 1 }, // would leave no voter
    ] as const) {
      const r = l.conf(cc);
      assert.ok(!r.ok && r.code === "INVALID", `${cc.type} ${cc.nodeId}`);
    }
    assert.deepEqual(l.state.confState(), { voters: [1], learners: [] });
  });

  test("a malformed context cannot block a membership change", () => {
    const l = Log.with({ members: [{ id: 1 }] });
    const r = l.state.apply(confEntry(l.next++, { type: "addVoter", nodeId: 2, context: enc("not json") }));
    assert.ok(r.ok);
    assert.deepEqual(l.state.member(2), { id: 2, name: "node2", raftAddress: "", role: "voter" });
  });

  test("member.update: address book edits, validation, no passwords in DSNs", () => {
    const l = Log.with({ members: [{ id: 1 }, { id: 2, name: "n2" }] });
    const u = l.ok({ op: "member.update", id: 1, name: "n1", raftAddress: "10.0.0.11:7400", httpAddress: "10.0.0.11:8008", postgresDsn: "postgresql://pgraft@10.0.0.11/app" });
    assert.deepEqual(u.member, { id: 1, name: "n1", raftAddress: "10.0.0.11:7400", httpAddress: "10.0.0.11:8008", postgresDsn: "postgresql://pgraft@10.0.0.11/app", role: "voter" });
    l.ok({ op: "member.update", id: 1, httpAddress: "" });
    assert.equal(l.state.member(1)?.httpAddress, undefined);
    const code = (c: Parameters<Log["fail"]>[0]): string => l.fail(c).code;
    assert.equal(code({ op: "member.update", id: 9, name: "x" }), "NOT_FOUND");
    assert.equal(code({ op: "member.update", id: 1, name: "n2" }), "ALREADY_EXISTS");
    assert.equal(code({ op: "member.update", id: 1, name: "" }), "INVALID");
    assert.equal(code({ op: "member.update", id: 1, raftAddress: "a\nb" }), "INVALID");
    assert.equal(code({ op: "member.update", id: 1, postgresDsn: "host=h password=secret" }), "INVALID");
    assert.equal(code({ op: "member.update", id: 1, postgresDsn: "postgres://u:secret@h/db" }), "INVALID");
    assert.equal(code({ op: "member.update", id: 1, postgresDsn: "postgres://u@h/db?password=secret" }), "INVALID");
    // a failed update with several fields changes none of them
    assert.equal(code({ op: "member.update", id: 1, name: "renamed", postgresDsn: "password=x" }), "INVALID");
    assert.equal(l.state.member(1)?.name, "n1");
  });
});

describe("runtime configuration", () => {
  test("config rows: value, default, overridden, saved", () => {
    const l = new Log();
    const row = (name: string): unknown => {
      const r = l.state.config().find((c) => c.name === name)!;
      return { value: r.value, overridden: r.overridden, saved: r.saved };
    };
    assert.deepEqual(row("heartbeat_interval"), { value: "100ms", overridden: false, saved: true });
    const set = l.ok({ op: "config.set", name: "heartbeat_interval", value: "75ms" });
    assert.equal(set.setting?.value, "75ms");
    l.ok({ op: "config.set", name: "election_timeout", value: "900ms" });
    assert.deepEqual(row("heartbeat_interval"), { value: "75ms", overridden: true, saved: false });
    l.ok({ op: "config.save" });
    assert.deepEqual(row("heartbeat_interval"), { value: "75ms", overridden: true, saved: true });
    assert.deepEqual(row("election_timeout"), { value: "900ms", overridden: true, saved: true });
    l.ok({ op: "config.set", name: "heartbeat_interval", value: "80ms" });
    assert.deepEqual(row("heartbeat_interval"), { value: "80ms", overridden: true, saved: false });
    l.ok({ op: "config.reset", name: "election_timeout" });
    assert.deepEqual(row("election_timeout"), { value: "1s", overridden: false, saved: false }, "an unsaved reset");
    assert.equal(l.state.settings().heartbeatIntervalMs, 80);
    assert.equal(l.state.settings().electionTimeoutMs, 1000);
    const r = l.state.config().find((c) => c.name === "max_inflight_msgs")!;
    assert.equal(r.restartRequired, true);
    assert.equal(r.default, "256");
    // the rolling-restart recipe
    l.ok({ op: "config.set", name: "failover_enabled", value: "false" });
    assert.equal(l.state.settings().failoverEnabled, false);
    l.ok({ op: "config.set", name: "failover_enabled", value: "true" });
    assert.equal(l.state.settings().failoverEnabled, true);
  });

  test("apply re-validates: bad values, unknown names and incompatible pairs change nothing", () => {
    const l = new Log();
    l.ok({ op: "config.set", name: "heartbeat_interval", value: "75ms" });
    const before = l.state.config();
    const f1 = l.fail({ op: "config.set", name: "heartbeat_interval", value: "abc" });
    assert.equal(f1.code, "INVALID_VALUE");
    assert.equal(f1.message, 'invalid value for heartbeat_interval: "abc" (expected a duration such as 75ms or 1s)');
    assert.equal(l.fail({ op: "config.set", name: "nope", value: "1" }).code, "UNKNOWN_SETTING");
    const f3 = l.fail({ op: "config.set", name: "election_timeout", value: "100ms" });
    assert.equal(f3.code, "INCOMPATIBLE_SETTINGS");
    assert.match(f3.message, /election_timeout \(100ms\) must be at least 2 x heartbeat_interval \(75ms\)/);
    // reset can also be refused: heartbeat 600ms needs election >= 1200ms
    l.ok({ op: "config.set", name: "election_timeout", value: "2s" });
    l.ok({ op: "config.set", name: "heartbeat_interval", value: "600ms" });
    assert.equal(l.fail({ op: "config.reset", name: "election_timeout" }).code, "INCOMPATIBLE_SETTINGS");
    assert.equal(l.state.settings().electionTimeoutMs, 2000);
    l.ok({ op: "config.reset", name: "heartbeat_interval" });
    l.ok({ op: "config.reset", name: "election_timeout" });
    assert.deepEqual(
      l.state.config().map((c) => c.value),
      before.map((c) => (c.name === "heartbeat_interval" ? "100ms" : c.value)),
    );
  });

  test("values are stored in canonical form whatever the proposer sent", () => {
    const l = new Log();
    l.ok({ op: "config.set", name: "pgraft.Election_Timeout", value: "1.5s" });
    assert.equal(l.state.config().find((c) => c.name === "election_timeout")?.value, "1500ms");
    assert.match(text(l.state.snapshot()), /"overrides":\[\["election_timeout","1500ms"\]\]/);
  });
});
