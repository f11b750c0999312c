// The client proxy (issue 12 §2): a TCP port that forwards each client
// connection to the current target's PostgreSQL — the write leader for the
// read-write port, a healthy non-leader for the read-only one.
//
// Bytes go through as they are, both ways, from the first one: SSLRequest,
// GSSENCRequest, SCRAM and CancelRequest are answered by the upstream
// PostgreSQL, never here. The proxy reads nothing from a client it can
// forward; only when it must refuse one (no target within waitForTargetMs,
// the upstream connect failed or timed out, too many connections) does it
// play the server's part of the startup handshake to hand the client a FATAL
// ErrorResponse it can read (startup-error.ts).
//
// A connection goes through these phases:
//   waiting     no target yet: the client waits (not read from) until one
//               appears (retarget() or a poll every pollMs) or its wait ends
//   connecting  the upstream TCP connect, bounded by connectTimeoutMs
//   piped       client.pipe(upstream) and upstream.pipe(client): backpressure
//               as pipe() gives it, Nagle off, keepalive on both sockets
//   answering   the error handshake (then the connection is no longer counted
//               as active)
// retarget() closes every piped connection whose upstream is not target() any
// more, restarts the connects aimed at an old target, and wakes the waiters.
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { PgWireErrorFields } from "../pgwire/errors.js";
import { SqlState } from "../pgwire/errors.js";
import { answerStartupWithError, type StartupOutcome } from "./startup-error.js";

export interface ProxyTarget {
  host: string;
  port: number;
  nodeId: number;
  /** For messages: the node's name. */
  name?: string;
}

export interface ClientProxyOptions {
  /** For logs, metrics and the errors clients see. */
  name: "read-write" | "read-only";
  /** Port 0: an ephemeral port (tests); start() tells which. */
  listen: { host: string; port: number };
  /** The current destination; undefined when there is none now. */
  target: () => ProxyTarget | undefined;
  /** A client arriving with no target waits up to this long for one (default 5000), then gets an error. */
  waitForTargetMs?: number;
  /** Default 1000; a client beyond it gets ErrorResponse 53300 (too_many_connections) and is closed. */
  maxConnections?: number;
  /** Default 0 = off: close client and upstream after this long without a byte either way. */
  idleTimeoutMs?: number;
  /** Default 3000: the upstream TCP connect. */
  connectTimeoutMs?: number;
  /** Default 30000: TCP keepalive's initial delay on both sockets. */
  keepAliveMs?: number;
  /** Default 10000: how long a client being refused may take to send its startup packet. */
  handshakeTimeoutMs?: number;
  /** Default 100: how often waiting clients look at target() when retarget() is not called. */
  pollMs?: number;
  logger: Logger;
}

export interface ClientProxyStats {
  /** Connections counted against maxConnections: waiting, connecting or piped. */
  active: number;
  /** Connections admitted (not refused for maxConnections), since start. */
  accepted: number;
  /** Connections refused because maxConnections were active. */
  refused: number;
  /** Piped connections closed by retarget() (their upstream was not the target any more). */
  closedByRetarget: number;
  /** Clients answered with an error because no target appeared within waitForTargetMs. */
  failedNoTarget: number;
  /** Clients answered with an error because the upstream connect failed or timed out. */
  failedUpstream: number;
  /** Connections closed after idleTimeoutMs without a byte. */
  closedByIdle: number;
}

const DEFAULTS = { waitForTargetMs: 5000, maxConnections: 1000, idleTimeoutMs: 0, connectTimeoutMs: 3000, keepAliveMs: 30_000, handshakeTimeoutMs: 10_000, pollMs: 100 };
/** After one side closed cleanly, how long the other may take to flush and close before it is destroyed. */
const LINGER_MS = 5000;
/** At most one info/warn line per kind of refusal in this long (the others are counted into the next line). */
const LOG_EVERY_MS = 10_000;

type Phase = "waiting" | "connecting" | "piped" | "answering" | "closed";

interface Conn {
  id: number;
  client: Socket;
  /** "host:port" of the client, for logs. */
  peer: string;
  phase: Phase;
  /** Until when it may wait for a target. */
  waitUntil: number;
  upstream?: Socket;
  target?: ProxyTarget;
  /** The wait's deadline, the connect timeout, or the linger after one side closed. */
  timer?: NodeJS.Timeout;
}

const sameTarget = (a: ProxyTarget | undefined, b: ProxyTarget | undefined): boolean =>
  a !== undefined && b !== undefined && a.host === b.host && a.port === b.port && a.nodeId === b.nodeId;

