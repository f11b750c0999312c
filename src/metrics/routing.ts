// The routing's metrics: each data group's write leader as this node knows it
// (every node agrees once it has applied the same log), whether this node
// leads its group's writes, the group's commit scope, and this sidecar's
// client proxies (connections now, and since start: admitted, refused and
// closed, by reason). Read at scrape time.
import { Counter, Gauge, type Registry } from "prom-client";
import type { GroupRouting } from "../cluster/routing.js";
import type { ClientProxyStats } from "../routing/proxy.js";

export interface RoutingMetricsSource {
  routings(): GroupRouting[];
  /** Whether this node is its group's write leader (undefined: in no group). */
  isWriteLeader(): boolean | undefined;
  proxies(): { name: string; stats: ClientProxyStats }[];
}

export function registerRoutingMetrics(r: Registry, source: RoutingMetricsSource): void {
  new Gauge({
    name: "pgraft_write_leader",
    help: "1 for each data group's write leader, as this node knows it (the node the read-write proxies send writes to)",
    labelNames: ["group", "node"],
    registers: [r],
    collect() {
      this.reset();
      for (const g of source.routings()) if (g.leader) this.set({ group: g.group, node: g.leader }, 1);
    },
  });
  new Gauge({
    name: "pgraft_is_write_leader",
    help: "1 when this node's database leads its data group's writes, 0 when it does not (absent outside a group)",
    registers: [r],
    collect() {
      this.reset();
      const w = source.isWriteLeader();
      if (w !== undefined) this.set(w ? 1 : 0);
    },
  });
  const seen = new Map<string, number>();
  new Counter({
    name: "pgraft_write_leader_changes_total",
    help: "How many times each data group's write leader changed (first choice, failovers, switchovers), as the replicated routing counts them",
    labelNames: ["group"],
    registers: [r],
    collect() {
      for (const g of source.routings()) {
        const delta = g.leaderChanges - (seen.get(g.group) ?? 0);
        this.inc({ group: g.group }, delta > 0 ? delta : 0);
        seen.set(g.group, g.leaderChanges);
      }
    },
  });
  new Gauge({
    name: "pgraft_routing_epoch",
    help: "Each data group's routing epoch: bumped by every routing change (write leader, read nodes, switchover)",
    labelNames: ["group"],
    registers: [r],
    collect() {
      this.reset();
      for (const g of source.routings()) this.set({ group: g.group }, g.epoch);
    },
  });
  new Gauge({
    name: "pgraft_commit_scope",
    help: "1 for each data group's commit scope (local: a COMMIT returns once durable on its node; majority: on a majority of the group's data nodes)",
    labelNames: ["group", "scope"],
    registers: [r],
    collect() {
      this.reset();
      for (const g of source.routings()) this.set({ group: g.group, scope: g.commitScope }, 1);
    },
  });
  new Gauge({
    name: "pgraft_proxy_connections",
    help: "Client connections through this sidecar's proxy now (waiting for a node, connecting or forwarding)",
    labelNames: ["proxy"],
    registers: [r],
    collect() {
      this.reset();
      for (const p of source.proxies()) this.set({ proxy: p.name }, p.stats.active);
    },
  });
  const last = new Map<string, number>();
  const counter = (name: string, help: string, labelNames: string[], read: (s: ClientProxyStats) => [Record<string, string>, number][]): void => {
    new Counter({
      name,
      help,
      labelNames: ["proxy", ...labelNames],
      registers: [r],
      collect() {
        for (const p of source.proxies()) {
          for (const [labels, v] of read(p.stats)) {
            const all = { proxy: p.name, ...labels };
            const key = `${name}|${JSON.stringify(all)}`;
            const delta = v - (last.get(key) ?? 0);
            this.inc(all, delta > 0 ? delta : 0);
            last.set(key, v);
          }
        }
      },
    });
  };
  counter("pgraft_proxy_connections_accepted_total", "Client connections the proxy admitted", [], (s) => [[{}, s.accepted]]);
  counter("pgraft_proxy_connections_failed_total", "Client connections the proxy answered with an error, by reason (max_connections, no_target, upstream)", ["reason"], (s) => [
    [{ reason: "max_connections" }, s.refused],
    [{ reason: "no_target" }, s.failedNoTarget],
    [{ reason: "upstream" }, s.failedUpstream],
  ]);
  counter("pgraft_proxy_connections_closed_total", "Forwarded connections the proxy closed, by reason (retarget: the node lost its role; idle)", ["reason"], (s) => [
    [{ reason: "retarget" }, s.closedByRetarget],
    [{ reason: "idle" }, s.closedByIdle],
  ]);
}
