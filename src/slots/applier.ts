// Applies one upstream peer's transactions to the local database, in order,
// each in one local transaction under the replication origin for that peer.
//
// Exactly once: every transaction commits with pg_replication_origin_xact_setup
// (its upstream end LSN and commit time), so the origin's progress moves
// atomically with the data, and a restart resumes from that progress
// (session.ts takes the origin before reading it).
//
// Throughput: the cost of a small transaction is per-query overhead, on both
// ends, so whole transactions go out in batches: one simple-protocol Query
// holds up to `windowTransactions` of them (BEGIN; EXECUTE …; COMMIT AND
// CHAIN; EXECUTE …; … COMMIT;), statements prepared once (batch-text.ts),
// and the next batch is written while the server runs the previous one (two
// in flight). A huge transaction spans several batches. Runs of inserts into
// one table are one multi-row INSERT, runs of updates or deletes by key one
// UPDATE … FROM / DELETE … USING. That is safe because:
// - fast-path statements raise instead of deciding (statements.ts): a change
//   that needs conflict resolution, or any error, aborts its transaction, and
//   the server skips the rest of that Query; every later statement fails
//   while the aborted transaction block is open, so nothing after a failure
//   commits;
// - each transaction's setup also checks that the origin's progress is the
//   end LSN of the transaction sent before it (the chain check), which covers
//   the one failure that closes the block: an error raised by COMMIT itself;
// - after a failure, once every batch in flight has answered, the applier
//   rolls back, reads the origin's progress (everything up to it committed,
//   in order), redoes the first transaction past it on the slow path, one
//   change at a time with conflict resolution (slow-path.ts), and re-sends
//   the rest.
//
// Durability: the apply commits are asynchronous (synchronous_commit off),
// so applying never waits for the disk. A second connection makes them
// durable: while commits wait, it runs a tiny synchronous transaction, which
// flushes the WAL through every commit made before it (WAL is flushed in
// order). Only then are their LSNs reported durable, so the receiver confirms
// to the upstream only what a crash here cannot lose.
import { arrayLiteral, executeSql, literal } from "./batch-text.js";
import type pg from "pg";
import { connectClient, destroyClient, sqlState } from "./connection.js";
import { CONFLICT_TABLE } from "./local-objects.js";
import type { Assembled } from "./decoder.js";
import { formatLsn, maxLsn, microsToTimestamptz } from "./lsn.js";
import { ApplySession, BATCH_SETUP, qualified, type SessionOptions } from "./session.js";
import { applyOneByOne, locateRow } from "./slow-path.js";
import { resolvingDeleteOneSql, resolvingInsertOneSql, resolvingUpdateOneSql } from "./resolving-one-row.js";
import { resolvingDeleteSql, resolvingInsertSql, resolvingUpdateSql } from "./resolving-statements.js";
import { deleteManySql, fastDeleteSql, fastUpdateSql, GUARD_SQLSTATE, insertManySql, insertSql, locateParams, presentMask, presentValues, truncateSql, updateManySql, type TableMeta } from "./statements.js";
import { errorText, sleep, within, type Change, type RelationDesc, type RemoteTransaction, type Value } from "./types.js";

export type { NodeRef } from "./session.js";

/** The session's options (the local server, the peer, its origin, the members, the log, originWaitMs), and the batching. */
export interface ApplierOptions extends Omit<SessionOptions, "onError"> {
  /** Transactions per batch (default 256). */
  windowTransactions?: number;
  /** Bytes of SQL per batch before it is sent (default 256 KiB; a bigger transaction spans batches). */
  batchBytes?: number;
  /** Called when more transactions became durable (in order). */
  onDurable?: (lsn: bigint) => void;
  /** Called once when the applier failed (connection lost, a change that cannot be applied); it is unusable afterwards. */
  onFailure?: (e: Error) => void;
  /** Log update_origin_change conflicts the incoming change won (default: not, as PGD). */
  logOriginChange?: () => boolean;
  /** How long after its last conflict a table stays resolving (default CONTENDED_MS; tests shorten it). */
  contendedMs?: number;
}

export interface ApplierStats {
  appliedTransactions: number;
  appliedChanges: number;
  skippedTransactions: number;
  /** Of those, transactions the peer applied from elsewhere and sent back (pgoutput node slots only: test_decoding's only-local drops them at the source). */
  skippedEchoes: number;
  conflicts: number;
  /** Conflicts by `type/resolution` (insert_exists/apply_remote, …), logged or not. */
  conflictsByKind: Map<string, number>;
  /** Transactions redone on the slow path (an error, a tie, a table without a primary key meeting another node's row). */
  slowPathTransactions: number;
  /** Transactions sent again with resolving statements after a conflict stopped their optimistic batch. */
  resolvingResends: number;
}

