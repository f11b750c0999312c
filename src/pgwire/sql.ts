// The little SQL this module must understand itself: where the $n parameter
// placeholders are (to bind extended-protocol parameters as literals), and the
// `SET client_encoding` that libpq's PQsetClientEncoding sends (dblink runs it
// on every connect), which is about the wire, not about the handler.
import { PgWireError, SqlState } from "./errors.js";
import type { QueryResult } from "./types.js";

/** Statement text cut at its placeholders: text, parameter number (1-based), text, ... */
export type SqlTemplate = (string | number)[];

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uFFFF]/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uFFFF][A-Za-z0-9_\u0080-\uFFFF]*)?\$/;

/**
 * Finds $n placeholders outside string literals ('...', E'...', $tag$...$tag$),
 * quoted identifiers and comments, following PostgreSQL's lexer closely enough
 * that a $1 inside a literal is never replaced. Unterminated constructs simply
 * run to the end: the handler reports the syntax error.
 */
export function parsePlaceholders(sql: string): SqlTemplate {
  const parts: SqlTemplate = [];
  let from = 0;
  let i = 0;
  const n = sql.length;
  const identBefore = (k: number): boolean => k > 0 && IDENT_CHAR.test(sql[k - 1]!);
  while (i < n) {
    const c = sql[i]!;
    if (c === "'") {
      // E'...' (escape string): backslash quotes the next character.
      const escape = i > 0 && (sql[i - 1] === "E" || sql[i - 1] === "e") && !identBefore(i - 1);
      i++;
      while (i < n) {
        if (escape && sql[i] === "\\") i += 2;
        else if (sql[i] === "'") {
          if (sql[i + 1] === "'") i += 2;
          else break;
        } else i++;
      }
      i++;
    } else if (c === '"') {
      i = sql.indexOf('"', i + 1);
      while (i >= 0 && sql[i + 1] === '"') i = sql.indexOf('"', i + 2);
      i = i < 0 ? n : i + 1;
    } else if (c === "-" && sql[i + 1] === "-") {
      const eol = sql.indexOf("\n", i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      // Comments nest in PostgreSQL.
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === "/" && sql[i + 1] === "*") {
          depth++;
          i += 2;
        } else if (sql[i] === "*" && sql[i + 1] === "/") {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "$" && !identBefore(i)) {
      const digits = /^\$(\d+)/.exec(sql.slice(i, i + 12));
      if (digits) {
        parts.push(sql.slice(from, i), Number(digits[1]));
        i += digits[0].length;
        from = i;
        continue;
      }
      const tag = DOLLAR_TAG.exec(sql.slice(i, i + 256));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
      } else i++;
    } else i++;
  }
  parts.push(sql.slice(from));
  return parts;
}

/** Highest placeholder number used (0 for none). */
export function placeholderCount(t: SqlTemplate): number {
  let max = 0;
  for (const p of t) if (typeof p === "number" && p > max) max = p;
  return max;
}

/**
 * A standard SQL string literal. With standard_conforming_strings on (which we
 * report to every client) a backslash is an ordinary character, so doubling the
 * single quotes is the whole of the quoting.
 */
export function quoteLiteral(value: string): string {
  if (value.includes("\0")) {
    throw new PgWireError({ code: SqlState.characterNotInRepertoire, message: 'invalid byte sequence for encoding "UTF8": 0x00' });
  }
  return `'${value.replaceAll("'", "''")}'`;
}

/** The statement with each $n replaced by its value as a literal (NULL for null). */
export function bindTemplate(t: SqlTemplate, values: readonly (string | null)[]): string {
  let out = "";
  for (const p of t) {
    if (typeof p === "string") out += p;
    else {
      if (p < 1 || p > values.length) {
        throw new PgWireError({ code: SqlState.undefinedParameter, message: `there is no parameter $${p}` });
      }
      const v = values[p - 1]!;
      out += v === null ? "NULL" : quoteLiteral(v);
    }
  }
  return out;
}

const SET_ENCODING =
  /^\s*(?:set\s+(?:session\s+)?(?:client_encoding\s*(?:to|=)|names)\s*(?:'([^']*)'|"([^"]*)"|([A-Za-z0-9_-]+))|reset\s+client_encoding)\s*;?\s*$/i;

/**
 * Answers `SET client_encoding ...` / `SET NAMES ...` / `RESET client_encoding`
 * itself: this endpoint only speaks UTF8, so UTF8 (or DEFAULT) is accepted and
 * anything else refused. Undefined for every other statement.
 */
export function clientEncodingCommand(sql: string): QueryResult[] | undefined {
  const m = SET_ENCODING.exec(sql);
  if (!m) return undefined;
  const value = m[1] ?? m[2] ?? m[3];
  const norm = (value ?? "default").toLowerCase().replace(/[-_]/g, "");
  if (norm !== "utf8" && norm !== "unicode" && norm !== "default") {
    throw new PgWireError({
      code: SqlState.invalidParameterValue,
      message: `invalid value for parameter "client_encoding": "${value}"`,
      detail: "This endpoint only speaks UTF8.",
    });
  }
  return [{ command: m[0].trim().toLowerCase().startsWith("reset") ? "RESET" : "SET" }];
}
