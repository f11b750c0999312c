// The data plane of one node (issue 5): what the sidecar starts beside its
// PostgreSQL once the node belongs to a group. Raft coordination, join/part
// and the SQL API drive it through this facade:
//
//   const dp = await DataPlane.start({ localDsn, nodeName, nodeId, group, db, peers });
//   await dp.setPeers(newPeers);      // a member joined or parted
//   await dp.status();                // slots (peers' view of us) and receivers (our view of them)
//   await dp.stopReceiving("p");      // a part: keep p's slot and origin, apply nothing more from it…
//   await dp.catchUp({ source: "b", parting: "p" }); // …but what b has of p's changes and we lack
//   await dp.stop();                  // or dp.abort(): drop everything, as a crash would
//
// Its PostgreSQL may restart under it: the admin connection (slots, the
// group slot's advance, status) is a ReconnectingClient, the receivers run
// their own reconnecting session loop (receiver.ts), and status() answers
// while the server is down (slots `unknown`, `connection` says since when).
//
// See README.md for the pieces and the guarantees.
import { Applier, type NodeRef } from "./applier.js";
import { catchUpFrom, type CatchUpResult } from "./catchup.js";
import { sqlState } from "./connection.js";
import { ensureLocalObjects } from "./local-objects.js";
import { formatLsn, parseLsn } from "./lsn.js";
import { catchupSlotName, originName } from "./naming.js";
import { Provider, type SlotInfo } from "./provider.js";
import { RateWindow } from "./rate-window.js";
import { ReconnectingClient, type ConnectionState } from "./reconnect.js";
import { Receiver, type ReceiverStatus, type StateChange } from "./receiver.js";
import { checkSettings, SettingsError } from "./settings-check.js";
import { errorText, silentLogger, type PeerSpec, type SlotsLogger } from "./types.js";

export { checkSettings, describeProblems, SettingsError, type SettingProblem, type SettingsReport } from "./settings-check.js";
export { catchupSlotName, groupSlotName, isPgraftSlot, nodeSlotName, originName, publicationName } from "./naming.js";
export { captureEndLsn, catchUpFrom, type CatchUpOptions, type CatchUpResult } from "./catchup.js";
export type { NodeRef } from "./applier.js";
export { readConflicts, remoteWins, type ConflictRow, type ConflictType, type Resolution } from "./conflicts.js";
export { dropPgraftSlot, type SlotInfo, type SlotState } from "./provider.js";
export { withNodeSlotPlugin } from "./node-slot-plugin.js";
export { dropSlots, leaveGroup, staleSlots, type LeaveGroupOptions, type LeaveGroupResult, type StaleSlotsOptions } from "./leave-group.js";
export { ensureOrigin, recreateOrigin, retireOrigin, retiredOriginName, unknownWriterOriginName } from "./origins.js";
export type { ReceiverState, ReceiverStatus, StateChange } from "./receiver.js";
export type { ConnectionState } from "./reconnect.js";
export type { PeerSpec, SlotsLogger } from "./types.js";

export interface DataPlaneOptions {
  /** This node's PostgreSQL (superuser: slots, origins, publications, session_replication_role). */
  localDsn: string;
  nodeName: string;
  nodeId: number;
  group: string;
  /** The group's database name (the same on every node: it names the slots). */
  db: string;
  peers: PeerSpec[];
  /**
   * Peers whose changes are not received here (a parting node being caught up
   * through another member): their node slot here and our origin for them
   * stay, but no receiver runs.
   */
  notReceiving?: string[];
  log?: SlotsLogger;
  /** A peer further behind than this many bytes is in catchup (default 1 MiB). */
  catchupThresholdBytes?: number;
  /** How often the group slot is advanced, new tables without a primary key get REPLICA IDENTITY FULL and the conflict total is sampled (default 10 s; 0: never, call advanceGroupSlot()). */
  maintenanceIntervalMs?: number;
  /** The span of the conflict rate the health check watches (default 60 s; tests shorten it). */
  conflictRateSpanMs?: number;
  probeIntervalMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  windowTransactions?: number;
  /** A receiver stops reading its stream while this many transactions wait to be durable (default 5000). */
  maxBacklog?: number;
  onStateChange?: (e: StateChange) => void;
  /** Log update_origin_change conflicts the incoming change won (default: not, as PGD; read for every transaction). */
  logOriginChange?: () => boolean;
}

