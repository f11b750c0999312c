// The node-group side of a sidecar's control loop: once a second it compares
// the replicated catalog with what runs here and closes the gap.
//
//  - This database's node is in a group and past JOINING: the data plane runs,
//    with every other member from CATCHUP on (and a parting one until its
//    changes have been caught up) as a peer.
//  - It is joining (JOIN_START / JOINING): the join job runs here (join-job.ts);
//    in CATCHUP it is promoted (PROMOTE → PROMOTING → ACTIVE) once every stream
//    from its peers has caught up.
//  - A member is parting: the remaining node with the lowest sequence number
//    coordinates (PART_START → PARTING → PART_CATCHUP → PARTED); every remaining
//    node reports in the KV store when it has applied everything the parting
//    node had written (or that node cannot be reached), and a parted node's
//    slots and origins go when it leaves the peers.
// Every step is a Raft command, so after any restart or leader change the next
// tick continues from the catalog.
import type { Logger } from "pino";
import type { DataNode } from "../cluster/node-groups.js";
import type { ClusterState } from "../cluster/state.js";
import { DataPlane, type DataPlaneStatus, type PeerSpec } from "../slots/index.js";
import { runJoin, type JoinRequest } from "./join-job.js";

export const JOIN_KEY = (node: string): string => `pgraft.internal/join/${node}`;
export const PART_ACK_KEY = (parting: string, node: string): string => `pgraft.internal/part/${parting}/${node}`;

/** How long the part coordinator waits for every remaining node to catch up before going on without the laggards. */
const PART_CATCHUP_TIMEOUT_MS = 30_000;

const STREAMING_STATES = new Set(["CATCHUP", "PROMOTE", "PROMOTING", "ACTIVE"]);
const PEER_STATES = new Set(["CATCHUP", "PROMOTE", "PROMOTING", "ACTIVE", "PART_START", "PARTING"]);

export interface GroupControllerDeps {
  selfId: number;
  state: ClusterState;
  /** Run a pgd.* command through the leader. */
  pgd: (cmd: Record<string, unknown>) => Promise<unknown>;
  kvPut: (key: string, value: string) => Promise<void>;
  kvGet: (key: string) => Promise<string | undefined>;
  log: Logger;
  intervalMs?: number;
}

export class GroupController {
  private dp: DataPlane | undefined;
  private dpGroup = "";
  private peersSig = "";
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;
  private joining: Promise<void> | undefined;
  private partingSince = new Map<string, number>();
  lastJoinError = "";
  /** Progress lines of the current or last join (wait_for_join_completion shows them). */
  readonly joinProgress: string[] = [];

  constructor(private readonly d: GroupControllerDeps) {}

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
    } catch (e) {
      this.d.log.warn({ err: e instanceof Error ? e.message : String(e) }, "node group reconcile failed; retrying");
    } finally {
      this.busy = false;
    }
  }

  private async reconcile(): Promise<void> {
    const me = this.localNode();
    if (!me || !me.group || me.state === "CREATED" || me.state === "PARTED") {
      await this.stopDataPlane();
      return;
    }
    if (me.state === "JOIN_START" || me.state === "JOINING") {
      await this.stopDataPlane();
      this.startJoin(me);
      return;
    }
    const all = this.d.state.dataNodes();
    const peers: PeerSpec[] = all
      .filter((n) => n.group === me.group && n.name !== me.name && PEER_STATES.has(n.state))
      .map((n) => ({ name: n.name, id: n.nodeId, dsn: n.dsn }));
    await this.ensureDataPlane(me, peers);
    if (me.state === "CATCHUP" || me.state === "PROMOTE" || me.state === "PROMOTING") await this.promote(me, peers);
    await this.parts(me, all);
  }

  private async ensureDataPlane(me: DataNode, peers: PeerSpec[]): Promise<void> {
    const sig = JSON.stringify(peers);
    if (this.dp && this.dpGroup === me.group) {
      if (sig !== this.peersSig) {
        await this.dp.setPeers(peers);
        this.peersSig = sig;
        this.d.log.info({ peers: peers.map((p) => p.name) }, `data plane peers: ${peers.map((p) => p.name).join(", ") || "none"}`);
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

  private async stopDataPlane(): Promise<void> {
    const dp = this.dp;
    this.dp = undefined;
    this.dpGroup = "";
    this.peersSig = "";
    if (dp) await dp.stop();
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

  /** Report catch-up for parting members; the coordinator moves them along. */
  private async parts(me: DataNode, all: DataNode[]): Promise<void> {
    const parting = all.filter((n) => n.group === me.group && n.name !== me.name && (n.state === "PART_START" || n.state === "PARTING" || n.state === "PART_CATCHUP"));
    if (!parting.length) return;
    const remaining = all.filter((n) => n.group === me.group && STREAMING_STATES.has(n.state) && !parting.includes(n));
    const coordinator = remaining.sort((a, b) => a.seqId - b.seqId)[0];
    const st = this.dp ? await this.dp.status() : undefined;
    for (const p of parting) {
      if (p.state === "PARTING") {
        // Caught up: our stream from p has nothing left, or p is gone (nothing more can come from it).
        const r = st?.receivers.find((x) => x.peer === p.name);
        const caughtUp = !r || r.state === "disconnected" || r.lagBytes === 0;
        if (caughtUp) await this.d.kvPut(PART_ACK_KEY(p.name, me.name), JSON.stringify({ at: r?.durableLsn ?? null }));
      }
      if (coordinator?.name !== me.name) continue;
      if (p.state === "PART_START") {
        await this.d.pgd({ op: "pgd.node.state", name: p.name, state: "PARTING" });
        this.partingSince.set(p.name, Date.now());
      } else if (p.state === "PARTING") {
        const since = this.partingSince.get(p.name) ?? Date.now();
        this.partingSince.set(p.name, since);
        const acks = await Promise.all(remaining.map((n) => this.d.kvGet(PART_ACK_KEY(p.name, n.name))));
        const waiting = remaining.filter((_, i) => !acks[i]).map((n) => n.name);
        if (waiting.length && Date.now() - since < PART_CATCHUP_TIMEOUT_MS) continue;
        if (waiting.length) this.d.log.warn({ node: p.name, waiting }, `parting ${p.name} without catch-up confirmed by ${waiting.join(", ")}`);
        await this.d.pgd({ op: "pgd.node.state", name: p.name, state: "PART_CATCHUP" });
        await this.d.pgd({ op: "pgd.node.state", name: p.name, state: "PARTED" });
        this.partingSince.delete(p.name);
        this.d.log.info({ node: p.name }, `node ${p.name} parted from group ${p.group}`);
      } else if (p.state === "PART_CATCHUP") {
        await this.d.pgd({ op: "pgd.node.state", name: p.name, state: "PARTED" });
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 10));
    await this.joining?.catch(() => undefined);
    await this.stopDataPlane();
  }
}
