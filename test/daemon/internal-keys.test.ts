// pgraft's own KV keys (src/daemon/internal-keys.ts): which are stale, when the
// leader's sweep deletes them, that the key shapes are the ones the join and
// part code write, and a listing that leaves them out.
import assert from "node:assert/strict";
import { test } from "node:test";
import { KvStore } from "../../src/cluster/kv.js";
import type { DataNode } from "../../src/cluster/node-groups.js";
import { autoPromoteKey, INTERNAL_PREFIX, joinKeyOf, partPrefixOf, StaleKeySweeper, staleInternalKeys } from "../../src/daemon/internal-keys.js";
import { postgresAddressKey } from "../../src/daemon/postgres-address.js";
import { JOIN_KEY } from "../../src/join/group-controller.js";
import { caughtUpKey, drainedKey, planKey, statusKey, stoppedKey } from "../../src/part/part-keys.js";

const node = (name: string, seqId: number): DataNode => ({ name, seqId, nodeId: seqId, kind: "data", dsn: "host=x", dbname: "d", group: "g", state: "ACTIVE", targetState: "ACTIVE", raftMemberId: seqId });

test("the key shapes are the ones the join and part code write", () => {
  assert.equal(joinKeyOf("beta"), JOIN_KEY("beta"));
  const p = node("gamma", 3);
  for (const k of [drainedKey(p, "a"), stoppedKey(p, "a"), planKey(p), caughtUpKey(p, "a"), statusKey(p)]) {
    assert.ok(k.startsWith(partPrefixOf(p)), `${k} is under ${partPrefixOf(p)}`);
    assert.ok(k.startsWith(INTERNAL_PREFIX));
  }
});

test("stale: promote and PostgreSQL address keys of non-members, join and part keys of nodes that are gone; nothing else", () => {
  const alpha = node("alpha", 1);
  const beta = node("beta", 2);
  const keys = [
    autoPromoteKey(4),
    autoPromoteKey(9),
    joinKeyOf("alpha"),
    joinKeyOf("gone"),
    statusKey(alpha),
    statusKey(node("alpha", 7)), // an earlier alpha, dropped and created again
    planKey(node("gone", 5)),
    `${INTERNAL_PREFIX}something-else/9`,
    `${INTERNAL_PREFIX}promote/not-a-number`,
    postgresAddressKey(2),
    postgresAddressKey(8),
    `${INTERNAL_PREFIX}postgres/x`,
  ];
  assert.deepEqual(staleInternalKeys(keys, new Set([1, 2, 3, 4]), [alpha, beta]), [
    autoPromoteKey(9),
    joinKeyOf("gone"),
    statusKey(node("alpha", 7)),
    planKey(node("gone", 5)),
    postgresAddressKey(8),
  ]);
  assert.deepEqual(staleInternalKeys(keys.slice(0, 1), new Set([4]), []), []);
});

test("the sweep deletes a key only once it has been stale for the whole grace period", () => {
  const s = new StaleKeySweeper(1000);
  assert.deepEqual(s.due(["a", "b"], 0), []);
  assert.deepEqual(s.due(["a", "b"], 999), []);
  // b's subject came back (e.g. the learner was added after its promote key): its clock starts over.
  assert.deepEqual(s.due(["a"], 1000), ["a"]);
  assert.deepEqual(s.due(["a", "b"], 1500), ["a"]);
  assert.deepEqual(s.due(["b"], 2499), []);
  assert.deepEqual(s.due(["b"], 2500), ["b"]);
  s.forget(); // no longer the leader
  assert.deepEqual(s.due(["b"], 3000), []);
});

test("a listing with exclude leaves those keys out of the page and the count", () => {
  const kv = new KvStore();
  for (const k of ["a", `${INTERNAL_PREFIX}promote/9`, "pgraft.x", "z"]) kv.put(k, "1", { maxKeyBytes: 1024, maxValueBytes: 1024 });
  const all = kv.list("", { exclude: INTERNAL_PREFIX });
  assert.deepEqual(all.kvs.map((x) => x.key), ["a", "pgraft.x", "z"]);
  assert.equal(all.count, 3);
  const page = kv.list("pgraft.", { exclude: INTERNAL_PREFIX, limit: 1 });
  assert.deepEqual(page.kvs.map((x) => x.key), ["pgraft.x"]);
  assert.equal(page.more, false);
  assert.equal(kv.list("").count, 4);
});
