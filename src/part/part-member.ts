// What every remaining node does while another member parts (the coordinator
// moves the states; see part-coordinator.ts):
//
//   PARTING       report "drained" once our stream from the parting node P has
//                 nothing left, or P cannot be reached (nothing more can come);
//   PART_CATCHUP  the group controller has stopped our receiver from P (its
//                 slot and our origin for it stay); report our progress for P
//                 ("stopped"); once the coordinator's plan names a source that
//                 has more of P's changes than we do, apply them from it
//                 (DataPlane.catchUp) and report "caught up".
//
// Each report is written once; every step is safe to repeat after a restart
// (a catch-up that already ran has nothing left to do).
import type { Logger } from "pino";
import type { DataNode } from "../cluster/node-groups.js";
import type { DataPlane } from "../slots/index.js";
import { parseLsn } from "../slots/lsn.js";
import { caughtUpKey, drainedKey, parseRecord, planKey, stoppedKey, type CaughtUpRecord, type DrainedRecord, type PartPlan, type StoppedRecord } from "./part-keys.js";

export interface PartKv {
  kvPut: (key: string, value: string) => Promise<void>;
  kvGet: (key: string) => Promise<string | undefined>;
}

/** A failed catch-up is tried again after this long. */
const RETRY_MS = 5_000;

export class PartMember {
  /** Catch-ups running in the background, by parting node. */
  private readonly running = new Map<string, Promise<void>>();
  private readonly failedAt = new Map<string, number>();
  /** The last catch-up error per parting node (cleared once it succeeds). */
  readonly lastError = new Map<string, string>();

  constructor(
    private readonly kv: PartKv,
    private readonly log: Logger,
  ) {}

  /** One tick's duties for parting node `p` (me: a remaining node, dp: its running data plane). */
  async step(me: DataNode, p: DataNode, dp: DataPlane): Promise<void> {
    if (p.state === "PARTING") await this.reportDrained(me, p, dp);
    else if (p.state === "PART_CATCHUP") await this.catchUp(me, p, dp);
  }

  private async reportDrained(me: DataNode, p: DataNode, dp: DataPlane): Promise<void> {
    const key = drainedKey(p, me.name);
    if (await this.kv.kvGet(key)) return;
    const r = (await dp.status()).receivers.find((x) => x.peer === p.name);
    // Nothing left on the stream, or p is gone (nothing more can come from it).
    if (r && r.state !== "disconnected" && r.lagBytes !== 0) return;
    const rec: DrainedRecord = { at: r?.durableLsn ?? null };
    await this.kv.kvPut(key, JSON.stringify(rec));
    this.log.info({ node: p.name, at: rec.at }, `part of ${p.name}: drained what this node could get from it directly`);
  }

  private async catchUp(me: DataNode, p: DataNode, dp: DataPlane): Promise<void> {
    // The controller has already stopped our receiver from p (it is in the data plane's notReceiving).
    let stopped = parseRecord<StoppedRecord>(await this.kv.kvGet(stoppedKey(p, me.name)));
    if (!stopped) {
      stopped = await dp.stopReceiving(p.name);
      await this.kv.kvPut(stoppedKey(p, me.name), JSON.stringify(stopped));
      this.log.info({ node: p.name, ...stopped }, `part of ${p.name}: stopped receiving from it; this node has its changes up to ${stopped.has ?? stopped.progress}`);
    }
    if (this.running.has(p.name)) return;
    const plan = parseRecord<PartPlan>(await this.kv.kvGet(planKey(p)));
    if (!plan) return;
    if (await this.kv.kvGet(caughtUpKey(p, me.name))) return;
    if (plan.source === me.name || parseLsn(stopped.has ?? stopped.progress) >= parseLsn(plan.target)) {
      await this.reportCaughtUp(me, p, { progress: stopped.has ?? stopped.progress, applied: 0, source: plan.source, complete: true });
      return;
    }
    if (Date.now() - (this.failedAt.get(p.name) ?? 0) < RETRY_MS) return;
    this.log.info({ node: p.name, source: plan.source, from: stopped.progress, to: plan.target }, `part of ${p.name}: catching up on its changes from ${plan.source}`);
    const job = (async () => {
      const r = await dp.catchUp({ source: plan.source, parting: p.name, endLsn: plan.endLsn });
      if (!r.complete) {
        this.log.warn(
          { node: p.name, source: plan.source, reached: r.to, source_progress: r.target },
          `part of ${p.name}: ${plan.source}'s WAL held no more of its changes, yet this node's progress (${r.to}) stays below ${plan.source}'s (${r.target}); ` +
            `if changes between them exist (${plan.source} may have got them in a join's snapshot), they are not on this node`,
        );
      }
      await this.reportCaughtUp(me, p, { progress: r.to, applied: r.applied, source: plan.source, complete: r.complete });
      this.lastError.delete(p.name);
      this.failedAt.delete(p.name);
    })()
      .catch((e: unknown) => {
        const msg = e instanceof Error ? e.message : String(e);
        this.lastError.set(p.name, msg);
        this.failedAt.set(p.name, Date.now());
        this.log.warn({ node: p.name, source: plan.source, err: msg }, `part of ${p.name}: catching up from ${plan.source} failed; retrying`);
      })
      .finally(() => this.running.delete(p.name));
    this.running.set(p.name, job);
  }

  private async reportCaughtUp(me: DataNode, p: DataNode, rec: CaughtUpRecord): Promise<void> {
    await this.kv.kvPut(caughtUpKey(p, me.name), JSON.stringify(rec));
    const what = rec.complete === false ? `has what ${rec.source}'s WAL held of it` : `has every change of it that ${rec.source} has`;
    this.log.info({ node: p.name, ...rec }, `part of ${p.name}: this node ${what} (${rec.applied} applied by the catch-up)`);
  }

  /** Wait for the background catch-ups (after the data plane stopped, which aborts them). */
  async idle(): Promise<void> {
    await Promise.all([...this.running.values()]);
  }
}
