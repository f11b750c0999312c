// The node slots' decoder (src/slots/text-decoding.ts): test_decoding's lines
// from a real PostgreSQL, read back into values equal to each column's ::text
// (what pgoutput sends), with awkward names, quotes, NULLs, TOAST, old keys,
// TRUNCATE, and transactions under an origin left out by the server itself.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { connectClient } from "../../src/slots/connection.js";
import { parseIsoTimestamptz, parseTextDecodingLine, TextTransactionAssembler } from "../../src/slots/text-decoding.js";
import { parseLsn } from "../../src/slots/lsn.js";
import type { Assembled } from "../../src/slots/decoder.js";
import type { RemoteTransaction } from "../../src/slots/types.js";
import { startNodes, teardown, type TestNode } from "./support.js";

const OPTIONS = "'include-xids', '1', 'include-timestamp', '1', 'skip-empty-xacts', '1', 'only-local', '1'";
const T = `"we.ird"."t: a, b"`;
/** Every column, as its type's output (format's %s: a boolean is t/f, as pgoutput sends it); g is the generated one. */
const COLUMNS = [
  "id",
  `"col [x]:"`,
  `"select"`,
  "n",
  "big",
  "f",
  "r",
  "b",
  "bits",
  "vb",
  "by",
  "ts",
  "d",
  "iv",
  "j",
  "arr",
  "tarr",
  "nul",
  "q",
  "u",
  "o",
  "dom",
  "e",
  "long",
  "g",
];

