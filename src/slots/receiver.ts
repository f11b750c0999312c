// One receiver per upstream peer: streams the peer's node slot for this node
// (`bdr_<db>_<group>_<us>` on the peer, pgoutput), skips what did not
// originate on the peer, applies the rest through an Applier, and confirms to
// the peer only positions that are durable here.
//
// Acknowledgement rules (pg-logical-replication would confirm every message
// as it arrives — before it is applied — and every 10 s; both are off):
// - a transaction's end LSN is confirmed once the applier reports it durable;
// - a keepalive is answered with the durable position, or, when nothing is
//   received-but-unapplied (no transaction open on the stream, the applier
//   idle), with the keepalive's own WAL position: everything before it has
//   been sent and dealt with, so the slot does not hold WAL for nothing;
// - the library confirms "LSN + 1" (it treats the LSN as the last byte
//   received); PostgreSQL's own apply worker confirms the end LSN itself, so we
//   hand the library LSN - 1.
//
// Restart: the stream starts at the applier's resume point (the origin's
// progress), so an acknowledgement lost in a crash costs nothing: the server
// skips transactions that commit before the requested start. An origin that
// has never recorded anything starts where our slot on the peer stands (a
// joiner's snapshot covers everything before it; see startOriginAtSlot).
//
// State (seed 004's node_slots.state, seen from the receiving side):
// `catchup` while the peer's current WAL position is more than a threshold
// ahead of what is durable here, `streaming` once within it, `disconnected`
// between sessions (reconnecting with backoff), `stopped` after stop().
import type pg from "pg";
import { LogicalReplicationService } from "pg-logical-replication";
import { Applier, type ApplierStats, type NodeRef } from "./applier.js";
import { clientConfig, connectClient, destroyClient, sqlState } from "./connection.js";
import { TextPgoutputPlugin, TransactionAssembler } from "./decoder.js";
import { formatLsn, maxLsn, parseLsn } from "./lsn.js";
import { nodeSlotName, originName, publicationName } from "./naming.js";
import { errorText, within, type PeerSpec, type SlotsLogger } from "./types.js";

export type ReceiverState = "disconnected" | "catchup" | "streaming" | "stopped";

export interface StateChange {
  peer: string;
  from: ReceiverState;
  to: ReceiverState;
  at: Date;
}

export interface ReceiverOptions {
  localDsn: string;
  localNode: NodeRef;
  peer: PeerSpec;
  db: string;
  group: string;
  members: () => Map<string, NodeRef>;
  log: SlotsLogger;
  /** Behind the peer by more than this many bytes of WAL → catchup (default 1 MiB). */
  catchupThresholdBytes?: number;
  /** How often the peer's current WAL position is sampled (default 1000 ms). */
  probeIntervalMs?: number;
  /** Reconnect backoff (default 200 ms doubling to 10 s). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Pause reading the stream while this many transactions wait to be durable (default 5000). */
  maxBacklog?: number;
  /** Pipeline window of the applier (see ApplierOptions). */
  windowTransactions?: number;
  onStateChange?: (e: StateChange) => void;
}

export interface ReceiverStatus {
  peer: string;
  /** The slot on the peer that this receiver streams. */
  slot: string;
  origin: string;
  state: ReceiverState;
  since: Date;
  /** End LSN of the last transaction received. */
  receivedLsn: string | null;
  /** Everything up to here from this peer is durably applied here (or needed nothing). */
  durableLsn: string | null;
  /** What we last confirmed to the peer (its slot's confirmed_flush_lsn follows it). */
  confirmedLsn: string | null;
  /** The peer's current WAL position, last sampled. */
  upstreamLsn: string | null;
  /** upstreamLsn − max(durable, confirmed) in bytes. */
  lagBytes: number | null;
  lastError: string | null;
  /** Sessions started (1 + reconnects). */
  sessions: number;
  stats: ApplierStats;
}

type Stoppable = { _client?: pg.Client | null; _connection?: { stream?: { pause(): void; resume(): void } } | null };

export class Receiver {
  readonly slot: string;
  readonly origin: string;
  private readonly opts: ReceiverOptions;
  private state: ReceiverState = "disconnected";
  private since = new Date();
  private running: Promise<void> | undefined;
  private stopping = false;
  private aborted = false;
  private wake: (() => void) | undefined;
  // the current session
  private applier: Applier | undefined;
  private service: LogicalReplicationService | undefined;
  private probe: pg.Client | undefined;
  private assembler = new TransactionAssembler();
  private sessionError: Error | undefined;
  private paused = false;
  private timers: NodeJS.Timeout[] = [];
  private ackScheduled = false;
  private sampling = false;
  // positions
  private received = 0n;
  private durable = 0n;
  private confirmed = 0n;
  private idleAck = 0n;
  /** The slot's confirmed_flush_lsn when the session began: the server starts no earlier than that. */
  private floor = 0n;
  private upstream: bigint | undefined;
  private lastError: string | null = null;
  private sessions = 0;
  private readonly totals: ApplierStats = { appliedTransactions: 0, appliedChanges: 0, skippedTransactions: 0, conflicts: 0, slowPathTransactions: 0 };