const describe = (t: ProxyTarget): string => `node ${t.name ?? t.nodeId} (${t.host}:${t.port})`;
/** How soon a failed connect to a target that is still the target is tried again (within the client's wait). */
const CONNECT_RETRY_MS = 100;

const errorCode = (e: unknown): string => {
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") return e.code;
  return e instanceof Error ? e.message : String(e);
};

/** At most one line per LOG_EVERY_MS; the lines in between are counted into the next one. */
class Throttle {
  private last = -Infinity;
  private skipped = 0;
  /** The number of lines skipped since the last one, or undefined when this one is to be skipped too. */
  take(now: number): number | undefined {
    if (now - this.last < LOG_EVERY_MS) {
      this.skipped++;
      return undefined;
    }
    this.last = now;
    const s = this.skipped;
    this.skipped = 0;
    return s;
  }
}

export class ClientProxy {
  private readonly opts: Required<Omit<ClientProxyOptions, "logger">>;
  private readonly log: Logger;
  private readonly label: string;
  private server: Server | undefined;
  private address: { host: string; port: number } | undefined;
  /** Active connections: waiting, connecting, piped (and piped ones lingering after one side closed). */
  private readonly conns = new Set<Conn>();
  /** Clients being answered with an error. */
  private readonly answering = new Set<Conn>();
  private readonly waiters = new Set<Conn>();
  private pollTimer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private closing: Promise<void> | undefined;
  private readonly counts = { accepted: 0, refused: 0, closedByRetarget: 0, failedNoTarget: 0, failedUpstream: 0, closedByIdle: 0 };
  private readonly throttles = { refused: new Throttle(), noTarget: new Throttle(), upstream: new Throttle(), idle: new Throttle(), targetThrew: new Throttle() };

  constructor(opts: ClientProxyOptions) {
    const { logger, ...rest } = opts;
    this.opts = {
      waitForTargetMs: rest.waitForTargetMs ?? DEFAULTS.waitForTargetMs,
      maxConnections: rest.maxConnections ?? DEFAULTS.maxConnections,
      idleTimeoutMs: rest.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
      connectTimeoutMs: rest.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      keepAliveMs: rest.keepAliveMs ?? DEFAULTS.keepAliveMs,
      handshakeTimeoutMs: rest.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
      pollMs: rest.pollMs ?? DEFAULTS.pollMs,
      name: rest.name,
      listen: rest.listen,
      target: rest.target,
    };
    // A logger that already names its component keeps it (a second `component` key would be ambiguous).
    this.log = logger.child(typeof logger.bindings()["component"] === "string" ? { proxy: opts.name } : { component: "proxy", proxy: opts.name });
    this.label = `pgraft ${opts.name} proxy`;
  }