/** Where this node stands with a peer's changes once it stopped receiving from it. */
export interface PeerProgress {
  /** Our progress for its origin: the end of the last of its transactions applied here. */
  progress: string;
  /**
   * We have all of its changes up to here: `progress`, or further, what our
   * receiver last confirmed on its slot (keepalives move that past stretches
   * without its transactions; only known while this process ran the receiver).
   */
  has: string;
}

export interface DataPlaneStatus {
  node: string;
  group: string;
  db: string;
  publication: string;
  groupSlot: string;
  /** The slots on this node: the group slot, and each peer's node slot (how far each peer has confirmed our changes). */
  slots: SlotInfo[];
  /** One per upstream peer we receive from: how far we have applied its changes. */
  receivers: ReceiverStatus[];
  /** Peers we do not receive from (stopReceiving, or a part's catch-up): their slots and origins stay. */
  notReceiving: string[];
  /** The admin connection to this node's PostgreSQL (down: the slots are `unknown`). */
  connection: ConnectionState;
  /** Conflicts per second met applying every peer's changes over the last minute (up to one maintenance interval more; null until known), update_origin_change/apply_remote left out (watchedConflicts). */
  conflictsPerSecond: number | null;
}

export class DataPlane {
  private peers: PeerSpec[];
  private readonly receivers = new Map<string, Receiver>();
  /**
   * The conflict rate the health check watches, sampled at each status() and
   * each maintenance tick. (Sampled only when asked, after a burst it spanned
   * back to the last time someone had asked: a warning that a minute of no
   * conflicts should have cleared stayed for minutes, falling slowly.)
   */
  private readonly conflictRate: RateWindow;
  /** Every member ever seen, by origin name: rows a parted member wrote still need a name and an id for tie-breaks. */
  private readonly known = new Map<string, NodeRef>();
  /** Peers we do not receive from (see DataPlaneOptions.notReceiving). */
  private held = new Set<string>();
  /** Origins of removed peers still to drop (an applier held them when the peer went). */
  private readonly originsToDrop = new Set<string>();
  /** What our receivers last confirmed to each peer we stopped receiving from (in this process). */
  private readonly confirmedTo = new Map<string, string>();
  /** Catch-ups running, by parting peer. */
  private readonly catchups = new Map<string, AbortController>();
  private timer: NodeJS.Timeout | undefined;
  private maintaining = false;
  private maintenanceError = "";
  private stopped = false;

  private constructor(
    private readonly opts: DataPlaneOptions,
    private readonly admin: ReconnectingClient,
    private readonly provider: Provider,
    private readonly log: SlotsLogger,
  ) {
    this.peers = [];
    this.conflictRate = new RateWindow(opts.conflictRateSpanMs);
  }

  /**
   * Check the server's settings (SettingsError lists the exact fixes), create
   * pgraft's objects, the publication, the group slot and a node slot per
   * peer, and start a receiver per peer.
   */
  static async start(opts: DataPlaneOptions): Promise<DataPlane> {
    validate(opts, opts.peers);
    const log = opts.log ?? silentLogger;
    const admin = new ReconnectingClient({
      dsn: opts.localDsn,
      applicationName: "pgraft_slots",
      what: "data plane admin connection to the local PostgreSQL",
      log,
      minMs: opts.reconnectMinMs,
      maxMs: opts.reconnectMaxMs,
    });
    try {
      const c = await admin.open();
      const report = await checkSettings(c, { peers: opts.peers.length });
      for (const w of report.warnings) log.warn(w);
      if (!report.ok) throw new SettingsError(report);
      await ensureLocalObjects(c);
      const provider = new Provider(admin, { db: opts.db, group: opts.group, log, catchupThresholdBytes: opts.catchupThresholdBytes });
      await provider.ensurePublication();
      await provider.ensureReplicaIdentity();
      await provider.ensureGroupSlot();
      const dp = new DataPlane(opts, admin, provider, log);
      await dp.setPeers(opts.peers, { notReceiving: opts.notReceiving ?? [] });
      const every = opts.maintenanceIntervalMs ?? 10_000;
      if (every > 0) {
        dp.timer = setInterval(() => void dp.maintain(), every);
        dp.timer.unref();
      }
      return dp;
    } catch (e) {
      await admin.close();
      throw e;
    }
  }

