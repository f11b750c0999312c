// The KV store through ClusterState.apply: etcd's revision/version rules,
// compare-and-set that changes nothing on failure, prefix listing, limits, leases.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { compareKeys, utf8Length } from "../../src/cluster/kv.js";
import { hex, Log } from "./helpers.js";

describe("kv revisions (etcd semantics)", () => {
  test("put twice: version 2, modRevision advances, createRevision stays", () => {
    const l = new Log();
    assert.equal(l.state.revision, 0);
    const r1 = l.put("a", { n: 1 });
    assert.deepEqual(r1, { ok: true, revision: 1 });
    assert.deepEqual(l.state.kvGet("a"), { key: "a", value: '{"n":1}', createRevision: 1, modRevision: 1, version: 1, lease: 0 });
    l.put("b", 2);
    const r3 = l.put("a", { n: 3 });
    assert.ok(r3.ok);
    assert.equal(r3.revision, 3);
    assert.deepEqual(r3.prev, { key: "a", value: '{"n":1}', createRevision: 1, modRevision: 1, version: 1, lease: 0 });
    assert.deepEqual(l.state.kvGet("a"), { key: "a", value: '{"n":3}', createRevision: 1, modRevision: 3, version: 2, lease: 0 });
    assert.equal(l.state.kvGet("b")?.modRevision, 2, "other keys keep their revisions");
  });

  test("delete then put: version 1 again with a new createRevision", () => {
    const l = new Log();
    l.put("a", 1);
    l.put("a", 2);
    const d = l.ok({ op: "kv.delete", key: "a" });
    assert.equal(d.revision, 3);
    assert.equal(d.deleted, 1);
    assert.equal(d.prev?.version, 2);
    assert.equal(l.state.kvGet("a"), undefined);
    l.put("a", 3);
    assert.deepEqual(l.state.kvGet("a"), { key: "a", value: "3", createRevision: 4, modRevision: 4, version: 1, lease: 0 });
  });

  test("commands that change no key do not move the revision", () => {
    const l = new Log();
    l.put("a", 1);
    const before = l.state.revision;
    assert.equal(l.fail({ op: "kv.delete", key: "missing" }).code, "NOT_FOUND");
    assert.equal(l.ok({ op: "kv.deletePrefix", prefix: "zz" }).deleted, 0);
    l.ok({ op: "noop" });
    l.ok({ op: "config.set", name: "debug", value: "true" });
    l.ok({ op: "lease.grant", leaseId: 1, ttlMs: 1000, nowMs: 0 });
    l.ok({ op: "lease.revoke", leaseId: 1 }); // no keys attached
    assert.equal(l.state.revision, before);
  });

  test("values are stored as written, must be JSON, and are returned as copies", () => {
    const l = new Log();
    l.ok({ op: "kv.put", key: "k", value: ' { "b" : 1 , "a" : [true,null] } ' });
    assert.equal(l.state.kvGet("k")?.value, ' { "b" : 1 , "a" : [true,null] } ');
    for (const bad of ["", "{", "undefined", "{'a':1}", "[1,]", "NaN"]) {
      const f = l.fail({ op: "kv.put", key: "k", value: bad });
      assert.equal(f.code, "INVALID_JSON", bad);
    }
    const got = l.state.kvGet("k")!;
    got.value = "mutated";
    assert.notEqual(l.state.kvGet("k")?.value, "mutated");
    assert.equal(l.state.revision, 1);
  });
});

describe("compare-and-set", () => {
  test("ifModRevision 0 means must not exist; N means current modRevision is N", () => {
    const l = new Log();
    assert.ok(l.put("k", 1, { ifModRevision: 0 }).ok);
    const f = l.put("k", 2, { ifModRevision: 0 });
    assert.ok(!f.ok);
    assert.equal(f.code, "CAS_FAILED");
    assert.match(f.message, /expected key "k" not to exist, but its modRevision is 1/);
    assert.equal(f.current?.value, "1");
    assert.ok(l.put("k", 3, { ifModRevision: 1 }).ok);
    const f2 = l.put("k", 4, { ifModRevision: 1 });
    assert.ok(!f2.ok && f2.code === "CAS_FAILED");
    assert.ok(l.put("k", 5, { ifModRevision: l.state.kvGet("k")!.modRevision }).ok);
    assert.equal(l.state.kvGet("k")?.value, "5");
    // a compare against a missing key
    const f3 = l.put("nope", 1, { ifModRevision: 3 });
    assert.ok(!f3.ok && f3.code === "CAS_FAILED" && f3.current === undefined);
    assert.match(f3.message, /it does not exist/);
  });

  test("a failed compare changes nothing: same snapshot bytes except the applied index", () => {
    const l = new Log();
    l.put("k", 1);
    l.put("other", 1);
    const before = l.state.snapshot();
    const idx = l.state.appliedIndex;
    assert.equal(l.put("k", 2, { ifModRevision: 99 }).ok, false);
    assert.equal(l.run({ op: "kv.delete", key: "k", ifModRevision: 99 }).ok, false);
    assert.equal(l.run({ op: "kv.delete", key: "k", ifModRevision: 0 }).ok, false);
    assert.equal(l.state.appliedIndex, idx + 3);
    // Restore the old bytes with the index bumped: must equal the current state.
    const old = JSON.parse(new TextDecoder().decode(before)) as { appliedIndex: number };
    old.appliedIndex = l.state.appliedIndex;
    assert.equal(hex(l.state.snapshot()), hex(new TextEncoder().encode(JSON.stringify(old))));
  });

  test("delete with a matching modRevision", () => {
    const l = new Log();
    l.put("k", 1);
    l.put("k", 2);
    assert.equal(l.run({ op: "kv.delete", key: "k", ifModRevision: 1 }).ok, false);
    const d = l.ok({ op: "kv.delete", key: "k", ifModRevision: 2 });
    assert.equal(d.prev?.value, "2");
  });
});

