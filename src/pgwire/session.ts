// One client connection, from the first byte to close: startup negotiation
// (SSLRequest/GSSENCRequest/CancelRequest/StartupMessage), SCRAM-SHA-256
// authentication, then the message loop. Messages are handled one at a time in
// arrival order; input keeps being read meanwhile, so a client that vanishes
// mid-query is noticed and the handler's AbortSignal fires.
// https://www.postgresql.org/docs/15/protocol-flow.html
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket, type SecureContext } from "node:tls";
import { PgWireError, SqlState, fatal, toPgWireError } from "./errors.js";
import { ExtendedProtocol } from "./extended.js";
import { FrameError, FrameReader } from "./framing.js";
import {
  BodyReader,
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  PROTOCOL_3_0,
  SSL_REQUEST_CODE,
  authenticationOk,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  backendKeyData,
  decodeUtf8,
  emptyQueryResponse,
  errorResponse,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  readyForQuery,
} from "./messages.js";
import { Output } from "./output.js";
import { checkResults, sendResult, type CheckedResult } from "./results.js";
import { SCRAM_MECHANISM, ScramExchange, parseScramVerifier } from "./scram.js";
import { clientEncodingCommand } from "./sql.js";
import type { NoticeFields, PgWireHandler, PgWireLogger, QueryContext } from "./types.js";

/** PostgreSQL's own cap on startup packets (MAX_STARTUP_PACKET_LENGTH). */
const MAX_STARTUP_PACKET = 10000;
/** Every message type a frontend may send after startup. */
const FRONTEND_TYPES = "QPBDECHSXFdcfp";
/** SASL messages are a few hundred bytes; PostgreSQL caps them at 64 KiB too. */
const MAX_AUTH_MESSAGE = 65535;

export interface SessionSettings {
  users: (name: string) => string | undefined | Promise<string | undefined>;
  handler: PgWireHandler;
  logger: PgWireLogger;
  secureContext: SecureContext | undefined;
  maxMessageBytes: number;
  authTimeoutMs: number;
  serverVersion: string;
}

/** The server's side of admission and cancellation. */
export interface SessionRegistry {
  /** Takes a connection slot; the pid and secret for BackendKeyData, or undefined when full. */
  admit(session: Session): { pid: number; secret: number } | undefined;
  release(session: Session): void;
  cancel(pid: number, secret: number): void;
}

export class Session {
  pid = 0;
  private secret = 0;
  private readonly out: Output;
  private readonly reader: FrameReader;
  private readonly extended: ExtendedProtocol;
  private tls = false;
  private user = "";
  private database = "";
  private applicationName = "";
  private admitted = false;
  private inflight: AbortController | undefined;
  /** Set once the session is going away (client gone, server closing). */
  private goneReason: PgWireError | undefined;
  private readonly closed: Promise<void>;
  readonly remoteAddress: string;

  constructor(
    private readonly raw: Socket,
    private readonly settings: SessionSettings,
    private readonly registry: SessionRegistry,
  ) {
    this.remoteAddress = `${raw.remoteAddress ?? "?"}:${raw.remotePort ?? "?"}`;
    this.out = new Output(raw);
    this.reader = new FrameReader(settings.maxMessageBytes, settings.maxMessageBytes + 64 * 1024);
    this.reader.attach(raw);
    this.extended = new ExtendedProtocol({ out: this.out, runQuery: (sql) => this.runQuery(sql) });
    this.closed = new Promise((resolve) => raw.once("close", () => resolve()));
    this.watch(raw);
  }

  private get log(): PgWireLogger {
    return this.settings.logger;
  }

  /** A client that goes away mid-query must not leave its handler running for nobody. */
  private watch(s: Duplex): void {
    const onGone = (): void => this.goAway(new PgWireError({ code: SqlState.connectionFailure, message: "client disconnected", severity: "FATAL" }));
    s.once("end", onGone);
    s.once("close", onGone);
    s.on("error", (e: Error) => {
      this.log.debug({ pid: this.pid, remote: this.remoteAddress, err: e.message }, "pgwire socket error");
      onGone();
    });
  }

  private whyGone(): PgWireError | undefined {
    return this.goneReason;
  }

  private goAway(reason: PgWireError): void {
    if (this.goneReason) return;
    this.goneReason = reason;
    this.inflight?.abort(reason);
  }

  /** Server shutdown: tell the client why (as PostgreSQL does), abort, close. */
  terminate(): void {
    const reason = new PgWireError({ code: SqlState.adminShutdown, message: "terminating connection due to administrator command", severity: "FATAL" });
    if (!this.goneReason) this.out.push(errorResponse(reason.fields));
    this.goAway(reason);
    this.out.end();
  }

