// Pod mode with --node-group: this pod's PostgreSQL becomes a data node of the
// group without an operator. Every few seconds, until the node is ACTIVE:
//   - no data node here yet        → create_node(<pod name>, <interface DSN>)
//   - pod 0, and no such group yet → create_node_group(<group>) (this node is its first member)
//   - a node in no group           → join_node_group(<an ACTIVE member's DSN>, <group>), once one exists
// (a scaled-up pod does the same, so it joins the group as well as Raft). The
// interface DSN is this pod's --postgres-advertise address with the user and
// database of --postgres-dsn and no password: every sidecar finds the shared
// superuser password as libpq does ($PGPASSWORD in the chart). The calls go
// through the SQL shim on the local PostgreSQL, as an operator's would; each
// step is logged once, and a failed one is retried on the next cycle.
import pg from "pg";
import type { Logger } from "pino";
import type { ClusterState } from "../cluster/state.js";
import type { SidecarConfig } from "../config/sidecar-config.js";
import { dsnClientConfig } from "../postgres/dsn.js";

const CYCLE_MS = 2_000;

export function interfaceDsn(cfg: SidecarConfig): string {
  const c = dsnClientConfig(cfg.postgresDsn!);
  const at = cfg.postgresAdvertise!.lastIndexOf(":");
  const host = cfg.postgresAdvertise!.slice(0, at).replace(/^\[|\]$/g, "");
  const port = cfg.postgresAdvertise!.slice(at + 1);
  return `host=${host} port=${port} user=${c.user ?? "postgres"} dbname=${c.database ?? "postgres"}`;
}

export class PodNodeGroup {
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> | undefined;
  private lastStep = "";
  private done = false;

  constructor(
    private readonly o: { cfg: SidecarConfig; group: string; state: ClusterState; leaderKnown: () => boolean; log: Logger },
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (!this.busy && !this.done) this.busy = this.cycle().finally(() => (this.busy = undefined));
    }, CYCLE_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.busy;
  }

  private note(step: string, level: "info" | "warn" = "info"): void {
    if (step === this.lastStep) return;
    this.lastStep = step;
    this.o.log[level](`node group ${this.o.group}: ${step}`);
  }

  private async sql(text: string, params: unknown[]): Promise<void> {
    const c = new pg.Client(dsnClientConfig(this.o.cfg.postgresDsn!, { connectionTimeoutMillis: 5_000, application_name: "pgraft_pod_group" }));
    c.on("error", () => undefined);
    try {
      await c.connect();
      await c.query("SET statement_timeout = '60s'");
      await c.query(text, params);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  private async cycle(): Promise<void> {
    const { cfg, group, state } = this.o;
    const pod = cfg.pod!;
    if (!this.o.leaderKnown()) return;
    try {
      const me = state.dataNodes().find((n) => n.raftMemberId === cfg.nodeId);
      if (!me) {
        this.note(`creating data node ${pod.podName}`);
        await this.sql("SELECT bdr.create_node($1, $2)", [pod.podName, interfaceDsn(cfg)]);
        return;
      }
      if (me.state === "ACTIVE") {
        this.note(`node ${me.name} is ACTIVE in group ${me.group}`);
        this.done = true;
        return;
      }
      if (me.group || me.state !== "CREATED") {
        this.note(`node ${me.name} is ${me.state}${me.group ? ` in group ${me.group}` : ""}: waiting`);
        return;
      }
      if (!state.nodeGroups().some((g) => g.name === group)) {
        if (pod.ordinal === 0) {
          this.note(`creating the group with node ${me.name} as its first member`);
          await this.sql("SELECT bdr.create_node_group($1)", [group]);
        } else this.note(`waiting for pod 0 to create the group`);
        return;
      }
      const source = state.dataNodes().find((n) => n.group === group && n.state === "ACTIVE");
      if (!source) {
        this.note("waiting for an ACTIVE member to join through");
        return;
      }
      this.note(`node ${me.name} joining through ${source.name}`);
      await this.sql("SELECT bdr.join_node_group($1, $2, wait_for_completion := false)", [source.dsn, group]);
    } catch (e) {
      this.note(`step failed (retrying): ${e instanceof Error ? e.message : String(e)}`, "warn");
    }
  }
}
