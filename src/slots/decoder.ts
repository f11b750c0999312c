// From pgoutput messages (decoded by pg-logical-replication's parser) to whole
// remote transactions, values kept as the text the upstream sent.
//
// Two things the library does that we undo or add to:
// - It runs every column value through pg's *global* type parsers (floats to
//   JS numbers, timestamps to millisecond Dates, …), which would round. The
//   plugin below swaps each Relation's column parsers for the identity, so a
//   value is the type's text output, exactly as the upstream produced it.
// - It hands out messages one by one; the assembler groups Begin … Commit and
//   marks transactions that carry an Origin message (PG15 sends one after
//   Begin for changes that were themselves replicated here from elsewhere):
//   those are skipped, so each node sends on only what originated on it.
//   In relay mode (a part's catch-up, catchup.ts) it is the other way round:
//   only the transactions whose Origin names one given origin are kept (the
//   parting node's changes as a third node applied them), with the origin's
//   LSN — the end of the transaction on the node where it began — as their
//   end LSN, so they are applied here exactly as if they came from there.
import { PgoutputPlugin, type Pgoutput } from "pg-logical-replication";
import { parseLsn } from "./lsn.js";
import type { Change, RelationDesc, RemoteTransaction, Value } from "./types.js";

const asText = (raw: unknown): unknown => raw;

/** The stand-in for a row change of a transaction that is skipped whole (not a pgoutput tag: the assembler ignores it). */
const SKIPPED_ROW = { tag: "skipped-row" } as unknown as Pgoutput.Message;

const ROW_TAGS = new Set([0x49 /* I */, 0x55 /* U */, 0x44 /* D */]);

/**
 * pgoutput with column values left as text (see above). With `wants` (the
 * assembler's rule for which origins it keeps), the rows of a transaction it
 * will skip are not decoded at all: on PostgreSQL 15 every transaction a node
 * applied from elsewhere reaches each of its peers, which skip it, so decoding
 * their rows would be most of a receiver's work.
 */
export class TextPgoutputPlugin extends PgoutputPlugin {
  /** Whether the rows of the current transaction are decoded (undefined: not known before its first row). */
  private keep: boolean | undefined;

  constructor(
    publication: string,
    private readonly wants?: (origin: string | undefined) => boolean,
  ) {
    // proto_version 1: PG15's pgoutput; streaming of in-progress transactions (v2) is not used, so a
    // transaction arrives whole, after its commit, and is applied whole.
    super({ protoVersion: 1, publicationNames: [publication] });
  }

  override parse(buffer: Buffer): Pgoutput.Message {
    if (this.wants && ROW_TAGS.has(buffer[0]!)) {
      // The Origin message, if any, comes right after Begin: by the first row we know.
      this.keep ??= this.wants(undefined);
      if (!this.keep) return SKIPPED_ROW;
    }
    const msg = super.parse(buffer);
    // The parser caches this very object and reads each tuple's column parser from it at decode time.
    if (msg.tag === "relation") for (const c of msg.columns) c.parser = asText;
    else if (msg.tag === "begin" || msg.tag === "commit") this.keep = undefined;
    else if (msg.tag === "origin" && this.wants) this.keep = this.wants(msg.originName);
    return msg;
  }
}

/** Schemas whose tables are pgraft's own bookkeeping (conflict history, the shim): never applied from a peer. */
export const LOCAL_SCHEMAS = new Set(["pgraft"]);

/** What the assembler hands on at each Commit. */
export type Assembled =
  /**
   * `relayEndLsn` (relay mode only): where the transaction's commit ends on the
   * node that relays it (`tx.endLsn` is then the origin's LSN).
   */
  | { kind: "apply"; tx: RemoteTransaction; relayEndLsn?: bigint }
  /** Nothing to apply (replicated from elsewhere, or only pgraft's own tables), but its end is a position we may confirm. */
  | { kind: "skip"; endLsn: bigint; reason: "origin" | "empty"; /** The commit time (µs) on the sending node. */ commitTime: bigint };

export interface AssemblerOptions {
  /**
   * Relay mode: keep only the transactions whose Origin message names this
   * origin (and skip everything else, local ones included), instead of
   * skipping every transaction that has one.
   */
  relayOrigin?: string;
}

/** Groups the message stream of one replication connection into transactions. */
export class TransactionAssembler {
  private readonly relations = new WeakMap<Pgoutput.MessageRelation, RelationDesc>();
  private current: { xid: number; commitLsn: bigint; commitTime: bigint; origin: string | undefined; originLsn: bigint | undefined; changes: Change[] } | undefined;
  private readonly relayOrigin: string | undefined;

  constructor(o: AssemblerOptions = {}) {
    this.relayOrigin = o.relayOrigin;
  }

  /** True between a Begin and its Commit. */
  get inTransaction(): boolean {
    return this.current !== undefined;
  }

