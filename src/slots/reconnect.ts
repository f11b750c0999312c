// Connections that outlive their server: what the sidecar needs from a
// PostgreSQL that may restart (fast, immediate, or a crash) under it.
//
// - Backoff: capped exponential delays (default 200 ms doubling to 10 s).
// - Outage: logs an outage once, when it begins (warn), repeats at debug
//   while it lasts, and says once when it is over (info, with how long it
//   lasted) — never a warning per retry or per tick.
// - ReconnectingClient: one long-lived client (the data plane's admin
//   connection) that is replaced when it breaks. `client()` hands out the
//   live client, connecting again when there is none — at most once per
//   backoff step; in between it fails at once with the last error. A caller
//   that needs one session for several statements (a transaction) takes the
//   client once and uses it throughout: when it breaks mid-way the
//   statements after the break fail; they never run on a new session.
//
// The receivers (receiver.ts) have their own session loop — a session is a
// probe, an applier and its flusher, and a walsender — and use Backoff and
// Outage for its pace and its log.
import type pg from "pg";
import { connectClient, destroyClient } from "./connection.js";
import { errorText, within, type SlotsLogger } from "./types.js";

export class Backoff {
  private delay: number;

  constructor(
    readonly minMs = 200,
    readonly maxMs = 10_000,
  ) {
    this.delay = minMs;
  }

  /** The delay before the next attempt (then doubled, up to maxMs). */
  next(): number {
    const d = this.delay;
    this.delay = Math.min(this.delay * 2, this.maxMs);
    return d;
  }

  reset(): void {
    this.delay = this.minMs;
  }
}

/** Logs an outage once per outage: its start (warn), each new error while it lasts (debug), its end (info). */
export class Outage {
  private began: number | undefined;
  private failures = 0;
  private last = "";

  constructor(
    private readonly log: SlotsLogger,
    /** What is down, for the messages: "data plane admin connection to the local PostgreSQL". */
    private readonly what: string,
    private readonly fields: Record<string, unknown> = {},
  ) {}

  get down(): boolean {
    return this.began !== undefined;
  }

  get since(): Date | undefined {
    return this.began === undefined ? undefined : new Date(this.began);
  }

  get lastError(): string | null {
    return this.began === undefined ? null : this.last;
  }

  /** A failed attempt (or a lost connection). */
  failed(e: unknown, retryInMs?: number): void {
    const error = errorText(e);
    this.failures++;
    const retry = retryInMs === undefined ? {} : { retryInMs };
    if (this.began === undefined) {
      this.began = Date.now();
      this.last = error;
      this.log.warn(`${this.what}: down, reconnecting with backoff`, { ...this.fields, error, ...retry });
      return;
    }
    if (error !== this.last) this.log.debug(`${this.what}: still down`, { ...this.fields, error, attempts: this.failures, ...retry });
    this.last = error;
  }

  /** It works again (nothing is logged when there was no outage). */
  recovered(): void {
    if (this.began === undefined) return;
    this.log.info(`${this.what}: back`, { ...this.fields, downMs: Date.now() - this.began, attempts: this.failures });
    this.began = undefined;
    this.failures = 0;
    this.last = "";
  }
}

export interface ReconnectingClientOptions {
  dsn: string;
  applicationName: string;
  /** What the connection is, for the log. */
  what: string;
  log: SlotsLogger;
  minMs?: number;
  maxMs?: number;
}

/** The state of a ReconnectingClient, for status reports. */
export interface ConnectionState {
  connected: boolean;
  /** Since when it is down (null: up). */
  downSince: Date | null;
  lastError: string | null;
}

export class ReconnectingClient {
  private current: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private nextAttempt = 0;
  private closed = false;
  private readonly backoff: Backoff;
  private readonly outage: Outage;

  constructor(private readonly opts: ReconnectingClientOptions) {
    this.backoff = new Backoff(opts.minMs, opts.maxMs);
    this.outage = new Outage(opts.log, opts.what);
  }

  /** Connect now (the first connection: its error is thrown as it is, nothing is logged). */
  async open(): Promise<pg.Client> {
    return this.connectNow(false);
  }

  /**
   * The live client; a new one when the last broke (at most one attempt per
   * backoff step: in between this fails at once with the last error).
   */
  client(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new Error(`${this.opts.what}: closed`));
    const c = this.current;
    if (c && usable(c)) return Promise.resolve(c);
    if (c) this.lost(c, new Error("connection broken"));
    if (this.connecting) return this.connecting;
    const wait = this.nextAttempt - Date.now();
    if (wait > 0) return Promise.reject(new Error(`${this.opts.what} is down (next attempt in ${wait} ms): ${this.outage.lastError ?? "not connected"}`));
    return this.connectNow(true);
  }

  state(): ConnectionState {
    const up = this.current !== undefined && usable(this.current) && !this.outage.down;
    return { connected: up, downSince: this.outage.since ?? null, lastError: this.outage.lastError };
  }

  private connectNow(logFailure: boolean): Promise<pg.Client> {
    const p = (async () => {
      const holder: { c?: pg.Client } = {};
      let c: pg.Client;
      try {
        c = holder.c = await connectClient(this.opts.dsn, this.opts.applicationName, (e) => {
          if (holder.c) this.lost(holder.c, e);
        });
      } catch (e) {
        const delay = this.backoff.next();
        this.nextAttempt = Date.now() + delay;
        if (logFailure) this.outage.failed(e, delay);
        throw e;
      }
      if (this.closed) {
        destroyClient(c);
        throw new Error(`${this.opts.what}: closed`);
      }
      this.current = c;
      this.backoff.reset();
      this.nextAttempt = 0;
      this.outage.recovered();
      return c;
    })();
    this.connecting = p;
    void p.then(
      () => (this.connecting = undefined),
      () => (this.connecting = undefined),
    );
    return p;
  }

  /** `c` broke (its error event, or found unusable): the next client() connects again. */
  private lost(c: pg.Client, e: Error): void {
    if (this.current !== c) return;
    this.current = undefined;
    destroyClient(c);
    if (this.closed) return;
    this.outage.failed(e);
  }

  /** A goodbye to the server (bounded). */
  async close(): Promise<void> {
    this.closed = true;
    const c = this.current;
    this.current = undefined;
    if (c) {
      await within(c.end(), 5_000);
      destroyClient(c);
    }
  }

  /** Drop the connection at once. */
  destroy(): void {
    this.closed = true;
    destroyClient(this.current);
    this.current = undefined;
  }
}

/** pg marks a client that met a connection error as not queryable; one that is ending is no use either. */
function usable(c: pg.Client): boolean {
  const s = c as unknown as { _queryable?: boolean; _ending?: boolean; _ended?: boolean };
  return s._queryable !== false && s._ending !== true && s._ended !== true;
}
