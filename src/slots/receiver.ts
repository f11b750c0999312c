// One receiver per upstream peer: streams the peer's node slot for this node
// (`bdr_<db>_<group>_<us>` on the peer: test_decoding with only-local, which
// the peer's walsender filters to what originated there, text-decoding.ts;
// or pgoutput, for a slot made where test_decoding is missing or by an older
// pgraft, where we skip what did not originate on the peer), applies it
// through an Applier, and confirms to the peer only positions that are
// durable here.
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
// between sessions (reconnecting with backoff), `slot_lost` (below),
// `stopped` after stop().
//
// Either PostgreSQL may restart (or crash) under a session: every connection
// of the session (the probe and the walsender on the peer, the applier and
// its flusher here) is then closed and a new session starts after a capped
// exponential backoff, from the origin's progress again (exactly once: what
// the server lost in an immediate restart was never confirmed). An outage is
// logged once (warn), its end once (info).
//
// A lost slot (issue 10) never lets changes be skipped: once this node has
// streamed from its slot on the peer (our origin for the peer has progress,
// or this process confirmed a position), the slot missing for longer than
// SLOT_GRACE_MS, missing and then back, invalidated (wal_status lost), or
// ahead of anything this process confirmed or applied (made again, or moved,
// by hand) means the peer's changes in between may never reach this node. The
// receiver then stops for good in state `slot_lost`, with the error in
// lastError and the log (error, once); a resync of this node repairs it (part
// it and join it again). The grace covers a part: the peer drops its slot
// for a parted node a moment before that node's data plane stops.
import type pg from "pg";
import { LogicalReplicationService } from "pg-logical-replication";
import { Applier, emptyStats, sumStats, type ApplierStats, type NodeRef } from "./applier.js";
import { clientConfig, connectClient, destroyClient, sqlState } from "./connection.js";
import { TextPgoutputPlugin, TransactionAssembler, type Assembled } from "./decoder.js";
import { TEXT_DECODING_PLUGIN, TextDecodingPlugin, TextTransactionAssembler } from "./text-decoding.js";
import { formatLsn, maxLsn, parseLsn } from "./lsn.js";
import { nodeSlotName, originName, publicationName, receiverApplicationName } from "./naming.js";
import { Backoff, Outage } from "./reconnect.js";
import { errorText, within, type PeerSpec, type SlotsLogger } from "./types.js";

export type ReceiverState = "disconnected" | "catchup" | "streaming" | "slot_lost" | "stopped";

/** How long our slot on the peer may be missing (after we streamed from it) before it is taken for lost. */
export const SLOT_GRACE_MS = 10_000;

/** The slot we stream from is lost (see the header): no new session. */
export class SlotLostError extends Error {}

export interface StateChange {
  peer: string;
  from: ReceiverState;
  to: ReceiverState;
  at: Date;
}

export interface ReceiverOptions {
  localDsn: string;
  /** Log update_origin_change conflicts the incoming change won (applier.ts). */
  logOriginChange?: () => boolean;
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
  /**
   * Reconnect backoff (default 200 ms doubling to 2 s). Short at its longest: under commit scope majority
   * a peer's commits wait for this receiver's confirmations, so it must be back soon after the peer's
   * PostgreSQL is (a refused connect every 2 s costs nothing).
   */
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
  /**
   * 0 when nothing is left to apply; else how long ago the oldest transaction
   * received from the peer and not applied yet committed there, or, when none
   * waits here, how long the last transaction received (applied or skipped)
   * took from its commit on the peer to arrive, at most the time since
   * everything the peer had was here (null: nothing received yet).
   */
  lagSeconds: number | null;
  lastError: string | null;
  /** Sessions started (1 + reconnects). */
  sessions: number;
  stats: ApplierStats;
}

/** The decoder of one session's stream: pgoutput's messages or test_decoding's lines, into transactions. */
interface StreamDecoder {
  readonly inTransaction: boolean;
  push(msg: unknown, lsn: string): Assembled | undefined;
}

