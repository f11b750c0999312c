// The node slots' decoder on PostgreSQL 15: contrib's test_decoding with
// `only-local`, read into the same RemoteTransactions as pgoutput's.
//
// Why not pgoutput for the peers' streams: PostgreSQL 15's pgoutput has no
// origin filter (`origin = none` is PG16+), so every transaction a node
// applied from elsewhere is decoded again by each of its walsenders, sent to
// every peer and skipped there. Measured on the one-way backlog
// (bench/replication): that echo cost B's walsender and A's sidecar about a
// third of all the CPU the apply took. test_decoding's `only-local` is a
// filter_by_origin callback: logical decoding drops such a transaction's
// records before they reach the reorder buffer, and nothing of it is sent.
// test_decoding ships with PostgreSQL (contrib, in Debian's postgresql-15 and
// the official images); where it is missing, node slots fall back to pgoutput
// (node-slot-plugin.ts) and the receiver reads whichever its slot has.
//
// The text format (contrib/test_decoding/test_decoding.c), one line per
// replication message, with include-xids, include-timestamp, skip-empty-xacts:
//   BEGIN 731
//   table public.t: INSERT: id[integer]:1 v[text]:'it''s' n[numeric]:1.50 b[boolean]:true
//   table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 v[text]:null
//   table public.t: DELETE: id[integer]:2
//   table public.a, public.b: TRUNCATE: restart_seqs cascade
//   COMMIT 731 (at 2026-12-07 09:00:00.123456+00)
// Names are quote_identifier's (double quotes when needed); values are the
// type's output in the walsender's session (connection.ts fixes DateStyle,
// TimeZone, extra_float_digits, bytea_output as for pgoutput), quoted with ''
// doubled except numbers (bare), booleans (true/false: made t/f, pgoutput's
// text), bit strings (B'…': the bits), `null` and `unchanged-toast-datum`.
// Old tuples (old-key, DELETE) leave their NULL columns out, so a column not
// printed there is NULL, as pgoutput sends it. The COMMIT line's message
// starts at the commit record's end LSN (logical decoding's write location
// for a commit), the position to confirm; the commit record's own start is
// not sent, so a transaction's commitLsn is that end too (only the conflict
// history shows it).
//
// Two differences from pgoutput: test_decoding has no Relation messages, so
// a table's columns are those its new rows print, or the peer's catalog said
// at the session's start (a DELETE's or old key's columns are placed by name
// among them; a table met first through a DELETE and created since gets the
// columns printed); and it prints stored generated columns, which pgoutput
// leaves out: the applier's session leaves out the columns generated here
// (session.ts), since they cannot be written.
import { TestDecodingPlugin } from "pg-logical-replication";
import type pg from "pg";
import { LOCAL_SCHEMAS, type Assembled } from "./decoder.js";
import { parseLsn } from "./lsn.js";
import type { Change, RelationDesc, Value } from "./types.js";

export const TEXT_DECODING_PLUGIN = "test_decoding";

/** START_REPLICATION options: every line this decoder reads needs them. */
const START_OPTIONS = `("include-xids" '1', "include-timestamp" '1', "skip-empty-xacts" '1', "only-local" '1')`;

/**
 * The library's test_decoding plugin with the options this decoder needs
 * (only-local above all) and each message handed on as its text: the
 * library's own grammar knows no UPDATE old keys, TRUNCATE or bit strings.
 */
export class TextDecodingPlugin extends TestDecodingPlugin {
  override start(client: pg.Client, slotName: string, lastLsn: string): Promise<unknown> {
    return client.query(`START_REPLICATION SLOT "${slotName.replace(/"/g, '""')}" LOGICAL ${lastLsn} ${START_OPTIONS}`);
  }

  override parse(buffer: Buffer): string {
    return buffer.toString("utf8");
  }
}

/** One parsed `table …:` line. */
interface ParsedColumn {
  name: string;
  value: Value;
}

