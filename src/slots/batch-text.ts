// The text of the applier's batches: each statement is `EXECUTE name(args)`
// of a statement prepared once per connection, its arguments written as SQL
// literals. One simple-protocol Query then carries many whole transactions
// (BEGIN … COMMIT each), so the server parses a few bytes per statement and
// the client pays for one query instead of one per transaction.
//
// Literals are exact: a value is the text pgoutput sent; in a literal it is an
// untyped string that PostgreSQL passes to the parameter type's input
// function, as it would a text parameter (standard_conforming_strings is on
// in the applier's session, so only the quote needs doubling).
import type { Value } from "./types.js";

export function literal(v: string | null): string {
  return v === null ? "NULL" : `'${v.replace(/'/g, "''")}'`;
}

/** A text[] argument (the multi-row INSERT's columns). */
export function arrayLiteral(vs: Value[]): string {
  return `ARRAY[${vs.map((v) => literal(v ?? null)).join(",")}]::text[]`;
}

export function executeSql(name: string, args: string[]): string {
  return args.length ? `EXECUTE ${name}(${args.join(",")});` : `EXECUTE ${name};`;
}