  /** Resolves with the address once listening; rejects with "cannot listen on HOST:PORT (NAME proxy): CODE". */
  start(): Promise<{ host: string; port: number }> {
    if (this.closing) return Promise.reject(new Error(`the ${this.opts.name} proxy is closed`));
    if (this.server) return Promise.reject(new Error(`the ${this.opts.name} proxy is already started`));
    const { host, port } = this.opts.listen;
    const server = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: this.opts.keepAliveMs }, (c) => this.accept(c));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (e: unknown): void => {
        this.server = undefined;
        reject(new Error(`cannot listen on ${host}:${port} (${this.opts.name} proxy): ${errorCode(e)}`, { cause: e }));
      };
      server.once("error", onError);
      server.listen({ host, port, exclusive: true }, () => {
        server.off("error", onError);
        if (this.closing) {
          // close() came while the listen was under way: it found nothing listening to close.
          server.close();
          reject(new Error(`the ${this.opts.name} proxy was closed while starting`));
          return;
        }
        server.on("error", (e) => this.log.error({ err: e }, "listener error"));
        const a = server.address() as AddressInfo;
        this.address = { host: a.address, port: a.port };
        this.log.info({ host: a.address, port: a.port }, `${this.opts.name} proxy listening on ${a.address}:${a.port}`);
        resolve({ ...this.address });
      });
    });
  }

  stats(): ClientProxyStats {
    return { active: this.conns.size, ...this.counts };
  }

  /**
   * The target may have changed: close every piped connection whose upstream
   * is not target() (both sockets), redirect the connects still under way to
   * the new target, and wake the clients waiting for one.
   */
  retarget(): void {
    if (this.closing) return;
    const target = this.currentTarget();
    let closed = 0;
    let redirected = 0;
    const from = new Map<string, number>();
    for (const c of [...this.conns]) {
      if (c.phase === "piped" && !sameTarget(c.target, target)) {
        closed++;
        const d = describe(c.target!);
        from.set(d, (from.get(d) ?? 0) + 1);
        this.counts.closedByRetarget++;
        this.destroyConn(c, "retarget");
      } else if (c.phase === "connecting" && !sameTarget(c.target, target)) {
        // Nothing has gone through yet: the client can be sent to the new target unaware.
        redirected++;
        this.abortConnect(c);
        this.route(c);
      }
    }
    this.wakeWaiters();
    const to = target ? describe(target) : "none";
    if (closed > 0) {
      this.log.warn(
        { closed, redirected, from: Object.fromEntries(from), target: target ?? null, active: this.conns.size },
        `retarget to ${to}: closed ${closed} connection${closed === 1 ? "" : "s"} to ${[...from.keys()].join(", ")}${redirected ? `, redirected ${redirected} connecting` : ""}`,
      );
    } else if (redirected > 0) {
      this.log.info({ redirected, target: target ?? null }, `retarget to ${to}: redirected ${redirected} connecting`);
    } else {
      this.log.debug({ target: target ?? null }, `retarget to ${to}: no connection to close`);
    }
  }

  /** Stop listening, destroy every connection and timer; resolves once all sockets are closed. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const server = this.server;
    const listenerClosed = server?.listening ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    const sockets: Socket[] = [];
    for (const c of [...this.conns, ...this.answering]) {
      sockets.push(c.client);
      if (c.upstream) sockets.push(c.upstream);
      this.destroyConn(c, "proxy closed");
      this.answering.delete(c);
    }
    await Promise.all([listenerClosed, ...sockets.map((s) => (s.closed ? undefined : new Promise<void>((r) => s.once("close", () => r()))))]);
    if (this.address) this.log.info({ ...this.counts }, `${this.opts.name} proxy on ${this.address.host}:${this.address.port} closed`);
  }

  /** target(), where a throw counts as no target (logged): a bug there must not take the listener down. */
  private currentTarget(): ProxyTarget | undefined {
    try {
      return this.opts.target();
    } catch (e) {
      const skipped = this.throttles.targetThrew.take(Date.now());
      if (skipped !== undefined) this.log.error({ err: e, since_last_line: skipped }, "target() threw; treated as no target");
      return undefined;
    }
  }

  // ------------------------------------------------------------------ accepting

  private accept(client: Socket): void {
    if (this.closing) {
      client.destroy();
      return;
    }
    const peer = `${client.remoteAddress ?? "?"}:${client.remotePort ?? "?"}`;
    const conn: Conn = { id: this.nextId++, client, peer, phase: "waiting", waitUntil: Date.now() + this.opts.waitForTargetMs };
    client.on("error", (e) => this.log.debug({ conn: conn.id, peer, err: errorCode(e) }, "client socket error"));
    if (this.conns.size >= this.opts.maxConnections) {
      this.counts.refused++;
      const skipped = this.throttles.refused.take(Date.now());
      if (skipped !== undefined) {
        this.log.warn(
          { peer, maxConnections: this.opts.maxConnections, refused: this.counts.refused, since_last_line: skipped },
          `refused a client: ${this.opts.maxConnections} connections already (${this.counts.refused} refused in all)`,
        );
      }
      // Bounded too: a flood beyond twice the limit is dropped without an answer.
      if (this.answering.size >= this.opts.maxConnections) {
        client.destroy();
        return;
      }
      this.answer(conn, { code: SqlState.tooManyConnections, message: `${this.label}: too many connections (limit ${this.opts.maxConnections})` });
      return;
    }
    this.counts.accepted++;
    this.conns.add(conn);
    client.once("close", () => this.clientClosed(conn));
    this.log.debug({ conn: conn.id, peer, active: this.conns.size }, "client connected");
    this.route(conn);
  }

  /** Connect to the target, or wait for one, or (the wait over) answer with an error. */
  private route(conn: Conn): void {
    const target = this.currentTarget();
    if (target) return this.connectUpstream(conn, target);
    const left = conn.waitUntil - Date.now();
    if (left <= 0) return this.failNoTarget(conn);
    conn.phase = "waiting";
    this.waiters.add(conn);
    conn.timer = setTimeout(() => {
      conn.timer = undefined;
      this.waiters.delete(conn);
      this.stopPollingIfIdle();
      this.failNoTarget(conn);
    }, left);
    this.pollTimer ??= setInterval(() => this.wakeWaiters(), this.opts.pollMs);
  }

  private wakeWaiters(): void {
    if (this.waiters.size > 0 && this.currentTarget()) {
      for (const c of [...this.waiters]) {
        this.waiters.delete(c);
        clearTimeout(c.timer);
        c.timer = undefined;
        this.route(c);
      }
    }
    this.stopPollingIfIdle();
  }

  private stopPollingIfIdle(): void {
    if (this.waiters.size === 0 && this.pollTimer) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  // ------------------------------------------------------------------ upstream

  private connectUpstream(conn: Conn, target: ProxyTarget): void {
    conn.phase = "connecting";
    conn.target = target;
    const up = connect({ host: target.host, port: target.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: this.opts.keepAliveMs });
    conn.upstream = up;
    const onError = (e: Error): void => {
      clearTimeout(conn.timer);
      conn.timer = undefined;
      up.destroy();
      if (conn.upstream !== up || conn.phase !== "connecting") return;
      conn.upstream = undefined;
      this.connectFailed(conn, target, errorCode(e));
    };
    up.once("error", onError);
    conn.timer = setTimeout(() => {
      conn.timer = undefined;
      up.off("error", onError);
      up.on("error", () => undefined);
      up.destroy();
      if (conn.upstream !== up || conn.phase !== "connecting") return;
      conn.upstream = undefined;
      this.connectFailed(conn, target, `no answer within ${this.opts.connectTimeoutMs} ms`);
    }, this.opts.connectTimeoutMs);
    up.once("connect", () => {
      clearTimeout(conn.timer);
      conn.timer = undefined;
      up.off("error", onError);
      this.pipe(conn, up);
    });
  }

  /** A connect under way that is no longer wanted (retarget): dropped without a trace on the client. */
  private abortConnect(conn: Conn): void {
    clearTimeout(conn.timer);
    conn.timer = undefined;
    const up = conn.upstream;
    conn.upstream = undefined;
    if (up) {
      up.removeAllListeners("connect");
      up.removeAllListeners("error");
      up.on("error", () => undefined);
      up.destroy();
    }
  }

  private connectFailed(conn: Conn, target: ProxyTarget, why: string): void {
    // The target moved while we tried: go to the new one (or wait) within the client's wait.
    const now = this.currentTarget();
    if (now && !sameTarget(now, target) && Date.now() < conn.waitUntil) {
      this.log.debug({ conn: conn.id, target: describe(target), err: why }, "connect failed; the target has changed since, trying the new one");
      return this.route(conn);
    }
    // The target itself is down (a failover is about to move it, or it restarts): try again shortly, within the
    // client's wait, so the client lands on the new target instead of reading an error.
    if (Date.now() + CONNECT_RETRY_MS < conn.waitUntil) {
      this.log.debug({ conn: conn.id, target: describe(target), err: why }, "connect failed; trying again within the client's wait");
      // A waiter: retarget() sends it to a new target at once; else it tries again after CONNECT_RETRY_MS.
      conn.phase = "waiting";
      this.waiters.add(conn);
      conn.timer = setTimeout(() => {
        conn.timer = undefined;
        this.waiters.delete(conn);
        this.stopPollingIfIdle();
        if (conn.phase === "waiting") this.route(conn);
      }, CONNECT_RETRY_MS);
      return;
    }
    this.counts.failedUpstream++;
    const skipped = this.throttles.upstream.take(Date.now());
    if (skipped !== undefined) {
      this.log.warn(
        { conn: conn.id, peer: conn.peer, target, err: why, failed_upstream: this.counts.failedUpstream, since_last_line: skipped },
        `cannot connect to ${describe(target)}: ${why}; the client gets an error`,
      );
    }
    this.fail(conn, { code: SqlState.connectionFailure, message: `${this.label}: cannot connect to ${describe(target)}: ${why}` });
  }

  private failNoTarget(conn: Conn): void {
    this.counts.failedNoTarget++;
    const waited = `${(this.opts.waitForTargetMs / 1000).toFixed(1)} s`;
    const skipped = this.throttles.noTarget.take(Date.now());
    if (skipped !== undefined) {
      this.log.warn(
        { conn: conn.id, peer: conn.peer, waited_ms: this.opts.waitForTargetMs, failed_no_target: this.counts.failedNoTarget, since_last_line: skipped },
        `no target within ${waited}; the client gets an error`,
      );
    }
    const what = this.opts.name === "read-write" ? "no write leader is available" : "no read-only node is available";
    this.fail(conn, { code: SqlState.cannotConnectNow, message: `${this.label}: ${what} (waited ${waited})` });
  }

  /** An active connection becomes an error answer: it stops counting as active. */
  private fail(conn: Conn, error: PgWireErrorFields): void {
    this.conns.delete(conn);
    this.answer(conn, error);
  }

  private answer(conn: Conn, error: PgWireErrorFields): void {
    conn.phase = "answering";
    this.answering.add(conn);
    const done = (outcome: StartupOutcome): void => {
      this.answering.delete(conn);
      this.log.debug({ conn: conn.id, peer: conn.peer, outcome, code: error.code }, `error answer: ${outcome}`);
    };
    answerStartupWithError(conn.client, error, { timeoutMs: this.opts.handshakeTimeoutMs }).then(done, () => done("closed"));
  }

  // ------------------------------------------------------------------ piping

  private pipe(conn: Conn, up: Socket): void {
    conn.phase = "piped";
    const client = conn.client;
    this.log.debug({ conn: conn.id, peer: conn.peer, target: describe(conn.target!) }, "piped to upstream");
    up.on("error", (e) => this.log.debug({ conn: conn.id, err: errorCode(e) }, "upstream socket error"));
    up.once("close", (hadError) => this.upstreamClosed(conn, up, hadError));
    client.pipe(up);
    up.pipe(client);
    if (this.opts.idleTimeoutMs > 0) {
      // A socket's timer restarts on every read and write on it, and every byte either way passes the client socket.
      client.setTimeout(this.opts.idleTimeoutMs, () => {
        if (conn.phase !== "piped") return;
        this.counts.closedByIdle++;
        const skipped = this.throttles.idle.take(Date.now());
        if (skipped !== undefined) {
          this.log.info(
            { conn: conn.id, peer: conn.peer, idle_ms: this.opts.idleTimeoutMs, closed_by_idle: this.counts.closedByIdle, since_last_line: skipped },
            `closing a connection idle for ${this.opts.idleTimeoutMs} ms (${this.counts.closedByIdle} in all)`,
          );
        } else {
          this.log.debug({ conn: conn.id, peer: conn.peer }, "closing an idle connection");
        }
        this.destroyConn(conn, "idle");
      });
    }
  }

  private upstreamClosed(conn: Conn, up: Socket, hadError: boolean): void {
    if (conn.upstream !== up) return;
    if (conn.client.closed) return this.finish(conn, "both closed");
    if (hadError) return this.destroyConn(conn, "upstream failed");
    // A clean end: pipe() ends the client once what the server sent is written; it then closes.
    this.linger(conn);
  }

  private clientClosed(conn: Conn): void {
    switch (conn.phase) {
      case "waiting":
        this.waiters.delete(conn);
        this.stopPollingIfIdle();
        return this.finish(conn, "client left while waiting");
      case "connecting":
        this.abortConnect(conn);
        return this.finish(conn, "client left while connecting");
      case "piped": {
        const up = conn.upstream;
        if (!up || up.closed) return this.finish(conn, "both closed");
        // pipe() has ended the upstream's writing side; PostgreSQL closes on that.
        up.end();
        return this.linger(conn);
      }
      default:
        return;
    }
  }

  /** One side is closed: the other gets LINGER_MS to flush and close, then is destroyed. */
  private linger(conn: Conn): void {
    if (conn.timer) return;
    conn.timer = setTimeout(() => {
      conn.timer = undefined;
      this.destroyConn(conn, "linger over");
    }, LINGER_MS);
  }

  /** Destroy both sockets at once; the close events finish the bookkeeping. */
  private destroyConn(conn: Conn, why: string): void {
    if (conn.phase === "closed") return;
    if (conn.phase === "waiting") {
      this.waiters.delete(conn);
      this.stopPollingIfIdle();
    }
    if (conn.phase === "connecting") this.abortConnect(conn);
    const up = conn.upstream;
    conn.client.destroy();
    up?.destroy();
    this.finish(conn, why);
  }

  private finish(conn: Conn, why: string): void {
    if (conn.phase === "closed" || conn.phase === "answering") return;
    conn.phase = "closed";
    clearTimeout(conn.timer);
    conn.timer = undefined;
    if (!conn.client.destroyed) conn.client.destroy();
    if (conn.upstream && !conn.upstream.destroyed) conn.upstream.destroy();
    this.conns.delete(conn);
    this.log.debug({ conn: conn.id, peer: conn.peer, why, active: this.conns.size }, "client disconnected");
  }
}