  constructor(opts: ReceiverOptions) {
    this.opts = opts;
    this.slot = nodeSlotName(opts.db, opts.group, opts.localNode.name);
    this.origin = originName(opts.db, opts.group, opts.peer.name);
  }

  get peerName(): string {
    return this.opts.peer.name;
  }

  start(): void {
    if (this.running) return;
    this.stopping = false;
    this.running = this.run();
  }

  status(): ReceiverStatus {
    const stats = this.statsNow();
    const lag = this.upstream === undefined ? null : Number(this.upstream > this.position() ? this.upstream - this.position() : 0n);
    return {
      peer: this.opts.peer.name,
      slot: this.slot,
      origin: this.origin,
      state: this.state,
      since: this.since,
      receivedLsn: this.received ? formatLsn(this.received) : null,
      durableLsn: this.durable ? formatLsn(this.durable) : null,
      confirmedLsn: this.confirmed ? formatLsn(this.confirmed) : null,
      upstreamLsn: this.upstream === undefined ? null : formatLsn(this.upstream),
      lagBytes: lag,
      lastError: this.lastError,
      sessions: this.sessions,
      stats,
    };
  }

  /** Stop streaming; what is in flight is applied first (bounded), so a restart has little to redo. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const svc = this.service;
    if (svc) await svc.stop().catch(() => undefined);
    // Not streaming yet (waiting for the origin, or connecting): nothing is in flight, so cut it short.
    else this.applier?.abort();
    await this.running;
    this.running = undefined;
  }

  /** Drop every connection at once, as a crash of the sidecar would (for tests and emergencies). */
  abort(): void {
    this.stopping = true;
    this.aborted = true;
    this.wake?.();
    this.applier?.abort();
    destroyClient((this.service as unknown as Stoppable | undefined)?._client ?? undefined);
    destroyClient(this.probe);
  }

  // ------------------------------------------------------------------ the session loop

  private async run(): Promise<void> {
    const min = this.opts.reconnectMinMs ?? 200;
    const max = this.opts.reconnectMaxMs ?? 10_000;
    let delay = min;
    while (!this.stopping) {
      const began = Date.now();
      try {
        await this.session();
      } catch (e) {
        if (!this.stopping) {
          this.lastError = errorText(e);
          this.opts.log.warn("replication from peer interrupted", { peer: this.opts.peer.name, slot: this.slot, error: this.lastError });
        }
      }
      await this.teardown();
      if (this.stopping) break;
      this.setState("disconnected");
      if (Date.now() - began > 30_000) delay = min; // a long session was healthy: start the backoff over
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = undefined;
      delay = Math.min(delay * 2, max);
    }
    this.setState("stopped");
  }