  /**
   * The group's other members now. New peers get a node slot here and a
   * receiver; removed ones lose both, and our origin for them and any
   * catch-up slot made here for their part go too (only do this once they
   * are parted); a changed DSN restarts the receiver.
   * `newSlotsFromGroupSlot`: a new peer's slot is a copy of the group slot, so
   * it starts at the oldest position every member has confirmed rather than
   * now (what a join whose data copy is that old needs).
   * `notReceiving`: the peers not to receive from (see
   * DataPlaneOptions.notReceiving); unchanged when not given.
   */
  async setPeers(peers: PeerSpec[], o: { newSlotsFromGroupSlot?: boolean; notReceiving?: string[] } = {}): Promise<void> {
    validate(this.opts, peers);
    if (this.stopped) throw new Error("data plane stopped");
    const byName = new Map(peers.map((p) => [p.name, p]));
    const held = new Set(o.notReceiving ?? [...this.held].filter((n) => byName.has(n)));
    for (const n of held) if (!byName.has(n)) throw new Error(`notReceiving: ${JSON.stringify(n)} is not a peer`);
    for (const old of this.peers) {
      const now = byName.get(old.name);
      if (now && now.dsn === old.dsn && now.id === old.id && !held.has(old.name)) continue;
      const r = this.receivers.get(old.name);
      this.receivers.delete(old.name);
      await r?.stop();
      const confirmed = r?.status().confirmedLsn;
      if (confirmed) this.confirmedTo.set(old.name, confirmed);
      if (!now) await this.forget(old.name, peers);
    }
    for (const p of peers) {
      this.known.set(originName(this.opts.db, this.opts.group, p.name), { name: p.name, id: p.id });
      await this.provider.ensureNodeSlot(this.slotPeer(p), { fromGroupSlot: o.newSlotsFromGroupSlot === true });
    }
    this.peers = peers.map((p) => ({ ...p }));
    this.held = held;
    for (const p of this.peers) if (!held.has(p.name)) this.startReceiver(p);
    await this.dropPendingOrigins();
  }

  private slotPeer(p: PeerSpec): { name: string; dsn: string; originForUs: string } {
    return { name: p.name, dsn: p.dsn, originForUs: originName(this.opts.db, this.opts.group, this.opts.nodeName) };
  }

  private startReceiver(p: PeerSpec): void {
    if (this.receivers.has(p.name)) return;
    const r = new Receiver({
      localDsn: this.opts.localDsn,
      localNode: { name: this.opts.nodeName, id: this.opts.nodeId },
      peer: p,
      db: this.opts.db,
      group: this.opts.group,
      members: () => this.known,
      log: this.log,
      catchupThresholdBytes: this.opts.catchupThresholdBytes,
      probeIntervalMs: this.opts.probeIntervalMs,
      reconnectMinMs: this.opts.reconnectMinMs,
      reconnectMaxMs: this.opts.reconnectMaxMs,
      windowTransactions: this.opts.windowTransactions,
      maxBacklog: this.opts.maxBacklog,
      onStateChange: this.opts.onStateChange,
      ...(this.opts.logOriginChange ? { logOriginChange: this.opts.logOriginChange } : {}),
    });
    this.receivers.set(p.name, r);
    r.start();
  }

  /** A parted peer: its node slot here, our origin for it, and the catch-up slots its part may have left here. */
  private async forget(name: string, remaining: PeerSpec[]): Promise<void> {
    this.catchups.get(name)?.abort();
    this.confirmedTo.delete(name);
    await this.provider.dropNodeSlot(name);
    const others = [this.opts.nodeName, ...this.peers.map((p) => p.name), ...remaining.map((p) => p.name)];
    for (const local of new Set(others)) await this.provider.dropSlot(catchupSlotName(this.opts.db, this.opts.group, local, name));
    this.originsToDrop.add(originName(this.opts.db, this.opts.group, name));
  }

