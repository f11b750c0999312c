// Applies one upstream peer's transactions to the local database, in order,
// each in one local transaction under the replication origin for that peer.
//
// Exactly once: every transaction commits with pg_replication_origin_xact_setup
// (its upstream end LSN and commit time), so the origin's progress moves
// atomically with the data, and a restart resumes from that progress
// (session.ts takes the origin before reading it).
//
// Throughput: one pipelined connection. A transaction is sent whole — BEGIN,
// the origin setup, one prepared statement per row change (runs of inserts
// into one table as one multi-row INSERT), COMMIT — without waiting, and the
// next ones follow it on the wire (up to a window). That is safe because:
// - fast-path statements raise instead of deciding (statements.ts): a change
//   that needs conflict resolution, or any error, aborts its transaction, and
//   its COMMIT answers ROLLBACK;
// - each transaction's origin setup checks that the origin's progress is the
//   end LSN of the transaction sent before it, so once one fails every later
//   one in flight fails too (nothing commits out of order);
// - the failed transaction is then redone on the slow path, one change at a
//   time with conflict resolution (slow-path.ts), and the rest re-sent.
//
// Durability: most commits are asynchronous (synchronous_commit off); the
// last transaction of a burst, and one every few milliseconds, commits
// synchronously, which makes every earlier commit durable too (WAL is
// flushed in order). Only then are their LSNs reported durable, so the
// receiver confirms to the upstream only what a crash here cannot lose.
import type pg from "pg";
import { sqlState } from "./connection.js";
import type { Assembled } from "./decoder.js";
import { formatLsn, maxLsn, microsToTimestamptz } from "./lsn.js";
import { BEGIN, COMMIT, ROLLBACK, ApplySession, qualified, type NodeRef } from "./session.js";
import { applyOneByOne, locateRow } from "./slow-path.js";
import { fastDeleteSql, fastUpdateSql, insertManySql, insertSql, locateParams, presentMask, presentValues, truncateSql } from "./statements.js";
import { errorText, sleep, type Change, type RelationDesc, type RemoteTransaction, type SlotsLogger } from "./types.js";

export type { NodeRef } from "./session.js";

export interface ApplierOptions {
  localDsn: string;
  localNode: NodeRef;
  peer: NodeRef;
  /** The replication origin for this peer (naming.ts). */
  originName: string;
  /** Every member's origin name here → the member (to tell who wrote a local row, for tie-breaks and the history). */
  members: () => Map<string, NodeRef>;
  log: SlotsLogger;
  /** Transactions in flight on the pipeline (default 64). */
  windowTransactions?: number;
  /** Statements in flight (default 4000). */
  windowStatements?: number;
  /** How long an earlier session may keep the origin busy before connect() gives up (default 30 s). */
  originWaitMs?: number;
  /** Called when more transactions became durable (in order). */
  onDurable?: (lsn: bigint) => void;
  /** Called once when the applier failed (connection lost, a change that cannot be applied); it is unusable afterwards. */
  onFailure?: (e: Error) => void;
}

export interface ApplierStats {
  appliedTransactions: number;
  appliedChanges: number;
  skippedTransactions: number;
  conflicts: number;
  /** Transactions redone on the slow path (a conflict or an error on the fast path). */
  slowPathTransactions: number;
}

interface Item {
  kind: "apply" | "skip";
  tx: RemoteTransaction | undefined;
  endLsn: bigint;
  status: "queued" | "sent" | "committed" | "durable";
  sync: boolean;
  /** Sent as one statement that is its own transaction. */
  solo?: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Rows per multi-row INSERT. */
const BATCH_ROWS = 1000;
/** Commit synchronously at least this often during a long stream, so acknowledgements keep flowing. */
const SYNC_EVERY_MS = 50;
const SYNC_EVERY_TX = 256;

export class Applier {
  private readonly opts: ApplierOptions;
  private readonly session: ApplySession;
  private readonly items: Item[] = [];
  /** items[sendPos] is the next to send. */
  private sendPos = 0;
  private unsentApply = 0;
  private inFlightTx = 0;
  private inFlightStatements = 0;
  private spaceWaiters: (() => void)[] = [];
  private pumping = false;
  private recovering: { item: Item; error: unknown } | undefined;
  private failed: Error | undefined;
  private closed = false;
  /** End LSN of the last transaction sent (what the next one's chain check expects as the origin's progress). */
  private chainLsn = 0n;
  private lastSyncAt = 0;
  private sinceSync = 0;
  /** Everything up to here is durably applied (or needed nothing). */
  durableLsn = 0n;
  /** The last transaction committed (durable or not). */
  committedLsn = 0n;
  readonly stats: ApplierStats = { appliedTransactions: 0, appliedChanges: 0, skippedTransactions: 0, conflicts: 0, slowPathTransactions: 0 };