  private async session(): Promise<void> {
    const o = this.opts;
    this.sessions++;
    this.sessionError = undefined;
    this.assembler = new TransactionAssembler();
    this.paused = false;
    this.idleAck = 0n;
    this.floor = 0n;
    this.probe = await connectClient(o.peer.dsn, "pgraft_probe", () => undefined);
    const slot = await this.probe.query<{ confirmed: string | null }>("SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1", [this.slot]);
    if (!slot.rows[0]) throw new Error(`replication slot ${this.slot} does not exist on ${o.peer.name} yet (its data plane creates it)`);
    this.floor = slot.rows[0].confirmed ? parseLsn(slot.rows[0].confirmed) : 0n;
    if (this.stopping) return;
    await startOriginAtSlot(o.localDsn, this.origin, this.floor, o.log);
    const applier = new Applier({
      localDsn: o.localDsn,
      localNode: o.localNode,
      peer: o.peer,
      originName: this.origin,
      members: o.members,
      log: o.log,
      windowTransactions: o.windowTransactions,
      onDurable: (lsn) => this.onDurable(lsn),
      onFailure: (e) => this.breakSession(e),
    });
    this.applier = applier;
    const resume = await applier.connect();
    if (this.stopping) return;
    this.durable = resume;
    this.confirmed = 0n;
    await this.sampleUpstream();
    if (this.stopping) return;

    const service = new LogicalReplicationService(clientConfig(o.peer.dsn, `pgraft_${o.localNode.name}`.slice(0, 63)), {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: false }, // ordered, synchronous events: a keepalive is seen after every message sent before it
    });
    this.service = service;
    service.on("error", (e: Error) => {
      this.sessionError ??= e;
    });
    service.on("data", (_lsn: string, msg: unknown) => this.onMessage(msg));
    service.on("heartbeat", (lsn: string, _ts: number, reply: boolean) => this.onKeepalive(lsn, reply));
    service.on("start", () => {
      // The library drops its own listeners when it stops: keep one, so a late socket error is never uncaught.
      (service as unknown as Stoppable)._client?.on("error", () => {});
      if (this.sessionError) {
        void service.stop().catch(() => undefined); // broken while the stream was starting
        return;
      }
      this.lastError = null;
      o.log.info("streaming from peer", { peer: o.peer.name, slot: this.slot, from: formatLsn(resume) });
      this.updateState(true);
    });
    const probeEvery = o.probeIntervalMs ?? 1000;
    this.timers.push(
      setInterval(() => void this.sampleUpstream().then(() => this.updateState(false)), probeEvery),
      // Keep the walsender's view fresh even when it asks for nothing (it times out a silent client).
      setInterval(() => this.sendAck(true), 10_000),
    );
    for (const t of this.timers) t.unref();
    const early = this.currentError(); // the applier may have failed while we were getting here
    if (early) throw early;
    await service.subscribe(new TextPgoutputPlugin(publicationName(o.db, o.group), (origin) => this.assembler.wanted(origin)), this.slot, formatLsn(resume));
    // (read through a method: TypeScript would keep the narrowing from the start of the session)
    const err = this.currentError();
    if (err) throw err;
    if (!this.stopping) throw new Error(`the replication stream from ${o.peer.name} ended`);
  }

  private currentError(): Error | undefined {
    return this.sessionError;
  }

  /** End the session (the applier failed, or a message could not be decoded); the loop reconnects. */
  private breakSession(e: Error): void {
    this.sessionError ??= e;
    const svc = this.service;
    if (svc) void svc.stop().catch(() => undefined);
  }

  private async teardown(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    const svc = this.service;
    this.service = undefined;
    if (svc) {
      const client = (svc as unknown as Stoppable)._client ?? undefined;
      if (this.aborted) destroyClient(client);
      else {
        await within(svc.destroy(), 5_000);
        // The library removed its listeners: a late socket error must not become an uncaught exception.
        client?.on("error", () => {});
        destroyClient(client);
      }
    }
    const applier = this.applier;
    this.applier = undefined;
    if (applier) {
      this.addStats(applier.stats);
      if (this.aborted) applier.abort();
      else {
        // Let what is in flight commit (it is then not streamed again), but not forever.
        if (!applier.error) await applier.drain(10_000).catch(() => undefined);
        this.durable = maxLsn(this.durable, applier.durableLsn);
        await applier.close();
      }
    }
    const probe = this.probe;
    this.probe = undefined;
    if (probe) {
      if (this.aborted) destroyClient(probe);
      else await within(probe.end(), 5_000);
    }
  }

  // ------------------------------------------------------------------ the stream

  private onMessage(msg: unknown): void {
    const applier = this.applier;
    if (!applier || this.sessionError) {
      // Broken: make sure the stream ends (a stop() that raced the library's connect may not have).
      if (this.sessionError) void this.service?.stop().catch(() => undefined);
      return;
    }
    let a;
    try {
      a = this.assembler.push(msg as Parameters<TransactionAssembler["push"]>[0]);
    } catch (e) {
      this.breakSession(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (!a) return;
    this.received = a.kind === "apply" ? a.tx.endLsn : a.endLsn;
    // Failures reach us through onFailure; the promise only tells when this one is durable.
    applier.submit(a).catch(() => undefined);
    if (!this.paused && applier.backlog >= (this.opts.maxBacklog ?? 5000)) this.pause(true);
  }

  private onKeepalive(walEnd: string, reply: boolean): void {
    let w: bigint;
    try {
      w = parseLsn(walEnd);
    } catch {
      return;
    }
    if (!this.assembler.inTransaction && this.applier?.idle) this.idleAck = maxLsn(this.idleAck, w);
    this.sendAck(reply);
  }

  private onDurable(lsn: bigint): void {
    this.durable = maxLsn(this.durable, lsn);
    if (this.paused && (this.applier?.backlog ?? 0) < (this.opts.maxBacklog ?? 5000) / 2) this.pause(false);
    // Coalesce: one status message for a burst of durable transactions.
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.sendAck(false);
    });
  }

  /** What we may confirm now. */
  private position(): bigint {
    return maxLsn(maxLsn(this.durable, this.idleAck), this.floor);
  }

  private sendAck(force: boolean): void {
    const svc = this.service;
    const pos = this.position();
    if (!svc || pos === 0n || (!force && pos <= this.confirmed)) return;
    this.confirmed = maxLsn(this.confirmed, pos);
    // The library reports lsn + 1 as written/flushed/applied: give it one less (see the header).
    void svc.acknowledge(formatLsn(pos - 1n)).catch(() => undefined);
    this.updateState(false);
  }

  /** Stop reading the socket while the applier has too much to do (TCP then pushes back on the walsender). */
  private pause(on: boolean): void {
    const stream = (this.service as unknown as Stoppable | undefined)?._connection?.stream;
    if (!stream) return;
    this.paused = on;
    this.opts.log.debug(on ? "backlog full: pausing the stream" : "backlog drained: resuming the stream", { peer: this.opts.peer.name, backlog: this.applier?.backlog });
    if (on) stream.pause();
    else stream.resume();
  }

  // ------------------------------------------------------------------ state

  private async sampleUpstream(): Promise<void> {
    const probe = this.probe;
    if (!probe || this.sampling) return; // one query at a time on the probe connection
    this.sampling = true;
    try {
      const r = await probe.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn");
      const v = r.rows[0]?.lsn;
      if (v) this.upstream = parseLsn(v);
    } catch (e) {
      this.opts.log.debug("could not sample the peer's WAL position", { peer: this.opts.peer.name, error: errorText(e) });
    } finally {
      this.sampling = false;
    }
  }

  /** catchup/streaming from the lag; `started`: the stream has just begun. */
  private updateState(started: boolean): void {
    if (!started && this.state !== "catchup" && this.state !== "streaming") return;
    if (!this.service || this.stopping) return;
    const lag = this.upstream === undefined ? 0n : this.upstream - this.position();
    this.setState(lag > BigInt(this.opts.catchupThresholdBytes ?? 1 << 20) ? "catchup" : "streaming");
  }

  private setState(to: ReceiverState): void {
    const from = this.state;
    if (from === to) return;
    this.state = to;
    this.since = new Date();
    this.opts.log.info("receiver state", { peer: this.opts.peer.name, slot: this.slot, from, to });
    this.opts.onStateChange?.({ peer: this.opts.peer.name, from, to, at: this.since });
  }

  private statsNow(): ApplierStats {
    const cur = this.applier?.stats;
    const t = this.totals;
    return {
      appliedTransactions: t.appliedTransactions + (cur?.appliedTransactions ?? 0),
      appliedChanges: t.appliedChanges + (cur?.appliedChanges ?? 0),
      skippedTransactions: t.skippedTransactions + (cur?.skippedTransactions ?? 0),
      conflicts: t.conflicts + (cur?.conflicts ?? 0),
      slowPathTransactions: t.slowPathTransactions + (cur?.slowPathTransactions ?? 0),
    };
  }

  private addStats(s: ApplierStats): void {
    this.totals.appliedTransactions += s.appliedTransactions;
    this.totals.appliedChanges += s.appliedChanges;
    this.totals.skippedTransactions += s.skippedTransactions;
    this.totals.conflicts += s.conflicts;
    this.totals.slowPathTransactions += s.slowPathTransactions;
  }
}