  /** Feed one message; returns a transaction at its Commit. */
  push(msg: Pgoutput.Message): Assembled | undefined {
    switch (msg.tag) {
      case "begin":
        this.current = {
          xid: msg.xid,
          commitLsn: msg.commitLsn ? parseLsn(msg.commitLsn) : 0n,
          // For a transaction applied here under an origin this is already the origin's commit time
          // (logical decoding reports the origin timestamp the applier set), which last-update-wins needs.
          commitTime: msg.commitTime as bigint,
          origin: undefined,
          originLsn: undefined,
          changes: [],
        };
        return undefined;
      case "origin":
        if (this.current) {
          this.current.origin = msg.originName;
          this.current.originLsn = msg.originLsn ? parseLsn(msg.originLsn) : undefined;
        }
        return undefined;
      case "relation":
        this.describe(msg);
        return undefined;
      case "insert":
        this.add(msg.relation, (rel) => ({ kind: "insert", rel, new: row(rel, msg.new) }));
        return undefined;
      case "update":
        this.add(msg.relation, (rel) => {
          const oldTuple = msg.old ?? msg.key;
          return { kind: "update", rel, old: oldTuple ? row(rel, oldTuple) : null, new: row(rel, msg.new) };
        });
        return undefined;
      case "delete":
        this.add(msg.relation, (rel) => {
          const oldTuple = msg.old ?? msg.key;
          if (!oldTuple) throw new Error(`delete on ${rel.schema}.${rel.name} without key or old row`);
          return { kind: "delete", rel, old: row(rel, oldTuple) };
        });
        return undefined;
      case "truncate": {
        const cur = this.current;
        if (!cur || !this.wanted(cur.origin)) return undefined;
        const rels = msg.relations.filter((r) => !LOCAL_SCHEMAS.has(r.schema)).map((r) => this.describe(r));
        if (rels.length) cur.changes.push({ kind: "truncate", rels, cascade: msg.cascade, restartIdentity: msg.restartIdentity });
        return undefined;
      }
      case "commit": {
        const cur = this.current;
        this.current = undefined;
        if (!msg.commitEndLsn) throw new Error("commit message without an end LSN");
        const endLsn = parseLsn(msg.commitEndLsn);
        if (!cur) throw new Error(`commit at ${msg.commitEndLsn} without a begin`);
        if (!this.wanted(cur.origin)) return { kind: "skip", endLsn, reason: "origin", commitTime: cur.commitTime };
        if (cur.changes.length === 0) return { kind: "skip", endLsn, reason: "empty", commitTime: cur.commitTime };
        if (this.relayOrigin === undefined) return { kind: "apply", tx: { xid: cur.xid, commitLsn: cur.commitLsn, endLsn, commitTime: cur.commitTime, changes: cur.changes } };
        // Relayed: it ends, for the origin's progress and the chain of transactions, where it ended on its origin node.
        if (cur.originLsn === undefined || cur.originLsn === 0n) throw new Error(`transaction from origin ${cur.origin} (ending at ${msg.commitEndLsn} here) carries no origin LSN`);
        return { kind: "apply", tx: { xid: cur.xid, commitLsn: cur.originLsn, endLsn: cur.originLsn, commitTime: cur.commitTime, changes: cur.changes }, relayEndLsn: endLsn };
      }
      default:
        // type (custom types' names), message (logical messages, not requested): nothing to apply
        return undefined;
    }
  }

  /** Whether a transaction with this origin (undefined: none) is kept. */
  wanted(origin: string | undefined): boolean {
    return this.relayOrigin === undefined ? origin === undefined : origin === this.relayOrigin;
  }

  /** Forget a half-received transaction (the connection broke). */
  reset(): void {
    this.current = undefined;
  }

  private describe(r: Pgoutput.MessageRelation): RelationDesc {
    let d = this.relations.get(r);
    if (!d) {
      d = { oid: r.relationOid, schema: r.schema, name: r.name, columns: r.columns.map((c) => ({ name: c.name, typeOid: c.typeOid })), replicaIdentity: r.replicaIdentity };
      this.relations.set(r, d);
    }
    return d;
  }

  private add(r: Pgoutput.MessageRelation, make: (rel: RelationDesc) => Change): void {
    const cur = this.current;
    if (!cur) throw new Error(`row change on ${r.schema}.${r.name} outside a transaction`);
    // A transaction that is skipped is skipped whole: no need to even look at its rows.
    if (!this.wanted(cur.origin) || LOCAL_SCHEMAS.has(r.schema)) return;
    cur.changes.push(make(this.describe(r)));
  }
}

/** The library's name → value record as an array in column order (undefined: unchanged TOAST). */
function row(rel: RelationDesc, tuple: Record<string, unknown>): Value[] {
  return rel.columns.map((c) => {
    const v = tuple[c.name];
    if (v === undefined || v === null) return v;
    if (typeof v === "string") return v;
    // 'b' (binary) values only come with the binary option, which we never ask for.
    throw new Error(`column ${rel.schema}.${rel.name}.${c.name}: expected a text value from pgoutput, got ${typeof v}`);
  });
}