export type ParsedLine =
  | { kind: "begin"; xid: number }
  | { kind: "commit"; xid: number; commitTime: bigint; commitTimeText: string }
  | { kind: "row"; action: "INSERT" | "UPDATE" | "DELETE"; schema: string; name: string; old: ParsedColumn[] | null; new: ParsedColumn[] | null }
  | { kind: "truncate"; tables: { schema: string; name: string }[]; cascade: boolean; restartIdentity: boolean }
  | { kind: "message" };

/** A cursor over one line; every read either advances past what it read or throws naming the line. */
class Reader {
  pos = 0;
  constructor(readonly s: string) {}

  fail(what: string): never {
    const near = this.s.slice(Math.max(0, this.pos - 20), this.pos + 40);
    throw new Error(`test_decoding: ${what} at offset ${this.pos} of ${JSON.stringify(this.s.length > 200 ? `${this.s.slice(0, 200)}…` : this.s)} (near ${JSON.stringify(near)})`);
  }

  expect(lit: string): void {
    if (!this.s.startsWith(lit, this.pos)) this.fail(`expected ${JSON.stringify(lit)}`);
    this.pos += lit.length;
  }

  take(lit: string): boolean {
    if (!this.s.startsWith(lit, this.pos)) return false;
    this.pos += lit.length;
    return true;
  }

  get done(): boolean {
    return this.pos >= this.s.length;
  }

  /** A quote_identifier'd name, ending before any of `stops` (unquoted) or after its closing quote. */
  ident(stops: string): string {
    if (this.s[this.pos] === '"') return this.quoted('"');
    const start = this.pos;
    while (this.pos < this.s.length && !stops.includes(this.s[this.pos]!)) this.pos++;
    if (this.pos === start) this.fail("expected a name");
    return this.s.slice(start, this.pos);
  }

  /** A literal between `q` quotes, the quote doubled inside. */
  quoted(q: string): string {
    this.expect(q);
    let out = "";
    for (;;) {
      const end = this.s.indexOf(q, this.pos);
      if (end < 0) this.fail(`unterminated ${q}-quoted text`);
      out += this.s.slice(this.pos, end);
      this.pos = end + 1;
      if (this.s[this.pos] !== q) return out;
      out += q;
      this.pos++;
    }
  }

  /** format_type_be's text between `[` and the `]` followed by `:` (type names may hold [] and quoted names). */
  typeName(): void {
    this.expect("[");
    let inQuote = false;
    for (; this.pos < this.s.length; this.pos++) {
      const c = this.s[this.pos];
      if (c === '"') inQuote = !inQuote;
      else if (!inQuote && c === "]" && this.s[this.pos + 1] === ":") {
        this.pos += 2;
        return;
      }
    }
    this.fail("unterminated column type");
  }

  value(): Value {
    const c = this.s[this.pos];
    if (c === "'") return this.quoted("'");
    if (c === "B" && this.s[this.pos + 1] === "'") {
      this.pos++;
      return this.quoted("'");
    }
    const start = this.pos;
    while (this.pos < this.s.length && this.s[this.pos] !== " ") this.pos++;
    const tok = this.s.slice(start, this.pos);
    if (tok === "null") return null;
    if (tok === "unchanged-toast-datum") return undefined;
    if (tok === "true") return "t";
    if (tok === "false") return "f";
    if (tok === "") this.fail("expected a value");
    return tok; // a number (integer, float, numeric, oid: NaN and Infinity included)
  }

  /** ` name[type]:value` repeated, until the end or a ` ` followed by `stop`. */
  tuple(stop?: string): ParsedColumn[] {
    const cols: ParsedColumn[] = [];
    while (!this.done && !(stop && this.s.startsWith(` ${stop}`, this.pos))) {
      this.expect(" ");
      const name = this.ident("[");
      this.typeName();
      cols.push({ name, value: this.value() });
    }
    return cols;
  }

  qualifiedName(stops: string): { schema: string; name: string } {
    const schema = this.ident(".");
    this.expect(".");
    return { schema, name: this.ident(stops) };
  }
}