/**
 * An origin that has never recorded anything starts where our slot on the
 * peer stands: everything of the peer's before that position is here already
 * (a joiner's snapshot covers it, or our slot was made when there was nothing
 * before it to send). Without this, our progress for the peer would say 0
 * until the peer next writes, and a part's catch-up (catchup.ts) could not
 * tell what a joiner already has. Only from nothing, and only while no
 * session holds the origin (PostgreSQL refuses the advance then: 55006).
 */
async function startOriginAtSlot(localDsn: string, origin: string, slotLsn: bigint, log: SlotsLogger): Promise<void> {
  if (slotLsn === 0n) return;
  const c = await connectClient(localDsn, "pgraft_origin", () => undefined);
  try {
    try {
      await c.query("SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)", [origin]);
    } catch (e) {
      if (sqlState(e) !== "23505") throw e; // created meanwhile
    }
    const r = await c.query(
      `SELECT pg_replication_origin_advance(roname, $2::pg_lsn) FROM pg_replication_origin
        WHERE roname = $1 AND COALESCE(pg_replication_origin_progress(roname, false), '0/0') = '0/0'`,
      [origin, formatLsn(slotLsn)],
    );
    if (r.rowCount) log.info("replication origin starts where our slot on the peer stands", { origin, lsn: formatLsn(slotLsn) });
  } catch (e) {
    if (sqlState(e) !== "55006") throw e;
    log.debug("replication origin busy; it keeps its position", { origin, error: errorText(e) });
  } finally {
    await within(c.end(), 5_000);
    destroyClient(c);
  }
}
