// Failover as an application sees it (issue 12 §4): three data nodes, commit
// scope majority, and a client writing numbered rows continuously through one
// sidecar's read-write proxy port, recording a number only once its COMMIT was
// acknowledged. Faults, each on its own, on the write leader: kill -9 of its
// PostgreSQL; kill -9 of its sidecar; SIGSTOP of both (a frozen node); a
// switchover. After each: a new write leader, writes acknowledged again
// through the same port, and once the old leader is back, every acknowledged
// number on every node, exactly once (the table's primary key), with the
// nodes identical.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { scalar, until } from "../sql/helpers.js";
import { boundedCall, formGroup, startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

const PASSWORD = "failover-test-password";

/** A client that writes row n, n+1, ... through one address; `acked` holds what was committed. */
class Writer {
  readonly acked: number[] = [];
  private stopped = false;
  private done: Promise<void> | undefined;
  lastError = "";
  errors = 0;

  constructor(
    private readonly port: number,
    private readonly user: string,
    /** The first number to write (above what earlier writers wrote: the table keeps their rows). */
    private next: number,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    let c: pg.Client | undefined;
    while (!this.stopped) {
      try {
        if (!c) {
          c = new pg.Client({ host: "127.0.0.1", port: this.port, user: this.user, password: PASSWORD, database: "postgres", connectionTimeoutMillis: 3_000, query_timeout: 3_000 });
          c.on("error", () => undefined);
          await c.connect();
        }
        const n = this.next++;
        await c.query("INSERT INTO probe (n) VALUES ($1)", [n]);
        this.acked.push(n);
        await new Promise((r) => setTimeout(r, 5));
      } catch (e) {
        this.errors++;
        this.lastError = e instanceof Error ? e.message : String(e);
        const old = c;
        c = undefined;
        await old?.end().catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await c?.end().catch(() => undefined);
  }

  /** Resolves once a write numbered above `after` is acknowledged. */
  async ackedAfter(n: number, timeoutMs: number): Promise<number> {
    return until(`a write acknowledged after #${n}`, () => Promise.resolve(this.acked.find((x) => x > n)), timeoutMs, 20).catch((e: unknown) => {
      throw new Error(`${e instanceof Error ? e.message : String(e)} (${this.errors} errors, the last: ${this.lastError || "none"})`);
    });
  }

  get last(): number {
    return this.acked[this.acked.length - 1] ?? 0;
  }

  /** Stops the loop; a session stuck on a frozen server is not waited for past 5 s. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.race([this.done, new Promise((r) => setTimeout(r, 5_000).unref())]);
  }
}

/** SIGSTOP / SIGCONT a PostgreSQL server: the postmaster and every backend. */
function signalServer(n: PgNode, sig: "STOP" | "CONT"): void {
  const pid = n.pg.server.pid;
  if (!pid) throw new Error(`node ${n.id}'s PostgreSQL is not running`);
  execFileSync("pkill", [`-${sig}`, "-P", String(pid)]);
  process.kill(pid, `SIG${sig}`);
}

describe("failover through the read-write proxy, commit scope majority", { timeout: 420_000 }, () => {
  let c: PgCluster | undefined;
  let writer: Writer | undefined;
  const names = ["alpha", "beta", "gamma"];

  before(async () => {
    c = await startPgCluster({ nodes: 3, name: "failover", password: PASSWORD });
    const [n1, , n3] = c.nodes as [PgNode, PgNode, PgNode];
    await n1.query("CREATE TABLE probe (n int PRIMARY KEY, at timestamptz DEFAULT now())");
    await formGroup(c, "g1", names);
    await n1.query("SELECT bdr.alter_node_group_option('g1', 'default_commit_scope', 'majority')");
    for (const n of c.nodes) await until(`node ${n.id} waits for a majority`, async () => (await scalar<string>(n, "SHOW synchronous_standby_names")).startsWith("ANY 1"));
    await until("alpha leads g1's writes", async () => (await scalar<string | null>(n3, "SELECT write_lead FROM pgraft.node_group_routing_summary")) === "alpha");
  });

  after(async () => {
    await writer?.stop();
    // A server left frozen by a failed step would not stop (SIGQUIT waits for SIGCONT).
    for (const n of c?.nodes ?? []) {
      try {
        signalServer(n, "CONT");
      } catch {
        // not running
      }
    }
    await c?.destroy();
  });

  const leaderName = async (via: PgNode): Promise<string> => scalar<string>(via, "SELECT write_lead FROM pgraft.node_group_routing_summary");
  const nodeOf = (name: string): PgNode => c!.nodes[names.indexOf(name)]!;

  /** Every acknowledged number on every node, once; the three tables identical. */
  async function allAckedEverywhere(): Promise<void> {
    const want = writer!.acked;
    for (const n of c!.nodes) {
      await until(
        `node ${n.id} to hold all ${want.length} acknowledged rows`,
        async () => {
          const r = await n.query<{ missing: number }>("SELECT count(*)::int AS missing FROM unnest($1::int[]) AS a(n) WHERE NOT EXISTS (SELECT 1 FROM probe p WHERE p.n = a.n)", [want]);
          return r.rows[0]!.missing === 0;
        },
        60_000,
        200,
      );
    }
    await until("identical tables", async () => {
      const h = await Promise.all(c!.nodes.map((n) => scalar<string>(n, "SELECT md5(coalesce(string_agg(n::text, ',' ORDER BY n), '')) FROM probe")));
      return h.every((x) => x === h[0]);
    }, 60_000);
  }

  /**
   * Run `fault` on the current write leader with the writer on another node's proxy; `heal` brings it back
   * (also when a check fails, so the next fault starts from a whole cluster).
   */
  async function survive(t: { diagnostic(m: string): void }, what: string, fault: (leader: PgNode) => Promise<void>, heal: (leader: PgNode) => Promise<void>): Promise<void> {
    const oldName = await leaderName(c!.nodes[0]!);
    const old = nodeOf(oldName);
    const client = c!.nodes.find((n) => n !== old)!;
    await writer?.stop();
    const above = await scalar<number>(client, "SELECT coalesce(max(n), 0) FROM probe");
    writer = new Writer(client.proxyPort, old.pg.server.superuser, Number(above) + 1000);
    writer.start();
    let faulted = false;
    let healed = false;
    try {
      await writer.ackedAfter(Number(above) + 1020, 20_000);
      const t0 = Date.now();
      faulted = true;
      await fault(old);
      // The write leader moves (writes may go on meanwhile: with only its sidecar dead, its PostgreSQL still commits).
      const now = await until(
        `${what}: a new write leader`,
        async () => {
          const w = await leaderName(client);
          return w !== oldName ? w : undefined;
        },
        30_000,
        50,
      );
      const movedAt = Date.now() - t0;
      const after = writer.last;
      const resumed = await writer.ackedAfter(after, 30_000);
      t.diagnostic(`${what}: write leader ${now} named ${movedAt} ms after the fault; writes acknowledged through node ${client.id}'s proxy after it ${Date.now() - t0} ms after the fault (#${resumed})`);
      healed = true;
      await heal(old);
      await writer.ackedAfter(writer.last + 20, 30_000);
      await writer.stop();
      await allAckedEverywhere();
    } catch (e) {
      t.diagnostic(c!.tails(25));
      if (faulted && !healed) await Promise.resolve().then(() => heal(old)).catch(() => undefined);
      throw e;
    }
  }

  test("kill -9 of the write leader's PostgreSQL", async (t) => {
    await survive(t, "postgres kill -9", (l) => l.pg.server.kill().then(() => undefined), (l) => l.pg.server.start());
  });

  test("kill -9 of the write leader's sidecar", async (t) => {
    await survive(
      t,
      "sidecar kill -9",
      (l) => c!.killSidecar(l.id),
      (l) => c!.restartSidecar(l.id),
    );
  });

  test("SIGSTOP of the write leader's PostgreSQL and sidecar (a frozen node)", async (t) => {
    await survive(
      t,
      "frozen node",
      (l) => {
        signalServer(l, "STOP");
        c!.pauseSidecar(l.id);
        return Promise.resolve();
      },
      (l) => {
        signalServer(l, "CONT");
        c!.resumeSidecar(l.id);
        return Promise.resolve();
      },
    );
  });

  test("a switchover under the same load", async (t) => {
    await survive(
      t,
      "switchover",
      async (l) => {
        const to = names.find((x) => x !== names[l.id - 1])!;
        const out = await boundedCall(c!.nodes.find((n) => n !== l)!, "SELECT pgraft.routing_leadership_transfer('g1', $1)", [to], 60);
        assert.match(out, /strict: it had every write/);
      },
      () => Promise.resolve(),
    );
  });
});