export function emptyStats(): ApplierStats {
  return { appliedTransactions: 0, appliedChanges: 0, skippedTransactions: 0, skippedEchoes: 0, conflicts: 0, conflictsByKind: new Map(), slowPathTransactions: 0, resolvingResends: 0 };
}

/** `a` + `b` (a new object). */
export function sumStats(a: ApplierStats, b: ApplierStats | undefined): ApplierStats {
  const kinds = new Map(a.conflictsByKind);
  for (const [k, n] of b?.conflictsByKind ?? []) kinds.set(k, (kinds.get(k) ?? 0) + n);
  return {
    appliedTransactions: a.appliedTransactions + (b?.appliedTransactions ?? 0),
    appliedChanges: a.appliedChanges + (b?.appliedChanges ?? 0),
    skippedTransactions: a.skippedTransactions + (b?.skippedTransactions ?? 0),
    skippedEchoes: a.skippedEchoes + (b?.skippedEchoes ?? 0),
    conflicts: a.conflicts + (b?.conflicts ?? 0),
    conflictsByKind: kinds,
    slowPathTransactions: a.slowPathTransactions + (b?.slowPathTransactions ?? 0),
    resolvingResends: a.resolvingResends + (b?.resolvingResends ?? 0),
  };
}

/** Count the conflicts a committed batch reports (each resolving statement's `pgraft_conflicts`: `type/resolution=n,…`). */
export function countConflicts(stats: ApplierStats, results: unknown): void {
  for (const r of Array.isArray(results) ? results : [results]) {
    const rows = (r as { rows?: Record<string, unknown>[] } | undefined)?.rows;
    const text = rows?.[0]?.pgraft_conflicts;
    if (typeof text !== "string") continue;
    for (const part of text.split(",")) {
      const at = part.lastIndexOf("=");
      const kind = part.slice(0, at);
      const n = Number(part.slice(at + 1));
      stats.conflicts += n;
      stats.conflictsByKind.set(kind, (stats.conflictsByKind.get(kind) ?? 0) + n);
    }
  }
}

interface Item {
  kind: "apply" | "skip";
  tx: RemoteTransaction | undefined;
  endLsn: bigint;
  status: "queued" | "sent" | "committed" | "durable";
  sync: boolean;
  /** Sent again with resolving statements after a conflict stopped its optimistic batch (a second failure: the slow path). */
  resolving?: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** One Query on the wire: the transactions whose COMMIT it carries. */
interface Batch {
  commits: Item[];
  /** The statements PREPAREd just ahead of this batch (session.takeUnprepared). */
  prepares: string[];
  /** What the server answered (one result per statement), once it did. */
  results?: unknown;
}

/**
 * A synchronous commit of a transaction that writes nothing but its commit
 * record (it takes an xid, else there would be no record to flush): it
 * flushes the WAL through every commit made before it, on any connection.
 */
const FLUSH_SQL = "BEGIN;SET LOCAL synchronous_commit = local;SELECT pg_current_xact_id();COMMIT;";
/** How long commits may wait for their flush (see flush()). */
const FLUSH_DELAY_MS = 5;

/**
 * How long after its last conflict a table is applied with resolving
 * statements (resolving-statements.ts) before the optimistic ones are tried
 * again: a multi-writer table, whose resolving statements keep meeting
 * conflicts, stays resolving; a table that met one conflict goes back to the
 * cheaper statements 10 s later. (Counted from the first conflict only, a
 * multi-writer table went back every 10 s, and each time an optimistic batch
 * failed and up to a window of transactions was rolled back and sent again.)
 */
const CONTENDED_MS = 10_000;
/** The errors of an optimistic statement that resolving ones decide in line: the guard (another node's row, a missing row) and a duplicate key. */
const CONFLICT_STATES = new Set([GUARD_SQLSTATE, "23505"]);

/** At most one info line per this long about transactions redone on the slow path. */
const SLOW_PATH_LOG_MS = 10_000;
/** Rows per multi-row INSERT. */
const BATCH_ROWS = 1000;
/** Batches in flight: one running on the server while the next is written. */
const BATCHES_IN_FLIGHT = 2;

export class Applier {
  private readonly opts: ApplierOptions;
  private readonly session: ApplySession;
  private readonly items: Item[] = [];
  /** items[sendPos] is the next to send. */
  private sendPos = 0;
  /** Items the pump has gone past (sent or skipped): its progress, whatever advance() does to sendPos. */
  private passed = 0;
  private unsentApply = 0;
  private inFlight: Batch[] = [];
  private roomWaiters: (() => void)[] = [];
  private pumping = false;
  private recovering: { error: unknown } | undefined;
  private failed: Error | undefined;
  private closed = false;
  /** End LSN of the last transaction sent (what the next one's chain check expects as the origin's progress). */
  private chainLsn = 0n;
  /** Tables (qualified names) applied with resolving statements until the time given (ms). */
  private readonly contended = new Map<string, number>();
  /** When a slow-path redo was last logged at info, and how many since (logSlowPath). */
  private slowPathLoggedAt = -Infinity;
  private slowPathUnlogged = 0;
  /** The connection that makes commits durable (see flush()). */
  private flusher: pg.Client | undefined;
  private flushing = false;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Everything up to here is durably applied (or needed nothing). */
  durableLsn = 0n;
  /** The last transaction committed (durable or not). */
  committedLsn = 0n;
  /** The origin commit time (µs) of the last transaction committed here; undefined before the first. */
  committedTime: bigint | undefined;
  readonly stats: ApplierStats = emptyStats();