  constructor(opts: ApplierOptions) {
    this.opts = opts;
    this.session = new ApplySession({ ...opts, onError: (e) => this.fail(e) });
  }

  /** Connect, own the origin, and return the resume point (the end LSN of the last transaction from this peer committed here; 0: none). */
  async connect(): Promise<bigint> {
    const resume = await this.session.open();
    this.chainLsn = resume;
    this.durableLsn = resume;
    this.committedLsn = resume;
    this.opts.log.info("applier ready", { peer: this.opts.peer.name, origin: this.opts.originName, resume: formatLsn(resume) });
    return resume;
  }

  /** Nothing queued or in flight: everything submitted is durable. */
  get idle(): boolean {
    return this.items.length === 0;
  }

  /** Transactions submitted and not yet durable. */
  get backlog(): number {
    return this.items.length;
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
      else this.stats.skippedTransactions++;
      this.advance();
      this.kick();
    });
  }

  // ------------------------------------------------------------------ the pipeline

  private kick(): void {
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.failed && !this.closed && !this.recovering && this.sendPos < this.items.length) {
        const item = this.items[this.sendPos]!;
        if (item.kind === "skip") {
          this.sendPos++;
          continue;
        }
        if (this.inFlightTx >= (this.opts.windowTransactions ?? 64)) break; // an outcome kicks us again
        await this.session.ensureMetas(item.tx!);
        if (this.failed || this.closed || this.recovering || this.items[this.sendPos] !== item) continue;
        this.sendPos++;
        await this.send(item);
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Put one transaction on the wire. Its statements stream out as the window
   * allows (a huge transaction does not flood the client's queue); its outcome
   * is judged once its COMMIT answers.
   */
  private async send(item: Item): Promise<void> {
    const s = this.session;
    const tx = item.tx!;
    this.unsentApply--;
    this.sinceSync++;
    const now = Date.now();
    const sync = this.unsentApply === 0 || this.sinceSync >= SYNC_EVERY_TX || now - this.lastSyncAt >= SYNC_EVERY_MS;
    if (sync) {
      this.sinceSync = 0;
      this.lastSyncAt = now;
    }
    item.sync = sync;
    item.status = "sent";
    item.solo = false;
    const prev = this.chainLsn;
    this.chainLsn = tx.endLsn;
    this.inFlightTx++;
    s.cork();
    const list = [...batches(tx.changes)];
    const only = list.length === 1 ? list[0]! : undefined;
    if (only && only[0]!.kind !== "truncate") {
      // One statement (one change, or one run of inserts): it carries the transaction's setup itself and
      // commits as the implicit transaction of its own Sync — one query instead of four.
      item.solo = true;
      const setup = [formatLsn(tx.endLsn), microsToTimestamptz(tx.commitTime), sync ? "on" : "off", formatLsn(prev)];
      const p = this.track(this.fastBatch(only, setup));
      void Promise.allSettled([p]).then((settled) => this.outcome(item, settled));
      return;
    }
    const results: Promise<unknown>[] = [s.query(BEGIN), s.query(s.setup(tx, sync, prev))];
    let complete = true;
    for (const batch of list) {
      if (this.inFlightStatements >= (this.opts.windowStatements ?? 4000)) await this.statementSpace();
      if (this.failed || this.closed) return; // everything was rejected; the connection is gone
      if (this.recovering) {
        // An earlier transaction failed, so this one's chain check failed too: close it now.
        complete = false;
        break;
      }
      s.cork();
      results.push(this.track(this.fastBatch(batch)));
    }
    // ROLLBACK, not COMMIT, for a transaction cut short: it must never commit half done.
    const end = s.query(complete ? COMMIT : ROLLBACK);
    void Promise.allSettled([...results, end]).then((settled) => this.outcome(item, settled));
  }

  /** Count a statement in the window until it answers. */
  private track(p: Promise<unknown>): Promise<unknown> {
    this.inFlightStatements++;
    const done = (): void => {
      this.inFlightStatements--;
      if (this.inFlightStatements <= (this.opts.windowStatements ?? 4000) / 2) this.releaseSpace();
    };
    p.then(done, done);
    return p;
  }

  private statementSpace(): Promise<void> {
    return new Promise((r) => this.spaceWaiters.push(r));
  }

  private releaseSpace(): void {
    for (const w of this.spaceWaiters.splice(0)) w();
  }

  /**
   * Consecutive inserts into one table with the same columns become one
   * multi-row INSERT. `solo`: the statement is the whole transaction, these
   * are its setup values (statements.ts soloSetup).
   */
  private fastBatch(batch: Change[], solo?: string[]): Promise<unknown> {
    const s = this.session;
    const first = batch[0]!;
    if (batch.length === 1 || first.kind !== "insert") return this.fastChange(first, solo);
    const meta = s.meta(first.rel);
    const mask = presentMask(first.new);
    const columns = meta.rel.columns.flatMap((_, i) => (mask[i] === "1" ? [i] : []));
    const arrays = columns.map((i) => batch.map((ch) => (ch as Extract<Change, { kind: "insert" }>).new[i] ?? null));
    return s.prepared(meta, `${solo ? "s" : ""}I${mask}`, () => insertManySql(meta, mask, solo !== undefined), [...arrays, ...(solo ?? [])]);
  }

  private fastChange(ch: Change, solo?: string[]): Promise<unknown> {
    const s = this.session;
    const one = solo !== undefined;
    const tag = one ? "s" : "";
    const tail = solo ?? [];
    switch (ch.kind) {
      case "insert": {
        const meta = s.meta(ch.rel);
        const mask = presentMask(ch.new);
        return s.prepared(meta, `${tag}i${mask}`, () => insertSql(meta, mask, one), [...presentValues(ch.new), ...tail]);
      }
      case "update": {
        const meta = s.meta(ch.rel);
        const mask = presentMask(ch.new);
        const where = locateParams(meta, locateRow(meta, ch.old, ch.new));
        return s.prepared(meta, `${tag}u${mask}`, () => fastUpdateSql(meta, mask, s.roident, one), [...presentValues(ch.new), ...where, ...tail]);
      }
      case "delete": {
        const meta = s.meta(ch.rel);
        return s.prepared(meta, `${tag}d`, () => fastDeleteSql(meta, s.roident, one), [...locateParams(meta, ch.old), ...tail]);
      }
      case "truncate":
        if (one) throw new Error("a truncate cannot be a one-statement transaction");
        return s.query(truncateSql(ch.rels.map((r) => qualified(r)), ch.restartIdentity, ch.cascade));
    }
  }

  private outcome(item: Item, settled: PromiseSettledResult<unknown>[]): void {
    this.inFlightTx--;
    if (this.failed || this.closed) return;
    const last = settled[settled.length - 1]!;
    // A one-statement transaction committed when its statement succeeded; the others when COMMIT said so.
    const committed = last.status === "fulfilled" && (item.solo || (last.value as pg.QueryResult).command === "COMMIT");
    if (committed && !settled.some((s) => s.status === "rejected")) {
      if (this.recovering) {
        // Cannot happen: the chain check fails every transaction after a failed one.
        this.fail(new Error(`transaction ending at ${formatLsn(item.endLsn)} committed after an earlier one failed`));
        return;
      }
      this.committed(item);
      this.kick();
      return;
    }
    if (!this.recovering) {
      // The first failure in order: its cause is the first error that is not "transaction aborted" (25P02).
      const reasons = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected").map((s) => s.reason as unknown);
      const error = reasons.find((r) => sqlState(r) !== "25P02") ?? reasons[0] ?? new Error("COMMIT answered ROLLBACK");
      this.recovering = { item, error };
    }
    if (this.inFlightTx === 0) void this.recover();
  }

  private committed(item: Item): void {
    item.status = "committed";
    this.committedLsn = item.endLsn;
    this.stats.appliedTransactions++;
    this.stats.appliedChanges += item.tx!.changes.length;
    if (item.sync) {
      // A synchronous commit flushed the WAL up to it: every earlier commit is durable too.
      for (const it of this.items) {
        if (it.kind === "apply" && it.status === "committed") it.status = "durable";
        if (it === item) break;
      }
    }
    this.advance();
  }

  /** Resolve, in order, everything that is durable (skipped transactions count once all before them do). */
  private advance(): void {
    let moved = false;
    while (this.items.length) {
      const head = this.items[0]!;
      if (head.kind === "apply" && head.status !== "durable") break;
      this.items.shift();
      if (this.sendPos > 0) this.sendPos--;
      this.durableLsn = maxLsn(this.durableLsn, head.endLsn);
      moved = true;
      head.resolve();
    }
    if (moved) this.opts.onDurable?.(this.durableLsn);
  }

  /** Redo the failed transaction on the slow path, then re-send the ones that failed behind it. */
  private async recover(): Promise<void> {
    const r = this.recovering;
    if (!r || this.failed) return;
    const idx = this.items.indexOf(r.item);
    this.opts.log.debug("redoing a transaction on the slow path", { peer: this.opts.peer.name, end: formatLsn(r.item.endLsn), cause: errorText(r.error) });
    // Everything after it that was sent failed: back to the queue, in order.
    for (let i = idx + 1; i < this.sendPos; i++) {
      const it = this.items[i]!;
      if (it.kind === "apply" && it.status === "sent") {
        it.status = "queued";
        this.unsentApply++;
      }
    }
    this.sendPos = idx + 1;
    try {
      this.stats.conflicts += await applyOneByOne({ session: this.session, localNode: this.opts.localNode, peer: this.opts.peer, log: this.opts.log }, r.item.tx!);
    } catch (e) {
      this.fail(e);
      return;
    }
    this.stats.slowPathTransactions++;
    this.chainLsn = r.item.endLsn;
    r.item.sync = true; // the slow path commits synchronously
    this.recovering = undefined;
    this.committed(r.item);
    this.kick();
  }

  // ------------------------------------------------------------------ failure and shutdown

  private fail(e: unknown): void {
    if (this.failed || this.closed) return;
    const err = e instanceof Error ? e : new Error(String(e));
    this.failed = err;
    this.opts.log.warn("applier failed", { peer: this.opts.peer.name, error: err.message, code: sqlState(err) });
    this.rejectAll(err);
    this.session.abort();
    this.opts.onFailure?.(err);
  }

  private rejectAll(e: Error): void {
    const items = this.items.splice(0);
    this.sendPos = 0;
    this.releaseSpace();
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
    await this.session.close(this.failed !== undefined);
  }

  /** Close at once, as a crash would: no goodbye, nothing awaited. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.rejectAll(new Error("applier aborted"));
    this.session.abort();
  }
}

/** Runs of consecutive inserts into the same table with the same columns (up to BATCH_ROWS); every other change alone. */
function* batches(changes: Change[]): Generator<Change[]> {
  let run: Change[] = [];
  let key = "";
  for (const ch of changes) {
    const k = ch.kind === "insert" ? presentMask(ch.new) : "";
    const sameRun = run.length > 0 && ch.kind === "insert" && run[0]!.kind === "insert" && (run[0] as { rel: RelationDesc }).rel === ch.rel && k === key && run.length < BATCH_ROWS;
    if (run.length && !sameRun) {
      yield run;
      run = [];
    }
    run.push(ch);
    key = k;
  }
  if (run.length) yield run;
}
