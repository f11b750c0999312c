// A part's catch-up: bring this node up to date with a parting node P's
// changes through another member B that has applied more of them, once P
// itself can no longer be asked (it is down, or every node has stopped
// receiving from it).
//
// Why B's WAL has what we lack: B applied each of P's transactions under the
// origin for P (the same name on every node), so in B's WAL it is a
// transaction with an Origin message naming that origin and carrying P's own
// end LSN (what the applier passed to pg_replication_origin_xact_setup);
// logical decoding also reports P's commit time for it. B's group slot never
// moves past a position after which a peer could still lack one of them
// (provider.ts, advanceGroupSlot), so a copy of B's group slot streams every
// transaction of P that we have not applied.
//
// So: copy B's group slot (a slot of our own on B, named by naming.ts), stream
// it with pgoutput, keep only P's transactions (the assembler's relay mode)
// beyond our progress for P, and apply them in order under our origin for P,
// each with P's end LSN and commit time — exactly as if they had come from P.
// Our progress for P thus ends where B's is, and a second run has nothing to
// do. The stream stops once it has delivered B's last transaction from P (B's
// progress for P, read first) or has passed `endLsn` (a position on B after
// B stopped receiving from P); reaching the end short of B's progress is
// reported (`complete: false`), not hidden. The copied slot is dropped
// afterwards (and a stale one of an earlier attempt before).
//
// Our receiver from P must be stopped meanwhile: the applier owns our origin
// for P (a second owner waits, then fails).
import type pg from "pg";
import { LogicalReplicationService } from "pg-logical-replication";
import { Applier, type NodeRef } from "./applier.js";
import { clientConfig, connectClient, destroyClient } from "./connection.js";
import { TextPgoutputPlugin, TransactionAssembler } from "./decoder.js";
import { formatLsn, parseLsn } from "./lsn.js";
import { dropPgraftSlot } from "./provider.js";
import { assertPgraftSlot, catchupSlotName, groupSlotName, originName, publicationName } from "./naming.js";
import { errorText, within, type PeerSpec, type SlotsLogger } from "./types.js";

export interface CatchUpOptions {
  /** This node's PostgreSQL (where P's changes are applied). */
  localDsn: string;
  localNode: NodeRef;
  /** The member whose WAL holds more of P's changes (B). */
  source: PeerSpec;
  /** The parting node (P). */
  parting: NodeRef;
  db: string;
  group: string;
  /**
   * A position on the source after which it applied nothing more from P: the
   * stream stops there at the latest. Default: a marker written on the source
   * now (right only when the source no longer receives from P).
   */
  endLsn?: bigint | string;
  /** Every member's origin name → the member (the applier's tie-breaks). */
  members: () => Map<string, NodeRef>;
  log: SlotsLogger;
  /** Give up after this long (default 15 min). */
  timeoutMs?: number;
  /** Stop reading the stream while this many transactions wait to be durable here (default 5000). */
  maxBacklog?: number;
  signal?: AbortSignal;
}

export interface CatchUpResult {
  /** Our progress for P before and after. */
  from: string;
  to: string;
  /** The source's progress for P: what we had to reach. */
  target: string;
  /** P's transactions applied here. */
  applied: number;
  /** P's transactions in the stream that were already here. */
  alreadyHere: number;
  /** The copied slot on the source (dropped again); null when there was nothing to do. */
  slot: string | null;
  /**
   * Our progress reached the source's. When not, the stream held no more of
   * P's changes (its end passed): the source's progress is then either not the
   * end of one of P's transactions in its WAL (nothing is missing), or it got
   * some of them otherwise (a join's snapshot) and cannot hand them on.
   */
  complete: boolean;
}

/** The prefix of the logical message that marks the end of a catch-up stream on the source. */
export const CATCHUP_MARKER_PREFIX = "pgraft_catchup";

/**
 * Write a marker on a node and return its position: every transaction that
 * committed there before this call ends before it. (A transactional logical
 * message: its commit is flushed, so a walsender reaches it without waiting
 * for more WAL; pgoutput does not send it on, since messages are off.)
 */
export async function markEnd(client: pg.Client, label: string): Promise<bigint> {
  const r = await client.query<{ lsn: string }>("SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn", [CATCHUP_MARKER_PREFIX, label]);
  return parseLsn(r.rows[0]!.lsn);
}

/** Connect to `dsn` and write a marker there (markEnd). */
export async function captureEndLsn(dsn: string, label: string): Promise<string> {
  const c = await connectClient(dsn, "pgraft_part", () => undefined);
  try {
    return formatLsn(await markEnd(c, label));
  } finally {
    await within(c.end(), 5_000);
    destroyClient(c);
  }
}

