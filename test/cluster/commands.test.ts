// The command codec: round trips, fixed bytes for equal commands, and strict
// rejection of anything malformed with a typed error (never another exception).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  COMMAND_OPS,
  decodeCommand,
  decodeMemberContext,
  encodeCommand,
  encodeMemberContext,
  validateCommand,
  type Command,
} from "../../src/cluster/commands.js";
import { ClusterError, isClusterError } from "../../src/cluster/errors.js";
import { text } from "./helpers.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const samples: Command[] = [
  { op: "kv.put", key: "configs/maintenance", value: '{"window":"02:00 UTC","duration":"30m"}' },
  { op: "kv.put", key: "k", value: "1", leaseId: 7, ifModRevision: 0 },
  { op: "kv.delete", key: "k" },
  { op: "kv.delete", key: "k", ifModRevision: 12 },
  { op: "kv.deletePrefix", prefix: "configs/" },
  { op: "lease.grant", leaseId: 1, ttlMs: 5000, nowMs: 1_700_000_000_000 },
  { op: "lease.keepAlive", leaseId: 1, nowMs: 1_700_000_001_000 },
  { op: "lease.revoke", leaseId: 1 },
  { op: "lease.expire", leaseIds: [1, 2, 3], nowMs: 1_700_000_009_000 },
  { op: "lease.expire", leaseIds: [], nowMs: 0 },
  { op: "config.set", name: "heartbeat_interval", value: "75ms" },
  { op: "config.reset", name: "election_timeout" },
  { op: "config.save" },
  { op: "member.update", id: 3, name: "n3", raftAddress: "10.0.0.13:7400", httpAddress: "10.0.0.13:8008", postgresDsn: "host=10.0.0.13 dbname=app" },
  { op: "member.update", id: 4294967295 },
  { op: "noop" },
  { op: "pgd.node.create", name: "node-a", dsn: "host=10.0.0.1 dbname=app", kind: "data", dbname: "app", raftMemberId: 1 },
  { op: "pgd.node.create", name: "node-b", dsn: "postgresql://10.0.0.2/app", kind: "data", dbname: "app" },
  { op: "pgd.group.create", name: "g", parent: "top", type: "data", creator: "node-a" },
  { op: "pgd.group.create", name: "top" },
  { op: "pgd.node.state", name: "node-b", state: "JOIN_START", group: "g" },
  { op: "pgd.node.state", name: "node-b", state: "JOINING" },
  { op: "pgd.node.interface", name: "node-b", dsn: "host=10.0.0.3 dbname=app" },
  { op: "pgd.node.drop", name: "node-b", force: true },
  { op: "pgd.node.drop", name: "node-b" },
  { op: "pgd.group.drop", name: "g" },
  { op: "routing.set", group: "g", epoch: 3, leader: "a", switchingTo: "", readers: ["b", "c"], reason: "failover: a unhealthy", nowMs: 1_700_000_000_000 },
  { op: "routing.scope", group: "g", scope: "majority" },
];

function rejects(data: Uint8Array | string, code: ClusterError["code"], pattern?: RegExp): void {
  const bytes = typeof data === "string" ? enc(data) : data;
  assert.throws(
    () => decodeCommand(bytes),
    (e: unknown) => {
      assert.ok(isClusterError(e), `expected a ClusterError, got ${String(e)}`);
      assert.equal(e.code, code, e.message);
      if (pattern) assert.match(e.message, pattern);
      return true;
    },
  );
}

