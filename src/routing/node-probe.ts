// A bounded probe of one data node's PostgreSQL, run by the write-leader
// controller (write-leader.ts) on the Raft leader's sidecar: every interval a
// real query over the node's interface DSN, which also reads how much of every
// other node's changes this one holds (its replication origins' progress), the
// input of a failover's choice.
//
// A query that does not answer within the timeout counts as down (a frozen
// server answers nothing), and its connection is dropped for a fresh one.
import type pg from "pg";
import { connectClient, destroyClient } from "../slots/connection.js";
import { parseLsn } from "../slots/lsn.js";

export interface ProbeResult {
  ok: boolean;
  /** When this result was taken (ms). */
  at: number;
  /** Why it failed (ok false). */
  error?: string;
  /** The node's WAL flush position. */
  walLsn?: bigint;
  /** Progress of each replication origin on the node, as applied (origin name → remote LSN). */
  progress?: Map<string, bigint>;
}

/**
 * One query: answers only when the server does real work (a catalog read), and never raises for a
 * missing origin. The origins' progress is read without a WAL flush (`false`): with `true` each probe
 * flushed the WAL the data plane's asynchronous commits had left, ten times per failover_timeout, and
 * on a busy disk waited for it: a healthy server's probe timed out for seconds and its leadership
 * was failed over. A failover picks among nodes that answer; what such a node applied and has not
 * flushed yet, its WAL writer flushes within a few hundred milliseconds.
 */
const PROBE_SQL = `SELECT pg_current_wal_flush_lsn()::text AS wal,
  (SELECT coalesce(json_object_agg(roname, pg_replication_origin_progress(roname, false)::text), '{}'::json)
     FROM pg_replication_origin WHERE roname LIKE 'pgraft%')::text AS progress`;

export class NodeProbe {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = false;
  /** The last result (undefined until the first probe finished). */
  last: ProbeResult | undefined;
  /**
   * Since when the server has not answered (undefined while it does): from the last probe that succeeded,
   * as a lease counts from the last heartbeat — the server stopped answering some time after it.
   */
  downSince: number | undefined;
  /**
   * While down: every failed probe since downSince timed out (the server took
   * the connection, or never refused it, but did not answer in time: frozen,
   * or overloaded) rather than failing outright (refused, reset, shutting down).
   */
  timedOutOnly = false;
  private lastOkAt: number | undefined;

  constructor(
    readonly dsn: string,
    private readonly opts: { intervalMs: () => number; timeoutMs: () => number; now?: () => number },
  ) {}

  start(): void {
    const run = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        void this.probe().finally(run);
      }, this.opts.intervalMs());
    };
    void this.probe().finally(run);
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** One probe (exposed for tests); never throws. */
  async probe(): Promise<ProbeResult> {
    if (this.running) return this.last ?? { ok: false, at: this.now(), error: "first probe in progress" };
    this.running = true;
    const timeout = this.opts.timeoutMs();
    let r: ProbeResult;
    try {
      this.client ??= await connectClient(this.dsn, "pgraft_routing", () => this.drop(), { connectionTimeoutMillis: timeout, query_timeout: timeout });
      const row = (await this.client.query<{ wal: string; progress: string }>(PROBE_SQL)).rows[0]!;
      const progress = new Map<string, bigint>();
      for (const [name, lsn] of Object.entries(JSON.parse(row.progress) as Record<string, string | null>)) if (lsn) progress.set(name, parseLsn(lsn));
      r = { ok: true, at: this.now(), walLsn: parseLsn(row.wal), progress };
      this.downSince = undefined;
      this.lastOkAt = r.at;
    } catch (e) {
      this.drop();
      r = { ok: false, at: this.now(), error: describe(e, timeout) };
      const timedOut = isTimeout(e);
      this.timedOutOnly = this.downSince === undefined ? timedOut : this.timedOutOnly && timedOut;
      this.downSince ??= this.lastOkAt ?? r.at;
    } finally {
      this.running = false;
    }
    if (!this.stopped) this.last = r;
    return r;
  }

  private drop(): void {
    destroyClient(this.client);
    this.client = undefined;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.drop();
  }
}

/** node-postgres's query_timeout ("Query read timeout") and connectionTimeoutMillis ("… connection timeout") errors. */
function isTimeout(e: unknown): boolean {
  return /timeout/i.test(e instanceof Error ? e.message : String(e));
}

function describe(e: unknown, timeoutMs: number): string {
  const m = e instanceof Error ? e.message : String(e);
  if (/timeout/i.test(m)) return `no answer within ${timeoutMs} ms`;
  const code = (e as { code?: string }).code;
  return code && !m.includes(code) ? `${m} (${code})` : m;
}
