// A randomized KV workload against a cluster of real sidecar processes, with a
// nemesis, recording a history for the linearizability checker.
//
// Workload: concurrent clients, each talking to a randomly chosen member (and
// switching now and then, and more often after an error), run put / get /
// delete / cas on a small set of keys, one operation at a time each, every
// operation bounded by a deadline. Put and cas values are unique, so the
// checker stays fast and a cas can be done through KvPut's if_mod_revision:
// the client reads the key (a linearizable get, recorded too), then writes
// only if the key's mod_revision is still the one read (0: still absent). A
// mod_revision names exactly one write, which wrote exactly one value, so
// "mod_revision unchanged" is "value unchanged" — the register model's cas.
//
// Outcomes: a reply is `ok`; an error is `failed` (left out of the history)
// only when the request certainly did not take effect — INVALID_ARGUMENT, or
// NOT_LEADER (the `pgraft-error-code` trailer), which the sidecar raises only
// before anything is proposed (a follower that cannot forward, a leader that
// is no longer one when it proposes). Everything else — deadlines, lost
// connections, NO_QUORUM, PROPOSAL_DROPPED, STOPPED, REMOVED — is `unknown`:
// the operation may take effect at any time after its call, or never.
//
// Nemesis: one fault at a time, each healed (and the cluster back to one
// leader every live member follows) before the next: kill -9 then restart,
// SIGSTOP then SIGCONT, partition then heal (the target is the leader more
// often than not), leadership transfer, and a membership change (remove a
// voter and join a fresh node in its place, or the other way round; the size
// of the cluster stays the same). Never more than one member is down.
//
// Every random choice comes from PRNGs seeded from one seed (one stream per
// client, one for the nemesis); timing still varies from run to run, so a seed
// replays the choices, not the interleaving.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { seededRandom, type Random } from "../../src/consensus/random.js";
import { isServiceError } from "../../src/transport/grpc-service.js";
import { checkLinearizable, type CheckResult } from "../linearizability/checker.js";
import { HistoryRecorder, saveHistory, type OpKind, type Operation } from "../linearizability/history.js";
import { errorText, sleep, type TestCluster } from "./harness.js";

export type NemesisKind = "kill" | "pause" | "partition" | "transfer" | "membership";
export const NEMESIS_KINDS: readonly NemesisKind[] = ["kill", "pause", "partition", "transfer", "membership"];
const OP_KINDS: readonly OpKind[] = ["put", "get", "delete", "cas"];

export interface NemesisOptions {
  seed: number;
  /** Workload duration; the nemesis may run a little past it to finish its fault (or to try a kind that has not succeeded yet). */
  seconds: number;
  /** Concurrent clients (default 7). */
  clients?: number;
  /** Keys (default 5). */
  keys?: number;
  /** Deadline of one request (default 2,500 ms); past it the outcome is unknown. */
  opTimeoutMs?: number;
  /** Progress lines (e.g. t.diagnostic). */
  log?: (line: string) => void;
}

export interface NemesisEvent {
  kind: NemesisKind;
  /** What was done, e.g. "kill -9 node 2 (leader)". */
  detail: string;
  /** performance.now() (the history's clock) when the fault began... */
  start: number;
  /** ...when it was removed (node restarted / resumed, partition healed, change done)... */
  healed: number;
  /** ...and when every live member followed one leader again. */
  recovered: number;
  /** The fault was applied and removed as intended (a transfer or membership request may be refused). */
  ok: boolean;
  error?: string;
}

export interface OpCounts {
  ok: number;
  unknown: number;
  failed: number;
}

export interface NemesisReport {
  seed: number;
  start: number;
  end: number;
  history: Operation[];
  events: NemesisEvent[];
  counts: Record<OpKind, OpCounts>;
  /** Completed operations that returned while a fault was in place, and after each event healed (before the next began). */
  okDuringFaults: number;
  okAfterEvent: number[];
  /** Final reads: key → node → value read. */
  finalReads: Map<string, Map<number, string | null>>;
  /** Replies that break the API's own contract (e.g. an unconditional put answered succeeded=false). */
  anomalies: string[];
}