  /** CancelRequest with this session's key: abort the running query, if any. */
  cancelQuery(secret: number): boolean {
    if (!this.admitted || secret !== this.secret) return false;
    this.inflight?.abort(new PgWireError({ code: SqlState.queryCanceled, message: "canceling statement due to user request" }));
    return true;
  }

  /** Runs the connection to its end; never rejects. Resolves once the socket is closed. */
  async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.fail(new PgWireError({ code: SqlState.queryCanceled, message: "canceling authentication due to timeout", severity: "FATAL" }));
    }, this.settings.authTimeoutMs);
    try {
      if (!(await this.startup())) return;
      if (!(await this.authenticate())) return;
      clearTimeout(timer);
      this.greet();
      await this.serve();
    } catch (e) {
      if (e instanceof FrameError) this.fail(new PgWireError({ code: SqlState.protocolViolation, message: e.message, severity: "FATAL" }));
      else {
        if (!(e instanceof PgWireError)) this.log.error({ pid: this.pid, err: e }, "pgwire session failed");
        this.fail(toPgWireError(e));
      }
    } finally {
      clearTimeout(timer);
      this.goAway(new PgWireError({ code: SqlState.connectionFailure, message: "session ended", severity: "FATAL" }));
      if (this.admitted) this.registry.release(this);
      this.out.end();
      await this.closed;
      this.log.debug({ pid: this.pid, remote: this.remoteAddress }, "pgwire session closed");
    }
  }

  /** Last words: a FATAL ErrorResponse, then close. */
  private fail(e: PgWireError): void {
    if (this.goneReason) return;
    this.out.push(errorResponse({ ...e.fields, severity: "FATAL" }));
    this.goAway(e);
    this.out.end();
  }

  // --- startup -----------------------------------------------------------------

  /** True once a StartupMessage was accepted; false when the connection is to close quietly. */
  private async startup(): Promise<boolean> {
    for (;;) {
      const packet = await this.reader.readStartupPacket(MAX_STARTUP_PACKET);
      if (!packet) return false;
      const code = packet.readInt32BE(0);
      if (code === CANCEL_REQUEST_CODE) {
        // The cancel travels on a connection of its own and gets no answer.
        if (packet.length === 12) this.registry.cancel(packet.readInt32BE(4), packet.readInt32BE(8));
        return false;
      }
      if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
        if (packet.length !== 4 || this.tls) throw fatal(SqlState.protocolViolation, "unexpected encryption request");
        // Bytes sent before our answer would be read as if protected (CVE-2021-23214).
        if (this.reader.bufferedBytes > 0) throw fatal(SqlState.protocolViolation, "received unencrypted data after SSL request");
        if (code === SSL_REQUEST_CODE && this.settings.secureContext) this.upgrade(this.settings.secureContext);
        else {
          this.out.push(Buffer.from("N"));
          this.out.flush();
        }
        continue;
      }
      this.acceptStartup(code, packet.subarray(4));
      return true;
    }
  }

  /** Answers 'S' and continues the same conversation inside TLS. */
  private upgrade(context: SecureContext): void {
    this.reader.detach();
    this.out.push(Buffer.from("S"));
    this.out.flush();
    // Synchronously after 'S': the client sends its ClientHello only once it read
    // the 'S', so no byte of it can have been consumed by the plain socket.
    const secure = new TLSSocket(this.raw, { isServer: true, secureContext: context });
    this.tls = true;
    this.out.replaceSocket(secure);
    this.reader.attach(secure);
    this.watch(secure);
  }

  private acceptStartup(version: number, rest: Buffer): void {
    const major = version >>> 16;
    const minor = version & 0xffff;
    if (major !== 3) {
      throw fatal(SqlState.featureNotSupported, `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`);
    }
    const params = new Map<string, string>();
    try {
      const r = new BodyReader(rest);
      for (;;) {
        const name = r.cstring();
        if (name === "") break;
        params.set(name, r.cstring());
      }
      r.end();
    } catch (e) {
      if (e instanceof PgWireError && e.code === SqlState.characterNotInRepertoire) throw e;
      throw fatal(SqlState.protocolViolation, "invalid startup packet layout: expected terminator as last byte");
    }
    // Protocol options (_pq_.*) and minor versions past 3.0: say what we speak.
    const unknownOptions = [...params.keys()].filter((k) => k.startsWith("_pq_."));
    if (minor > 0 || unknownOptions.length > 0) this.out.push(negotiateProtocolVersion(PROTOCOL_3_0, unknownOptions));

    const user = params.get("user") ?? "";
    if (user === "") throw fatal(SqlState.invalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet");
    const replication = (params.get("replication") ?? "false").toLowerCase();
    if (!["false", "off", "no", "0"].includes(replication)) {
      throw fatal(SqlState.featureNotSupported, "the pgraft endpoint does not accept replication connections");
    }
    this.user = user;
    this.database = params.get("database") || user;
    this.applicationName = params.get("application_name") ?? "";
    // client_encoding, options, DateStyle...: this endpoint has one fixed
    // configuration, reported back in ParameterStatus; requests are not errors.

    const key = this.registry.admit(this);
    if (!key) throw fatal(SqlState.tooManyConnections, "sorry, too many clients already");
    this.admitted = true;
    this.pid = key.pid;
    this.secret = key.secret;
  }

  // --- authentication -------------------------------------------------------------

  private async authenticate(): Promise<boolean> {
    let stored: string | undefined;
    try {
      stored = await this.settings.users(this.user);
    } catch (e) {
      this.log.error({ user: this.user, err: e }, "pgwire user lookup failed");
      stored = undefined;
    }
    const verifier = stored === undefined ? undefined : parseScramVerifier(stored);
    if (stored !== undefined && !verifier) this.log.warn({ user: this.user }, "pgwire: the stored password of this user is not a SCRAM-SHA-256 verifier");

    this.out.push(authenticationSasl([SCRAM_MECHANISM]));
    this.out.flush();
    // libpq without a password hangs up here (psql then prompts and reconnects).
    const first = await this.authMessage();
    if (!first) return false;
    const r = new BodyReader(first);
    const mechanism = r.cstring();
    const len = r.int32();
    const initial = len < 0 ? Buffer.alloc(0) : r.bytes(len);
    r.end();
    if (mechanism !== SCRAM_MECHANISM) {
      throw fatal(SqlState.protocolViolation, "client selected an invalid SASL authentication mechanism", {
        detail: `Only ${SCRAM_MECHANISM} is offered${mechanism.endsWith("-PLUS") ? " (no channel binding)" : ""}.`,
      });
    }
    const exchange = new ScramExchange(this.user, verifier);
    this.out.push(authenticationSaslContinue(exchange.start(decodeUtf8(initial))));
    this.out.flush();

    const second = await this.authMessage();
    if (!second) return false;
    const serverFinal = exchange.finish(decodeUtf8(second));
    if (serverFinal === undefined) {
      this.log.warn({ user: this.user, remote: this.remoteAddress, known: verifier !== undefined }, "pgwire password authentication failed");
      throw fatal(SqlState.invalidPassword, `password authentication failed for user "${this.user}"`);
    }
    this.out.push(authenticationSaslFinal(serverFinal));
    this.out.push(authenticationOk());
    this.log.debug({ pid: this.pid, user: this.user, database: this.database, remote: this.remoteAddress, tls: this.tls }, "pgwire session authenticated");
    return true;
  }

  private async authMessage(): Promise<Buffer | null> {
    const frame = await this.reader.readMessage(FRONTEND_TYPES);
    if (!frame) return null;
    if (frame.kind === "oversize" || frame.body.length > MAX_AUTH_MESSAGE) throw fatal(SqlState.protocolViolation, "authentication message too long");
    if (frame.type !== "p") throw fatal(SqlState.protocolViolation, `expected SASL response, got message type ${frame.type.charCodeAt(0)}`);
    return frame.body;
  }

  /** What libpq, psql and dblink read from ParameterStatus, then the cancel key. */
  private greet(): void {
    const status: [string, string][] = [
      ["server_version", this.settings.serverVersion],
      ["server_encoding", "UTF8"],
      ["client_encoding", "UTF8"],
      ["DateStyle", "ISO, MDY"],
      ["IntervalStyle", "postgres"],
      ["TimeZone", "UTC"],
      ["integer_datetimes", "on"],
      ["standard_conforming_strings", "on"],
      ["application_name", this.applicationName],
      ["is_superuser", "off"],
      ["session_authorization", this.user],
    ];
    for (const [k, v] of status) this.out.push(parameterStatus(k, v));
    this.out.push(backendKeyData(this.pid, this.secret));
    this.out.push(readyForQuery());
    this.out.flush();
  }

  // --- queries ---------------------------------------------------------------------

  private async serve(): Promise<void> {
    /** After an error in an extended-protocol message, everything up to Sync is skipped. */
    let skipping = false;
    for (;;) {
      // Answers go out once the client's pipelined messages are all handled.
      if (!this.reader.hasFrame()) await this.out.drain();
      const frame = await this.reader.readMessage(FRONTEND_TYPES);
      if (!frame || this.goneReason) return;
      const type = frame.type;
      if (frame.kind === "oversize") {
        const err = new PgWireError({
          code: SqlState.programLimitExceeded,
          message: `message of ${frame.length} bytes exceeds the limit of ${this.settings.maxMessageBytes} bytes`,
        });
        if (type === "Q") {
          this.out.push(errorResponse(err.fields));
          this.out.push(readyForQuery());
        } else if ("PBDECH".includes(type)) {
          if (!skipping) this.out.push(errorResponse(err.fields));
          skipping = true;
        } else throw fatal(SqlState.protocolViolation, `invalid message length for message type ${type.charCodeAt(0)}`);
        continue;
      }
      if (skipping && type !== "S" && type !== "X") continue;
      const body = frame.body;
      try {
        switch (type) {
          case "Q":
            await this.simpleQuery(body);
            break;
          case "P":
            this.extended.parse(body);
            break;
          case "B":
            this.extended.bind(body);
            break;
          case "D":
            await this.extended.describe(body);
            break;
          case "E":
            await this.extended.execute(body);
            break;
          case "C":
            this.extended.close(body);
            break;
          case "H":
            this.out.flush();
            break;
          case "S":
            skipping = false;
            this.extended.sync();
            this.out.push(readyForQuery());
            break;
          case "X":
            return;
          case "F":
            this.out.push(errorResponse({ code: SqlState.featureNotSupported, message: "pgraft endpoint: the function call protocol is not supported" }));
            this.out.push(readyForQuery());
            break;
          case "d":
          case "c":
          case "f":
            // Copy messages outside COPY: ignored, as the protocol says.
            break;
          case "p":
            throw fatal(SqlState.protocolViolation, "unexpected password message after authentication");
          default:
            throw fatal(SqlState.protocolViolation, `invalid frontend message type ${type.charCodeAt(0)}`);
        }
      } catch (e) {
        const err = toPgWireError(e);
        if (err.severity === "FATAL" || err.severity === "PANIC") throw err;
        if (this.goneReason) return;
        this.out.push(errorResponse(err.fields));
        if (type === "Q") this.out.push(readyForQuery());
        else skipping = true;
      }
    }
  }

  private async simpleQuery(body: Buffer): Promise<void> {
    const r = new BodyReader(body);
    const sql = r.cstring();
    r.end();
    this.extended.dropUnnamed();
    if (sql.trim() === "") this.out.push(emptyQueryResponse());
    else {
      const results = await this.runQuery(sql);
      if (results.length === 0) this.out.push(emptyQueryResponse());
      for (const result of results) {
        await sendResult(this.out, result);
        if (this.out.closed) return;
      }
    }
    this.out.push(readyForQuery());
  }

  /** Calls the handler with a fresh AbortSignal and maps what it throws to a PgWireError. */
  async runQuery(sql: string): Promise<CheckedResult[]> {
    if (this.goneReason) throw this.goneReason;
    const builtin = clientEncodingCommand(sql);
    if (builtin) return checkResults(builtin);
    const controller = new AbortController();
    this.inflight = controller;
    const ctx: QueryContext = {
      user: this.user,
      database: this.database,
      applicationName: this.applicationName,
      pid: this.pid,
      remoteAddress: this.remoteAddress,
      signal: controller.signal,
      notice: (msg) => this.notice(msg),
    };
    const started = Date.now();
    try {
      const call = Promise.resolve().then(() => this.settings.handler.query(sql, ctx));
      // When the session is going away nobody waits for the answer, and a
      // handler that ignores its signal must not hold up the server's close().
      // (A cancel, by contrast, waits for the handler: it may still finish.)
      call.catch(() => {});
      const gone = new Promise<undefined>((resolve) => {
        controller.signal.addEventListener("abort", () => this.goneReason && resolve(undefined), { once: true });
      });
      const results = await Promise.race([call, gone]);
      // (Re-read through a method: the narrowing from the check above is stale after an await.)
      const goneReason = this.whyGone();
      if (goneReason) throw goneReason;
      return checkResults(results);
    } catch (e) {
      const reason: unknown = controller.signal.reason;
      if (controller.signal.aborted && reason instanceof PgWireError && !(e instanceof PgWireError)) throw reason;
      if (!(e instanceof PgWireError) || e.code === SqlState.internalError) {
        this.log.error({ pid: this.pid, user: this.user, err: e }, "pgwire query handler failed");
      }
      throw toPgWireError(e);
    } finally {
      if (this.inflight === controller) this.inflight = undefined;
      this.log.debug({ pid: this.pid, ms: Date.now() - started }, "pgwire query done");
    }
  }

  private notice(msg: string | NoticeFields): void {
    if (this.goneReason) return;
    const f = typeof msg === "string" ? { message: msg } : msg;
    this.out.push(noticeResponse({ code: f.code ?? SqlState.successfulCompletion, message: f.message, detail: f.detail, hint: f.hint, severity: f.severity ?? "NOTICE" }));
    this.out.flush();
  }
}
