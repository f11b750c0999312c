// Commit scope `majority` on stock PostgreSQL: synchronous replication over
// the data plane's own connections. Every other node's receiver streams from
// this node under application_name pgraft_<its node name> and confirms only
// what it has durably applied (src/slots/receiver.ts), so
//   synchronous_standby_names = 'ANY k ("pgraft_b", "pgraft_c", ...)'
// with k = floor(N/2) for N ACTIVE data nodes makes a COMMIT here return only
// once this node and k others — a majority — hold it durably. Each sidecar
// keeps its own PostgreSQL's setting current (ALTER SYSTEM + reload) as the
// group's scope and membership change; with scope `local` it clears a value it
// set, and leaves alone one an operator set.
//
// The data plane's own writes (apply, join copy) commit with
// synchronous_commit = local: they are other nodes' commits, already
// acknowledged under their own scope, and must not wait on each other.
import type { Logger } from "pino";
import pg from "pg";
import type { DataNode } from "../cluster/node-groups.js";
import type { ClusterState } from "../cluster/state.js";
import { dsnClientConfig } from "../postgres/dsn.js";
import { receiverApplicationName } from "../slots/naming.js";


const quoteName = (s: string): string => `"${s.replace(/"/g, '""')}"`;

/** The synchronous_standby_names node `me` should run with ("" = none). */
export function desiredStandbyNames(state: ClusterState, me: DataNode | undefined): string {
  if (!me || me.group === "" || me.state !== "ACTIVE") return "";
  if (state.routing(me.group).commitScope !== "majority") return "";
  const others = state.dataNodes().filter((n) => n.group === me.group && n.name !== me.name && n.kind === "data" && n.state === "ACTIVE");
  const k = Math.floor((others.length + 1) / 2);
  if (k === 0) return "";
  return `ANY ${k} (${others.map((n) => quoteName(receiverApplicationName(n.name))).join(", ")})`;
}

/** Whether a value is one this module set (it may then replace or clear it). */
const ours = (v: string): boolean => v.trim() === "" || v.includes('"pgraft_');

export class CommitScopeKeeper {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private lastError = "";
  /** One connection kept across looks (a look every 500 ms must not fork a backend each time); dropped after an error. */
  private client: pg.Client | undefined;

  constructor(
    private readonly d: { postgresDsn: string; state: ClusterState; me: () => DataNode | undefined; log: Logger; intervalMs?: number },
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      this.reconcile()
        .then(() => (this.lastError = ""))
        .catch((e: unknown) => {
          const m = e instanceof Error ? e.message : String(e);
          if (m !== this.lastError) this.d.log.warn(`commit scope: could not set synchronous_standby_names (retrying): ${m}`);
          this.lastError = m;
        })
        .finally(() => (this.busy = false));
    }, this.d.intervalMs ?? 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 10));
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }

  /** One look: set synchronous_standby_names when it differs from what the group needs. Returns the value set, if any. */
  async reconcile(): Promise<string | undefined> {
    const want = desiredStandbyNames(this.d.state, this.d.me());
    if (!this.client) {
      const fresh = new pg.Client(dsnClientConfig(this.d.postgresDsn, { application_name: "pgraft_commit_scope", connectionTimeoutMillis: 5_000, query_timeout: 5_000 }));
      fresh.on("error", () => undefined);
      try {
        await fresh.connect();
      } catch (e) {
        await fresh.end().catch(() => undefined);
        throw e;
      }
      this.client = fresh;
    }
    const c = this.client;
    try {
      const have = (await c.query<{ v: string }>("SELECT current_setting('synchronous_standby_names') AS v")).rows[0]!.v;
      if (have === want) return undefined;
      if (!ours(have) && want === "") return undefined;
      if (!ours(have)) this.d.log.warn(`commit scope majority: replacing synchronous_standby_names ${JSON.stringify(have)}, set outside pgraft`);
      await c.query(`ALTER SYSTEM SET synchronous_standby_names = ${c.escapeLiteral(want)}`);
      await c.query("SELECT pg_reload_conf()");
      this.d.log.info(`commit scope: synchronous_standby_names = ${JSON.stringify(want)}`);
      return want;
    } catch (e) {
      this.client = undefined;
      await c.end().catch(() => undefined);
      throw e;
    }
  }
}