  /** Drop the origins of removed peers; one still held by an applier (a catch-up ending) is tried again later. */
  private async dropPendingOrigins(): Promise<void> {
    for (const origin of [...this.originsToDrop]) {
      // A peer that came back under the same name keeps its origin.
      if (this.peers.some((p) => originName(this.opts.db, this.opts.group, p.name) === origin)) {
        this.originsToDrop.delete(origin);
        continue;
      }
      try {
        await this.provider.dropOrigin(origin);
        this.originsToDrop.delete(origin);
      } catch (e) {
        if (sqlState(e) !== "55006") throw e;
        this.log.info("replication origin still in use; dropping it later", { origin, error: errorText(e) });
      }
    }
  }

  /**
   * Stop applying `peer`'s changes here (a part): its receiver ends, letting
   * what is in flight commit; its node slot here and our origin for it stay.
   * Returns our progress for it, durable, read while owning the origin (so no
   * earlier session is still committing), and how far we have all of its
   * changes (see PeerProgress).
   */
  async stopReceiving(peer: string): Promise<PeerProgress> {
    const p = this.peer(peer);
    if (!this.held.has(p.name)) await this.setPeers(this.peers, { notReceiving: [...this.held, p.name] });
    const progress = await this.originProgress(p.name);
    const confirmed = this.confirmedTo.get(p.name);
    return { progress, has: confirmed !== undefined && parseLsn(confirmed) > parseLsn(progress) ? confirmed : progress };
  }

  /** Receive from `peer` again (undoes stopReceiving). */
  async resumeReceiving(peer: string): Promise<void> {
    const p = this.peer(peer);
    if (this.catchups.has(p.name)) throw new Error(`a catch-up on ${p.name}'s changes is running: wait for it`);
    if (this.held.has(p.name)) await this.setPeers(this.peers, { notReceiving: [...this.held].filter((n) => n !== p.name) });
  }

  /**
   * Our progress for `peer`'s origin ("0/0": none), durable. Only while we
   * do not receive from it: it takes the origin, as an applier would.
   */
  async originProgress(peer: string): Promise<string> {
    const p = this.peer(peer);
    if (!this.held.has(p.name)) throw new Error(`originProgress(${JSON.stringify(p.name)}): this node still receives from it; stopReceiving() first`);
    const a = new Applier({
      localDsn: this.opts.localDsn,
      localNode: { name: this.opts.nodeName, id: this.opts.nodeId },
      peer: { name: p.name, id: p.id },
      originName: originName(this.opts.db, this.opts.group, p.name),
      members: () => this.known,
      log: this.log,
    });
    try {
      return formatLsn(await a.connect());
    } finally {
      await a.close();
    }
  }

  /**
   * Apply here what `source` has of `parting`'s changes and we lack (see
   * catchup.ts). `parting` must be a peer we do not receive from
   * (stopReceiving); `source` another peer. `endLsn`: where the stream stops
   * at the latest (see CatchUpOptions).
   */
  async catchUp(o: { source: string; parting: string; endLsn?: string; timeoutMs?: number }): Promise<CatchUpResult> {
    if (this.stopped) throw new Error("data plane stopped");
    const parting = this.peer(o.parting);
    const source = this.peer(o.source);
    if (source.name === parting.name) throw new Error(`catchUp: the source ${JSON.stringify(source.name)} is the parting node itself`);
    if (!this.held.has(parting.name)) throw new Error(`catchUp: this node still receives from ${parting.name}; stopReceiving(${JSON.stringify(parting.name)}) first`);
    if (this.catchups.has(parting.name)) throw new Error(`catchUp: a catch-up on ${parting.name}'s changes is already running`);
    const abort = new AbortController();
    this.catchups.set(parting.name, abort);
    try {
      return await catchUpFrom({
        localDsn: this.opts.localDsn,
        localNode: { name: this.opts.nodeName, id: this.opts.nodeId },
        source,
        parting: { name: parting.name, id: parting.id },
        db: this.opts.db,
        group: this.opts.group,
        ...(o.endLsn !== undefined ? { endLsn: o.endLsn } : {}),
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
        members: () => this.known,
        log: this.log,
        maxBacklog: this.opts.maxBacklog,
        signal: abort.signal,
      });
    } finally {
      this.catchups.delete(parting.name);
    }
  }

  private peer(name: string): PeerSpec {
    const p = this.peers.find((x) => x.name === name);
    if (!p) throw new Error(`${JSON.stringify(name)} is not a peer of node ${this.opts.nodeName} (peers: ${this.peers.map((x) => x.name).join(", ") || "none"})`);
    return p;
  }