describe("command codec", () => {
  test("every sample round-trips, and every op has a sample", () => {
    for (const c of samples) assert.deepEqual(decodeCommand(encodeCommand(c)), c);
    assert.deepEqual(new Set(samples.map((c) => c.op)), new Set(COMMAND_OPS));
  });

  test("the encoding is versioned JSON with fields in a fixed order", () => {
    const a = encodeCommand({ op: "kv.put", key: "k", value: "1", ifModRevision: 3, leaseId: 9 });
    const b = encodeCommand({ ifModRevision: 3, leaseId: 9, value: "1", key: "k", op: "kv.put" });
    assert.equal(text(a), '{"v":1,"op":"kv.put","key":"k","value":"1","leaseId":9,"ifModRevision":3}');
    assert.deepEqual(a, b);
  });

  test("unknown op, unknown field, missing field, wrong types are INVALID", () => {
    rejects('{"v":1,"op":"kv.frobnicate","key":"k"}', "INVALID", /unknown command op "kv.frobnicate"; expected one of kv.put/);
    rejects('{"v":1,"op":"kv.put","key":"k","value":"1","extra":true}', "INVALID", /unknown field "extra"/);
    rejects('{"v":1,"op":"kv.put","key":"k"}', "INVALID", /missing field value/);
    rejects('{"v":1,"op":"kv.put","key":"k","value":{"a":1}}', "INVALID", /value must be a string, got an object/);
    rejects('{"v":1,"op":"kv.put","key":7,"value":"1"}', "INVALID", /key must be a string/);
    rejects('{"v":1,"op":"kv.put","key":"k","value":"1","ifModRevision":-1}', "INVALID", /non-negative integer/);
    rejects('{"v":1,"op":"kv.put","key":"k","value":"1","ifModRevision":1.5}', "INVALID");
    rejects('{"v":1,"op":"kv.put","key":"k","value":"1","leaseId":0}', "INVALID", /positive integer/);
    rejects('{"v":1,"op":"kv.put","key":"k","value":"1","leaseId":9007199254740992}', "INVALID");
    rejects('{"v":1,"op":"lease.grant","leaseId":1,"ttlMs":0,"nowMs":0}', "INVALID", /ttlMs/);
    rejects('{"v":1,"op":"lease.grant","leaseId":1,"ttlMs":"5s","nowMs":0}', "INVALID", /ttlMs/);
    rejects('{"v":1,"op":"lease.expire","leaseIds":[1,"2"],"nowMs":0}', "INVALID", /leaseIds/);
    rejects('{"v":1,"op":"lease.expire","leaseIds":{},"nowMs":0}', "INVALID", /leaseIds/);
    rejects('{"v":1,"op":"member.update","id":0}', "INVALID", /1\.\.4294967295/);
    rejects('{"v":1,"op":"member.update","id":4294967296}', "INVALID");
    rejects('{"v":1,"op":"config.set","name":"debug","value":true}', "INVALID", /value must be a string, got true/);
    rejects('{"v":1,"op":"noop","__proto__":{"x":1}}', "INVALID", /unknown field "__proto__"/);
    rejects('{"v":1,"op":"toString"}', "INVALID", /unknown command op/);
    rejects('{"v":1,"op":null}', "INVALID");
  });

  test("version: missing or bad is INVALID, newer is UNSUPPORTED_VERSION", () => {
    rejects('{"op":"noop"}', "INVALID", /version/);
    rejects('{"v":"1","op":"noop"}', "INVALID", /version/);
    rejects('{"v":0,"op":"noop"}', "INVALID", /version/);
    rejects('{"v":2,"op":"noop"}', "UNSUPPORTED_VERSION", /version 2 is newer/);
  });

  test("not JSON, not an object, not UTF-8 are INVALID", () => {
    rejects("", "INVALID", /not valid JSON/);
    rejects("{", "INVALID", /not valid JSON/);
    rejects("[]", "INVALID", /must be a JSON object, got an array/);
    rejects("null", "INVALID");
    rejects('"noop"', "INVALID");
    rejects(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), "INVALID", /UTF-8/);
    rejects(new Uint8Array([0xef, 0xbb, 0xbf, ...enc('{"v":1,"op":"noop"}')]), "INVALID");
  });

  test("encodeCommand refuses what decode would refuse", () => {
    assert.throws(() => encodeCommand({ op: "kv.put", key: "k" } as unknown as Command), (e: unknown) => isClusterError(e, "INVALID"));
    assert.throws(() => encodeCommand({ op: "lease.grant", leaseId: 1, ttlMs: -5, nowMs: 0 }), (e: unknown) => isClusterError(e, "INVALID"));
    assert.throws(() => validateCommand({ op: "noop", v: 1 }), /unknown field "v"/);
    assert.deepEqual(validateCommand({ op: "kv.delete", key: "a" }), { op: "kv.delete", key: "a" });
  });

  test("decoding arbitrary bytes throws only ClusterError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeCommand(bytes);
        } catch (e) {
          assert.ok(e instanceof ClusterError);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("decoding arbitrary JSON objects throws only ClusterError, and what decodes re-encodes to itself", () => {
    const field = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.integer({ min: -2, max: 3 }), { maxLength: 3 }));
    const obj = fc.record(
      {
        v: fc.oneof(fc.constant(1), fc.integer({ min: -1, max: 3 })),
        op: fc.oneof(fc.constantFrom(...COMMAND_OPS), fc.string()),
        key: field,
        value: field,
        leaseId: fc.oneof(fc.integer({ min: -1, max: 5 }), field),
        leaseIds: field,
        ttlMs: fc.integer({ min: -1, max: 10 }),
        nowMs: fc.integer({ min: -1, max: 10 }),
        name: field,
        id: fc.integer({ min: -1, max: 5 }),
      },
      { requiredKeys: ["v", "op"] },
    );
    fc.assert(
      fc.property(obj, (o) => {
        let c: Command;
        try {
          c = decodeCommand(enc(JSON.stringify(o)));
        } catch (e) {
          assert.ok(e instanceof ClusterError);
          return;
        }
        assert.deepEqual(decodeCommand(encodeCommand(c)), c);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("member context", () => {
  test("round trip and strictness", () => {
    const full = { name: "node2", raftAddress: "10.0.0.12:7400", httpAddress: "10.0.0.12:8008" };
    assert.deepEqual(decodeMemberContext(encodeMemberContext(full)), full);
    assert.deepEqual(decodeMemberContext(encodeMemberContext({ name: "n", raftAddress: "" })), { name: "n", raftAddress: "" });
    const bad = (s: string, code: ClusterError["code"] = "INVALID"): void =>
      assert.throws(() => decodeMemberContext(enc(s)), (e: unknown) => isClusterError(e, code));
    bad("");
    bad("not json");
    bad('{"name":"n","raftAddress":"a"}');
    bad('{"v":1,"name":"","raftAddress":"a"}');
    bad('{"v":1,"name":"n","raftAddress":5}');
    bad('{"v":1,"name":"n","raftAddress":"a","httpAddress":1}');
    bad('{"v":1,"name":"n","raftAddress":"a","zone":"x"}');
    bad('{"v":2,"name":"n","raftAddress":"a"}', "UNSUPPORTED_VERSION");
    assert.throws(() => encodeMemberContext({ name: "", raftAddress: "a" }), (e: unknown) => isClusterError(e, "INVALID"));
  });
});
