// Is this node's PostgreSQL alive? A sidecar started with --postgres-dsn runs a
// bounded `SELECT 1` on it every heartbeat, on a connection of its own (a new
// one whenever the last broke), and keeps the verdict: up or down, since when,
// and the last error. /health, /ready, /primary, /replica, the metrics, the
// Status RPC (and through it pgraft_health_check on every node) read it from
// here. Only changes are logged (up → down at warn, down → up at info), never
// every probe.
import pg from "pg";
import type { Logger } from "pino";
import { dsnClientConfig } from "./dsn.js";

export type PostgresState = "up" | "down" | "unknown" | "not_configured";

export interface PostgresHealth {
  state: PostgresState;
  /** Since when (Unix ms) it has been up or down. */
  sinceMs?: number;
  /** Down: the last probe's error. */
  error?: string;
  /** When (Unix ms) the last probe ended. */
  checkedMs?: number;
  /** How long the last probe took (seconds). */
  probeSeconds?: number;
}

/** What a sidecar without --postgres-dsn reports. */
export const NOT_CONFIGURED: PostgresHealth = { state: "not_configured" };
export const NOT_CONFIGURED_TEXT = "no local PostgreSQL configured";

/** A probe (connect + SELECT 1) that takes longer than this is a failure. */
export const PROBE_TIMEOUT_MS = 1_000;

export interface PostgresMonitorOptions {
  dsn: string;
  /** The pause between probes: the heartbeat interval in force (read before each wait). */
  intervalMs: () => number;
  log: Logger;
  /** Default PROBE_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** One line for people: "up since …", "down since …: error", … */
export function describePostgres(h: PostgresHealth): string {
  const since = h.sinceMs ? ` since ${new Date(h.sinceMs).toISOString()}` : "";
  switch (h.state) {
    case "up":
      return `up${since}`;
    case "down":
      return `down${since}: ${h.error ?? "unknown error"}`;
    case "unknown":
      return "not probed yet";
    case "not_configured":
      return NOT_CONFIGURED_TEXT;
  }
}

/** The JSON the HTTP endpoints show. */
export function postgresJson(h: PostgresHealth): Record<string, unknown> {
  if (h.state === "not_configured") return { status: "not_configured", detail: NOT_CONFIGURED_TEXT };
  return {
    status: h.state,
    ...(h.sinceMs ? { since: new Date(h.sinceMs).toISOString() } : {}),
    ...(h.error !== undefined ? { error: h.error } : {}),
    ...(h.checkedMs ? { checked_at: new Date(h.checkedMs).toISOString() } : {}),
    ...(h.probeSeconds !== undefined ? { probe_seconds: h.probeSeconds } : {}),
  };
}

const errorText = (e: unknown): string => {
  if (e instanceof Error) return e.message || (e as { code?: string }).code || e.name;
  return String(e);
};

export class PostgresMonitor {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  private stopped = false;
  private current: PostgresHealth = { state: "unknown" };
  private readonly timeoutMs: number;

  constructor(private readonly o: PostgresMonitorOptions) {
    this.timeoutMs = o.timeoutMs ?? PROBE_TIMEOUT_MS;
  }

  health(): PostgresHealth {
    return this.current;
  }

  start(): void {
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.probing = this.probe().finally(() => {
        this.probing = undefined;
        this.schedule(Math.max(10, this.o.intervalMs()));
      });
    }, ms);
  }

  /** One probe; never rejects. */
  private async probe(): Promise<void> {
    const t0 = performance.now();
    try {
      const c = this.client ?? (await this.connect());
      await c.query("SELECT 1");
      this.record(t0, undefined);
    } catch (e) {
      await this.dropClient();
      this.record(t0, errorText(e));
    }
  }

  private async connect(): Promise<pg.Client> {
    // The DSN's password, or libpq's sources for one (PGPASSWORD, the password file), as for every connection of the sidecar.
    const c = new pg.Client(dsnClientConfig(this.o.dsn, { connectionTimeoutMillis: this.timeoutMs, query_timeout: this.timeoutMs, application_name: "pgraft_probe" }));
    // A connection that dies between probes (the server killed) must not be an unhandled error; the next probe reconnects.
    c.on("error", () => {
      if (this.client === c) this.client = undefined;
      void this.end(c);
    });
    try {
      await c.connect();
    } catch (e) {
      await this.end(c);
      throw e;
    }
    if (this.stopped) {
      await this.end(c);
      throw new Error("stopped");
    }
    this.client = c;
    return c;
  }

  private record(t0: number, error: string | undefined): void {
    if (this.stopped) return;
    const now = Date.now();
    const probeSeconds = (performance.now() - t0) / 1000;
    const prev = this.current;
    const state = error === undefined ? "up" : "down";
    const sinceMs = prev.state === state && prev.sinceMs ? prev.sinceMs : now;
    this.current = { state, sinceMs, checkedMs: now, probeSeconds, ...(error !== undefined ? { error } : {}) };
    if (prev.state === state) {
      if (error !== undefined && error !== prev.error) this.o.log.debug({ err: error }, `local PostgreSQL still down: ${error}`);
      return;
    }
    if (state === "down") {
      this.o.log.warn({ err: error, was: prev.state }, `local PostgreSQL is down: ${error}`);
    } else if (prev.state === "down") {
      this.o.log.info({ down_since: new Date(prev.sinceMs ?? now).toISOString() }, `local PostgreSQL is up again (down since ${new Date(prev.sinceMs ?? now).toISOString()})`);
    } else {
      this.o.log.info("local PostgreSQL is up");
    }
  }

  /** Close a client; a hung query makes pg destroy the socket, and the wait is bounded anyway. */
  private async end(c: pg.Client): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([c.end().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, this.timeoutMs)))]);
    clearTimeout(timer);
  }

  private async dropClient(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) await this.end(c);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.probing;
    await this.dropClient();
  }
}