/** `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]]` (timestamptz_to_str: ISO whatever DateStyle, in the walsender's TimeZone) → microseconds since the Unix epoch. */
export function parseIsoTimestamptz(s: string): bigint {
  const m = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/.exec(s);
  if (!m) throw new Error(`test_decoding: not an ISO timestamptz: ${JSON.stringify(s)}`);
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  const frac = BigInt((m[7] ?? "").padEnd(6, "0"));
  const offsetSeconds = (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0)) * (m[8] === "-" ? -1 : 1);
  return (BigInt(ms) / 1000n - BigInt(offsetSeconds)) * 1_000_000n + frac;
}

/** One line of test_decoding's output, parsed (throws on anything it does not recognise: better stopped than misread). */
export function parseTextDecodingLine(line: string): ParsedLine {
  const r: Reader = new Reader(line);
  if (r.take("BEGIN ")) return { kind: "begin", xid: Number(line.slice(r.pos)) };
  if (r.take("COMMIT ")) {
    const m = /^(\d+) \(at (.+)\)$/.exec(line.slice(r.pos));
    if (!m) r.fail("expected COMMIT <xid> (at <time>)");
    return { kind: "commit", xid: Number(m[1]), commitTime: parseIsoTimestamptz(m[2]!), commitTimeText: m[2]! };
  }
  if (line.startsWith("message: ")) return { kind: "message" };
  r.expect("table ");
  const first = r.qualifiedName(":,");
  if (line.startsWith(", ", r.pos) || line.startsWith(": TRUNCATE:", r.pos)) {
    const tables = [first];
    while (r.take(", ")) tables.push(r.qualifiedName(":,"));
    r.expect(": TRUNCATE:");
    const flags = line.slice(r.pos).trim().split(" ");
    return { kind: "truncate", tables, restartIdentity: flags.includes("restart_seqs"), cascade: flags.includes("cascade") };
  }
  r.expect(": ");
  const action = (["INSERT", "UPDATE", "DELETE"] as const).find((a) => r.take(`${a}:`));
  if (!action) r.fail("expected INSERT:, UPDATE:, DELETE: or TRUNCATE:");
  if (r.take(" (no-tuple-data)")) return { kind: "row", action, ...first, old: null, new: null };
  if (action === "DELETE") return { kind: "row", action, ...first, old: r.tuple(), new: null };
  let old: ParsedColumn[] | null = null;
  if (r.take(" old-key:")) {
    old = r.tuple("new-tuple:");
    r.expect(" new-tuple:");
  }
  return { kind: "row", action, ...first, old, new: r.tuple() };
}

export interface TextAssemblerOptions {
  /**
   * The peer's tables and their columns when the
   * session began: a DELETE, which prints only the key (or the non-NULL
   * columns, REPLICA IDENTITY FULL), is placed among all of them, so a column
   * it leaves out is known to be NULL even when no row of the table came first.
   */
  tables?: { schema: string; name: string; columns: string[] }[];
}

/** Groups test_decoding's lines into transactions, as TransactionAssembler does pgoutput's messages. */
export class TextTransactionAssembler {
  /** Each table's columns as its rows last printed them (key: schema + NUL + name), interned per column list. */
  private readonly tables = new Map<string, RelationDesc>();
  private readonly descs = new Map<string, RelationDesc>();
  private current: { xid: number; changes: Change[] } | undefined;
  constructor(o: TextAssemblerOptions = {}) {
    for (const t of o.tables ?? []) this.desc(t, t.columns);
  }

  get inTransaction(): boolean {
    return this.current !== undefined;
  }

  /** Only transactions that began on the peer reach us (only-local). */
  wanted(origin: string | undefined): boolean {
    return origin === undefined;
  }

  reset(): void {
    this.current = undefined;
  }