export async function catchUpFrom(o: CatchUpOptions): Promise<CatchUpResult> {
  const me = o.localNode.name;
  if (o.source.name === me) throw new Error(`catch-up: the source ${JSON.stringify(o.source.name)} is this node`);
  if (o.parting.name === me) throw new Error(`catch-up: the parting node ${JSON.stringify(o.parting.name)} is this node`);
  if (o.source.name === o.parting.name) throw new Error(`catch-up: the source ${JSON.stringify(o.source.name)} is the parting node itself`);
  const endLsn = typeof o.endLsn === "string" ? parseLsn(o.endLsn) : o.endLsn;
  const origin = originName(o.db, o.group, o.parting.name);
  const slot = catchupSlotName(o.db, o.group, me, o.parting.name);
  const fields = { source: o.source.name, parting: o.parting.name, slot };
  const src = await connectClient(o.source.dsn, "pgraft_catchup", (e) => o.log.debug("catch-up: source connection lost", { ...fields, error: e.message }));
  let applier: Applier | undefined;
  let stream: CatchUpStream | undefined;
  try {
    await dropSlot(src, slot, o.log); // a stale one of an earlier attempt
    const target = await progressOn(src, origin);
    applier = new Applier({
      localDsn: o.localDsn,
      localNode: o.localNode,
      peer: o.parting,
      originName: origin,
      members: o.members,
      log: o.log,
      onDurable: () => stream?.onDurable(),
      onFailure: (e) => stream?.fail(e),
    });
    const resume = await applier.connect();
    const none = { from: formatLsn(resume), to: formatLsn(resume), target: formatLsn(target), applied: 0, alreadyHere: 0, slot: null, complete: true };
    if (resume >= target) {
      o.log.info("catch-up: nothing to do, this node has every change of the parting node the source has", { ...fields, progress: formatLsn(resume), source_progress: formatLsn(target) });
      return none;
    }
    assertPgraftSlot(slot);
    await src.query("SELECT pg_copy_logical_replication_slot($1, $2)", [groupSlotName(o.db, o.group), slot]);
    const start = await slotStart(src, slot);
    const end = endLsn ?? (await markEnd(src, `${me} from ${o.source.name} for ${o.parting.name}`));
    o.log.info("catch-up: streaming the parting node's changes from the source", { ...fields, from: formatLsn(resume), to: formatLsn(target), stream_from: formatLsn(start), end: formatLsn(end) });
    stream = new CatchUpStream(o, applier, { slot, resume, target, start, end });
    const counts = await stream.run();
    const reached = applier.durableLsn;
    const result = { from: formatLsn(resume), to: formatLsn(reached), target: formatLsn(target), applied: counts.applied, alreadyHere: counts.alreadyHere, slot, complete: reached >= target };
    if (result.complete) o.log.info("catch-up: done", { ...fields, ...result });
    else {
      // The source's progress is not always the end of one of P's transactions in its WAL: it may have got some
      // of them in a join's snapshot, or its origin may start at its slot's position (receiver.ts).
      o.log.warn("catch-up: the source's stream holds no more of the parting node's changes, but this node's progress stays below the source's; any between them are not in the source's WAL", {
        ...fields,
        ...result,
      });
    }
    return result;
  } finally {
    await stream?.close();
    await applier?.close().catch(() => undefined);
    await dropSlot(src, slot, o.log).catch((e: unknown) => o.log.warn("catch-up: could not drop the copied slot on the source (the next attempt or the part's end drops it)", { ...fields, error: errorText(e) }));
    await within(src.end(), 5_000);
    destroyClient(src);
  }
}

/** A node's progress for `origin` (0 when it has none). */
async function progressOn(client: pg.Client, origin: string): Promise<bigint> {
  const r = await client.query<{ lsn: string | null }>("SELECT pg_replication_origin_progress(roname, false)::text AS lsn FROM pg_replication_origin WHERE roname = $1", [origin]);
  const v = r.rows[0]?.lsn;
  return v ? parseLsn(v) : 0n;
}

async function slotStart(client: pg.Client, slot: string): Promise<bigint> {
  const r = await client.query<{ lsn: string | null }>("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1", [slot]);
  const v = r.rows[0]?.lsn;
  if (!v) throw new Error(`catch-up slot ${slot} has no confirmed position`);
  return parseLsn(v);
}

/** Drop a catch-up slot on the source (its walsender, if one is left, first). */
async function dropSlot(client: pg.Client, slot: string, log: SlotsLogger): Promise<void> {
  if (await dropPgraftSlot(client, slot)) log.info("catch-up slot dropped", { slot });
}

type Stoppable = { _client?: pg.Client | null; _connection?: { stream?: { pause(): void; resume(): void } } | null };

/** One pass over the copied slot: P's transactions beyond `resume` to the applier, until the target or the end. */
class CatchUpStream {
  private readonly service: LogicalReplicationService;
  private readonly assembler: TransactionAssembler;
  private readonly timers: NodeJS.Timeout[] = [];
  private submitted: bigint;
  private applied = 0;
  private alreadyHere = 0;
  private paused = false;
  private settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private outcome: { error?: Error } | undefined;