  /** Slots here and receivers from each peer; while this node's PostgreSQL cannot be reached, the slots are `unknown` (or `slot_lost`). */
  async status(): Promise<DataPlaneStatus> {
    const names = this.peers.map((p) => p.name);
    let slots: SlotInfo[];
    try {
      slots = await this.provider.slots(names);
    } catch (e) {
      slots = this.provider.offlineSlots(names, `this node's PostgreSQL cannot be reached: ${errorText(e)}`);
    }
    const receivers = [...this.receivers.values()].map((r) => r.status());
    return {
      node: this.opts.nodeName,
      group: this.opts.group,
      db: this.opts.db,
      publication: this.provider.publication,
      groupSlot: this.provider.groupSlot,
      slots,
      receivers,
      notReceiving: [...this.held],
      connection: this.admin.state(),
      conflictsPerSecond: this.sampleConflicts(receivers) ?? null,
    };
  }

  /**
   * Move the group slot to what every peer has confirmed and has caught up
   * with (see Provider.advanceGroupSlot; also done every maintenanceIntervalMs).
   */
  advanceGroupSlot(): Promise<{ from: string; to: string } | undefined> {
    return this.provider.advanceGroupSlot(this.peers.map((p) => ({ name: p.name, dsn: p.dsn, origin: originName(this.opts.db, this.opts.group, p.name) })));
  }

  private sampleConflicts(receivers: ReceiverStatus[] = [...this.receivers.values()].map((r) => r.status())): number | undefined {
    return this.conflictRate.sample(receivers.reduce((n, r) => n + watchedConflicts(r.stats), 0));
  }

  private async maintain(): Promise<void> {
    if (this.maintaining || this.stopped) return;
    this.maintaining = true;
    try {
      this.sampleConflicts();
      // A node slot that vanished is found lost (not made again).
      for (const p of this.peers) await this.provider.ensureNodeSlot(this.slotPeer(p));
      await this.provider.ensureReplicaIdentity();
      await this.advanceGroupSlot();
      await this.dropPendingOrigins();
      this.maintenanceError = "";
    } catch (e) {
      // Once per distinct error; an outage of the server itself is the admin connection's to report (once).
      const error = errorText(e);
      if (error !== this.maintenanceError && this.admin.state().connected) this.log.warn("data plane maintenance failed", { error });
      else this.log.debug("data plane maintenance failed", { error });
      this.maintenanceError = error;
    } finally {
      this.maintaining = false;
    }
  }

  /** Stop every receiver (letting in-flight transactions commit) and close the connections. The slots stay. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    for (const c of this.catchups.values()) c.abort();
    await Promise.all([...this.receivers.values()].map((r) => r.stop()));
    this.receivers.clear();
    await this.admin.close();
  }

  /** Drop every connection at once, as if the sidecar were killed (kill -9). The slots stay. */
  abort(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    for (const c of this.catchups.values()) c.abort();
    for (const r of this.receivers.values()) r.abort();
    this.receivers.clear();
    this.admin.destroy();
  }
}

/**
 * The data plane's line of pgraft_health_check(): critical while a slot is
 * lost (here, or the one we stream from a peer), warning while this node's
 * PostgreSQL cannot be reached, a peer's stream is down, a peer's changes
 * arrive behind past a threshold (LAG_WARN_*), a slot retains WAL past one
 * (RETAINED_WARN_BYTES) or conflicts come faster than CONFLICTS_WARN_PER_SECOND,
 * ok otherwise.
 */
/**
 * The conflicts the health check watches: all but an update of a row another
 * node wrote earlier, applied because it is newer (update_origin_change /
 * apply_remote). That one is the normal case wherever rows written on one
 * node are updated on another, and PGD does not log it either: counted on
 * /metrics, never a warning.
 */
export function watchedConflicts(stats: { conflicts: number; conflictsByKind: Map<string, number> }): number {
  return stats.conflicts - (stats.conflictsByKind.get(BENIGN_CONFLICT) ?? 0);
}

const BENIGN_CONFLICT = "update_origin_change/apply_remote";

