// A continuous writer for the failover benchmarks: one numbered row
// (`INSERT INTO probe(n) VALUES ($1)`) about every 10 ms, one at a time,
// through an application connection path. A number counts as acknowledged
// only once its COMMIT has returned to the client. From this the benchmark
// reads (1) the time from an instant (a kill) to the first acknowledgement of
// a write *sent* at or after that instant, and (2) the acknowledged numbers
// missing on the nodes that are left: lost writes.
//
// The connection path is what an application would use to reach the current
// write leader:
//   - singleHost(): one host:port (pgraft's proxy port, a pooler, ...);
//   - multiHost(): what libpq does for `host=a,b,c target_session_attrs=read-write`
//     (node-postgres has no multi-host strings): on a failed or broken
//     connection try each host in order, run SHOW transaction_read_only on it,
//     and keep the first that says `off` until it fails;
//   - restPrimary(): HAProxy's way for Patroni: poll each node's REST
//     `GET /primary`, connect to the node that answers 200.
// Every connection attempt and every write has a deadline (timeoutMs, default
// 2 s: connect timeout, server-side statement_timeout and a client-side timer
// that drops the connection), so a connection hung by a dead host is
// abandoned, the way a client with those settings behaves.
import pg from "pg";

/** How the probe reaches the write leader: a new connection each time the last one failed. */
export interface ConnectionPath {
  /** For reports: "libpq multi-host (target_session_attrs=read-write)", "pgraft proxy 127.0.0.1:5433", ... */
  readonly name: string;
  /** A connected client that accepts writes, or a rejection. The caller ends it. */
  connect(): Promise<pg.Client>;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface PathOptions {
  user?: string;
  password?: string;
  database?: string;
  /** Connect timeout and statement_timeout, ms (default 2000). */
  timeoutMs?: number;
}

function clientConfig(h: HostPort, o: PathOptions): pg.ClientConfig {
  const t = o.timeoutMs ?? 2_000;
  return {
    host: h.host,
    port: h.port,
    user: o.user ?? "postgres",
    password: o.password,
    database: o.database ?? "postgres",
    connectionTimeoutMillis: t,
    statement_timeout: t,
    application_name: "pgraft-bench-write-probe",
    keepAlive: true,
  };
}

/** Connect to `h`, or reject (the client is ended on failure). */
async function open(h: HostPort, o: PathOptions): Promise<pg.Client> {
  const c = new pg.Client(clientConfig(h, o));
  c.on("error", () => {
    /* a broken connection: the next query fails and the probe reconnects */
  });
  try {
    await c.connect();
    return c;
  } catch (e) {
    abandon(c);
    throw e;
  }
}

/** Drop a client without waiting for a goodbye from a server that may be gone. */
export function abandon(c: pg.Client): void {
  const conn = (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
  try {
    conn?.stream?.destroy();
  } catch {
    // already closed
  }
  c.end().catch(() => undefined);
}

/** One host:port, e.g. pgraft's proxy port. */
export function singleHost(h: HostPort, o: PathOptions = {}): ConnectionPath {
  return { name: `single host ${h.host}:${h.port}`, connect: () => open(h, o) };
}

/**
 * libpq's `host=a,b,c target_session_attrs=read-write`: each host in order,
 * the first whose `SHOW transaction_read_only` is `off`.
 */
export function multiHost(hosts: HostPort[], o: PathOptions = {}): ConnectionPath {
  return {
    name: `libpq-style multi-host ${hosts.map((h) => `${h.host}:${h.port}`).join(",")} target_session_attrs=read-write`,
    connect: async () => {
      const errors: string[] = [];
      for (const h of hosts) {
        let c: pg.Client | undefined;
        try {
          c = await open(h, o);
          const r = await c.query<{ transaction_read_only: string }>("SHOW transaction_read_only");
          if (r.rows[0]?.transaction_read_only === "off") return c;
          errors.push(`${h.host}:${h.port} is read-only`);
          abandon(c);
        } catch (e) {
          if (c) abandon(c);
          errors.push(`${h.host}:${h.port}: ${(e as Error).message}`);
        }
      }
      throw new Error(`no read-write host: ${errors.join("; ")}`);
    },
  };
}

/**
 * HAProxy's way for Patroni: `GET http://<rest>/primary` on each node (200 on
 * the leader, 503 elsewhere), connect to the node that answers 200.
 */
export function restPrimary(nodes: { rest: string; pg: HostPort }[], o: PathOptions = {}): ConnectionPath {
  const t = o.timeoutMs ?? 2_000;
  return {
    name: `Patroni REST /primary check (HAProxy-style) over ${nodes.length} nodes`,
    connect: async () => {
      const checks = await Promise.all(
        nodes.map(async (n) => {
          try {
            const r = await fetch(`${n.rest}/primary`, { signal: AbortSignal.timeout(t) });
            await r.body?.cancel();
            return r.status === 200;
          } catch {
            return false;
          }
        }),
      );
      const i = checks.indexOf(true);
      if (i < 0) throw new Error("no node answers 200 on /primary");
      return open(nodes[i]!.pg, o);
    },
  };
}

export interface ProbeOptions {
  /** A write starts about this often (ms, default 10); one at a time. */
  intervalMs?: number;
  /** A write that has not returned by then is abandoned with its connection (ms, default 2000). */
  timeoutMs?: number;
  table?: string;
}

interface Ack {
  n: number;
  sentAt: number;
  ackAt: number;
  /** host:port of the server that acknowledged it. */
  via: string;
}

/** CREATE TABLE IF NOT EXISTS probe(n bigint primary key), on a client connected to the leader. */
export async function createProbeTable(c: pg.Client, table = "probe"): Promise<void> {
  await c.query(`CREATE TABLE IF NOT EXISTS ${table} (n bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`);
}

export class WriteProbe {
  readonly path: ConnectionPath;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly table: string;
  private client: pg.Client | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private next = 1;
  private readonly acks: Ack[] = [];
  private waiters: { t0: number; resolve: (ms: number) => void }[] = [];
  /** Writes and connection attempts that failed (not acknowledged). */
  failures = 0;
  lastError = "";

  constructor(path: ConnectionPath, opts: ProbeOptions = {}) {
    this.path = path;
    this.intervalMs = opts.intervalMs ?? 10;
    this.timeoutMs = opts.timeoutMs ?? 2_000;
    this.table = opts.table ?? "probe";
  }

  /** Start writing (the table must exist: createProbeTable). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stop after the write in flight, and close the connection. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    if (this.client) abandon(this.client);
    this.client = undefined;
  }

  /** Every acknowledged number, in order. */
  acknowledged(): number[] {
    return this.acks.map((a) => a.n);
  }

  /** How many of `ns` (acknowledged numbers) each server acknowledged, as "host:port count, ...". */
  ackedBy(ns: number[]): string {
    const want = new Set(ns);
    const by = new Map<string, number>();
    for (const a of this.acks) if (want.has(a.n)) by.set(a.via, (by.get(a.via) ?? 0) + 1);
    return [...by].map(([k, v]) => `${k} ${v}`).join(", ");
  }

  /** Acknowledged writes so far. */
  get ackCount(): number {
    return this.acks.length;
  }

  /**
   * Milliseconds from `t0` (performance.now(), e.g. the kill) to the first
   * acknowledgement of a write sent at or after `t0` (a write already in
   * flight at t0 does not count: its ack may come from the old leader). Waits
   * for it up to `giveUpMs`, then rejects.
   */
  timeToAckAfter(t0: number, giveUpMs = 120_000): Promise<number> {
    const seen = this.acks.find((a) => a.sentAt >= t0);
    if (seen) return Promise.resolve(seen.ackAt - t0);
    return new Promise<number>((resolve, reject) => {
      const w = {
        t0,
        resolve: (ms: number) => {
          clearTimeout(timer);
          resolve(ms);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no write sent after the kill was acknowledged within ${giveUpMs / 1000} s (last error: ${this.lastError || "none"})`));
      }, giveUpMs);
      this.waiters.push(w);
    });
  }

  /** Which of `want` (default: every number acknowledged so far; ascending) `c`'s table lacks. */
  async missingOn(c: pg.Client, want: number[] = this.acknowledged()): Promise<number[]> {
    if (want.length === 0) return [];
    const r = await c.query<{ n: string }>(`SELECT n FROM ${this.table} WHERE n >= $1 AND n <= $2`, [want[0]!, want[want.length - 1]!]);
    const have = new Set(r.rows.map((x) => Number(x.n)));
    return want.filter((n) => !have.has(n));
  }

  private async run(): Promise<void> {
    while (this.running) {
      const start = performance.now();
      await this.once();
      const wait = this.intervalMs - (performance.now() - start);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** One write (connecting first if needed); never throws. */
  private async once(): Promise<void> {
    const n = this.next++;
    const sentAt = performance.now();
    try {
      if (!this.client) {
        const pending = this.path.connect();
        try {
          this.client = await withTimeout(pending, 3 * this.timeoutMs, "connect");
        } catch (e) {
          pending.then(abandon, () => undefined); // a connection that comes too late is dropped
          throw e;
        }
      }
      const c = this.client;
      try {
        await withTimeout(c.query(`INSERT INTO ${this.table}(n) VALUES ($1)`, [n]), this.timeoutMs, "write");
      } catch (e) {
        // The connection may be broken, hung or read-only now: start over with a new one.
        abandon(c);
        if (this.client === c) this.client = undefined;
        throw e;
      }
      const ackAt = performance.now();
      this.acks.push({ n, sentAt, ackAt, via: `${c.host}:${c.port}` });
      if (this.waiters.length) {
        const ready = this.waiters.filter((w) => sentAt >= w.t0);
        this.waiters = this.waiters.filter((w) => sentAt < w.t0);
        for (const w of ready) w.resolve(ackAt - w.t0);
      }
    } catch (e) {
      this.failures++;
      this.lastError = (e as Error).message;
    }
  }
}

/** `p`, or a rejection after `ms` (p itself is left to settle). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}
