// The node-group side of a sidecar's control loop: once a second it compares
// the replicated catalog with what runs here and closes the gap.
//
//  - This database's node is in a group and past JOINING: the data plane runs,
//    with every other member from CATCHUP on (and a parting one until it is
//    PARTED) as a peer; from a node in PART_CATCHUP it receives nothing more
//    (its slot and our origin for it stay until PARTED).
//  - It is joining (JOIN_START / JOINING): the join job runs here (join-job.ts);
//    in CATCHUP it is promoted (PROMOTE → PROMOTING → ACTIVE) once every stream
//    from its peers has caught up.
//  - A member is parting (src/part/): the Raft leader's node, if it stays,
//    or else the remaining node with the lowest sequence number coordinates
//    (PART_START → PARTING → PART_CATCHUP → PARTED); every remaining node drains the parting node directly while it
//    can, then stops receiving from it and reports its progress; the node with
//    the most of its changes is the source the others catch up from; a parted
//    node's slots and origins go when it leaves the peers.
// Every step is a Raft command, so after any restart or leader change the next
// tick continues from the catalog.
import type { Logger } from "pino";
import type { DataNode } from "../cluster/node-groups.js";
import type { ClusterState } from "../cluster/state.js";
import { PartCoordinator } from "../part/part-coordinator.js";
import { PartMember } from "../part/part-member.js";
import { DataPlane, dropSlots, leaveGroup, staleSlots, originName, unknownWriterOriginName, type DataPlaneStatus, type PeerSpec } from "../slots/index.js";
import { runJoin, type JoinRequest } from "./join-job.js";

const SWEEP_EVERY_MS = 30_000;
const STALE_FOR_MS = 60_000;

export const JOIN_KEY = (node: string): string => `pgraft.internal/join/${node}`;

const STREAMING_STATES = new Set(["CATCHUP", "PROMOTE", "PROMOTING", "ACTIVE"]);
const PARTING_STATES = new Set(["PART_START", "PARTING", "PART_CATCHUP"]);
const PEER_STATES = new Set([...STREAMING_STATES, ...PARTING_STATES]);

export interface GroupControllerDeps {
  selfId: number;
  state: ClusterState;
  /** Run a pgd.* command through the leader. */
  pgd: (cmd: Record<string, unknown>) => Promise<unknown>;
  kvPut: (key: string, value: string) => Promise<void>;
  kvGet: (key: string) => Promise<string | undefined>;
  log: Logger;
  /** The Raft leader's member id as this node knows it (0: none): its node coordinates parts (src/part/). */
  leaderId?: () => number;
  intervalMs?: number;
}

export class GroupController {
  private dp: DataPlane | undefined;
  private dpGroup = "";
  private peersSig = "";
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private reconcileError = "";
  private stopped = false;
  private joining: Promise<void> | undefined;
  /** Parted memberships whose objects this process has removed (see leave()). */
  private readonly left = new Set<string>();
  /** Slots that looked stale, since when (sweepStaleSlots). */
  private readonly staleSince = new Map<string, number>();
  private sweptAt = 0;
  private readonly partMember: PartMember;
  private readonly partCoordinator: PartCoordinator;
  lastJoinError = "";
  /** Progress lines of the current or last join (wait_for_join_completion shows them). */
  readonly joinProgress: string[] = [];

  constructor(private readonly d: GroupControllerDeps) {
    this.partMember = new PartMember(d, d.log);
    this.partCoordinator = new PartCoordinator(d);
  }