export function dataPlaneHealth(st: DataPlaneStatus): { severity: "ok" | "warning" | "critical"; detail: string } {
  const lost = [
    ...st.slots.filter((s) => s.state === "slot_lost").map((s) => s.error ?? `slot ${s.name} lost`),
    ...st.receivers.filter((r) => r.state === "slot_lost").map((r) => r.lastError ?? `the slot ${r.slot} on ${r.peer} is lost`),
  ];
  if (lost.length) return { severity: "critical", detail: lost.join("; ") };
  if (!st.connection.connected && st.connection.downSince) {
    return { severity: "warning", detail: `the data plane cannot reach this node's PostgreSQL since ${st.connection.downSince.toISOString()}: ${st.connection.lastError ?? "not connected"}` };
  }
  const streaming = st.receivers.filter((r) => r.state === "streaming" || r.state === "catchup").length;
  // A peer we cannot stream from is not ok: its changes are not arriving (its PostgreSQL or sidecar is down, or the network).
  const down = st.receivers.filter((r) => r.state === "disconnected");
  if (down.length) {
    return {
      severity: "warning",
      detail: `${streaming} of ${st.receivers.length} stream(s) from peers running; not receiving from ${down.map((r) => `${r.peer} (since ${r.since.toISOString()}${r.lastError ? `: ${r.lastError}` : ""})`).join(", ")}`,
    };
  }
  const behind = st.receivers.filter((r) => (r.lagSeconds ?? 0) > LAG_WARN_SECONDS || (r.lagBytes ?? 0) > LAG_WARN_BYTES);
  const retaining = st.slots.filter((s) => (s.retainedBytes ?? 0) > RETAINED_WARN_BYTES);
  const conflicting = (st.conflictsPerSecond ?? 0) > CONFLICTS_WARN_PER_SECOND;
  if (behind.length || retaining.length || conflicting) {
    const parts = [
      ...behind.map((r) => `applying ${r.peer}'s changes ${r.lagSeconds === null ? "" : `${r.lagSeconds.toFixed(1)} s `}behind (${r.lagBytes ?? "?"} bytes)`),
      ...retaining.map((s) => `slot ${s.name} retains ${(s.retainedBytes! / 2 ** 20).toFixed(0)} MiB of WAL${s.peer ? ` (for ${s.peer})` : ""}`),
      ...(conflicting ? [`${st.conflictsPerSecond!.toFixed(1)} conflicts/s over the last minute (changes that lost to a newer one or met a row written on two nodes at once; an update of a row another node wrote earlier is not counted): several nodes write the same rows at the same time (pgraft.conflict_history, pgraft_apply_conflicts_total)`] : []),
    ];
    return {
      severity: "warning",
      detail: `${parts.join("; ")} (thresholds: ${LAG_WARN_SECONDS} s or ${LAG_WARN_BYTES / 2 ** 20} MiB behind, ${RETAINED_WARN_BYTES / 2 ** 30} GiB retained, ${CONFLICTS_WARN_PER_SECOND} conflicts/s)`,
    };
  }
  return { severity: "ok", detail: `node ${st.node} in group ${st.group}: ${st.slots.length - 1} node slot(s), ${streaming} of ${st.receivers.length} stream(s) from peers running` };
}

/** A peer whose changes arrive this far behind is a warning in pgraft_health_check (apply lag). */
export const LAG_WARN_SECONDS = 30;
export const LAG_WARN_BYTES = 64 * 2 ** 20;
/** A slot holding back this much WAL is a warning (disk fills while a peer is away). */
export const RETAINED_WARN_BYTES = 2 ** 30;
/** More conflicts than this per second, over a minute, is a warning: applications on several nodes write the same rows. */
export const CONFLICTS_WARN_PER_SECOND = 10;

/** DataPlane.start, as a function. */
export function startDataPlane(opts: DataPlaneOptions): Promise<DataPlane> {
  return DataPlane.start(opts);
}

function validate(opts: DataPlaneOptions, peers: PeerSpec[]): void {
  const names = new Set<string>([opts.nodeName]);
  const ids = new Set<number>([opts.nodeId]);
  for (const p of peers) {
    if (names.has(p.name)) throw new Error(`peer name ${JSON.stringify(p.name)} is this node's or another peer's`);
    if (ids.has(p.id)) throw new Error(`peer ${p.name}: node id ${p.id} is this node's or another peer's (ids break ties, they must differ)`);
    names.add(p.name);
    ids.add(p.id);
  }
}