  constructor(opts: ApplierOptions) {
    this.opts = opts;
    this.session = new ApplySession({ ...opts, onError: (e) => this.fail(e) });
  }

  /** Connect, own the origin, and return the resume point (the end LSN of the last transaction from this peer committed here; 0: none). */
  async connect(): Promise<bigint> {
    const resume = await this.session.open();
    this.flusher = await connectClient(this.opts.localDsn, `pgraft_flush_${this.opts.peer.name}`.slice(0, 63), (e) => this.fail(e));
    if (this.closed) {
      destroyClient(this.flusher);
      throw new Error("applier closed while connecting");
    }
    this.chainLsn = resume;
    this.durableLsn = resume;
    this.committedLsn = resume;
    this.opts.log.info("applier ready", { peer: this.opts.peer.name, origin: this.opts.originName, resume: formatLsn(resume) });
    return resume;
  }

  /** Nothing queued or in flight: everything submitted is durable. */
  get idle(): boolean {
    // A failed or closed applier dropped its queue without applying it: that is not "everything durable".
    return this.items.length === 0 && !this.failed && !this.closed;
  }

  /** Transactions submitted and not yet durable. */
  get backlog(): number {
    return this.items.length;
  }

  /** The origin commit time (µs) of the oldest transaction submitted and not yet committed here (undefined: none waits). */
  get oldestWaitingCommitTime(): bigint | undefined {
    for (const it of this.items) if (it.kind === "apply" && (it.status === "queued" || it.status === "sent")) return it.tx!.commitTime;
    return undefined;
  }

  get error(): Error | undefined {
    return this.failed;
  }

