// The SQL the wire endpoint understands: one function call with literal
// arguments, as the shim sends it and as a person types it into psql pointed at
// the endpoint:
//
//   SELECT * FROM pgraft_get_nodes();
//   SELECT pgraft_kv_put('k', '{"a": 1}'::jsonb);
//   pgraft_set_config(E'heartbeat_interval', '75ms')
//
// Arguments are literals only ('text' with '' escapes, E'...' with backslash
// escapes, numbers, true/false, NULL, each optionally ::cast). Anything else is
// a syntax error that says what is accepted.

export interface ParsedCall {
  /** The function name, lower-cased, without a schema. */
  name: string;
  /** Each argument as text (booleans as "true"/"false"), or null for NULL. */
  args: (string | null)[];
  /** True for `SELECT * FROM f(...)`, false for `SELECT f(...)` or a bare call. */
  star: boolean;
}

export class CallSyntaxError extends Error {}

const ACCEPTED = "the pgraft endpoint runs one function call with literal arguments, e.g. SELECT * FROM pgraft_get_nodes() or SELECT pgraft_kv_get('key')";

class Scanner {
  pos = 0;
  constructor(readonly s: string) {}

  skipSpace(): void {
    for (;;) {
      while (this.pos < this.s.length && /\s/.test(this.s[this.pos]!)) this.pos++;
      if (this.s.startsWith("--", this.pos)) {
        const nl = this.s.indexOf("\n", this.pos);
        this.pos = nl < 0 ? this.s.length : nl + 1;
        continue;
      }
      if (this.s.startsWith("/*", this.pos)) {
        const end = this.s.indexOf("*/", this.pos + 2);
        if (end < 0) throw new CallSyntaxError("unterminated /* comment");
        this.pos = end + 2;
        continue;
      }
      return;
    }
  }

  /** Consumes `word` (case-insensitive, as a whole word) if it comes next. */
  keyword(word: string): boolean {
    this.skipSpace();
    const next = this.s.slice(this.pos, this.pos + word.length);
    const after = this.s[this.pos + word.length];
    if (next.toLowerCase() === word && (after === undefined || !/[\w$]/.test(after))) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  char(c: string): boolean {
    this.skipSpace();
    if (this.s[this.pos] === c) {
      this.pos++;
      return true;
    }
    return false;
  }

  expect(c: string, what: string): void {
    if (!this.char(c)) throw new CallSyntaxError(`expected ${what} at position ${this.pos + 1}`);
  }

  identifier(): string | undefined {
    this.skipSpace();
    if (this.s[this.pos] === '"') {
      const end = this.s.indexOf('"', this.pos + 1);
      if (end < 0) throw new CallSyntaxError("unterminated quoted identifier");
      const id = this.s.slice(this.pos + 1, end);
      this.pos = end + 1;
      return id;
    }
    const m = /^[A-Za-z_][\w$]*/.exec(this.s.slice(this.pos));
    if (!m) return undefined;
    this.pos += m[0].length;
    return m[0].toLowerCase();
  }

  atEnd(): boolean {
    this.skipSpace();
    return this.pos >= this.s.length;
  }
}

function quoted(sc: Scanner, escapes: boolean): string {
  // sc.pos is at the opening quote
  let out = "";
  let i = sc.pos + 1;
  const s = sc.s;
  for (;;) {
    if (i >= s.length) throw new CallSyntaxError("unterminated quoted string");
    const c = s[i]!;
    if (c === "'") {
      if (s[i + 1] === "'") {
        out += "'";
        i += 2;
        continue;
      }
      sc.pos = i + 1;
      return out;
    }
    if (escapes && c === "\\") {
      const n = s[i + 1];
      if (n === undefined) throw new CallSyntaxError("unterminated quoted string");
      const simple: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (simple[n] !== undefined) {
        out += simple[n];
        i += 2;
        continue;
      }
      const oct = /^[0-7]{1,3}/.exec(s.slice(i + 1));
      if (oct) {
        out += String.fromCharCode(parseInt(oct[0], 8));
        i += 1 + oct[0].length;
        continue;
      }
      const hex = /^x([0-9A-Fa-f]{1,2})/.exec(s.slice(i + 1));
      if (hex) {
        out += String.fromCharCode(parseInt(hex[1]!, 16));
        i += 1 + hex[0].length;
        continue;
      }
      const uni = /^(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))/.exec(s.slice(i + 1));
      if (uni) {
        out += String.fromCodePoint(parseInt((uni[1] ?? uni[2])!, 16));
        i += 1 + uni[0].length;
        continue;
      }
      out += n;
      i += 2;
      continue;
    }
    out += c;
    i++;
  }
}

function literal(sc: Scanner): string | null {
  sc.skipSpace();
  const s = sc.s;
  let value: string | null;
  if (s[sc.pos] === "'") value = quoted(sc, false);
  else if ((s[sc.pos] === "E" || s[sc.pos] === "e") && s[sc.pos + 1] === "'") {
    sc.pos++;
    value = quoted(sc, true);
  } else if (sc.keyword("null")) value = null;
  else if (sc.keyword("true")) value = "true";
  else if (sc.keyword("false")) value = "false";
  else {
    const m = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/.exec(s.slice(sc.pos));
    if (!m) throw new CallSyntaxError(`expected a literal argument at position ${sc.pos + 1}; ${ACCEPTED}`);
    sc.pos += m[0].length;
    value = m[0];
  }
  // An optional cast (ignored: the function's argument types decide).
  while (sc.s.startsWith("::", (sc.skipSpace(), sc.pos))) {
    sc.pos += 2;
    if (!sc.identifier()) throw new CallSyntaxError(`expected a type name after :: at position ${sc.pos + 1}`);
    if (sc.keyword("precision")) continue;
  }
  return value;
}

/** Parses one call; throws CallSyntaxError with what went wrong and what is accepted. */
export function parseCall(sql: string): ParsedCall {
  const sc = new Scanner(sql);
  let star = false;
  if (sc.keyword("select")) {
    if (sc.char("*")) {
      if (!sc.keyword("from")) throw new CallSyntaxError(`expected FROM after SELECT *; ${ACCEPTED}`);
      star = true;
    }
  }
  let name = sc.identifier();
  if (!name) throw new CallSyntaxError(`expected a function name; ${ACCEPTED}`);
  if (sc.char(".")) {
    const n2 = sc.identifier();
    if (!n2) throw new CallSyntaxError("expected a function name after the schema");
    name = n2;
  }
  sc.expect("(", `"(" after ${name}`);
  const args: (string | null)[] = [];
  if (!sc.char(")")) {
    for (;;) {
      args.push(literal(sc));
      if (sc.char(")")) break;
      sc.expect(",", `"," or ")" in the arguments of ${name}`);
    }
  }
  // An alias for the result is harmless (SELECT f() AS x / FROM f() t).
  if (sc.keyword("as")) sc.identifier();
  else if (!sc.atEnd() && sc.s[sc.pos] !== ";") sc.identifier();
  sc.char(";");
  if (!sc.atEnd()) throw new CallSyntaxError(`unexpected text after the call at position ${sc.pos + 1}; ${ACCEPTED}`);
  return { name, args, star };
}
