// The data plane's metrics (node groups): per peer, what this node applied
// from it, the conflicts it met, how far behind it is and its receiver's
// state; per slot, the WAL it retains; per data node, its join/part state.
// Read at scrape time from one DataPlaneStatus (fetched once per scrape: it
// queries this node's PostgreSQL for the slots). Counters come from the
// receivers' running totals: a total that went down (a data plane started
// again) starts counting from its new value, as Prometheus' rate() expects
// of a counter reset.
import { Counter, Gauge, type Registry } from "prom-client";
import type { DataPlaneStatus } from "../slots/index.js";

export interface DataPlaneMetricsSource {
  /** This node's data plane now; undefined when the node is in no group. */
  status(): Promise<DataPlaneStatus | undefined>;
  /** Every data node of the cluster with its state (JOINING, ACTIVE, PARTING, …), from the replicated catalog. */
  dataNodes(): { name: string; group: string; state: string }[];
}

const RECEIVER_STATES = ["streaming", "catchup", "disconnected", "slot_lost", "stopped"] as const;

export function registerDataPlaneMetrics(r: Registry, source: DataPlaneMetricsSource): void {
  // One status per scrape, shared by every metric below.
  let cached: { at: number; value: Promise<DataPlaneStatus | undefined> } | undefined;
  const status = (): Promise<DataPlaneStatus | undefined> => {
    const now = Date.now();
    if (!cached || now - cached.at > 500) cached = { at: now, value: source.status().catch(() => undefined) };
    return cached.value;
  };

  const last = new Map<string, number>();
  /** A counter over a running total per label set. */
  const counter = (name: string, help: string, labelNames: string[], read: (st: DataPlaneStatus) => [Record<string, string>, number][]): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [r],
      async collect() {
        const st = await status();
        if (!st) return;
        for (const [labels, v] of read(st)) {
          const key = `${name}|${JSON.stringify(labels)}`;
          const prev = last.get(key) ?? 0;
          const delta = v >= prev ? v - prev : v;
          if (delta > 0) this.inc(labels, delta);
          else this.inc(labels, 0);
          last.set(key, v);
        }
      },
    });
  };
  const gauge = (name: string, help: string, labelNames: string[], read: (st: DataPlaneStatus) => [Record<string, string>, number][]): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [r],
      async collect() {
        this.reset();
        const st = await status();
        if (!st) return;
        for (const [labels, v] of read(st)) this.set(labels, v);
      },
    });
  };

  counter("pgraft_apply_transactions_total", "Transactions from each peer applied on this node", ["peer"], (st) =>
    st.receivers.map((x) => [{ peer: x.peer }, x.stats.appliedTransactions]),
  );
  counter("pgraft_apply_rows_total", "Row changes (inserts, updates, deletes) from each peer applied on this node", ["peer"], (st) =>
    st.receivers.map((x) => [{ peer: x.peer }, x.stats.appliedChanges]),
  );
  counter(
    "pgraft_apply_conflicts_total",
    "Conflicts met applying each peer's changes, by type (insert_exists, update_origin_change, update_missing, delete_recently_updated, delete_missing, update_exists) and resolution (apply_remote, keep_local, insert_remote, skip); logged to pgraft.conflict_history or not",
    ["peer", "type", "resolution"],
    (st) =>
      st.receivers.flatMap((x) =>
        [...x.stats.conflictsByKind].map(([kind, n]): [Record<string, string>, number] => {
          const [type = kind, resolution = ""] = kind.split("/");
          return [{ peer: x.peer, type, resolution }, n];
        }),
      ),
  );
  counter("pgraft_apply_slow_path_transactions_total", "Transactions from each peer redone change by change (an error, a tie of commit timestamps, a table without a primary key)", ["peer"], (st) =>
    st.receivers.map((x) => [{ peer: x.peer }, x.stats.slowPathTransactions]),
  );
  counter(
    "pgraft_apply_resolving_resends_total",
    "Transactions from each peer sent again with conflict-resolving statements after a conflict stopped their batch of optimistic ones (the batch's later transactions are sent again too)",
    ["peer"],
    (st) => st.receivers.map((x) => [{ peer: x.peer }, x.stats.resolvingResends]),
  );
  gauge("pgraft_apply_lag_bytes", "Bytes of each peer's WAL not yet applied here (its current position minus what this node applied or confirmed)", ["peer"], (st) =>
    st.receivers.flatMap((x) => (x.lagBytes === null ? [] : [[{ peer: x.peer }, x.lagBytes]])),
  );
  gauge("pgraft_apply_lag_seconds", "0 when nothing from the peer is left to apply; else seconds since the oldest transaction received from the peer and not applied yet committed there (none waiting: how long the last one received took to arrive, at most the time since this node last had all the peer's WAL)", ["peer"], (st) =>
    st.receivers.flatMap((x) => (x.lagSeconds === null ? [] : [[{ peer: x.peer }, x.lagSeconds]])),
  );
  gauge("pgraft_receiver_state", "The state of the stream from each peer: 1 for the state it is in (streaming, catchup, disconnected, slot_lost, stopped), 0 for the others", ["peer", "state"], (st) =>
    st.receivers.flatMap((x) => RECEIVER_STATES.map((s): [Record<string, string>, number] => [{ peer: x.peer, state: s }, x.state === s ? 1 : 0])),
  );
  gauge("pgraft_slot_retained_wal_bytes", "WAL each replication slot of this node keeps PostgreSQL from recycling (current position minus the slot's restart_lsn)", ["slot", "kind", "peer"], (st) =>
    st.slots.flatMap((s) => (s.retainedBytes === null ? [] : [[{ slot: s.name, kind: s.kind, peer: s.peer ?? "" }, s.retainedBytes]])),
  );
  new Gauge({
    name: "pgraft_data_node_state",
    help: "Each data node of the cluster: 1 with its join/part state as label (CREATED, JOINING, ACTIVE, PART_START, PARTING, PART_CATCHUP, PARTED)",
    labelNames: ["node", "group", "state"],
    registers: [r],
    collect() {
      this.reset();
      for (const n of source.dataNodes()) this.set({ node: n.name, group: n.group, state: n.state }, 1);
    },
  });
}