describe("listing", () => {
  test("prefix list is sorted by UTF-8 bytes, limited, with more/count", () => {
    const l = new Log();
    for (const k of ["b/2", "a", "b/10", "b/1", "b", "c", "b/\u{1F600}", "b/\uFF61", "b0"]) l.put(k, 1);
    const all = l.state.kvList("b/");
    assert.deepEqual(
      all.kvs.map((e) => e.key),
      ["b/1", "b/10", "b/2", "b/\uFF61", "b/\u{1F600}"],
    );
    assert.equal(all.more, false);
    assert.equal(all.count, 5);
    const page = l.state.kvList("b/", { limit: 2 });
    assert.deepEqual(
      page.kvs.map((e) => e.key),
      ["b/1", "b/10"],
    );
    assert.equal(page.more, true);
    assert.equal(page.count, 5);
    const next = l.state.kvList("b/", { limit: 2, startAfter: "b/10" });
    assert.deepEqual(
      next.kvs.map((e) => e.key),
      ["b/2", "b/\uFF61"],
    );
    assert.deepEqual(
      l.state.kvList("").kvs.map((e) => e.key),
      ["a", "b", "b/1", "b/10", "b/2", "b/\uFF61", "b/\u{1F600}", "b0", "c"],
    );
    assert.equal(l.state.kvList("zzz").count, 0);
    assert.throws(() => l.state.kvList("", { limit: -1 }), /limit/);
  });

  test("deletePrefix removes exactly the prefix range in one revision", () => {
    const l = new Log();
    for (const k of ["a", "b/1", "b/2", "b/3", "b0", "c"]) l.put(k, 1);
    const r = l.ok({ op: "kv.deletePrefix", prefix: "b/" });
    assert.equal(r.deleted, 3);
    assert.equal(r.revision, 7);
    assert.deepEqual(
      l.state.kvList("").kvs.map((e) => e.key),
      ["a", "b0", "c"],
    );
    assert.equal(l.fail({ op: "kv.deletePrefix", prefix: "" }).code, "INVALID");
  });

  test("compareKeys is UTF-8 byte order", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        const bytes = Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
        assert.equal(Math.sign(compareKeys(a, b)), bytes);
        assert.equal(utf8Length(a), Buffer.byteLength(a, "utf8"));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("limits", () => {
  test("keys: non-empty, well-formed, no NUL, at most kv_max_key_bytes UTF-8 bytes", () => {
    const l = new Log();
    assert.equal(l.put("", 1).ok, false);
    const empty = l.put("", 1);
    assert.ok(!empty.ok && empty.code === "INVALID");
    const lone = l.put("a\uD800", 1);
    assert.ok(!lone.ok && lone.code === "INVALID");
    const nul = l.put("a\u0000b", 1);
    assert.ok(!nul.ok && nul.code === "INVALID");
    assert.ok(l.put("k".repeat(1024), 1).ok);
    const big = l.put("k".repeat(1025), 1);
    assert.ok(!big.ok && big.code === "TOO_LARGE");
    assert.match(big.message, /key is 1025 bytes; kv_max_key_bytes is 1024/);
    // 342 x 3-byte characters = 1026 bytes though only 342 UTF-16 units
    const wide = l.put("\u20AC".repeat(342), 1);
    assert.ok(!wide.ok && wide.code === "TOO_LARGE");
    assert.equal(l.state.revision, 1);
  });

  test("values: at most kv_max_value_bytes, and the limit follows config.set", () => {
    const l = new Log();
    const json = (n: number): string => JSON.stringify("x".repeat(n - 2)); // n bytes of JSON text
    assert.ok(l.run({ op: "kv.put", key: "k", value: json(1024 * 1024) }).ok);
    const f = l.run({ op: "kv.put", key: "k", value: json(1024 * 1024 + 1) });
    assert.ok(!f.ok && f.code === "TOO_LARGE");
    l.ok({ op: "config.set", name: "kv_max_value_bytes", value: "100" });
    assert.ok(l.run({ op: "kv.put", key: "k", value: json(100) }).ok);
    assert.equal(l.run({ op: "kv.put", key: "k", value: json(101) }).ok, false);
    l.ok({ op: "config.set", name: "kv_max_key_bytes", value: "4" });
    assert.equal(l.put("abcde", 1).ok, false);
    assert.ok(l.put("abcd", 1).ok);
  });
});

describe("leases", () => {
  test("grant, attach, keep alive, expire deletes the keys in one revision", () => {
    const l = new Log();
    const g = l.ok({ op: "lease.grant", leaseId: 7, ttlMs: 1000, nowMs: 10_000 });
    assert.deepEqual(g.lease, { id: 7, ttlMs: 1000, expiresAtMs: 11_000, keys: [] });
    assert.equal(l.fail({ op: "lease.grant", leaseId: 7, ttlMs: 1000, nowMs: 10_000 }).code, "ALREADY_EXISTS");
    l.put("svc/b", 1, { leaseId: 7 });
    l.put("svc/a", 1, { leaseId: 7 });
    l.put("plain", 1);
    assert.equal(l.put("x", 1, { leaseId: 8 }).ok, false, "unknown lease");
    assert.deepEqual(l.state.lease(7)?.keys, ["svc/a", "svc/b"]);
    assert.equal(l.state.kvGet("svc/a")?.lease, 7);

    assert.deepEqual(l.state.expiredLeases(10_999), []);
    assert.deepEqual(l.state.expiredLeases(11_000), [7]);
    const ka = l.ok({ op: "lease.keepAlive", leaseId: 7, nowMs: 10_500 });
    assert.equal(ka.lease?.expiresAtMs, 11_500);
    // A keepAlive stamped by a leader whose clock is behind never shortens the lease.
    assert.equal(l.ok({ op: "lease.keepAlive", leaseId: 7, nowMs: 9_000 }).lease?.expiresAtMs, 11_500);

    // The leader saw the lease as expired at 11_000, but a keepAlive got in first: nothing happens.
    const early = l.ok({ op: "lease.expire", leaseIds: [7], nowMs: 11_000 });
    assert.deepEqual(early.expired, []);
    assert.equal(early.deleted, 0);
    assert.ok(l.state.kvGet("svc/a"));

    const rev = l.state.revision;
    const ex = l.ok({ op: "lease.expire", leaseIds: [7, 99], nowMs: 11_500 });
    assert.deepEqual(ex.expired, [7]);
    assert.equal(ex.deleted, 2);
    assert.equal(ex.revision, rev + 1);
    assert.equal(l.state.kvGet("svc/a"), undefined);
    assert.equal(l.state.kvGet("svc/b"), undefined);
    assert.ok(l.state.kvGet("plain"));
    assert.deepEqual(l.state.leases(), []);
    assert.equal(l.fail({ op: "lease.keepAlive", leaseId: 7, nowMs: 0 }).code, "NOT_FOUND");
  });

  test("a put without leaseId detaches the key; revoke deletes only attached keys", () => {
    const l = new Log();
    l.ok({ op: "lease.grant", leaseId: 1, ttlMs: 1000, nowMs: 0 });
    l.ok({ op: "lease.grant", leaseId: 2, ttlMs: 1000, nowMs: 0 });
    l.put("a", 1, { leaseId: 1 });
    l.put("b", 1, { leaseId: 1 });
    l.put("a", 2); // detached
    l.put("b", 2, { leaseId: 2 }); // moved to lease 2
    assert.deepEqual(l.state.lease(1)?.keys, []);
    assert.deepEqual(l.state.lease(2)?.keys, ["b"]);
    l.ok({ op: "kv.delete", key: "b" });
    assert.deepEqual(l.state.lease(2)?.keys, []);
    l.put("c", 1, { leaseId: 2 });
    const r = l.ok({ op: "lease.revoke", leaseId: 2 });
    assert.equal(r.deleted, 1);
    assert.ok(l.state.kvGet("a"));
    assert.equal(l.state.kvGet("c"), undefined);
    assert.equal(l.fail({ op: "lease.revoke", leaseId: 2 }).code, "NOT_FOUND");
  });

  test("several leases expiring together cost one revision", () => {
    const l = new Log();
    for (const id of [1, 2, 3]) l.ok({ op: "lease.grant", leaseId: id, ttlMs: 100, nowMs: 0 });
    l.put("k1", 1, { leaseId: 1 });
    l.put("k3", 1, { leaseId: 3 });
    const rev = l.state.revision;
    const r = l.ok({ op: "lease.expire", leaseIds: [3, 1, 2, 1], nowMs: 100 });
    assert.deepEqual(r.expired, [1, 2, 3]);
    assert.equal(r.deleted, 2);
    assert.equal(l.state.revision, rev + 1);
  });
});