  constructor(
    private readonly o: CatchUpOptions,
    private readonly applier: Applier,
    private readonly pos: { slot: string; resume: bigint; target: bigint; start: bigint; end: bigint },
  ) {
    this.submitted = pos.resume;
    this.assembler = new TransactionAssembler({ relayOrigin: originName(o.db, o.group, o.parting.name) });
    this.service = new LogicalReplicationService(clientConfig(o.source.dsn, `pgraft_catchup_${o.localNode.name}`.slice(0, 63)), {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: false }, // events in stream order: a keepalive comes after everything sent before it
    });
  }

  /** Stream until done; resolves once everything submitted is durable here. */
  async run(): Promise<{ applied: number; alreadyHere: number }> {
    const finished = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    if (this.applier.error) this.fail(this.applier.error);
    const svc = this.service;
    svc.on("error", (e: Error) => this.fail(e));
    svc.on("data", (_lsn: string, msg: unknown) => this.onMessage(msg));
    svc.on("heartbeat", (lsn: string) => this.onKeepalive(lsn));
    svc.on("start", () => {
      // The library drops its own listeners when it stops: keep one, so a late socket error is never uncaught.
      (svc as unknown as Stoppable)._client?.on("error", () => {});
    });
    const timeoutMs = this.o.timeoutMs ?? 15 * 60_000;
    this.timers.push(
      setTimeout(() => this.fail(new Error(`catch-up from ${this.o.source.name} did not finish within ${timeoutMs} ms`)), timeoutMs),
      // Ask for a keepalive now and then: it says how far the source has sent, which ends the stream at endLsn.
      // (We confirm only where the copied slot started: it is dropped afterwards anyway.)
      setInterval(() => void svc.acknowledge(formatLsn(this.pos.start - 1n), true).catch(() => undefined), 500),
    );
    for (const t of this.timers) t.unref();
    const onAbort = (): void => this.fail(new Error("catch-up aborted"));
    this.o.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.o.signal?.aborted) onAbort();
    const subscribed = svc.subscribe(new TextPgoutputPlugin(publicationName(this.o.db, this.o.group), (origin) => this.assembler.wanted(origin)), this.pos.slot, formatLsn(this.pos.start));
    subscribed.then(
      () => this.fail(new Error(`the catch-up stream from ${this.o.source.name} ended early`)),
      (e: unknown) => this.fail(e instanceof Error ? e : new Error(String(e))),
    );
    try {
      await finished;
    } finally {
      this.o.signal?.removeEventListener("abort", onAbort);
    }
    return { applied: this.applied, alreadyHere: this.alreadyHere };
  }

  private onMessage(msg: unknown): void {
    if (this.outcome) return;
    let a;
    try {
      a = this.assembler.push(msg as Parameters<TransactionAssembler["push"]>[0]);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (!a) return;
    if (a.kind === "skip") {
      if (a.endLsn >= this.pos.end) this.finish();
      return;
    }
    const lsn = a.tx.endLsn; // where it ended on P
    if (lsn <= this.submitted) this.alreadyHere++;
    else {
      this.submitted = lsn;
      this.applied++;
      // Failures arrive through onFailure; the promise only says when this one is durable.
      this.applier.submit(a).catch(() => undefined);
      if (!this.paused && this.applier.backlog >= (this.o.maxBacklog ?? 5000)) this.pause(true);
    }
    if (lsn >= this.pos.target || (a.relayEndLsn ?? 0n) >= this.pos.end) this.finish();
  }

  private onKeepalive(walEnd: string): void {
    if (this.outcome || this.assembler.inTransaction) return;
    let w: bigint;
    try {
      w = parseLsn(walEnd);
    } catch {
      return;
    }
    // Everything before this position has been sent, and handled above.
    if (w >= this.pos.end) this.finish();
  }

  onDurable(): void {
    if (this.paused && this.applier.backlog < (this.o.maxBacklog ?? 5000) / 2) this.pause(false);
  }

  /** The stream has what we need: stop it, then wait for the applier. */
  private finish(): void {
    if (this.outcome) return;
    this.outcome = {};
    this.stopTimers();
    if (this.paused) this.pause(false);
    void (async () => {
      await within(this.service.stop(), 5_000);
      try {
        await this.applier.drain(this.o.timeoutMs ?? 15 * 60_000);
        const e = this.applier.error;
        if (e) throw e;
        this.settle?.resolve();
      } catch (e) {
        this.settle?.reject(e instanceof Error ? e : new Error(String(e)));
      }
    })();
  }

  fail(e: Error): void {
    // (After finish(), an applier failure ends its drain, which reports it.)
    if (this.outcome) return;
    this.outcome = { error: e };
    this.stopTimers();
    this.settle?.reject(e);
  }

  private pause(on: boolean): void {
    const s = (this.service as unknown as Stoppable)._connection?.stream;
    if (!s) return;
    this.paused = on;
    if (on) s.pause();
    else s.resume();
  }

  private stopTimers(): void {
    for (const t of this.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    this.timers.length = 0;
  }

  /** Close the replication connection whatever state it is in. */
  async close(): Promise<void> {
    this.stopTimers();
    const client = (this.service as unknown as Stoppable)._client ?? undefined;
    await within(this.service.destroy(), 5_000);
    client?.on("error", () => {});
    destroyClient(client);
  }
}