/** The seed of a run: from PGRAFT_NEMESIS_SEED, else random. */
export function nemesisSeed(): number {
  const s = process.env.PGRAFT_NEMESIS_SEED;
  if (s !== undefined && s !== "") {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`PGRAFT_NEMESIS_SEED must be a non-negative integer, got ${JSON.stringify(s)}`);
    return n;
  }
  return Math.floor(Math.random() * 2 ** 31);
}

/** Workload seconds of one run: PGRAFT_NEMESIS_SECONDS, else `dflt`. */
export function nemesisSeconds(dflt: number): number {
  const s = process.env.PGRAFT_NEMESIS_SECONDS;
  if (s === undefined || s === "") return dflt;
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`PGRAFT_NEMESIS_SECONDS must be a positive number, got ${JSON.stringify(s)}`);
  return n;
}

/** A stream seed derived from the run seed and a label (FNV-1a). */
export function deriveSeed(seed: number, label: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (const ch of `${seed}/${label}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * True when a rejected request certainly did not take effect: INVALID_ARGUMENT,
 * or NOT_LEADER (raised before anything is proposed or forwarded — see the
 * file comment). Anything else may have taken effect.
 */
export function definitelyNotApplied(e: unknown): boolean {
  if (!isServiceError(e)) return false;
  if (e.code === grpc.status.INVALID_ARGUMENT) return true;
  const md = (e as Partial<grpc.ServiceError>).metadata;
  return md !== undefined && md.get("pgraft-error-code").some((v) => String(v) === "NOT_LEADER");
}

const pick = <T>(r: Random, xs: readonly T[]): T => {
  if (xs.length === 0) throw new Error("pick from an empty list");
  return xs[Math.floor(r() * xs.length)] as T;
};
const between = (r: Random, lo: number, hi: number): number => lo + r() * (hi - lo);

function shuffle<T>(r: Random, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** A sleep that stop() cuts short (its timer cleared). */
class Stopper {
  stopped = false;
  private readonly wakers = new Set<() => void>();

  sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((res) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        res();
      };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  stop(): void {
    this.stopped = true;
    for (const w of [...this.wakers]) w();
  }
}

export class KvNemesis {
  readonly rec = new HistoryRecorder();
  /** performance.now() when this run was set up: the origin of the times in its report. */
  readonly origin = performance.now();
  readonly events: NemesisEvent[] = [];
  readonly anomalies: string[] = [];
  readonly counts: Record<OpKind, OpCounts> = {
    put: { ok: 0, unknown: 0, failed: 0 },
    get: { ok: 0, unknown: 0, failed: 0 },
    delete: { ok: 0, unknown: 0, failed: 0 },
    cas: { ok: 0, unknown: 0, failed: 0 },
  };
  private readonly keys: string[];
  private readonly clients: number;
  private readonly opTimeoutMs: number;
  private readonly workload = new Stopper();
  /** When each completed operation returned (for "completed during / after a fault"). */
  private readonly rets: number[] = [];
  private readonly log: (line: string) => void;

  constructor(
    private readonly c: TestCluster,
    private readonly o: NemesisOptions,
  ) {
    this.keys = Array.from({ length: o.keys ?? 5 }, (_, i) => `nemesis/k${i}`);
    this.clients = o.clients ?? 7;
    this.opTimeoutMs = o.opTimeoutMs ?? 2_500;
    this.log = o.log ?? (() => undefined);
  }

  /** Run the workload and the nemesis, heal, do the final reads; the caller checks the history. */
  async run(): Promise<NemesisReport> {
    const start = performance.now();
    const size = this.c.ids().length;
    // A client that throws (a bug here, not a failed request) is reported once the run stops.
    const clientErrors: string[] = [];
    const clients = Array.from({ length: this.clients }, (_, i) =>
      this.client(i).catch((e: unknown) => {
        clientErrors.push(`client c${i}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }),
    );
    try {
      await this.nemesis(size, start + this.o.seconds * 1_000);
    } finally {
      this.workload.stop();
      await Promise.all(clients);
    }
    if (clientErrors.length > 0) throw new Error(`workload clients crashed:\n${clientErrors.join("\n")}`);
    await this.c.ensureHealthy();
    const finalReads = await this.finalReads();
    const end = performance.now();
    return {
      seed: this.o.seed,
      start,
      end,
      history: this.rec.operations(),
      events: this.events,
      counts: this.counts,
      okDuringFaults: this.rets.filter((t) => this.events.some((e) => t >= e.start && t <= e.healed)).length,
      okAfterEvent: this.events.map((e, i) => {
        const until = this.events[i + 1]?.start ?? end;
        return this.rets.filter((t) => t > e.healed && t <= until).length;
      }),
      finalReads,
      anomalies: this.anomalies,
    };
  }

  // ------------------------------------------------------------------ workload

  private count(kind: OpKind, outcome: keyof OpCounts): void {
    this.counts[kind][outcome]++;
  }

  /** Record a rejection as failed (certainly not applied) or unknown. */
  private rejected(kind: OpKind, id: number, e: unknown): void {
    if (definitelyNotApplied(e)) {
      this.rec.fail(id);
      this.count(kind, "failed");
    } else {
      this.rec.unknown(id);
      this.count(kind, "unknown");
    }
  }

  private done(kind: OpKind): void {
    this.count(kind, "ok");
    this.rets.push(performance.now());
  }

  /** A linearizable get through `via`, recorded; the value and mod_revision, or undefined when it failed. */
  async get(cid: string, via: number, key: string, timeoutMs = this.opTimeoutMs): Promise<{ value: string | null; modRevision: bigint } | undefined> {
    const id = this.rec.invoke(cid, "get", key);
    try {
      const r = await this.c.client(via).kvGet({ clusterId: this.c.clusterId, key, serializable: false }, { timeoutMs });
      const value = r.kv ? (JSON.parse(r.kv.value) as unknown) : null;
      if (value !== null && typeof value !== "string") {
        this.anomalies.push(`get ${key} via node ${via} returned a non-string value ${r.kv?.value}`);
        this.rec.unknown(id);
        this.count("get", "unknown");
        return undefined;
      }
      this.rec.ok(id, { value });
      this.done("get");
      return { value, modRevision: r.kv?.modRevision ?? 0n };
    } catch (e) {
      this.rejected("get", id, e);
      return undefined;
    }
  }

  private async put(cid: string, via: number, key: string, value: string): Promise<boolean> {
    const id = this.rec.invoke(cid, "put", key, { value });
    try {
      const r = await this.c.client(via).kvPut({ clusterId: this.c.clusterId, key, value: JSON.stringify(value) }, { timeoutMs: this.opTimeoutMs });
      if (!r.succeeded) {
        this.anomalies.push(`unconditional put ${key}=${value} via node ${via} answered succeeded=false`);
        this.rec.unknown(id);
        this.count("put", "unknown");
        return false;
      }
      this.rec.ok(id);
      this.done("put");
      return true;
    } catch (e) {
      this.rejected("put", id, e);
      return false;
    }
  }

  private async del(cid: string, via: number, key: string): Promise<boolean> {
    const id = this.rec.invoke(cid, "delete", key);
    try {
      const r = await this.c.client(via).kvDelete({ clusterId: this.c.clusterId, key }, { timeoutMs: this.opTimeoutMs });
      if (!r.succeeded) {
        this.anomalies.push(`unconditional delete ${key} via node ${via} answered succeeded=false`);
        this.rec.unknown(id);
        this.count("delete", "unknown");
        return false;
      }
      this.rec.ok(id);
      this.done("delete");
      return true;
    } catch (e) {
      this.rejected("delete", id, e);
      return false;
    }
  }

  /** Read the key, then swap in `value` if it still holds what was read (by mod_revision). */
  private async cas(cid: string, via: number, key: string, value: string): Promise<boolean> {
    const seen = await this.get(cid, via, key);
    if (!seen) return false;
    const id = this.rec.invoke(cid, "cas", key, { expected: seen.value, value });
    try {
      const r = await this.c.client(via).kvPut(
        { clusterId: this.c.clusterId, key, value: JSON.stringify(value), ifModRevision: seen.value === null ? 0n : seen.modRevision },
        { timeoutMs: this.opTimeoutMs },
      );
      this.rec.ok(id, { ok: r.succeeded });
      this.done("cas");
      return true;
    } catch (e) {
      this.rejected("cas", id, e);
      return false;
    }
  }

  private async client(i: number): Promise<void> {
    const cid = `c${i}`;
    const r = seededRandom(deriveSeed(this.o.seed, cid));
    const members = (): number[] => this.c.ids();
    let via = pick(r, members());
    let seq = 0;
    while (!this.workload.stopped) {
      if (r() < 0.1 || !members().includes(via)) via = pick(r, members());
      const key = pick(r, this.keys);
      const value = `${cid}-${seq++}`;
      const x = r();
      let ok: boolean;
      if (x < 0.3) ok = await this.put(cid, via, key, value);
      else if (x < 0.6) ok = (await this.get(cid, via, key)) !== undefined;
      else if (x < 0.7) ok = await this.del(cid, via, key);
      else ok = await this.cas(cid, via, key, value);
      if (!ok) {
        if (r() < 0.5) via = pick(r, members());
        // A node that is down answers at once: do not spin.
        await this.workload.sleep(between(r, 20, 100));
      } else {
        await this.workload.sleep(between(r, 2, 15));
      }
    }
  }

  // ------------------------------------------------------------------ nemesis

  /** Wait until exactly one leader all live members follow; a cluster that does not recover fails the run. */
  private async leader(what: string): Promise<number> {
    try {
      return (await this.c.leader({ timeoutMs: 20_000 })).id;
    } catch (e) {
      throw new Error(`the cluster did not recover ${what}: ${errorText(e)}`);
    }
  }

  /** The voters as the leader sees them. */
  private async voters(leader: number): Promise<number[]> {
    return (await this.c.status(leader, 2_000)).voters;
  }

  private async nemesis(size: number, until: number): Promise<void> {
    const r = seededRandom(deriveSeed(this.o.seed, "nemesis"));
    const firstRound = shuffle(r, NEMESIS_KINDS);
    const succeeded = new Set<NemesisKind>();
    // Past `until`, keep going (a while) only to give a kind that never succeeded its turn.
    const hardStop = until + 30_000;
    let gap = between(r, 300, 1_000);
    for (;;) {
      await sleep(gap);
      const now = performance.now();
      const missing = NEMESIS_KINDS.filter((k) => !succeeded.has(k));
      if (now >= hardStop || (now >= until && missing.length === 0)) break;
      const kind = firstRound.shift() ?? (missing.length > 0 && now >= until ? pick(r, missing) : pick(r, NEMESIS_KINDS));
      const leader = await this.leader(`before the next fault (${kind})`);
      const ev = await this.fault(kind, leader, size, r);
      this.events.push(ev);
      if (ev.ok) succeeded.add(kind);
      this.log(
        `nemesis ${this.events.length}: ${ev.detail}${ev.ok ? "" : ` — FAILED: ${ev.error ?? "?"}`} ` +
          `(fault ${((ev.healed - ev.start) / 1000).toFixed(1)}s, recovered after ${((ev.recovered - ev.healed) / 1000).toFixed(1)}s)`,
      );
      gap = between(r, 500, 1_500);
    }
  }

  private async fault(kind: NemesisKind, leader: number, size: number, r: Random): Promise<NemesisEvent> {
    const live = this.c.live();
    const followers = live.filter((id) => id !== leader);
    // The leader more often than not.
    const target = r() < 0.6 || followers.length === 0 ? leader : pick(r, followers);
    const role = target === leader ? "leader" : "follower";
    const hold = between(r, 800, 2_500);
    const start = performance.now();
    let healed = start;
    let detail = "";
    let ok = true;
    let error: string | undefined;
    switch (kind) {
      case "kill": {
        detail = `kill -9 node ${target} (${role}) for ${Math.round(hold)} ms, then restart`;
        await this.c.kill9(target);
        await sleep(hold);
        await this.c.restart(target);
        healed = performance.now();
        break;
      }
      case "pause": {
        detail = `SIGSTOP node ${target} (${role}) for ${Math.round(hold)} ms, then SIGCONT`;
        this.c.pause(target);
        await sleep(hold);
        this.c.resume(target);
        healed = performance.now();
        break;
      }
      case "partition": {
        detail = `partition node ${target} (${role}) from the others for ${Math.round(hold)} ms, then heal`;
        try {
          await this.c.partition(target);
          await sleep(hold);
        } finally {
          await this.c.heal();
        }
        healed = performance.now();
        break;
      }
      case "transfer": {
        const voters = (await this.voters(leader)).filter((id) => id !== leader && live.includes(id));
        const to = pick(r, voters);
        const via = pick(r, live);
        detail = `transfer leadership from node ${leader} to node ${to} (asked through node ${via})`;
        try {
          const res = await this.c.client(via).transferLeader({ clusterId: this.c.clusterId, targetId: to }, { timeoutMs: 10_000 });
          if (res.leaderId !== to) throw new Error(`the answer names node ${res.leaderId} as the leader`);
        } catch (e) {
          ok = false;
          error = errorText(e);
        }
        healed = performance.now();
        break;
      }
      case "membership": {
        const m = await this.membership(leader, size, r);
        detail = m.detail;
        ok = m.ok;
        if (m.error !== undefined) error = m.error;
        healed = performance.now();
        break;
      }
    }
    await this.leader(`after: ${detail}`);
    return { kind, detail, start, healed, recovered: performance.now(), ok, ...(error !== undefined ? { error } : {}) };
  }

  /**
   * Remove a voter (a follower mostly, now and then the leader, which hands
   * over first) and join a fresh node (new id, data dir and ports) in its
   * place — or join first and remove after. Ends with `size` voters, every
   * one of them live, as the leader sees it.
   */
  private async membership(leader: number, size: number, r: Random): Promise<{ detail: string; ok: boolean; error?: string }> {
    const newId = Math.max(...this.c.nodes.keys()) + 1;
    const joinFirst = r() < 0.5;
    const steps: string[] = [];
    const pickVictim = async (): Promise<number> => {
      const l = await this.leader("before a removal");
      const voters = (await this.voters(l)).filter((id) => this.c.live().includes(id));
      const followers = voters.filter((id) => id !== l);
      return r() < 0.2 || followers.length === 0 ? l : pick(r, followers);
    };
    /** One removal attempt; an error text when the victim is still a voter afterwards. */
    const removeOnce = async (): Promise<string | undefined> => {
      const victim = await pickVictim();
      const l = await this.leader("before a removal");
      const via = pick(r, this.c.live());
      steps.push(`remove node ${victim}${victim === l ? " (leader)" : ""} through node ${via}`);
      let err: string | undefined;
      try {
        await this.c.client(via).removeMember({ clusterId: this.c.clusterId, id: victim }, { timeoutMs: 15_000 });
      } catch (e) {
        err = errorText(e);
      }
      // Whatever the answer said, ask the (new) leader whether the removal happened.
      const removed = await waitUntil(5_000, async () => {
        const now = await this.c.leader({ timeoutMs: 10_000, among: this.c.live().filter((id) => id !== victim), agree: false });
        return !(await this.voters(now.id)).includes(victim);
      });
      if (!removed) return `removing node ${victim} failed${err ? `: ${err}` : " (it is still a voter)"}`;
      if (err) steps.push(`(the request failed with ${err} but node ${victim} was removed)`);
      await this.c.retire(victim);
      return undefined;
    };
    /** A refused removal (e.g. while the previous change is not applied yet) is tried again, twice. */
    const remove = async (): Promise<string | undefined> => {
      let err: string | undefined;
      for (let attempt = 1; attempt <= 3; attempt++) {
        err = await removeOnce();
        if (err === undefined) return undefined;
        steps.push(`(${err})`);
        await sleep(500);
      }
      return err;
    };
    const add = async (): Promise<string | undefined> => {
      steps.push(`join node ${newId}`);
      await this.c.join(newId);
      const promoted = await waitUntil(20_000, async () => {
        const l = await this.c.leader({ timeoutMs: 5_000 });
        return (await this.voters(l.id)).includes(newId);
      });
      return promoted ? undefined : `node ${newId} joined but was not promoted to voter within 20 s`;
    };
    const first = joinFirst ? await add() : await remove();
    const second = first === undefined ? (joinFirst ? await remove() : await add()) : undefined;
    const error = first ?? second;
    // The shape the next fault expects: `size` voters, all live (so no single fault takes a majority down).
    const shaped = await waitUntil(20_000, async () => {
      const l = await this.c.leader({ timeoutMs: 5_000 });
      const v = await this.voters(l.id);
      return v.length === size && v.every((id) => this.c.live().includes(id));
    });
    if (!shaped) {
      const l = await this.leader("after a membership change");
      throw new Error(
        `after the membership change (${steps.join(", then ")}${error ? `; ${error}` : ""}) the cluster does not have ${size} live voters: ` +
          `voters [${(await this.voters(l)).join(",")}], live [${this.c.live().join(",")}]`,
      );
    }
    return { detail: `membership: ${steps.join(", then ")}`, ok: error === undefined, ...(error !== undefined ? { error } : {}) };
  }

  // ------------------------------------------------------------------ the end

  /** A linearizable read of every key through every live member (recorded), retried until it answers. */
  private async finalReads(): Promise<Map<string, Map<number, string | null>>> {
    const out = new Map<string, Map<number, string | null>>();
    for (const key of this.keys) {
      const byNode = new Map<number, string | null>();
      out.set(key, byNode);
      for (const id of this.c.live()) {
        let got: { value: string | null } | undefined;
        for (let attempt = 1; !got; attempt++) {
          got = await this.get(`final-n${id}`, id, key, 5_000);
          if (!got && attempt >= 10) throw new Error(`the final linearizable read of ${key} through node ${id} failed 10 times\n${this.c.tails()}`);
          if (!got) await sleep(200);
        }
        byNode.set(id, got.value);
      }
    }
    return out;
  }
}

