// Pure pieces of the data plane: names, LSNs and times, the conflict rule,
// the transaction assembler and the statement shapes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Pgoutput } from "pg-logical-replication";
import { remoteWins } from "../../src/slots/conflicts.js";
import { TextPgoutputPlugin, TransactionAssembler } from "../../src/slots/decoder.js";
import { formatLsn, microsToTimestamptz, parseLsn } from "../../src/slots/lsn.js";
import {
  assertPgraftSlot,
  composeName,
  groupSlotName,
  isPgraftSlot,
  MAX_NAME_BYTES,
  nodeSlotName,
  originName,
  publicationName,
  shortHash,
} from "../../src/slots/naming.js";
import { fastDeleteSql, fastUpdateSql, insertManySql, insertSql, locateParams, presentMask, presentValues, type TableMeta } from "../../src/slots/statements.js";
import { resolvingDeleteOneSql, resolvingInsertOneSql, resolvingUpdateOneSql } from "../../src/slots/resolving-one-row.js";
import { resolvingDeleteSql, resolvingInsertSql, resolvingUpdateSql } from "../../src/slots/resolving-statements.js";
import { batches } from "../../src/slots/applier.js";
import { withNodeSlotPlugin } from "../../src/slots/node-slot-plugin.js";
import type { RelationDesc } from "../../src/slots/types.js";