function pgoutputDecoder(): StreamDecoder & { assembler: TransactionAssembler } {
  const assembler = new TransactionAssembler();
  return {
    assembler,
    get inTransaction() {
      return assembler.inTransaction;
    },
    push: (msg) => assembler.push(msg as Parameters<TransactionAssembler["push"]>[0]),
  };
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
  private decoder: StreamDecoder = pgoutputDecoder();
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
  /** The highest position this process confirmed on the slot, or saw it at (the slot cannot legitimately be ahead of it). */
  private everConfirmed = 0n;
  /** When the slot was first found missing although we had streamed from it. */
  private vanishedAt: number | undefined;
  private readonly outage: Outage;
  private totals: ApplierStats = emptyStats();
  /** The origin commit time (µs) of the last transaction applied from this peer, across sessions. */
  private get lastCommitTime(): bigint | undefined {
    return this.applier?.committedTime ?? this.lastSessionCommitTime;
  }
  private lastSessionCommitTime: bigint | undefined;
  /** The last transaction received (applied or skipped): its commit time on the peer (µs) and when it arrived here (ms). */
  private lastArrival: { commitTime: bigint; atMs: number } | undefined;
  /** When the last upstream sample was asked for (ms): its WAL position was the peer's then or later. */
  private upstreamAskedAtMs: number | undefined;
  /**
   * The latest time (ms) as of which everything the peer had committed was
   * here: what we may confirm reached an upstream sample, asked for then.
   * Whatever has not arrived yet committed after it.
   */
  private caughtUpAtMs: number | undefined;

  /**
   * The apply lag in seconds while behind (see ReceiverStatus.lagSeconds). Not
   * "since the last applied transaction committed": after the peer was idle
   * that counted the idle time as lag the moment its next transaction arrived.
   */
  private lagSeconds(): number | null {
    const waiting = this.applier?.oldestWaitingCommitTime;
    if (waiting !== undefined) return Math.max(0, Date.now() / 1000 - Number(waiting) / 1e6);
    if (this.lastArrival) {
      // Nothing waits: what is missing has not arrived. It takes about as long as the last arrival did, but
      // committed after we were last caught up: a delay measured long ago (a catch-up's) is not today's lag.
      const delay = this.lastArrival.atMs / 1000 - Number(this.lastArrival.commitTime) / 1e6;
      const since = this.caughtUpAtMs === undefined ? Infinity : (Date.now() - this.caughtUpAtMs) / 1000;
      return Math.max(0, Math.min(delay, since));
    }
    return this.lastCommitTime === undefined ? null : Math.max(0, Date.now() / 1000 - Number(this.lastCommitTime) / 1e6);
  }

  constructor(opts: ReceiverOptions) {
    this.opts = opts;
    this.slot = nodeSlotName(opts.db, opts.group, opts.localNode.name);
    this.origin = originName(opts.db, opts.group, opts.peer.name);
    this.outage = new Outage(opts.log, `replication from peer ${opts.peer.name}`, { peer: opts.peer.name, slot: this.slot });
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
      lagSeconds: lag === 0 ? 0 : this.lagSeconds(),
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
    const backoff = new Backoff(this.opts.reconnectMinMs ?? 200, this.opts.reconnectMaxMs ?? 2_000);
    let lost: SlotLostError | undefined;
    while (!this.stopping) {
      const began = Date.now();
      let failure: unknown;
      try {
        await this.session();
      } catch (e) {
        failure = e;
        if (e instanceof SlotLostError) lost = e;
      }
      await this.teardown();
      if (this.stopping) break;
      if (lost) break;
      if (Date.now() - began > 30_000) backoff.reset(); // a long session was healthy: start the backoff over
      const delay = backoff.next();
      this.lastError = errorText(failure ?? new Error(`the replication stream from ${this.opts.peer.name} ended`));
      this.outage.failed(this.lastError, delay);
      this.setState("disconnected");
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = undefined;
    }
    if (lost && !this.stopping) {
      // Stopped for good: nothing more is streamed from this slot until this node is resynced (the receiver is then replaced).
      this.lastError = lost.message;
      this.opts.log.error("replication from peer stopped: slot lost", { peer: this.opts.peer.name, slot: this.slot, error: lost.message });
      this.setState("slot_lost");
      if (!this.stopping) await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
    this.setState("stopped");
  }

  private async session(): Promise<void> {
    const o = this.opts;
    this.sessions++;
    this.sessionError = undefined;
    this.paused = false;
    this.idleAck = 0n;
    this.floor = 0n;
    this.probe = await connectClient(o.peer.dsn, "pgraft_probe", () => undefined);
    const slot = await this.probe.query<{ confirmed: string | null; wal_status: string | null; plugin: string | null }>(
      "SELECT confirmed_flush_lsn::text AS confirmed, wal_status, plugin::text FROM pg_replication_slots WHERE slot_name = $1",
      [this.slot],
    );
    const row = slot.rows[0];
    if (!row) return this.slotMissing();
    const lostBecause = (how: string): SlotLostError =>
      new SlotLostError(
        `replication slot ${this.slot} on ${o.peer.name} ${how}: ${o.peer.name}'s changes after what this node has applied (origin ${this.origin}) may never reach it. ` +
          `The stream from ${o.peer.name} is stopped; resync node ${o.localNode.name}: part it, drop it, empty its database and join it again (README: "Resyncing a node")`,
      );
    if (row.wal_status === "lost") throw lostBecause("was invalidated by PostgreSQL (wal_status lost: it fell behind max_slot_wal_keep_size)");
    if (this.vanishedAt !== undefined) throw lostBecause("was missing and is back: it was made again");
    this.floor = row.confirmed ? parseLsn(row.confirmed) : 0n;
    const plugin = await this.pluginFor(row.plugin);
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
      ...(o.logOriginChange ? { logOriginChange: o.logOriginChange } : {}),
      onDurable: (lsn) => this.onDurable(lsn),
      onFailure: (e) => this.breakSession(e),
    });
    this.applier = applier;
    const resume = await applier.connect();
    if (this.stopping) return;
    // We are the slot's only client: it cannot stand beyond what we confirmed, unless someone made it again or moved it.
    if (this.everConfirmed > 0n && this.floor > maxLsn(this.everConfirmed, resume)) {
      throw lostBecause(`stands at ${formatLsn(this.floor)}, past anything this node confirmed on it (${formatLsn(this.everConfirmed)}) or applied (${formatLsn(resume)}): it was made again or moved by hand`);
    }
    this.everConfirmed = maxLsn(this.everConfirmed, this.floor);
    this.durable = resume;
    this.confirmed = 0n;
    await this.sampleUpstream();
    if (this.stopping) return;

    const service = new LogicalReplicationService(clientConfig(o.peer.dsn, receiverApplicationName(o.localNode.name)), {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: false }, // ordered, synchronous events: a keepalive is seen after every message sent before it
    });
    this.service = service;
    service.on("error", (e: Error) => {
      this.sessionError ??= e;
    });
    service.on("data", (lsn: string, msg: unknown) => this.onMessage(msg, lsn));
    service.on("heartbeat", (lsn: string, _ts: number, reply: boolean) => this.onKeepalive(lsn, reply));
    service.on("start", () => {
      // The library drops its own listeners when it stops: keep one, so a late socket error is never uncaught.
      (service as unknown as Stoppable)._client?.on("error", () => {});
      if (this.sessionError) {
        void service.stop().catch(() => undefined); // broken while the stream was starting
        return;
      }
      this.lastError = null;
      this.outage.recovered();
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
    await service.subscribe(plugin, this.slot, formatLsn(resume));
    // (read through a method: TypeScript would keep the narrowing from the start of the session)
    const err = this.currentError();
    if (err) throw err;
    if (!this.stopping) throw new Error(`the replication stream from ${o.peer.name} ended`);
  }

  private currentError(): Error | undefined {
    return this.sessionError;
  }

  /**
   * Our slot on the peer does not exist. Not made yet, when we never streamed
   * from it (a new peer's data plane makes it); otherwise lost once it stays
   * missing for SLOT_GRACE_MS (see the header). Always throws.
   */
  private async slotMissing(): Promise<never> {
    const o = this.opts;
    const progress = this.everConfirmed > 0n ? this.everConfirmed : await originProgress(o.localDsn, this.origin);
    if (progress === 0n) throw new Error(`replication slot ${this.slot} does not exist on ${o.peer.name} yet (its data plane creates it)`);
    this.vanishedAt ??= Date.now();
    const missing = `replication slot ${this.slot} on ${o.peer.name} does not exist, though this node has streamed from it (up to ${formatLsn(progress)})`;
    if (Date.now() - this.vanishedAt < SLOT_GRACE_MS) throw new Error(`${missing}; taken for lost unless this stream is stopped within ${SLOT_GRACE_MS / 1000} s (a part)`);
    throw new SlotLostError(
      `${missing}: it was dropped or lost, and ${o.peer.name}'s changes after what this node has applied may never reach it. ` +
        `The stream from ${o.peer.name} is stopped; resync node ${o.localNode.name}: part it, drop it, empty its database and join it again (README: "Resyncing a node")`,
    );
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
      this.lastSessionCommitTime = applier.committedTime ?? this.lastSessionCommitTime;
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

  /**
   * The plugin this session streams the slot with, and its decoder: the
   * slot's own (made with test_decoding where the peer has it, pgoutput
   * otherwise or by an older pgraft: node-slot-plugin.ts).
   */
  private async pluginFor(slotPlugin: string | null): Promise<TextPgoutputPlugin | TextDecodingPlugin> {
    if (slotPlugin === TEXT_DECODING_PLUGIN) {
      // The peer's tables and their columns in order: a DELETE prints only its key (or its non-NULL columns).
      const cols = await this.probe!.query<{ s: string; t: string; cols: string }>(
        `SELECT n.nspname AS s, c.relname AS t, json_agg(a.attname ORDER BY a.attnum)::text AS cols
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgraft')
          GROUP BY 1, 2`,
      );
      this.decoder = new TextTransactionAssembler({ tables: cols.rows.map((r) => ({ schema: r.s, name: r.t, columns: JSON.parse(r.cols) as string[] })) });
      return new TextDecodingPlugin();
    }
    if (slotPlugin !== "pgoutput") throw new Error(`replication slot ${this.slot} on ${this.opts.peer.name} uses output plugin ${slotPlugin}, not test_decoding or pgoutput: it was not made by pgraft`);
    const d = pgoutputDecoder();
    this.decoder = d;
    return new TextPgoutputPlugin(publicationName(this.opts.db, this.opts.group), (origin) => d.assembler.wanted(origin));
  }

  private onMessage(msg: unknown, lsn: string): void {
    const applier = this.applier;
    if (!applier || this.sessionError) {
      // Broken: make sure the stream ends (a stop() that raced the library's connect may not have).
      if (this.sessionError) void this.service?.stop().catch(() => undefined);
      return;
    }
    let a;
    try {
      a = this.decoder.push(msg, lsn);
    } catch (e) {
      this.breakSession(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (!a) return;
    this.received = a.kind === "apply" ? a.tx.endLsn : a.endLsn;
    this.lastArrival = { commitTime: a.kind === "apply" ? a.tx.commitTime : a.commitTime, atMs: Date.now() };
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
    // A session that failed (its applier's server restarted, say) has lost what was not durable: confirming
    // the keepalive's position then would skip those transactions for good. Only a live, idle applier may.
    if (this.sessionError) return;
    if (!this.decoder.inTransaction && this.applier?.idle) this.idleAck = maxLsn(this.idleAck, w);
    this.noteCaughtUp();
    this.sendAck(reply);
  }

  private onDurable(lsn: bigint): void {
    this.durable = maxLsn(this.durable, lsn);
    this.noteCaughtUp();
    if (this.paused && (this.applier?.backlog ?? 0) < (this.opts.maxBacklog ?? 5000) / 2) this.pause(false);
    // Coalesce: one status message for a burst of durable transactions.
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.sendAck(false);
    });
  }

  /** Record that what we may confirm reached the last upstream sample (see caughtUpAtMs). */
  private noteCaughtUp(): void {
    if (this.upstream === undefined || this.upstreamAskedAtMs === undefined || this.position() < this.upstream) return;
    this.caughtUpAtMs = Math.max(this.caughtUpAtMs ?? 0, this.upstreamAskedAtMs);
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
    this.everConfirmed = maxLsn(this.everConfirmed, pos);
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
    const askedAt = Date.now();
    try {
      const r = await probe.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn");
      const v = r.rows[0]?.lsn;
      if (v) {
        this.upstream = parseLsn(v);
        this.upstreamAskedAtMs = askedAt;
        this.noteCaughtUp();
      }
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
    return sumStats(this.totals, this.applier?.stats);
  }

  private addStats(s: ApplierStats): void {
    this.totals = sumStats(this.totals, s);
  }
}

/** Our progress for `origin` here (0: none, or no such origin). */
async function originProgress(localDsn: string, origin: string): Promise<bigint> {
  const c = await connectClient(localDsn, "pgraft_origin", () => undefined);
  try {
    const r = await c.query<{ lsn: string | null }>("SELECT pg_replication_origin_progress(roname, false)::text AS lsn FROM pg_replication_origin WHERE roname = $1", [origin]);
    const lsn = r.rows[0]?.lsn;
    return lsn ? parseLsn(lsn) : 0n;
  } finally {
    await within(c.end(), 5_000);
    destroyClient(c);
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