  /**
   * What each part in progress waits for, as this node sees it: the
   * coordinator's word (a missing majority, a node that does not report) and
   * this node's last catch-up error.
   */
  partStatus(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [node, m] of this.partCoordinator.status) out[node] = m;
    for (const [node, e] of this.partMember.lastError) out[node] = [out[node], `catch-up failed: ${e}`].filter(Boolean).join("; ");
    return out;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.d.intervalMs ?? 1_000);
    this.timer.unref();
  }

  localNode(): DataNode | undefined {
    return this.d.state.dataNodes().find((n) => n.raftMemberId === this.d.selfId);
  }

  async status(): Promise<DataPlaneStatus | undefined> {
    return this.dp?.status();
  }

  async tick(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      await this.reconcile();
      this.reconcileError = "";
    } catch (e) {
      // Retried every tick (a data plane whose PostgreSQL is down starts once it is back): a warning per distinct error, not per tick.
      const err = e instanceof Error ? e.message : String(e);
      if (err !== this.reconcileError) this.d.log.warn({ err }, "node group reconcile failed; retrying");
      else this.d.log.debug({ err }, "node group reconcile failed again; retrying");
      this.reconcileError = err;
    } finally {
      this.busy = false;
    }
  }

  private async reconcile(): Promise<void> {
    const me = this.localNode();
    if (!me || !me.group || me.state === "CREATED" || me.state === "PARTED") {
      await this.stopDataPlane();
      if (me?.state === "PARTED" && me.group) await this.leave(me);
      return;
    }
    if (me.state === "JOIN_START" || me.state === "JOINING") {
      await this.stopDataPlane();
      this.startJoin(me);
      return;
    }
    const all = this.d.state.dataNodes();
    const members = all.filter((n) => n.group === me.group && n.name !== me.name && PEER_STATES.has(n.state));
    const peers: PeerSpec[] = members.map((n) => ({ name: n.name, id: n.nodeId, dsn: n.dsn }));
    // A node in PART_CATCHUP: every remaining node has stopped (or is stopping) receiving from it; its changes that
    // we lack come from the remaining node with the most of them (src/part/).
    const notReceiving = members.filter((n) => n.state === "PART_CATCHUP").map((n) => n.name);
    await this.ensureDataPlane(me, peers, notReceiving);
    await this.sweepStaleSlots(me, all);
    if (me.state === "CATCHUP" || me.state === "PROMOTE" || me.state === "PROMOTING") await this.promote(me, peers.filter((p) => !notReceiving.includes(p.name)));
    await this.parts(me, all);
  }

  private async ensureDataPlane(me: DataNode, peers: PeerSpec[], notReceiving: string[]): Promise<void> {
    const sig = JSON.stringify([peers, notReceiving]);
    if (this.dp && this.dpGroup === me.group) {
      if (sig !== this.peersSig) {
        await this.dp.setPeers(peers, { notReceiving });
        this.peersSig = sig;
        const not = notReceiving.length ? ` (not receiving from ${notReceiving.join(", ")})` : "";
        this.d.log.info({ peers: peers.map((p) => p.name), notReceiving }, `data plane peers: ${peers.map((p) => p.name).join(", ") || "none"}${not}`);
      }
      return;
    }
    await this.stopDataPlane();
    this.dp = await DataPlane.start({
      localDsn: me.dsn,
      nodeName: me.name,
      nodeId: me.nodeId,
      group: me.group,
      db: me.dbname,
      peers,
      notReceiving,
      // The replicated setting, read for every transaction: a change applies on every node at once.
      logOriginChange: () => this.d.state.settings().conflictLogOriginChange,
      log: {
        info: (m, f) => this.d.log.info(f ?? {}, m),
        warn: (m, f) => this.d.log.warn(f ?? {}, m),
        debug: (m, f) => this.d.log.debug(f ?? {}, m),
        error: (m, f) => this.d.log.error(f ?? {}, m),
      },
    });
    this.dpGroup = me.group;
    this.peersSig = sig;
    this.d.log.info({ group: me.group, peers: peers.map((p) => p.name) }, `data plane started for node ${me.name} in group ${me.group}`);
  }

  /**
   * Node slots here for nodes no longer in the group (parted while this sidecar was down: it never saw the part)
   * would hold WAL for ever (src/slots/leave-group.ts). Checked every 30 s; a slot is dropped only once it has looked
   * stale for a minute, so a catalog that lags the log here for a moment never costs a joining node its new slot.
   */
  private async sweepStaleSlots(me: DataNode, all: DataNode[]): Promise<void> {
    const now = Date.now();
    if (now - this.sweptAt < SWEEP_EVERY_MS) return;
    this.sweptAt = now;
    const nodes = all.filter((n) => n.group === me.group && n.name !== me.name && n.state !== "PARTED").map((n) => n.name);
    const stale = await staleSlots({ localDsn: me.dsn, db: me.dbname, group: me.group, self: me.name, nodes });
    for (const name of this.staleSince.keys()) if (!stale.includes(name)) this.staleSince.delete(name);
    for (const name of stale) if (!this.staleSince.has(name)) this.staleSince.set(name, now);
    const due = stale.filter((name) => now - this.staleSince.get(name)! >= STALE_FOR_MS);
    if (!due.length) return;
    const dropped = await dropSlots(me.dsn, due);
    for (const name of due) this.staleSince.delete(name);
    if (dropped.length) this.d.log.info({ slots: dropped }, `dropped ${dropped.length} slot(s) of nodes no longer in group ${me.group}`);
  }

  private async stopDataPlane(): Promise<void> {
    const dp = this.dp;
    this.dp = undefined;
    this.dpGroup = "";
    this.peersSig = "";
    if (dp) await dp.stop();
  }

  /**
   * Once parted, remove what could feed the group again (src/slots/leave-group.ts), once per membership (name and
   * sequence id) in this process; a sidecar restarted later does it again on its first tick (it is idempotent).
   */
  private async leave(me: DataNode): Promise<void> {
    const key = `${me.name}@${me.seqId}`;
    if (this.left.has(key)) return;
    const others = this.d.state.dataNodes().filter((n) => n.group === me.group && n.name !== me.name);
    const r = await leaveGroup({
      localDsn: me.dsn,
      db: me.dbname,
      group: me.group,
      origins: [...others.map((n) => originName(me.dbname, me.group, n.name)), unknownWriterOriginName(me.dbname, me.group)],
    });
    this.left.add(key);
    this.d.log.info({ node: me.name, group: me.group, ...r }, `node ${me.name} is parted: removed its slots, publication and origins for group ${me.group}`);
  }

  private startJoin(me: DataNode): void {
    if (this.joining) return;
    this.joining = (async () => {
      const raw = await this.d.kvGet(JOIN_KEY(me.name));
      if (!raw) throw new Error(`no join request recorded for node ${me.name}`);
      const req = JSON.parse(raw) as JoinRequest;
      this.joinProgress.length = 0;
      await runJoin(req, {
        self: me,
        nodes: () => this.d.state.dataNodes(),
        setState: async (state) => {
          await this.d.pgd({ op: "pgd.node.state", name: me.name, state, ...(state === "JOIN_START" ? { group: me.group } : {}) });
        },
        progress: (m) => {
          this.joinProgress.push(m);
          this.d.log.info({ node: me.name }, `join: ${m}`);
        },
      });
      this.lastJoinError = "";
    })()
      .catch((e: unknown) => {
        this.lastJoinError = e instanceof Error ? e.message : String(e);
        this.joinProgress.push(`failed: ${this.lastJoinError} (retrying)`);
        this.d.log.warn({ node: me.name, err: this.lastJoinError }, "join failed; it will be retried");
      })
      .finally(() => {
        this.joining = undefined;
      });
  }

  /** CATCHUP → PROMOTE → PROMOTING → ACTIVE once every peer's stream has caught up. */
  private async promote(me: DataNode, peers: PeerSpec[]): Promise<void> {
    const st = await this.dp!.status();
    const ready = peers.every((p) => st.receivers.find((r) => r.peer === p.name)?.state === "streaming");
    if (!ready) return;
    for (const next of me.state === "CATCHUP" ? ["PROMOTE", "PROMOTING", "ACTIVE"] : me.state === "PROMOTE" ? ["PROMOTING", "ACTIVE"] : ["ACTIVE"]) {
      await this.d.pgd({ op: "pgd.node.state", name: me.name, state: next });
      this.joinProgress.push(`state ${next}`);
    }
    this.d.log.info({ node: me.name }, `node ${me.name} joined group ${me.group}: ACTIVE`);
  }

  /** This node's part in other members' parts (src/part/): report, catch up, and coordinate when it is its turn. */
  private async parts(me: DataNode, all: DataNode[]): Promise<void> {
    if (!STREAMING_STATES.has(me.state) || !this.dp) return; // only the nodes that stay take part
    const parting = all.filter((n) => n.group === me.group && n.name !== me.name && PARTING_STATES.has(n.state));
    if (!parting.length) return;
    const remaining = all.filter((n) => n.group === me.group && STREAMING_STATES.has(n.state));
    for (const p of parting) {
      // One failing duty (a report that cannot be written yet) must not keep this node from the other.
      for (const [what, step] of [
        ["report", () => this.partMember.step(me, p, this.dp!)],
        ["coordinate", () => this.partCoordinator.step(me, p, remaining, this.d.leaderId?.() ?? 0)],
      ] as const) {
        try {
          await step();
        } catch (e) {
          this.d.log.warn({ node: p.name, err: e instanceof Error ? e.message : String(e) }, `part of ${p.name}: could not ${what} this time; retrying`);
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 10));
    await this.joining?.catch(() => undefined);
    await this.stopDataPlane();
    await this.partMember.idle();
  }
}