describe("naming", () => {
  test("the seed's example names come out verbatim", () => {
    assert.equal(groupSlotName("mydb", "mygroup"), "bdr_mydb_mygroup");
    assert.equal(nodeSlotName("mydb", "mygroup", "beta"), "bdr_mydb_mygroup_beta");
    assert.equal(nodeSlotName("mydb", "mygroup", "gamma"), "bdr_mydb_mygroup_gamma");
    assert.equal(publicationName("mydb", "mygroup"), "bdr_mydb_mygroup");
    assert.equal(originName("mydb", "mygroup", "beta"), "pgraft_mydb_mygroup_beta");
  });

  test("the seed's long example: shortened with hashes, within 63 bytes, stable", () => {
    const db = "db20xxxxxxxxxxxxxxxx";
    const group = "group20xxxxxxxxxxxxx";
    const node = "a30xxxxxxxxxxxxxxxxxxxxxxxxxxx";
    const name = nodeSlotName(db, group, node);
    assert.ok(Buffer.byteLength(name) <= MAX_NAME_BYTES, name);
    assert.match(name, /^bdr_[a-z0-9_]+$/);
    assert.equal(name, nodeSlotName(db, group, node), "a pure function of its inputs");
    // Each cut part ends in the hash of its original text.
    assert.ok(name.includes(shortHash(node)), name);
    assert.ok(name.includes(shortHash(db)), name);
    // The group slot of the same pair fits as is.
    assert.equal(groupSlotName(db, group), `bdr_${db}_${group}`);
  });

  test("≤ 63 bytes and distinct for long distinct inputs, unicode and punctuation included", () => {
    const seen = new Map<string, string>();
    const long = "x".repeat(200);
    const inputs: [string, string, string][] = [];
    for (let i = 0; i < 200; i++) inputs.push([`${long}db`, `${long}group`, `${long}${i}`]);
    for (let i = 0; i < 50; i++) inputs.push([`database_${i}_${long}`, "g", "n"]);
    inputs.push(["Mydb", "g", "n"], ["mydb", "g", "n"], ["my-db", "g", "n"], ["my_db", "g", "n"], ["mÿdb", "g", "n"], ["数据库", "g", "n"], ["", "g", "n"]);
    inputs.push(["d", "g", "Ünïcödé node with spaces and a very long tail to be cut off somewhere"], ["d", "g", "ünïcödé node with spaces and a very long tail to be cut off somewhere"]);
    for (const [db, g, n] of inputs) {
      for (const name of [nodeSlotName(db, g, n), originName(db, g, n)]) {
        assert.ok(Buffer.byteLength(name) <= MAX_NAME_BYTES, `${name} is ${Buffer.byteLength(name)} bytes`);
        assert.match(name, /^(bdr|pgraft)_[a-z0-9_]+$/);
      }
      const key = JSON.stringify([db, g, n]);
      const name = nodeSlotName(db, g, n);
      assert.equal(seen.get(name) ?? key, key, `${name} for both ${seen.get(name)} and ${key}`);
      seen.set(name, key);
    }
  });

  test("names that only differ in case or punctuation differ (cleaning adds a hash)", () => {
    const names = new Set(["Beta", "beta", "be-ta", "be_ta", "be ta"].map((n) => nodeSlotName("d", "g", n)));
    assert.equal(names.size, 5);
    assert.equal(nodeSlotName("d", "g", "beta"), "bdr_d_g_beta");
  });

  test("composeName water-fills: short parts stay whole", () => {
    const name = composeName("bdr", ["db", "g", "n".repeat(100)]);
    assert.ok(name.startsWith("bdr_db_g_n"), name);
    assert.equal(name.length, MAX_NAME_BYTES);
  });

  test("only bdr_ slots are pgraft's; anything else is refused", () => {
    assert.equal(isPgraftSlot("bdr_mydb_mygroup"), true);
    assert.equal(isPgraftSlot("barman"), false);
    assert.equal(isPgraftSlot("my_bdr_slot"), false);
    assert.equal(isPgraftSlot("sub_mydb"), false);
    assert.throws(() => assertPgraftSlot("barman"), /not pgraft's/);
    assert.doesNotThrow(() => assertPgraftSlot(nodeSlotName("a", "b", "c")));
  });
});

describe("LSNs and commit times", () => {
  test("parse and format round-trip, 64 bits exact", () => {
    for (const s of ["0/0", "0/16B3748", "1/0", "FFFFFFFF/FFFFFFFF", "ABC/DEF01234"]) assert.equal(formatLsn(parseLsn(s)), s);
    assert.equal(parseLsn("0/10") < parseLsn("1/0"), true);
    assert.equal(parseLsn("16/B374D848"), (0x16n << 32n) | 0xb374d848n);
    assert.throws(() => parseLsn("nope"));
  });

  test("microseconds become an exact timestamptz literal", () => {
    assert.equal(microsToTimestamptz(0n), "1970-01-01 00:00:00.000000+00");
    assert.equal(microsToTimestamptz(1_700_000_000_123_456n), "2023-11-14 22:13:20.123456+00");
    assert.equal(microsToTimestamptz(-1n), "1969-12-31 23:59:59.999999+00");
  });
});

describe("last update wins", () => {
  const t = 1_700_000_000_000_000n;
  test("the later commit wins", () => {
    assert.equal(remoteWins({ commitTimeUs: t, nodeId: 1 }, { commitTimeUs: t + 1n, nodeId: 1 }), true);
    assert.equal(remoteWins({ commitTimeUs: t + 1n, nodeId: 1 }, { commitTimeUs: t, nodeId: 9 }), false);
  });
  test("a tie goes to the higher node id", () => {
    assert.equal(remoteWins({ commitTimeUs: t, nodeId: 2 }, { commitTimeUs: t, nodeId: 3 }), true);
    assert.equal(remoteWins({ commitTimeUs: t, nodeId: 3 }, { commitTimeUs: t, nodeId: 2 }), false);
  });
  test("an unknown local version loses", () => {
    assert.equal(remoteWins({ commitTimeUs: null, nodeId: null }, { commitTimeUs: t, nodeId: 1 }), true);
    assert.equal(remoteWins({ commitTimeUs: t, nodeId: null }, { commitTimeUs: t, nodeId: 1 }), true);
  });
});

describe("transaction assembler", () => {
  const rel = (name: string, schema = "public"): Pgoutput.MessageRelation => ({
    tag: "relation",
    relationOid: 1,
    schema,
    name,
    replicaIdentity: "default",
    keyColumns: ["id"],
    columns: [
      { name: "id", flags: 1, typeOid: 23, typeMod: -1, typeSchema: null, typeName: null, parser: (x: unknown) => x },
      { name: "v", flags: 0, typeOid: 25, typeMod: -1, typeSchema: null, typeName: null, parser: (x: unknown) => x },
    ],
  });
  const begin = (xid: number): Pgoutput.MessageBegin => ({ tag: "begin", commitLsn: "0/100", commitTime: 1234n, xid });
  const commit = (end: string): Pgoutput.MessageCommit => ({ tag: "commit", flags: 0, commitLsn: "0/100", commitEndLsn: end, commitTime: 1234n });

  test("groups Begin … Commit; values stay text; unchanged TOAST stays undefined", () => {
    const a = new TransactionAssembler();
    const r = rel("t");
    assert.equal(a.push(begin(7)), undefined);
    assert.equal(a.inTransaction, true);
    a.push(r);
    a.push({ tag: "insert", relation: r, new: { id: "1", v: "0.1" } });
    a.push({ tag: "update", relation: r, key: null, old: null, new: { id: "1", v: undefined } });
    a.push({ tag: "delete", relation: r, key: { id: "1" }, old: null });
    const out = a.push(commit("0/1A0"));
    assert.equal(a.inTransaction, false);
    assert.ok(out && out.kind === "apply");
    assert.equal(out.tx.endLsn, 0x1a0n);
    assert.equal(out.tx.commitTime, 1234n);
    assert.deepEqual(
      out.tx.changes.map((c) => [c.kind, c.kind === "truncate" ? null : c.kind === "delete" ? c.old : c.new]),
      [
        ["insert", ["1", "0.1"]],
        ["update", ["1", undefined]],
        ["delete", ["1", undefined]],
      ],
    );
  });

  test("a transaction with an Origin message is skipped whole; pgraft's own tables are never applied", () => {
    const a = new TransactionAssembler();
    const r = rel("t");
    a.push(begin(8));
    a.push({ tag: "origin", originLsn: "0/50", originName: "pgraft_x" });
    a.push({ tag: "insert", relation: r, new: { id: "1", v: "x" } });
    assert.deepEqual(a.push(commit("0/200")), { kind: "skip", endLsn: 0x200n, reason: "origin", commitTime: 1234n });
    const own = rel("conflict_history", "pgraft");
    a.push(begin(9));
    a.push({ tag: "insert", relation: own, new: { id: "1", v: "x" } });
    assert.deepEqual(a.push(commit("0/300")), { kind: "skip", endLsn: 0x300n, reason: "empty", commitTime: 1234n });
  });
});

/** pgoutput messages as the walsender sends them (protocol version 1). */
const wire = {
  cstring: (v: string): Buffer => Buffer.concat([Buffer.from(v), Buffer.from([0])]),
  int64: (v: bigint): Buffer => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    return b;
  },
  int32: (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return b;
  },
  int16: (v: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return b;
  },
  begin: (xid: number): Buffer => Buffer.concat([Buffer.from("B"), wire.int64(0x100n), wire.int64(0n), wire.int32(xid)]),
  origin: (name: string): Buffer => Buffer.concat([Buffer.from("O"), wire.int64(0x50n), wire.cstring(name)]),
  relation: (): Buffer =>
    Buffer.concat([Buffer.from("R"), wire.int32(16384), wire.cstring("public"), wire.cstring("t"), Buffer.from("d"), wire.int16(1), Buffer.from([1]), wire.cstring("id"), wire.int32(23), wire.int32(-1)]),
  insert: (v: string): Buffer => Buffer.concat([Buffer.from("I"), wire.int32(16384), Buffer.from("N"), wire.int16(1), Buffer.from("t"), wire.int32(Buffer.byteLength(v)), Buffer.from(v)]),
  commit: (end: bigint): Buffer => Buffer.concat([Buffer.from("C"), Buffer.from([0]), wire.int64(end - 0x10n), wire.int64(end), wire.int64(0n)]),
};