/** Poll `f` (errors count as "not yet") until true or `timeoutMs` passes. */
async function waitUntil(timeoutMs: number, f: () => Promise<boolean>): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await f()) return true;
    } catch {
      // not yet
    }
    if (Date.now() > end) return false;
    await sleep(100);
  }
}

// ------------------------------------------------------------------ reporting

const ms = (t: number, origin: number): string => `${((t - origin) / 1000).toFixed(2)}s`;

export function describeCounts(rep: NemesisReport): string {
  const total = OP_KINDS.reduce((a, k) => a + rep.counts[k].ok, 0);
  const per = OP_KINDS.map((k) => `${k} ${rep.counts[k].ok}/${rep.counts[k].unknown}/${rep.counts[k].failed}`).join(", ");
  return `${total} ops completed in ${((rep.end - rep.start) / 1000).toFixed(1)}s (ok/unknown/failed: ${per}); ${rep.okDuringFaults} completed while a fault was in place`;
}

export function describeEvents(rep: NemesisReport): string {
  const byKind = NEMESIS_KINDS.map((k) => {
    const evs = rep.events.filter((e) => e.kind === k);
    return `${k} ${evs.filter((e) => e.ok).length}/${evs.length}`;
  }).join(", ");
  const lines = rep.events.map(
    (e, i) =>
      `  ${String(i + 1).padStart(2)}. [${ms(e.start, rep.start)} → healed ${ms(e.healed, rep.start)}, leader ${ms(e.recovered, rep.start)}] ${e.detail}` +
      `${e.ok ? "" : ` — FAILED: ${e.error ?? "?"}`}; ${rep.okAfterEvent[i] ?? 0} ops completed after it healed`,
  );
  return `nemesis events (succeeded/run): ${byKind}\n${lines.join("\n")}`;
}

