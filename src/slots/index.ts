// The data plane of one node (issue 5): what the sidecar starts beside its
// PostgreSQL once the node belongs to a group. Raft coordination, join/part
// and the SQL API drive it through this facade:
//
//   const dp = await DataPlane.start({ localDsn, nodeName, nodeId, group, db, peers });
//   await dp.setPeers(newPeers);      // a member joined or parted
//   await dp.status();                // slots (peers' view of us) and receivers (our view of them)
//   await dp.stop();                  // or dp.abort(): drop everything, as a crash would
//
// See README.md for the pieces and the guarantees.
import type pg from "pg";
import type { NodeRef } from "./applier.js";
import { connectClient, destroyClient } from "./connection.js";
import { ensureLocalObjects } from "./local-objects.js";
import { originName } from "./naming.js";
import { Provider, type SlotInfo } from "./provider.js";
import { Receiver, type ReceiverStatus, type StateChange } from "./receiver.js";
import { checkSettings, SettingsError } from "./settings-check.js";
import { errorText, silentLogger, type PeerSpec, type SlotsLogger } from "./types.js";

export { checkSettings, describeProblems, SettingsError, type SettingProblem, type SettingsReport } from "./settings-check.js";
export { groupSlotName, isPgraftSlot, nodeSlotName, originName, publicationName } from "./naming.js";
export { readConflicts, remoteWins, type ConflictRow, type ConflictType, type Resolution } from "./conflicts.js";
export type { SlotInfo, SlotState } from "./provider.js";
export type { ReceiverState, ReceiverStatus, StateChange } from "./receiver.js";
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
  log?: SlotsLogger;
  /** A peer further behind than this many bytes is in catchup (default 1 MiB). */
  catchupThresholdBytes?: number;
  /** How often the group slot is advanced and new tables without a primary key get REPLICA IDENTITY FULL (default 10 s; 0: never, call advanceGroupSlot()). */
  maintenanceIntervalMs?: number;
  probeIntervalMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  windowTransactions?: number;
  /** A receiver stops reading its stream while this many transactions wait to be durable (default 5000). */
  maxBacklog?: number;
  onStateChange?: (e: StateChange) => void;
}

export interface DataPlaneStatus {
  node: string;
  group: string;
  db: string;
  publication: string;
  groupSlot: string;
  /** The slots on this node: the group slot, and each peer's node slot (how far each peer has confirmed our changes). */
  slots: SlotInfo[];
  /** One per upstream peer: how far we have applied its changes. */
  receivers: ReceiverStatus[];
}

export class DataPlane {
  private peers: PeerSpec[];
  private readonly receivers = new Map<string, Receiver>();
  /** Every member ever seen, by origin name: rows a parted member wrote still need a name and an id for tie-breaks. */
  private readonly known = new Map<string, NodeRef>();
  private timer: NodeJS.Timeout | undefined;
  private maintaining = false;
  private stopped = false;

  private constructor(
    private readonly opts: DataPlaneOptions,
    private readonly admin: pg.Client,
    private readonly provider: Provider,
    private readonly log: SlotsLogger,
  ) {
    this.peers = [];
  }

  /**
   * Check the server's settings (SettingsError lists the exact fixes), create
   * pgraft's objects, the publication, the group slot and a node slot per
   * peer, and start a receiver per peer.
   */
  static async start(opts: DataPlaneOptions): Promise<DataPlane> {
    validate(opts, opts.peers);
    const log = opts.log ?? silentLogger;
    const admin = await connectClient(opts.localDsn, "pgraft_slots", (e) => log.warn("data plane admin connection lost", { error: e.message }));
    try {
      const report = await checkSettings(admin, { peers: opts.peers.length });
      for (const w of report.warnings) log.warn(w);
      if (!report.ok) throw new SettingsError(report);
      await ensureLocalObjects(admin);
      const provider = new Provider(admin, { db: opts.db, group: opts.group, log, catchupThresholdBytes: opts.catchupThresholdBytes });
      await provider.ensurePublication();
      await provider.ensureReplicaIdentity();
      await provider.ensureGroupSlot();
      const dp = new DataPlane(opts, admin, provider, log);
      await dp.setPeers(opts.peers);
      const every = opts.maintenanceIntervalMs ?? 10_000;
      if (every > 0) {
        dp.timer = setInterval(() => void dp.maintain(), every);
        dp.timer.unref();
      }
      return dp;
    } catch (e) {
      await admin.end().catch(() => undefined);
      throw e;
    }
  }

  /**
   * The group's other members now. New peers get a node slot here and a
   * receiver; removed ones lose both (their slot is dropped: only do this
   * once they are parted); a changed DSN restarts the receiver.
   * `newSlotsFromGroupSlot`: a new peer's slot is a copy of the group slot, so
   * it starts at the oldest position every member has confirmed rather than
   * now (what a join whose data copy is that old needs).
   */
  async setPeers(peers: PeerSpec[], o: { newSlotsFromGroupSlot?: boolean } = {}): Promise<void> {
    validate(this.opts, peers);
    if (this.stopped) throw new Error("data plane stopped");
    const byName = new Map(peers.map((p) => [p.name, p]));
    for (const old of this.peers) {
      const now = byName.get(old.name);
      if (now && now.dsn === old.dsn && now.id === old.id) continue;
      const r = this.receivers.get(old.name);
      this.receivers.delete(old.name);
      await r?.stop();
      if (!now) await this.provider.dropNodeSlot(old.name);
    }
    for (const p of peers) {
      this.known.set(originName(this.opts.db, this.opts.group, p.name), { name: p.name, id: p.id });
      await this.provider.ensureNodeSlot(p.name, { fromGroupSlot: o.newSlotsFromGroupSlot === true });
    }
    this.peers = peers.map((p) => ({ ...p }));
    for (const p of this.peers) {
      if (this.receivers.has(p.name)) continue;
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
      });
      this.receivers.set(p.name, r);
      r.start();
    }
  }

  /** Slots here and receivers from each peer. */
  async status(): Promise<DataPlaneStatus> {
    return {
      node: this.opts.nodeName,
      group: this.opts.group,
      db: this.opts.db,
      publication: this.provider.publication,
      groupSlot: this.provider.groupSlot,
      slots: await this.provider.slots(this.peers.map((p) => p.name)),
      receivers: [...this.receivers.values()].map((r) => r.status()),
    };
  }

  /** Move the group slot to what every peer has confirmed (also done every maintenanceIntervalMs). */
  advanceGroupSlot(): Promise<{ from: string; to: string } | undefined> {
    return this.provider.advanceGroupSlot(this.peers.map((p) => p.name));
  }

  private async maintain(): Promise<void> {
    if (this.maintaining || this.stopped) return;
    this.maintaining = true;
    try {
      await this.provider.ensureReplicaIdentity();
      await this.advanceGroupSlot();
    } catch (e) {
      this.log.warn("data plane maintenance failed", { error: errorText(e) });
    } finally {
      this.maintaining = false;
    }
  }

  /** Stop every receiver (letting in-flight transactions commit) and close the connections. The slots stay. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await Promise.all([...this.receivers.values()].map((r) => r.stop()));
    this.receivers.clear();
    await this.admin.end().catch(() => undefined);
  }

  /** Drop every connection at once, as if the sidecar were killed (kill -9). The slots stay. */
  abort(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    for (const r of this.receivers.values()) r.abort();
    this.receivers.clear();
    destroyClient(this.admin);
  }
}

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