describe("pgoutput plugin: rows of skipped transactions are not decoded", () => {
  function run(relayOrigin?: string) {
    const assembler = new TransactionAssembler({ relayOrigin });
    const plugin = new TextPgoutputPlugin("pub", (o) => assembler.wanted(o));
    const tags: string[] = [];
    const out: unknown[] = [];
    const feed = (b: Buffer): void => {
      const m = plugin.parse(b);
      tags.push(m.tag);
      const a = assembler.push(m);
      if (a) out.push(a);
    };
    feed(wire.relation());
    feed(wire.begin(1));
    feed(wire.origin("pgraft_postgres_g_x"));
    feed(wire.insert("1"));
    feed(wire.commit(0x200n));
    feed(wire.begin(2));
    feed(wire.insert("2"));
    feed(wire.commit(0x300n));
    return { tags, out };
  }

  test("normal mode: a transaction with an origin is skipped unread; one without is decoded as text", () => {
    const { tags, out } = run();
    assert.deepEqual(tags, ["relation", "begin", "origin", "skipped-row", "commit", "begin", "insert", "commit"]);
    assert.deepEqual(
      out.map((a) => (a as { kind: string }).kind),
      ["skip", "apply"],
    );
    const applied = out[1] as { tx: { changes: { new: unknown[] }[]; endLsn: bigint } };
    assert.deepEqual(applied.tx.changes[0]!.new, ["2"]);
    assert.equal(applied.tx.endLsn, 0x300n);
  });

  test("relay mode: only the named origin's transaction is decoded, with the origin's LSN as its end", () => {
    const { tags, out } = run("pgraft_postgres_g_x");
    assert.deepEqual(tags, ["relation", "begin", "origin", "insert", "commit", "begin", "skipped-row", "commit"]);
    const relayed = out[0] as { kind: string; tx: { changes: { new: unknown[] }[]; endLsn: bigint } };
    assert.equal(relayed.kind, "apply");
    assert.deepEqual(relayed.tx.changes[0]!.new, ["1"]);
    assert.equal(relayed.tx.endLsn, 0x50n);
    assert.equal((out[1] as { kind: string }).kind, "skip");
  });
});