/**
 * Save what a failing run leaves behind in a new directory (under
 * PGRAFT_NEMESIS_HISTORY_DIR, else the OS temp dir): history.json (loadHistory
 * reads it), nemesis.json (events, counts, seed, checker result) and a copy of
 * every node's log. Returns the history file's path.
 */
export async function saveFailure(
  c: TestCluster,
  run: { name: string; baseSeed: number; seed: number; origin: number },
  rep: Pick<NemesisReport, "history" | "events" | "counts">,
  result?: CheckResult,
): Promise<string> {
  const root = process.env.PGRAFT_NEMESIS_HISTORY_DIR || tmpdir();
  const dir = join(root, `pgraft-${run.name}-seed${run.baseSeed}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "history.json");
  await saveHistory(path, rep.history);
  writeFileSync(
    join(dir, "nemesis.json"),
    JSON.stringify(
      {
        replay: `PGRAFT_NEMESIS_SEED=${run.baseSeed}`,
        ...run,
        note: "times (events here, call/ret in history.json) are performance.now() of the test process; origin is when the run began",
        events: rep.events,
        counts: rep.counts,
        result,
      },
      null,
      2,
    ) + "\n",
  );
  for (const n of c.nodes.values()) {
    try {
      copyFileSync(n.logPath, join(dir, basename(n.logPath)));
    } catch {
      // no log (never started)
    }
  }
  return path;
}

export { checkLinearizable };