  /**
   * Queue what the assembler produced. Resolves once it is durable here (a
   * skipped transaction: once everything before it is); rejects when the
   * applier fails or closes first.
   */
  submit(a: Assembled): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new Error("applier closed"));
    return new Promise<void>((resolve, reject) => {
      const item: Item =
        a.kind === "apply"
          ? { kind: "apply", tx: a.tx, endLsn: a.tx.endLsn, status: "queued", sync: false, resolve, reject }
          : { kind: "skip", tx: undefined, endLsn: a.endLsn, status: "committed", sync: false, resolve, reject };
      this.items.push(item);
      if (item.kind === "apply") this.unsentApply++;
      else {
        this.stats.skippedTransactions++;
        if (a.kind === "skip" && a.reason === "origin") this.stats.skippedEchoes++;
      }
      this.advance();
      this.kick();
    });
  }

  // ------------------------------------------------------------------ batches

  private kick(): void {
    if (!this.pumping) void this.pump();
  }

  private get sending(): boolean {
    return !this.failed && !this.closed && !this.recovering;
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.sending && this.sendPos < this.items.length && this.inFlight.length < BATCHES_IN_FLIGHT) {
        // Items submitted while sendBatch() was awaited (several arrive in one turn of the event loop, their
        // kicks ignored while we pump) are seen by the loop's condition; stop only when a pass moved nothing.
        const before = this.passed;
        if (!(await this.sendBatch()) && this.passed === before) break;
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Write one batch: whole transactions from sendPos on. Returns false when
   * there was nothing to send yet (only skips, or a failure meanwhile).
   *
   * A transaction that meets a table new to this connection waits until
   * nothing is in flight: its lookup is a query of its own, which a failed
   * batch's open transaction would break. A statement shape new to it is
   * PREPAREd in a query of its own sent just ahead of the batch.
   */
  private async sendBatch(): Promise<boolean> {
    const s = this.session;
    let parts: string[] = [];
    let bytes = 0;
    let commits: Item[] = [];
    let prepares: { name: string; text: string }[] = [];
    let txs = 0;
    /** A transaction of this batch whose COMMIT is not written yet. */
    let pending = false;
    const maxTx = this.opts.windowTransactions ?? 256;
    const maxBytes = this.opts.batchBytes ?? 256 * 1024;
    while (this.sending && this.sendPos < this.items.length && txs < maxTx && bytes < maxBytes) {
      const item = this.items[this.sendPos]!;
      if (item.kind === "skip") {
        this.sendPos++;
        this.passed++;
        continue;
      }
      const tx = item.tx!;
      if (!s.knowsTables(tx)) {
        if (parts.length) break;
        if (!(await this.quiet())) return false;
        await s.ensureMetas(tx);
        continue;
      }
      const statements = this.transactionSql(tx, this.chainLsn);
      // Committed to sending it.
      this.sendPos++;
      this.passed++;
      this.unsentApply--;
      this.chainLsn = tx.endLsn;
      item.status = "sent";
      txs++;
      // Transactions follow each other with COMMIT AND CHAIN (one statement between two, not two).
      parts.push(pending ? "COMMIT AND CHAIN;" : "BEGIN;");
      pending = false;
      // The shapes this transaction uses first: prepared just ahead of the batch.
      prepares.push(...s.takeUnprepared());
      for (const st of statements) {
        if (bytes >= maxBytes) {
          // A huge transaction: the part written so far goes now, its COMMIT comes in a later batch.
          this.post(parts, commits, prepares);
          parts = [];
          bytes = 0;
          commits = [];
          prepares = [];
          if (!(await this.room())) return false; // a failure meanwhile: recovery rolls the open transaction back
        }
        parts.push(st);
        bytes += st.length;
      }
      commits.push(item);
      pending = true;
    }
    if (!parts.length) return false;
    if (pending) parts.push("COMMIT;");
    this.post(parts, commits, prepares);
    return true;
  }

  /** The statements of one transaction between its BEGIN and COMMIT: its setup and its changes (the setup folded into a lone statement). */
  private transactionSql(tx: RemoteTransaction, prev: bigint): string[] {
    const ts = literal(tx.commitTimeText ?? microsToTimestamptz(tx.commitTime));
    const setup = [literal(formatLsn(tx.endLsn)), ts, literal(formatLsn(prev))];
    // Only resolving statements take the context: built when one asks.
    let ctx: string[] | undefined;
    const context = (): string[] => (ctx ??= [ts, literal(formatLsn(tx.commitLsn)), this.opts.logOriginChange?.() ? "true" : "false", literal(this.session.writersJson())]);
    const list = [...batches(tx.changes, (rel) => this.session.meta(rel))];
    const only = list.length === 1 ? list[0]! : undefined;
    // A resolving statement evaluates a folded setup after its writes, so its transaction would wait for the
    // apply lock holding an xid: a join's slot creation, which takes that lock and waits for running xids,
    // would then wait for it forever. Its setup is a statement of its own, first.
    if (only && only[0]!.kind !== "truncate" && !this.resolving(only)) return [this.changeSql(only, context, setup)];
    return [executeSql(BATCH_SETUP, setup), ...list.map((b) => this.changeSql(b, context))];
  }

  /**
   * One statement: a change, or a run of one table's inserts, updates or
   * deletes. On a table with a primary key a run (of one change or many)
   * resolves its conflicts in line (resolving-statements.ts; `context`: the
   * transaction's commit time and LSN, the logging switch, the writers);
   * elsewhere a change that meets another node's row raises and goes to the
   * slow path. `solo`: the statement is the whole transaction, these are its
   * setup arguments (statements.ts soloSetup).
   */
  private changeSql(batch: Change[], context: () => string[], solo?: string[]): string {
    const s = this.session;
    const one = solo !== undefined;
    const tag = one ? "s" : "";
    const first = batch[0]!;
    if (this.resolving(batch)) return this.resolvingSql(batch, s.meta((first as Exclude<Change, { kind: "truncate" }>).rel), tag, one, [...context(), ...(solo ?? [])]);
    const tail = solo ?? [];
    if (batch.length > 1 && first.kind !== "truncate") {
      const meta = s.meta(first.rel);
      const column = (i: number, row: (ch: Change) => Value[]): string => arrayLiteral(batch.map((ch) => row(ch)[i]));
      const count = literal(String(batch.length));
      if (first.kind === "delete") {
        const keys = meta.key!.map((i) => column(i, (ch) => (ch as Extract<Change, { kind: "delete" }>).old));
        return executeSql(s.batchShape(meta, `${tag}D`, () => deleteManySql(meta, s.roident, one)), [...keys, count, ...tail]);
      }
      const mask = presentMask(first.new);
      const newRow = (ch: Change): Value[] => (ch as Extract<Change, { kind: "insert" | "update" }>).new;
      const values = meta.rel.columns.flatMap((_, i) => (mask[i] === "1" ? [column(i, newRow)] : []));
      if (first.kind === "insert") return executeSql(s.batchShape(meta, `${tag}I${mask}`, () => insertManySql(meta, mask, one)), [...values, ...tail]);
      const keys = meta.key!.map((i) => column(i, newRow));
      return executeSql(s.batchShape(meta, `${tag}U${mask}`, () => updateManySql(meta, mask, s.roident, one)), [...values, ...keys, count, ...tail]);
    }
    const args = (vs: (string | null)[]): string[] => [...vs.map(literal), ...tail];
    switch (first.kind) {
      case "insert": {
        const meta = s.meta(first.rel);
        const mask = presentMask(first.new);
        return executeSql(s.batchShape(meta, `${tag}i${mask}`, () => insertSql(meta, mask, one)), args(presentValues(first.new)));
      }
      case "update": {
        const meta = s.meta(first.rel);
        const mask = presentMask(first.new);
        const where = locateParams(meta, locateRow(meta, first.old, first.new));
        return executeSql(s.batchShape(meta, `${tag}u${mask}`, () => fastUpdateSql(meta, mask, s.roident, one)), args([...presentValues(first.new), ...where]));
      }
      case "delete": {
        const meta = s.meta(first.rel);
        return executeSql(s.batchShape(meta, `${tag}d`, () => fastDeleteSql(meta, s.roident, one)), args(locateParams(meta, first.old)));
      }
      case "truncate":
        if (one) throw new Error("a truncate cannot be a one-statement transaction");
        return `${truncateSql(first.rels.map((r) => qualified(r)), first.restartIdentity, first.cascade).text};`;
    }
  }

  /** This run goes as a resolving statement: its table has a primary key, the run's shape allows it, and it met a conflict lately. */
  private resolving(batch: Change[]): boolean {
    const first = batch[0]!;
    if (first.kind === "truncate") return false;
    const meta = this.session.meta(first.rel);
    return meta.key !== null && runShape(first, (rel) => this.session.meta(rel)).shape !== "" && (this.contended.get(meta.qualified) ?? 0) > Date.now();
  }

  /**
   * A run (of one change or many) on a table with a primary key, as a
   * statement that decides its conflicts in line (resolving-statements.ts;
   * `tail`: the transaction's context — commit time and LSN, the logging
   * switch, the writers — then a lone statement's setup).
   */
  private resolvingSql(batch: Change[], meta: TableMeta, tag: string, one: boolean, tail: string[]): string {
    const s = this.session;
    const first = batch[0]!;
    const names = { localNode: this.opts.localNode.name, peer: this.opts.peer.name };
    // A run of one row goes as scalars to its own, leaner statement (resolving-one-row.ts).
    const single = batch.length === 1;
    const column = (i: number, row: (ch: Change) => Value[]): string => (single ? literal(row(first)[i] ?? null) : arrayLiteral(batch.map((ch) => row(ch)[i])));
    if (first.kind === "delete") {
      const keys = meta.key!.map((i) => column(i, (ch) => (ch as Extract<Change, { kind: "delete" }>).old));
      const sql = single ? () => resolvingDeleteOneSql(meta, s.roident, names, one) : () => resolvingDeleteSql(meta, s.roident, names, one);
      return executeSql(s.batchShape(meta, `${tag}R${single ? "1" : ""}D`, sql), [...keys, ...tail]);
    }
    const newRow = (ch: Change): Value[] => (ch as Extract<Change, { kind: "insert" | "update" }>).new;
    const mask = presentMask(newRow(first));
    const values = meta.rel.columns.flatMap((_, i) => (mask[i] === "1" ? [column(i, newRow)] : []));
    if (first.kind === "insert") {
      const sql = single ? () => resolvingInsertOneSql(meta, mask, s.roident, names, one) : () => resolvingInsertSql(meta, mask, s.roident, names, one);
      return executeSql(s.batchShape(meta, `${tag}R${single ? "1" : ""}I${mask}`, sql), [...values, ...tail]);
    }
    const keys = meta.key!.map((i) => column(i, newRow));
    const sql = single ? () => resolvingUpdateOneSql(meta, mask, s.roident, names, one) : () => resolvingUpdateSql(meta, mask, s.roident, names, one);
    return executeSql(s.batchShape(meta, `${tag}R${single ? "1" : ""}U${mask}`, sql), [...values, ...keys, ...tail]);
  }

  /**
   * Make the commits so far durable, on the flusher connection: FLUSH_DELAY_MS
   * after the first commit that waits (a flush is a transaction and a disk
   * write of its own: at a steady trickle, one per transaction would double
   * the server's work), and one at a time; commits made meanwhile wait for
   * the next one. Only acknowledgements wait: what is committed is applied.
   */
  private flush(): void {
    if (this.flushTimer || this.flushing || this.failed || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flushNow();
    }, FLUSH_DELAY_MS);
    this.flushTimer.unref();
  }

  private flushNow(): void {
    const c = this.flusher;
    if (this.flushing || !c || this.failed || this.closed) return;
    const target = this.committedLsn;
    if (!this.items.some((it) => it.kind === "apply" && it.status === "committed" && it.endLsn <= target)) return;
    this.flushing = true;
    c.query(FLUSH_SQL).then(
      () => {
        this.flushing = false;
        if (this.failed || this.closed) return;
        // Commits happen in end-LSN order: every one up to the target was made before the flush.
        for (const it of this.items) if (it.kind === "apply" && it.status === "committed" && it.endLsn <= target) it.status = "durable";
        this.advance();
        this.flush();
      },
      (e: unknown) => {
        this.flushing = false;
        this.fail(e);
      },
    );
  }

  private post(parts: string[], commits: Item[], prepares: { name: string; text: string }[]): void {
    const batch: Batch = { commits, prepares: prepares.map((p) => p.name) };
    // Pipelined: a PREPARE that fails (behind a failed batch) makes this batch fail too, and its recovery prepares it again.
    for (const p of prepares) void this.session.query({ text: p.text }).catch(() => undefined);
    this.inFlight.push(batch);
    void this.session.query({ text: parts.join("") }).then(
      (results) => {
        batch.results = results;
        this.answered(batch, undefined);
      },
      (e: unknown) => this.answered(batch, e ?? new Error("batch failed")),
    );
  }

  /** Wait for a free slot on the wire; false when a failure or a close came first. */
  private async room(): Promise<boolean> {
    while (this.inFlight.length >= BATCHES_IN_FLIGHT && this.sending) await new Promise<void>((r) => this.roomWaiters.push(r));
    return this.sending;
  }

  /** Wait until nothing is in flight; false when a failure or a close came first. */
  private async quiet(): Promise<boolean> {
    while (this.inFlight.length && this.sending) await new Promise<void>((r) => this.roomWaiters.push(r));
    return this.sending;
  }

  private wakeWaiters(): void {
    for (const w of this.roomWaiters.splice(0)) w();
  }

  /** A batch answered (batches answer in the order they were sent). */
  private answered(batch: Batch, error: unknown): void {
    this.inFlight.splice(this.inFlight.indexOf(batch), 1);
    this.wakeWaiters();
    if (this.failed || this.closed) return;
    if (error === undefined && !this.recovering) {
      // A batch answered whole: all its statements' work committed (a huge transaction's first part commits with its last batch; counted now all the same).
      countConflicts(this.stats, batch.results);
      this.renewContended(batch.results);
      for (const item of batch.commits) this.committed(item);
      this.advance();
      this.kick();
      this.flush();
      return;
    }
    if (error === undefined) {
      // Cannot happen: every statement after a failure fails until the ROLLBACK.
      this.fail(new Error(`a batch committed after an earlier one failed (${this.recovering ? errorText(this.recovering.error) : ""})`));
      return;
    }
    // The first failure in order carries the cause; those behind it fail with "transaction aborted" (25P02) or the chain check.
    this.session.forgetShapes(batch.prepares);
    this.recovering ??= { error };
    if (!this.inFlight.length) void this.recover();
  }

  /** Tables whose resolving statements in a committed batch met conflicts stay resolving CONTENDED_MS more. */
  private renewContended(results: unknown): void {
    const until = Date.now() + (this.opts.contendedMs ?? CONTENDED_MS);
    for (const r of Array.isArray(results) ? results : [results]) {
      const row = (r as { rows?: Record<string, unknown>[] } | undefined)?.rows?.[0];
      if (typeof row?.pgraft_conflicts === "string" && typeof row.pgraft_table === "string") this.contended.set(row.pgraft_table, until);
    }
  }

  private committed(item: Item): void {
    item.status = "committed";
    this.committedLsn = item.endLsn;
    this.committedTime = item.tx!.commitTime;
    this.stats.appliedTransactions++;
    this.stats.appliedChanges += item.tx!.changes.length;
    if (item.sync) {
      // A synchronous commit flushed the WAL up to it: every earlier commit is durable too.
      for (const it of this.items) {
        if (it.kind === "apply" && it.status === "committed") it.status = "durable";
        if (it === item) break;
      }
    }
  }

  /** Resolve, in order, everything that is durable (skipped transactions count once all before them do). */
  private advance(): void {
    // Count the durable head first and remove it in one splice: shift() per item is O(backlog) each,
    // which made advancing a backlog of thousands quadratic (12 % of the applier's CPU in a profile).
    let n = 0;
    while (n < this.items.length) {
      const it = this.items[n]!;
      if (it.kind === "apply" && it.status !== "durable") break;
      this.durableLsn = maxLsn(this.durableLsn, it.endLsn);
      n++;
    }
    if (n === 0) return;
    const done = this.items.splice(0, n);
    this.sendPos = Math.max(0, this.sendPos - n);
    for (const it of done) it.resolve();
    this.opts.onDurable?.(this.durableLsn);
  }

  /**
   * After a failed batch, with nothing in flight: roll back, count what
   * committed (up to the origin's progress), redo the first transaction past
   * it on the slow path, and send the rest again.
   */
  private async recover(): Promise<void> {
    const r = this.recovering;
    if (!r || this.failed || this.closed) return;
    try {
      const progress = await this.session.rollbackAndProgress();
      const sent = this.items.slice(0, this.sendPos).filter((it) => it.kind === "apply" && it.status === "sent");
      const done = sent.filter((it) => it.endLsn <= progress);
      for (const it of done) this.committed(it);
      await this.countCommittedConflicts(done);
      const failedItem = sent[done.length];
      for (const it of sent.slice(done.length + 1)) {
        it.status = "queued";
        this.unsentApply++;
      }
      if (!failedItem) {
        this.opts.log.warn("a batch failed but every transaction in it committed", { peer: this.opts.peer.name, cause: errorText(r.error) });
        this.chainLsn = progress;
        this.sendPos = this.items.findIndex((it) => it.kind === "apply" && it.status === "queued");
        if (this.sendPos < 0) this.sendPos = this.items.length;
      } else if (!failedItem.resolving && CONFLICT_STATES.has(sqlState(r.error) ?? "")) {
        // A conflict stopped the optimistic statements: its tables resolve in line for a while, and it goes again.
        const until = Date.now() + (this.opts.contendedMs ?? CONTENDED_MS);
        for (const ch of failedItem.tx!.changes) if (ch.kind !== "truncate") this.contended.set(qualified(ch.rel), until);
        failedItem.resolving = true;
        failedItem.status = "queued";
        this.unsentApply++;
        this.sendPos = this.items.indexOf(failedItem);
        this.chainLsn = progress;
        this.stats.resolvingResends++;
      } else {
        this.sendPos = this.items.indexOf(failedItem) + 1;
        this.logSlowPath(failedItem, r.error);
        // Counted only once it committed: a failed slow path fails the applier (nothing of it counts).
        const kinds: string[] = [];
        await applyOneByOne(
          {
            session: this.session,
            localNode: this.opts.localNode,
            peer: this.opts.peer,
            log: this.opts.log,
            logOriginChange: this.opts.logOriginChange?.() ?? false,
            onConflict: (k) => kinds.push(k),
          },
          failedItem.tx!,
        );
        countConflicts(this.stats, { rows: [{ pgraft_conflicts: kinds.map((k) => `${k}=1`).join(",") || null }] });
        this.stats.slowPathTransactions++;
        this.chainLsn = failedItem.endLsn;
        failedItem.sync = true; // the slow path commits synchronously
        this.committed(failedItem);
      }
    } catch (e) {
      this.fail(e);
      return;
    }
    if (this.failed || this.closed) return;
    this.recovering = undefined;
    this.advance();
    this.kick();
    this.flush();
  }

  /**
   * The slow path is for real errors and ties; many transactions taking it is
   * what an operator must see, with the cause: logged at info the first time
   * and then at most every SLOW_PATH_LOG_MS with the count meanwhile (each one
   * at debug).
   */
  private logSlowPath(item: Item, error: unknown): void {
    const fields = { peer: this.opts.peer.name, end: formatLsn(item.endLsn), cause: errorText(error), code: sqlState(error) };
    const now = Date.now();
    this.slowPathUnlogged++;
    if (now - this.slowPathLoggedAt < SLOW_PATH_LOG_MS) {
      this.opts.log.debug("redoing a transaction on the slow path", fields);
      return;
    }
    this.opts.log.info("redoing a transaction on the slow path", { ...fields, sinceLastLog: this.slowPathUnlogged });
    this.slowPathLoggedAt = now;
    this.slowPathUnlogged = 0;
  }

  /**
   * The conflicts of transactions that committed in a batch that then failed
   * (its answer, which carried their counts, is lost): read back from the
   * history. Conflicts not logged (update_origin_change won by the incoming
   * change, log_origin_change off) go uncounted there.
   */
  private async countCommittedConflicts(done: Item[]): Promise<void> {
    if (!done.length) return;
    const r = await this.session.query<{ k: string; n: string }>({
      text: `SELECT conflict_type || '/' || resolution AS k, count(*)::text AS n FROM ${CONFLICT_TABLE} WHERE origin_node = $1 AND remote_commit_lsn = ANY($2::pg_lsn[]) GROUP BY 1`,
      values: [this.opts.peer.name, done.map((it) => formatLsn(it.tx!.commitLsn))],
    });
    countConflicts(this.stats, { rows: [{ pgraft_conflicts: r.rows.map((x) => `${x.k}=${x.n}`).join(",") || null }] });
  }

  // ------------------------------------------------------------------ failure and shutdown

  private fail(e: unknown): void {
    if (this.failed || this.closed) return;
    const err = e instanceof Error ? e : new Error(String(e));
    this.failed = err;
    this.opts.log.warn("applier failed", { peer: this.opts.peer.name, error: err.message, code: sqlState(err) });
    this.rejectAll(err);
    this.session.abort();
    clearTimeout(this.flushTimer);
    destroyClient(this.flusher);
    this.opts.onFailure?.(err);
  }

  private rejectAll(e: Error): void {
    const items = this.items.splice(0);
    this.sendPos = 0;
    this.wakeWaiters();
    for (const it of items) it.reject(e);
  }

  /** Wait until everything submitted is durable (or the applier failed). */
  async drain(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.items.length && !this.failed && !this.closed) {
      if (Date.now() > deadline) throw new Error(`applier for ${this.opts.peer.name}: ${this.items.length} transactions still not durable after ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  /** Close the connection; transactions not yet committed are rolled back by the server (and will be streamed again). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rejectAll(new Error("applier closed"));
    clearTimeout(this.flushTimer);
    await Promise.all([this.session.close(this.failed !== undefined), this.flusher && within(this.flusher.end(), 5_000)]);
    destroyClient(this.flusher);
  }

  /** Close at once, as a crash would: no goodbye, nothing awaited. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.rejectAll(new Error("applier aborted"));
    this.session.abort();
    clearTimeout(this.flushTimer);
    destroyClient(this.flusher);
  }
}

/**
 * Runs of consecutive changes one statement can make (up to BATCH_ROWS):
 * inserts into one table with the same columns; updates of one table with
 * the same columns and deletes from one, of rows found by primary key (the
 * key unchanged), each row at most once in a run. Every other change alone.
 */
export function* batches(changes: Change[], metaOf: (rel: RelationDesc) => TableMeta): Generator<Change[]> {
  let run: Change[] = [];
  let shape = "";
  let keys = new Set<string>();
  for (const ch of changes) {
    const { shape: s, key } = runShape(ch, metaOf);
    const fits = run.length > 0 && s !== "" && s === shape && run.length < BATCH_ROWS && (key === undefined || !keys.has(key));
    if (run.length && !fits) {
      yield run;
      run = [];
      keys = new Set();
    }
    run.push(ch);
    shape = s;
    if (key !== undefined) keys.add(key);
  }
  if (run.length) yield run;
}

/** What a change must share with its neighbours to join their run ("": it stays alone), and the row's key where rows must differ. */
function runShape(ch: Change, metaOf: (rel: RelationDesc) => TableMeta): { shape: string; key?: string } {
  if (ch.kind === "truncate") return { shape: "" };
  const meta = metaOf(ch.rel);
  const rel = relId(ch.rel);
  if (ch.kind === "insert") return { shape: `i${rel}:${presentMask(ch.new)}` };
  if (!meta.key) return { shape: "" };
  if (ch.kind === "delete") return { shape: `d${rel}`, key: JSON.stringify(locateParams(meta, ch.old)) };
  const mask = presentMask(ch.new);
  if (!sameKey(meta.key, ch.old, ch.new) || !mask.includes("1")) return { shape: "" };
  return { shape: `u${rel}:${mask}`, key: JSON.stringify(locateParams(meta, ch.new)) };
}

/**
 * An update that leaves the primary key as it was: no old row sent (the
 * default replica identity sends one only when the key changed), or one whose
 * key columns equal the new row's. The second is every update of a table
 * whose REPLICA IDENTITY is FULL though it has a primary key (set by a user
 * for change data capture, or set while the table had no key yet): treated
 * as a key change, each of them went to the slow path in a multi-writer group.
 */
function sameKey(key: number[], old: Value[] | null, row: Value[]): boolean {
  if (old === null) return true;
  return key.every((i) => old[i] !== undefined && row[i] !== undefined && old[i] === row[i]);
}

/** A number per table description (a Relation message), for run shapes. */
const relIds = new WeakMap<RelationDesc, number>();
let nextRelId = 1;
function relId(rel: RelationDesc): number {
  let id = relIds.get(rel);
  if (id === undefined) relIds.set(rel, (id = nextRelId++));
  return id;
}
