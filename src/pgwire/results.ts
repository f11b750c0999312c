// Turning a handler's results into RowDescription / DataRow / CommandComplete.
// Results are checked whole before the first byte is sent: a malformed result
// found halfway through would leave the client with half a result set.
import { PgWireError, SqlState } from "./errors.js";
import { commandComplete, dataRow, rowDescription } from "./messages.js";
import type { Output } from "./output.js";
import type { QueryResult, ResultColumn } from "./types.js";

export interface CheckedResult {
  columns: ResultColumn[];
  rows: (string | null)[][];
  command: string;
}

function bad(message: string): PgWireError {
  return new PgWireError({ code: SqlState.internalError, message: `pgraft endpoint: the query handler returned ${message}` });
}

export function checkResults(value: unknown): CheckedResult[] {
  if (!Array.isArray(value)) throw bad("something other than a list of results");
  return value.map((r: unknown, i): CheckedResult => {
    if (typeof r !== "object" || r === null) throw bad(`a non-object as result ${i + 1}`);
    const { columns = [], rows = [], command } = r as Partial<QueryResult>;
    if (typeof command !== "string") throw bad(`result ${i + 1} without a command tag`);
    if (!Array.isArray(columns) || !columns.every((c) => typeof c?.name === "string" && Number.isInteger(c.typeOid))) {
      throw bad(`result ${i + 1} with malformed columns`);
    }
    if (!Array.isArray(rows)) throw bad(`result ${i + 1} with malformed rows`);
    for (const row of rows) {
      if (!Array.isArray(row) || row.length !== columns.length) {
        throw bad(`a row of ${Array.isArray(row) ? row.length : "?"} values for ${columns.length} columns in result ${i + 1}`);
      }
      for (const v of row) if (v !== null && typeof v !== "string") throw bad(`a ${typeof v} value (only strings and null) in result ${i + 1}`);
    }
    if (columns.length === 0 && rows.length > 0) throw bad(`rows without columns in result ${i + 1}`);
    return { columns, rows, command };
  });
}

const DRAIN_EVERY = 256;

/**
 * Sends rows [from, to) of a result, waiting for the socket to drain now and
 * then; stops early if the client went away.
 */
export async function sendRows(out: Output, r: CheckedResult, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    out.push(dataRow(r.rows[i]!));
    if ((i - from) % DRAIN_EVERY === DRAIN_EVERY - 1) {
      await out.drain();
      if (out.closed) return;
    }
  }
}

/** A whole result as the simple query protocol sends it. */
export async function sendResult(out: Output, r: CheckedResult): Promise<void> {
  if (r.columns.length > 0) out.push(rowDescription(r.columns));
  await sendRows(out, r, 0, r.rows.length);
  out.push(commandComplete(r.command));
}