describe("statements", () => {
  const rel: RelationDesc = {
    oid: 1,
    schema: "public",
    name: "T x",
    replicaIdentity: "default",
    columns: [
      { name: "id", typeOid: 23 },
      { name: "v", typeOid: 25 },
      { name: "big", typeOid: 25 },
    ],
  };
  const types = ["integer", "text", "text"];
  const pk: TableMeta = { rel, qualified: '"public"."T x"', key: [0], types, otherUnique: false };
  const full: TableMeta = { rel, qualified: '"public"."T x"', key: null, types, otherUnique: false };

  test("runs by key resolve in line: lock, decide, write by key, log, check; a table without a key is refused", () => {
    const names = { localNode: "a", peer: "b" };
    const u = resolvingUpdateSql(pk, "110", 7, names).text;
    // The new values, then the key as a column of its own, then the four context params.
    assert.match(u, /^WITH u AS \(SELECT \* FROM unnest\(\$1::text\[\], \$2::text\[\], \$3::text\[\]\) WITH ORDINALITY AS u\(c1, c2, c3, ord\)\), ctx AS \(SELECT \$4::timestamptz, \$5::pg_lsn, \$6::boolean, \$7::jsonb\)/);
    assert.match(u, /JOIN "public"\."T x" l ON l\."id" = u\.c3::integer WHERE NOT EXISTS \(SELECT 1 FROM lost WHERE lost\.ord = u\.ord\) FOR UPDATE OF l/);
    // A row another node (or this one) wrote after the incoming change committed: lost at once, not locked.
    assert.match(u, /lost AS MATERIALIZED \(SELECT u\.ord, .* WHERE \(pg_xact_commit_timestamp_origin\(l\.xmin\)\)\.timestamp > \$4::timestamptz AND \(pg_xact_commit_timestamp_origin\(l\.xmin\)\)\.roident <> 7\)/);
    assert.match(u, /\(cur\.o\)\.roident = 7/, "rows this peer wrote last are no conflict");
    assert.match(u, /'update_origin_change'.*'update_missing', 'insert_remote'/);
    assert.match(u, /\(NOT d\.win OR \$6::boolean\) AS logged/);
    const d = resolvingDeleteSql(pk, 7, names).text;
    assert.match(d, /DELETE FROM "public"\."T x" l USING d JOIN u ON u\.ord = d\.ord WHERE l\."id" = u\.c1::integer AND d\.win/);
    assert.match(d, /CASE WHEN COALESCE\(\(pg_xact_commit_timestamp_origin\(l\.xmin\)\)\.roident, 7\) <> 7 THEN to_jsonb\(l\) END AS tuple/, "the local row as JSON only for a conflict");
    assert.match(d, /'delete_recently_updated'.*'delete_missing', 'skip'/);
    const i = resolvingInsertSql(pk, "111", 7, names, true).text;
    assert.match(i, /ON CONFLICT \("id"\) DO NOTHING RETURNING "id"/);
    assert.match(i, /pg_replication_origin_xact_setup\(\$8::pg_lsn, \$9::timestamptz\)/, "a lone transaction's setup after the context");
    assert.throws(() => resolvingUpdateSql(full, "110", 7, names), /need a primary key/);
    assert.throws(() => resolvingUpdateSql(pk, "000", 7, names), /needs a column to set/);
  });

  test("a run of one row: scalars, the decision in the write's WHERE, the row locked only when it moved under the statement", () => {
    const names = { localNode: "a", peer: "b" };
    const u = resolvingUpdateOneSql(pk, "110", 7, names).text;
    // The new values, then the key, then the four context params, all text scalars typed by their columns.
    assert.match(u, /^WITH ctx AS \(SELECT \$4::timestamptz, \$5::pg_lsn, \$6::boolean, \$7::jsonb\), old AS MATERIALIZED \(SELECT .* FROM "public"\."T x" l WHERE l\."id" = \$3::text::integer\)/);
    assert.match(u, /UPDATE "public"\."T x" l SET "id" = \$1::text::integer, "v" = \$2::text::text WHERE l\."id" = \$3::text::integer AND CASE WHEN COALESCE\(\(pg_xact_commit_timestamp_origin\(l\.xmin\)\)\.roident, 7\) = 7 OR/);
    assert.match(u, /ELSE \(pgraft\.apply_guard\(false\) IS NULL\) END RETURNING 1\)/, "a tie raises: the slow path breaks it by node id");
    // Locked only when the write did not happen although the snapshot's version would have lost to it.
    assert.match(u, /moved AS MATERIALIZED \(SELECT .* WHERE l\."id" = \$3::text::integer AND NOT EXISTS \(SELECT 1 FROM upd\) AND NOT EXISTS \(SELECT 1 FROM old WHERE COALESCE\(\(old\.o\)\.roident, 7\) <> 7 AND \(old\.o\)\.timestamp > \$4::timestamptz\) FOR UPDATE OF l\)/);
    assert.match(u, /CASE WHEN \(NOT EXISTS \(SELECT 1 FROM upd\) OR \$6::boolean\) THEN to_jsonb\(cur\.r\) END AS tuple/, "the local row as JSON only when logged");
    assert.match(u, /'update_missing', 'insert_remote'/);
    const d = resolvingDeleteOneSql(pk, 7, names, true).text;
    assert.match(d, /del AS \(DELETE FROM "public"\."T x" l WHERE l\."id" = \$1::text::integer AND CASE/);
    assert.match(d, /'delete_recently_updated'.*'delete_missing', 'skip'/);
    assert.match(d, /pg_replication_origin_xact_setup\(\$6::pg_lsn, \$7::timestamptz\)/, "a lone transaction's setup after the context");
    const i = resolvingInsertOneSql(pk, "111", 7, names).text;
    assert.match(i, /VALUES \(\$1::text::integer, \$2::text::text, \$3::text::text\) ON CONFLICT \("id"\) DO NOTHING RETURNING 1/);
    assert.doesNotMatch(i.slice(i.indexOf("upd AS")), /roident, 7\) = 7/, "any row found is an insert's conflict, whoever wrote it");
    assert.throws(() => resolvingUpdateOneSql(full, "110", 7, names), /need a primary key/);
    assert.throws(() => resolvingUpdateOneSql(pk, "000", 7, names), /needs a column to set/);
    assert.throws(() => resolvingInsertOneSql(pk, "011", 7, names), /needs the key's values/);
  });

  test("runs: same table and shape, each key at most once; an update that changes the key, or of a table without a key, stays alone", () => {
    const metaOf = (r: RelationDesc): TableMeta => (r === rel ? pk : full);
    const other: RelationDesc = { ...rel, name: "other" };
    const up = (id: string, old: string[] | null = null) => ({ kind: "update" as const, rel, old, new: [id, "v", "b"] });
    const del = (id: string) => ({ kind: "delete" as const, rel, old: [id, null, null] });
    const sizes = [...batches([up("1"), up("2"), up("1"), up("3"), del("1"), del("2"), del("2"), up("9", ["8", "v", "b"]), { kind: "update", rel: other, old: ["1", "v", "b"], new: ["1", "w", "b"] }, up("4"), up("5")], metaOf)].map((r) => r.length);
    assert.deepEqual(sizes, [2, 2, 2, 1, 1, 1, 2]);
    // An old row with the same key (REPLICA IDENTITY FULL on a table with a key) is no key change: it joins the run.
    assert.deepEqual([...batches([up("6"), up("7", ["7", "old", "b"]), up("8")], metaOf)].map((r) => r.length), [3]);
  });

  test("insert and update bind only the columns that were sent", () => {
    const row = ["1", null, undefined];
    assert.equal(presentMask(row), "110");
    assert.deepEqual(presentValues(row), ["1", null]);
    assert.equal(insertSql(pk, "110").text, 'INSERT INTO "public"."T x" ("id", "v") VALUES ($1, $2)');
    const u = fastUpdateSql(pk, "110", 3).text;
    assert.match(u, /SET "id" = \$1, "v" = \$2 WHERE l\."id" = \$3 AND COALESCE\(\(pg_xact_commit_timestamp_origin\(l\.xmin\)\)\.roident, 3\) = 3/);
    assert.match(u, /CASE WHEN count\(\*\) = 1 THEN NULL ELSE pgraft\.apply_guard\(false\) END/);
  });

  test("runs of inserts become one multi-row INSERT with casts to the local types", () => {
    assert.equal(
      insertManySql(pk, "101").text,
      'INSERT INTO "public"."T x" ("id", "big") SELECT u.c1::integer, u.c2::text FROM unnest($1::text[], $2::text[]) AS u(c1, c2)',
    );
  });

  test("tables without a primary key are matched on every old value, as text", () => {
    const d = fastDeleteSql(full, 2).text;
    assert.match(d, /format\('%s', s\."big"\) = \$3::text/);
    assert.match(d, /LIMIT 1/);
    assert.deepEqual(locateParams(full, ["1", null, "x"]), ["1", null, "x"]);
    assert.deepEqual(locateParams(pk, ["1", undefined, undefined]), ["1"]);
    assert.throws(() => locateParams(full, ["1", undefined, "x"]), /did not send column v/);
  });
});

describe("node slot plugin", () => {
  test("test_decoding first; pgoutput only when the server cannot load test_decoding (58P01); any other error stands", async () => {
    const tried: string[] = [];
    const made = await withNodeSlotPlugin((p) => {
      tried.push(p);
      if (p === "test_decoding") return Promise.reject(Object.assign(new Error('could not access file "test_decoding": No such file or directory'), { code: "58P01" }));
      return Promise.resolve(`slot made with ${p}`);
    });
    assert.deepEqual(tried, ["test_decoding", "pgoutput"]);
    assert.deepEqual(made, { result: "slot made with pgoutput", plugin: "pgoutput" });
    assert.deepEqual(await withNodeSlotPlugin((p) => Promise.resolve(p)), { result: "test_decoding", plugin: "test_decoding" });
    await assert.rejects(
      withNodeSlotPlugin(() => Promise.reject(Object.assign(new Error('replication slot "x" already exists'), { code: "42710" }))),
      /already exists/,
    );
  });
});