describe("test_decoding lines", () => {
  let nodes: TestNode[] = [];
  let c: pg.Client;

  before(async () => {
    nodes = await startNodes(1);
    // The data plane's session settings (DateStyle, TimeZone, float digits, bytea_output), as its walsender has them.
    c = await connectClient(nodes[0]!.dsn, "text-decoding-test");
    await c.query(`CREATE SCHEMA "we.ird"`);
    await c.query(`CREATE DOMAIN "we.ird".posint AS integer CHECK (VALUE > 0)`);
    await c.query(`CREATE TYPE "we.ird"."my]:type" AS ENUM ('x y', 'it''s')`);
    await c.query(
      `CREATE TABLE ${T} (id int PRIMARY KEY, "col [x]:" text, "select" text, n numeric, big int8, f float8, r real, b bool,
        bits bit(4), vb varbit, by bytea, ts timestamptz, d date, iv interval, j jsonb, arr int[], tarr text[], nul text,
        q text, u uuid, o oid, dom "we.ird".posint, e "we.ird"."my]:type", long text, g int GENERATED ALWAYS AS (id * 2) STORED)`,
    );
    await c.query(`ALTER TABLE ${T} ALTER COLUMN long SET STORAGE EXTERNAL`);
    await c.query(`CREATE TABLE "we.ird".other (k text PRIMARY KEY)`);
    await c.query("SELECT pg_create_logical_replication_slot('td', 'test_decoding')");
  });

  after(async () => {
    await c?.end().catch(() => undefined);
    await teardown(nodes);
  });

  /** The slot's new lines, each with the LSN its message starts at. */
  async function changes(): Promise<{ lsn: string; data: string }[]> {
    return (await c.query<{ lsn: string; data: string }>(`SELECT lsn::text, data FROM pg_logical_slot_get_changes('td', NULL, NULL, ${OPTIONS})`)).rows;
  }

  function assemble(lines: { lsn: string; data: string }[], asm = new TextTransactionAssembler()): Assembled[] {
    return lines.flatMap((l) => {
      const a = asm.push(l.data, l.lsn);
      return a ? [a] : [];
    });
  }

  async function rowText(id: number): Promise<string[]> {
    const r = await c.query<Record<string, string | null>>({ text: `SELECT ${COLUMNS.map((col, i) => `CASE WHEN ${col} IS NOT NULL THEN format('%s', ${col}) END AS c${i}`).join(", ")} FROM ${T} WHERE id = $1`, values: [id] });
    const row = r.rows[0]!;
    return COLUMNS.map((_, i) => row[`c${i}`] as string);
  }

  test("an insert's values are each column's text exactly; the commit time is the commit timestamp, to the microsecond", async () => {
    await c.query(
      `INSERT INTO ${T} VALUES (1, 'it''s "odd" \\ [x]: y', 'null', 12345678901234567890.123456789, 9007199254740993, 0.1, 3.4028235e+38, true,
        B'1010', B'1', '\\x00ff27', '2026-12-07 10:00:00.123456+05:30', '2026-02-28', '1 day 02:03:04.5', '{"a": [1, "x y"]}',
        '{1,NULL,3}', '{"a b","c\\"d",NULL}', NULL, E'line1\\nline2\\ttab '' end', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 4294967295, 7, 'it''s',
        repeat('z', 5000))`,
    );
    const lines = await changes();
    const [a] = assemble(lines);
    assert.equal(a?.kind, "apply");
    const tx = (a as { tx: RemoteTransaction }).tx;
    const ch = tx.changes[0]!;
    assert.equal(ch.kind, "insert");
    assert.deepEqual(
      ch.rel.columns.map((col) => col.name),
      COLUMNS.map((col) => col.replace(/^"(.*)"$/, "$1")),
      "every column, the generated one included (the applier's session leaves it out)",
    );
    assert.deepEqual(ch.kind === "insert" ? ch.new : null, await rowText(1));
    const ts = await c.query<{ us: string; x: string }>(`SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us, xmin::text AS x FROM ${T} WHERE id = 1`);
    assert.equal(tx.commitTime, BigInt(ts.rows[0]!.us));
    assert.equal(tx.xid, Number(ts.rows[0]!.x));
    assert.equal(tx.endLsn, parseLsn(lines.at(-1)!.lsn), "the COMMIT line's position");
    assert.ok(tx.endLsn > parseLsn(lines[0]!.lsn));
  });

  test("updates: unchanged TOAST left out, a changed key carries the old key, NULLs and booleans as pgoutput's text; deletes by key", async () => {
    await c.query(`UPDATE ${T} SET nul = 'now set', b = false WHERE id = 1`);
    await c.query(`UPDATE ${T} SET id = 2 WHERE id = 1`);
    await c.query(`DELETE FROM ${T} WHERE id = 2`);
    const [u1, u2, del] = assemble(await changes()).map((a) => (a as { tx: RemoteTransaction }).tx.changes[0]!);
    assert.equal(u1?.kind, "update");
    if (u1?.kind !== "update" || u2?.kind !== "update" || del?.kind !== "delete") throw new Error("unexpected change kinds");
    const long = COLUMNS.indexOf("long");
    assert.equal(u1.new[long], undefined, "the unchanged TOASTed value is not sent");
    assert.equal(u1.old, null);
    assert.equal(u1.new[COLUMNS.indexOf("nul")], "now set");
    assert.equal(u1.new[COLUMNS.indexOf("b")], "f");
    assert.equal(u2.old?.[0], "1", "the old key");
    assert.equal(u2.old?.[1], null, "columns outside the key: NULL, as pgoutput's key tuple");
    assert.equal(u2.new[0], "2");
    assert.equal(del.rel, u2.rel, "a delete is placed in the table's full column list");
    assert.deepEqual(del.old.filter((v) => v !== null), ["2"]);
  });

  test("a table first met through a delete gets the columns it printed; TRUNCATE of several tables with its flags", async () => {
    await c.query(`INSERT INTO "we.ird".other VALUES ('k1')`);
    await changes(); // consumed: a fresh assembler below has not seen it
    await c.query(`DELETE FROM "we.ird".other WHERE k = 'k1'`);
    await c.query(`TRUNCATE ${T}, "we.ird".other RESTART IDENTITY CASCADE`);
    const [del, tr] = assemble(await changes()).map((a) => (a as { tx: RemoteTransaction }).tx.changes[0]!);
    assert.equal(del?.kind, "delete");
    if (del?.kind !== "delete") return;
    assert.deepEqual(del.rel.columns.map((col) => col.name), ["k"]);
    assert.deepEqual(del.old, ["k1"]);
    assert.deepEqual(tr, { kind: "truncate", rels: tr?.kind === "truncate" ? tr.rels : [], cascade: true, restartIdentity: true });
    assert.deepEqual(tr?.kind === "truncate" ? tr.rels.map((r) => `${r.schema}.${r.name}`) : [], ["we.ird.t: a, b", "we.ird.other"]);
  });

  test("transactions under a replication origin never leave the server (only-local); pgraft's own tables and messages are skipped", async () => {
    await c.query("SELECT pg_replication_origin_create('elsewhere')");
    await c.query("SELECT pg_replication_origin_session_setup('elsewhere')");
    await c.query(`INSERT INTO "we.ird".other VALUES ('from elsewhere')`);
    await c.query("SELECT pg_replication_origin_session_reset()");
    await c.query("CREATE SCHEMA IF NOT EXISTS pgraft");
    await c.query("CREATE TABLE pgraft.scratch (k int)");
    await c.query("INSERT INTO pgraft.scratch VALUES (1)");
    await c.query("SELECT pg_logical_emit_message(true, 'p', 'hello')");
    await c.query(`INSERT INTO "we.ird".other VALUES ('local')`);
    const lines = await changes();
    assert.ok(!lines.some((l) => l.data.includes("from elsewhere")), JSON.stringify(lines));
    const out = assemble(lines);
    // The insert into pgraft's table: a transaction with nothing to apply. (A transactional message alone opens no
    // transaction with skip-empty-xacts: its line comes bare, and is skipped.)
    assert.ok(lines.some((l) => l.data.startsWith("message: transactional: 1 prefix: p")));
    assert.deepEqual(
      out.map((a) => a.kind),
      ["skip", "apply"],
    );
    const last = out[1] as { tx: RemoteTransaction };
    assert.deepEqual(last.tx.changes.map((ch) => (ch.kind === "insert" ? ch.new : null)), [["local"]]);
  });

  test("a DELETE of a table the session's catalog read listed is placed among all its columns: those it left out are NULL", () => {
    const asm = new TextTransactionAssembler({ tables: [{ schema: "public", name: "nopk", columns: ["a", "b", "c"] }] });
    asm.push("BEGIN 7", "0/1");
    asm.push("table public.nopk: DELETE: a[integer]:1 c[text]:'x'", "0/2");
    const out = asm.push("COMMIT 7 (at 2026-12-07 10:00:00+00)", "0/3");
    const del = out?.kind === "apply" ? out.tx.changes[0] : undefined;
    assert.equal(del?.kind, "delete");
    if (del?.kind !== "delete") return;
    assert.deepEqual(del.rel.columns.map((col) => col.name), ["a", "b", "c"]);
    assert.deepEqual(del.old, ["1", null, "x"]);
    assert.equal(out?.kind === "apply" ? out.tx.endLsn : 0n, 3n);
  });

  test("a line it does not know stops the stream with the line in the error (never misread)", () => {
    const asm = new TextTransactionAssembler();
    assert.throws(() => asm.push("table public.t: INSERT: id[integer]:1", "0/10"), /change outside a transaction/);
    asm.push("BEGIN 5", "0/10");
    assert.throws(() => asm.push("table public.t: UPSERT: id[integer]:1", "0/11"), /expected INSERT:, UPDATE:, DELETE: or TRUNCATE:.*UPSERT/);
    assert.throws(() => asm.push("table public.t: INSERT: v[text]:'unterminated", "0/12"), /unterminated '-quoted text/);
    assert.throws(() => asm.push("COMMIT 5", "0/13"), /COMMIT <xid> \(at <time>\)/);
    assert.throws(() => parseTextDecodingLine("streaming change for TXN 5"), /expected "table "/);
  });

  test("commit times: any ISO offset, fractions of any length, to the microsecond", () => {
    assert.equal(parseIsoTimestamptz("2000-01-01 00:00:00+00"), 946684800000000n);
    assert.equal(parseIsoTimestamptz("2026-12-07 10:00:00.5+00"), 1796637600500000n);
    assert.equal(parseIsoTimestamptz("2026-12-07 15:30:00.000001+05:30"), 1796637600000001n);
    assert.equal(parseIsoTimestamptz("2026-12-07 06:59:59.999999-03:00:01"), 1796637599999999n + 1_000_000n);
    assert.throws(() => parseIsoTimestamptz("Mon Dec 07 10:00:00 2026 UTC"), /not an ISO timestamptz/);
  });
});