  /** Feed one message (its text, and where the walsender said it starts); returns a transaction at its COMMIT. */
  push(line: string, lsn: string): Assembled | undefined {
    const p = parseTextDecodingLine(line);
    switch (p.kind) {
      case "begin":
        this.current = { xid: p.xid, changes: [] };
        return undefined;
      case "message":
        return undefined;
      case "commit": {
        const cur = this.current;
        this.current = undefined;
        if (!cur) throw new Error(`test_decoding: COMMIT ${p.xid} at ${lsn} without a BEGIN`);
        const endLsn = parseLsn(lsn);
        if (cur.changes.length === 0) return { kind: "skip", endLsn, reason: "empty", commitTime: p.commitTime };
        return { kind: "apply", tx: { xid: cur.xid, commitLsn: endLsn, endLsn, commitTime: p.commitTime, commitTimeText: p.commitTimeText, changes: cur.changes } };
      }
      case "truncate": {
        const cur = this.inside(line);
        const rels = p.tables.filter((t) => !LOCAL_SCHEMAS.has(t.schema)).map((t) => this.tables.get(key(t)) ?? this.desc(t, []));
        if (rels.length) cur.changes.push({ kind: "truncate", rels, cascade: p.cascade, restartIdentity: p.restartIdentity });
        return undefined;
      }
      case "row": {
        const cur = this.inside(line);
        if (LOCAL_SCHEMAS.has(p.schema)) return undefined;
        if (p.action === "DELETE") {
          if (!p.old) throw new Error(`test_decoding: delete on ${p.schema}.${p.name} without key or old row (REPLICA IDENTITY NOTHING on the peer?)`);
          const rel = this.known(p, p.old);
          cur.changes.push({ kind: "delete", rel, old: place(rel, p.old) });
          return undefined;
        }
        if (!p.new) throw new Error(`test_decoding: ${p.action.toLowerCase()} on ${p.schema}.${p.name} without its new row`);
        const rel = this.desc(p, names(p.new));
        const row = place(rel, p.new);
        if (p.action === "INSERT") cur.changes.push({ kind: "insert", rel, new: row });
        else cur.changes.push({ kind: "update", rel, old: p.old ? place(rel, p.old) : null, new: row });
        return undefined;
      }
    }
  }

  private inside(line: string): { xid: number; changes: Change[] } {
    if (!this.current) throw new Error(`test_decoding: change outside a transaction: ${line.slice(0, 200)}`);
    return this.current;
  }

  /** The table's full column list when its rows were seen and hold every column printed here; else these columns. */
  private known(t: { schema: string; name: string }, cols: ParsedColumn[]): RelationDesc {
    const full = this.tables.get(key(t));
    if (full && cols.every((c) => full.columns.some((fc) => fc.name === c.name))) return full;
    return this.desc(t, names(cols), false);
  }

  /** The one RelationDesc of this table with these columns (a new one after an ALTER TABLE, as a new Relation message). */
  private desc(t: { schema: string; name: string }, names: string[], full = true): RelationDesc {
    const tk = key(t);
    // Nearly always the table's last full column list: compared in place, no key built per row.
    const last = this.tables.get(tk);
    if (full && last && sameNames(last, names)) return last;
    const k = `${tk}\0${names.join("\0")}`;
    let d = this.descs.get(k);
    if (!d) {
      d = { oid: 0, schema: t.schema, name: t.name, columns: names.map((name) => ({ name, typeOid: 0 })), replicaIdentity: "default" };
      this.descs.set(k, d);
    }
    if (full && names.length) this.tables.set(tk, d);
    return d;
  }
}

function sameNames(d: RelationDesc, names: string[]): boolean {
  if (d.columns.length !== names.length) return false;
  for (let i = 0; i < names.length; i++) if (d.columns[i]!.name !== names[i]) return false;
  return true;
}

const key = (t: { schema: string; name: string }): string => `${t.schema}\0${t.name}`;

const names = (cols: ParsedColumn[]): string[] => cols.map((c) => c.name);

/** Each RelationDesc's column positions by name. */
const positions = new WeakMap<RelationDesc, Map<string, number>>();

/** Values in `rel`'s column order: a column the line did not print is NULL (old tuples leave NULLs out). */
function place(rel: RelationDesc, cols: ParsedColumn[]): Value[] {
  let at = positions.get(rel);
  if (!at) positions.set(rel, (at = new Map(rel.columns.map((c, i) => [c.name, i]))));
  const out: Value[] = rel.columns.map(() => null);
  for (const c of cols) {
    const i = at.get(c.name);
    if (i !== undefined) out[i] = c.value;
  }
  return out;
}
