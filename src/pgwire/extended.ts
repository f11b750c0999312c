// The extended query protocol (Parse/Bind/Describe/Execute/Close/Sync), enough
// for clients that send parameterized queries this way (the `pg` npm client,
// libpq's PQexecParams). Parameters are text only and are bound by substituting
// them into the statement as SQL literals, so the handler sees one plain query
// string either way. The query runs when its portal is first described or
// executed; its result is kept in the portal so Execute with a row limit can
// continue where the last one stopped (PortalSuspended).
import { PgWireError, SqlState } from "./errors.js";
import {
  BodyReader,
  bindComplete,
  closeComplete,
  commandComplete,
  decodeUtf8,
  emptyQueryResponse,
  noData,
  parseComplete,
  portalSuspended,
  rowDescription,
} from "./messages.js";
import type { Output } from "./output.js";
import { sendRows, type CheckedResult } from "./results.js";
import { bindTemplate, parsePlaceholders, placeholderCount, type SqlTemplate } from "./sql.js";

/** What the session lends the protocol state. */
export interface ExtendedHost {
  readonly out: Output;
  runQuery(sql: string): Promise<CheckedResult[]>;
}

interface Statement {
  template: SqlTemplate;
  /** Parameters Bind must supply: declared types or highest $n, whichever is more. */
  params: number;
}

interface Portal {
  sql: string;
  /** undefined until run; "empty" for an empty query string. */
  result?: CheckedResult | "empty";
  sent: number;
}

/** Named statements a session may keep; clients that never Close them would grow without bound. */
const MAX_STATEMENTS = 1000;

const quoted = (name: string): string => `"${name}"`;

export class ExtendedProtocol {
  private readonly statements = new Map<string, Statement>();
  private readonly portals = new Map<string, Portal>();

  constructor(private readonly host: ExtendedHost) {}

  parse(body: Buffer): void {
    const r = new BodyReader(body);
    const name = r.cstring();
    const sql = r.cstring();
    const nTypes = r.int16();
    for (let i = 0; i < nTypes; i++) r.int32(); // declared types: literals are untyped anyway
    r.end();
    if (name !== "" && this.statements.has(name)) {
      throw new PgWireError({ code: SqlState.duplicatePreparedStatement, message: `prepared statement ${quoted(name)} already exists` });
    }
    if (name !== "" && this.statements.size >= MAX_STATEMENTS) {
      throw new PgWireError({ code: SqlState.programLimitExceeded, message: `too many prepared statements (limit ${MAX_STATEMENTS})`, hint: "Close statements that are no longer needed." });
    }
    const template = parsePlaceholders(sql);
    this.statements.set(name, { template, params: Math.max(nTypes, placeholderCount(template)) });
    this.host.out.push(parseComplete());
  }

  bind(body: Buffer): void {
    const r = new BodyReader(body);
    const portalName = r.cstring();
    const statementName = r.cstring();
    const formats = Array.from({ length: r.int16() }, () => r.int16());
    const values = Array.from({ length: r.int16() }, () => {
      const len = r.int32();
      return len === -1 ? null : r.bytes(len);
    });
    const resultFormats = Array.from({ length: r.int16() }, () => r.int16());
    r.end();

    const st = this.statementOf(statementName);
    if (formats.length > 1 && formats.length !== values.length) {
      throw new PgWireError({ code: SqlState.protocolViolation, message: `bind message has ${formats.length} parameter formats but ${values.length} parameters` });
    }
    if (values.length !== st.params) {
      throw new PgWireError({
        code: SqlState.protocolViolation,
        message: `bind message supplies ${values.length} parameters, but prepared statement ${quoted(statementName)} requires ${st.params}`,
      });
    }
    if (formats.some((f) => f !== 0) || resultFormats.some((f) => f !== 0)) {
      throw new PgWireError({ code: SqlState.featureNotSupported, message: "pgraft endpoint: only the text format is supported for parameters and results" });
    }
    if (portalName !== "" && this.portals.has(portalName)) {
      throw new PgWireError({ code: SqlState.duplicateCursor, message: `cursor ${quoted(portalName)} already exists` });
    }
    const sql = bindTemplate(
      st.template,
      values.map((v) => (v === null ? null : decodeUtf8(v))),
    );
    this.portals.set(portalName, { sql, sent: 0 });
    this.host.out.push(bindComplete());
  }

  async describe(body: Buffer): Promise<void> {
    const r = new BodyReader(body);
    const kind = String.fromCharCode(r.byte());
    const name = r.cstring();
    r.end();
    if (kind === "S") {
      // Its columns are only known by running it, and running it here could
      // have effects its Bind was meant to control.
      this.statementOf(name);
      throw new PgWireError({
        code: SqlState.featureNotSupported,
        message: "pgraft endpoint: describing a prepared statement is not supported",
        hint: "Bind it and describe the portal instead.",
      });
    }
    if (kind !== "P") throw new PgWireError({ code: SqlState.protocolViolation, message: `invalid DESCRIBE message subtype ${kind.charCodeAt(0)}` });
    const result = await this.resultOf(this.portalOf(name));
    this.host.out.push(result === "empty" || result.columns.length === 0 ? noData() : rowDescription(result.columns));
  }

  async execute(body: Buffer): Promise<void> {
    const r = new BodyReader(body);
    const name = r.cstring();
    const maxRows = r.int32();
    r.end();
    const portal = this.portalOf(name);
    const result = await this.resultOf(portal);
    const out = this.host.out;
    if (result === "empty") {
      out.push(emptyQueryResponse());
      return;
    }
    const end = maxRows > 0 ? Math.min(result.rows.length, portal.sent + maxRows) : result.rows.length;
    await sendRows(out, result, portal.sent, end);
    portal.sent = end;
    out.push(end < result.rows.length ? portalSuspended() : commandComplete(result.command));
  }

  close(body: Buffer): void {
    const r = new BodyReader(body);
    const kind = String.fromCharCode(r.byte());
    const name = r.cstring();
    r.end();
    if (kind === "S") this.statements.delete(name);
    else if (kind === "P") this.portals.delete(name);
    else throw new PgWireError({ code: SqlState.protocolViolation, message: `invalid CLOSE message subtype ${kind.charCodeAt(0)}` });
    // Closing what does not exist is not an error (PostgreSQL agrees).
    this.host.out.push(closeComplete());
  }

  /** Sync ends the implicit transaction, and portals with it; statements stay. */
  sync(): void {
    this.portals.clear();
  }

  /** A simple Query replaces the unnamed statement and portal. */
  dropUnnamed(): void {
    this.statements.delete("");
    this.portals.delete("");
  }

  private statementOf(name: string): Statement {
    const st = this.statements.get(name);
    if (!st) {
      const message = name === "" ? "unnamed prepared statement does not exist" : `prepared statement ${quoted(name)} does not exist`;
      throw new PgWireError({ code: SqlState.invalidSqlStatementName, message });
    }
    return st;
  }

  private portalOf(name: string): Portal {
    const p = this.portals.get(name);
    if (!p) throw new PgWireError({ code: SqlState.invalidCursorName, message: `portal ${quoted(name)} does not exist` });
    return p;
  }

  private async resultOf(portal: Portal): Promise<CheckedResult | "empty"> {
    if (portal.result !== undefined) return portal.result;
    if (portal.sql.trim() === "") return (portal.result = "empty");
    const results = await this.host.runQuery(portal.sql);
    if (results.length > 1) {
      throw new PgWireError({ code: SqlState.syntaxError, message: "cannot insert multiple commands into a prepared statement" });
    }
    return (portal.result = results[0] ?? "empty");
  }
}
