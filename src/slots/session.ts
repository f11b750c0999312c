// The local connection of one applier: it owns the replication origin for the
// peer, knows how each table is keyed here, prepares each statement shape
// once, and tells which member wrote a local row.
//
// The connection runs in pg's pipeline mode: queries are written as soon as
// they are issued, each with its own Sync, and answered in order. Statement
// shapes are prepared twice over, under separate names: by PREPARE for the
// fast path's batches (EXECUTE in a simple query), and by pg's own Parse for
// the slow path's bound queries (pg tracks only the names it parsed itself).
import type pg from "pg";
import { connectClient, destroyClient, sqlState } from "./connection.js";
import { setReplicaIdentityFull } from "./replica-identity.js";
import { formatLsn, microsToTimestamptz, parseLsn } from "./lsn.js";
import { quoteIdent, setupSql, type Sql, type TableMeta } from "./statements.js";
import { errorText, sleep, within, type RelationDesc, type RemoteTransaction, type SlotsLogger, type Value } from "./types.js";

export interface NodeRef {
  name: string;
  id: number;
}

export interface Query {
  text: string;
  name?: string;
  values?: unknown[];
}

/** The prepared setup of a batched transaction of several statements (params: end LSN, commit time, previous end LSN). */
export const BATCH_SETUP = "pgraft_bsetup";

export const BEGIN: Query = { name: "pgraft_begin", text: "BEGIN" };
export const COMMIT: Query = { name: "pgraft_commit", text: "COMMIT" };
export const ROLLBACK: Query = { name: "pgraft_rollback", text: "ROLLBACK" };

export function qualified(rel: RelationDesc): string {
  return `${quoteIdent(rel.schema)}.${quoteIdent(rel.name)}`;
}

export interface SessionOptions {
  localDsn: string;
  localNode: NodeRef;
  peer: NodeRef;
  originName: string;
  /** Every member's origin name here → the member. */
  members: () => Map<string, NodeRef>;
  log: SlotsLogger;
  /** How long an earlier session may keep the origin busy (default 30 s). */
  originWaitMs?: number;
  /** The connection broke (or the server ended it). */
  onError: (e: Error) => void;
}

export class ApplySession {
  private client: pg.Client | undefined;
  private closed = false;
  /** This peer's origin id here. */
  roident = 0;
  /** roident → origin name. */
  private origins = new Map<number, string>();
  private originsReadAt = 0;
  private writers: { at: number; json: string } | undefined;
  private readonly metas = new WeakMap<RelationDesc, TableMeta>();
  private readonly relIds = new WeakMap<RelationDesc, number>();
  /**
   * Upstream descriptions that carry columns stored-generated here (test_decoding prints them; pgoutput
   * does not), each with the description without them and the positions it keeps: such a change is
   * rewritten to it before anything else looks at it, since a generated column cannot be written.
   */
  private readonly writable = new WeakMap<RelationDesc, { rel: RelationDesc; keep: number[] }>();
  private anyGenerated = false;
  private nextRelId = 1;
  private readonly statements = new Map<string, { name: string; text: string }>();
  private nextStatement = 1;
  /** Shapes named for batches: key → name, and the ones not PREPAREd yet. */
  private readonly batchShapes = new Map<string, string>();
  private unprepared: { name: string; text: string }[] = [];

  constructor(private readonly opts: SessionOptions) {}

  /**
   * Connect and own the origin, then read where to resume: the end LSN of the
   * last transaction from this peer committed here (0 when none). The origin
   * is taken first, so a backend of an earlier session still finishing a
   * COMMIT is waited for and its outcome counted.
   */
  async open(): Promise<bigint> {
    const o = this.opts;
    const client = await connectClient(o.localDsn, `pgraft_apply_${o.peer.name}`.slice(0, 63), o.onError, { pipeline: true });
    this.client = client;
    if (this.closed) {
      // closed while we were connecting: there was nothing to close yet
      destroyClient(client);
      throw new Error("applier closed while connecting");
    }
    // Applying is what a replica does: user and FK triggers stay quiet (they ran on the origin node),
    // and commits need not wait for a flush (the applier's flusher makes them durable; the slow path commits synchronously).
    // Batches carry values as literals: only quotes need escaping with standard_conforming_strings (batch-text.ts).
    // Generic plans: every statement here finds rows by key, and planning a resolving statement for each execution (what "auto" picks for them) costs more than running it.
    await client.query("SET synchronous_commit = off; SET session_replication_role = replica; SET standard_conforming_strings = on; SET plan_cache_mode = force_generic_plan");
    await client.query(`PREPARE ${BATCH_SETUP} AS ${setupSql(true).text}`);
    try {
      await client.query("SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)", [o.originName]);
    } catch (e) {
      if (sqlState(e) !== "23505") throw e; // created meanwhile by another session
    }
    const deadline = Date.now() + (o.originWaitMs ?? 30_000);
    for (;;) {
      try {
        await client.query("SELECT pg_replication_origin_session_setup($1)", [o.originName]);
        break;
      } catch (e) {
        // 55006 object_in_use: an earlier session's backend still holds it (it ends once it notices its client is gone)
        if (sqlState(e) !== "55006") throw e;
        if (Date.now() > deadline) throw new Error(`${errorText(e)}: ${await holderOf(client, errorText(e))}`, { cause: e });
        await sleep(100);
      }
    }
    const r = await client.query<{ roident: string; progress: string | null }>(
      "SELECT roident::text, pg_replication_origin_progress($1, true)::text AS progress FROM pg_replication_origin WHERE roname = $1",
      [o.originName],
    );
    const row = r.rows[0];
    if (!row) throw new Error(`replication origin ${o.originName} vanished`);
    this.roident = Number(row.roident);
    await this.refreshOrigins();
    return row.progress ? parseLsn(row.progress) : 0n;
  }

  query<R extends pg.QueryResultRow = Record<string, unknown>>(q: Query): Promise<pg.QueryResult<R>> {
    const c = this.client;
    if (!c) return Promise.reject(new Error("applier not connected"));
    return c.query<R>(q.name ? { name: q.name, text: q.text, values: q.values } : { text: q.text, values: q.values });
  }

  /** Statement `shape` of `meta`'s table, prepared the first time (a named statement of this connection). */
  prepared(meta: TableMeta, shape: string, build: () => Sql, values: unknown[]): Promise<pg.QueryResult> {
    const key = `${this.relIds.get(meta.rel)}:${shape}`;
    let st = this.statements.get(key);
    if (!st) {
      st = { name: `pgraft_${this.nextStatement++}`, text: build().text };
      this.statements.set(key, st);
    }
    // pg sends Parse only while the name is new on this connection (again after a failed Parse), so the text always comes along.
    return this.query({ name: st.name, text: st.text, values });
  }

  /** The origin's LSN and time for this transaction, and the durability of its commit (the slow path: one transaction alone). */
  setup(tx: RemoteTransaction, sync: boolean): Query {
    return { name: "pgraft_setup", text: setupSql(false).text, values: [formatLsn(tx.endLsn), microsToTimestamptz(tx.commitTime), sync ? "local" : "off"] };
  }

  /**
   * The name of statement `shape` of `meta`'s table for batches. A new shape
   * gets its name at once; its PREPARE (takeUnprepared) must be sent before
   * the batch that first uses it.
   */
  batchShape(meta: TableMeta, shape: string, build: () => Sql): string {
    const key = `${this.relIds.get(meta.rel)}:${shape}`;
    let name = this.batchShapes.get(key);
    if (!name) {
      name = `pgraft_b${this.nextStatement++}`;
      this.batchShapes.set(key, name);
      this.unprepared.push({ name, text: build().text });
    }
    return name;
  }

  /**
   * The PREPAREs of the shapes named since the last call, to be sent ahead of
   * the batch that uses them first, each a query of its own, without waiting
   * for an answer. (They waited before, until no batch was in flight: on a
   * saturated host every new shape — a table's first conflict, say — stalled
   * the stream for seconds. And not inside the batch's text: a prepared
   * statement keeps the whole query string it was prepared in, and every
   * EXECUTE copies it.)
   */
  takeUnprepared(): { name: string; text: string }[] {
    return this.unprepared.splice(0).map((st) => ({ name: st.name, text: `PREPARE ${st.name} AS ${st.text}` }));
  }

  /**
   * A batch whose PREPAREs went ahead of it failed: they may not have run (an
   * earlier batch's failure left the transaction aborted). Their shapes are
   * forgotten, so their next use prepares them again, under new names (one
   * that did run stays, unused, until the session ends).
   */
  forgetShapes(names: readonly string[]): void {
    if (!names.length) return;
    const gone = new Set(names);
    for (const [key, name] of this.batchShapes) if (gone.has(name)) this.batchShapes.delete(key);
  }

  /** Every table `tx` changes is known here (else ensureMetas() has work to do). */
  knowsTables(tx: RemoteTransaction): boolean {
    this.dropGenerated(tx);
    return tx.changes.every((ch) => ch.kind === "truncate" || this.metas.has(ch.rel));
  }

  /** Rewrite `tx`'s changes on tables with local generated columns to leave those columns out (see `writable`). */
  private dropGenerated(tx: RemoteTransaction): void {
    if (!this.anyGenerated) return;
    tx.changes = tx.changes.map((ch) => {
      if (ch.kind === "truncate") return ch;
      const w = this.writable.get(ch.rel);
      if (!w) return ch;
      const pick = (row: Value[]): Value[] => w.keep.map((i) => row[i]);
      if (ch.kind === "insert") return { kind: "insert", rel: w.rel, new: pick(ch.new) };
      if (ch.kind === "update") return { kind: "update", rel: w.rel, old: ch.old ? pick(ch.old) : null, new: pick(ch.new) };
      return { kind: "delete", rel: w.rel, old: pick(ch.old) };
    });
  }

  /** End whatever transaction a failed batch left open (none: a warning, not an error), then read how far this origin has committed. */
  async rollbackAndProgress(): Promise<bigint> {
    // Pipelined: one round trip, not two (a failed batch's recovery on a saturated host waits for each).
    const [, r] = await Promise.all([this.query({ text: "ROLLBACK" }), this.query<{ p: string | null }>({ text: "SELECT pg_replication_origin_session_progress(false)::text AS p" })]);
    const p = r.rows[0]?.p;
    return p ? parseLsn(p) : 0n;
  }

  // ------------------------------------------------------------------ tables

  meta(rel: RelationDesc): TableMeta {
    const m = this.metas.get(rel);
    if (!m) throw new Error(`no table metadata for ${rel.schema}.${rel.name}`); // ensureMetas() runs first
    return m;
  }

  /** Learn (once per Relation message) how each table of `tx` is keyed here and its columns' local types. */
  async ensureMetas(tx: RemoteTransaction): Promise<void> {
    this.dropGenerated(tx);
    const rels = [...new Set(tx.changes.flatMap((ch) => (ch.kind === "truncate" || this.metas.has(ch.rel) ? [] : [ch.rel])))];
    // One round trip for all of them (pipelined), not one per table: on a saturated host each is long, and the stream waits.
    const [, ...answers] = await Promise.all([
      // A quiet moment (nothing in flight): learn origins created since (a member that joined), for the history's writer names.
      Date.now() - this.originsReadAt > 1_000 ? this.refreshOrigins() : Promise.resolve(),
      ...rels.map((rel) =>
        this.query<{ oid: string | null; pk: string; types: string | null; generated: string | null; other_unique: string; default_identity: string | null; quoted: string }>({
          text: `SELECT to_regclass($1)::oid::text AS oid,
                      COALESCE((SELECT json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))
                                  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary), '[]')::text AS pk,
                      (SELECT json_object_agg(attname, format_type(atttypid, NULL)) FROM pg_attribute
                        WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped)::text AS types,
                      (SELECT json_agg(attname) FROM pg_attribute
                        WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated <> '')::text AS generated,
                      EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) AND indisunique AND NOT indisprimary)::text AS other_unique,
                      (SELECT relreplident = 'd' AND relpersistence = 'p' FROM pg_class WHERE oid = to_regclass($1))::text AS default_identity,
                      format('%I.%I', $2::text, $3::text) AS quoted`,
          values: [qualified(rel), rel.schema, rel.name],
        }),
      ),
    ]);
    for (const [n, upstream] of rels.entries()) {
      const name = qualified(upstream);
      const r = answers[n]!;
      const row = r.rows[0];
      const from = this.opts.peer.name;
      if (!row?.oid) throw new Error(`table ${name} (changed on ${from}) does not exist here: schema changes are not replicated, create it on every node`);
      const local = JSON.parse(row.types ?? "{}") as Record<string, string>;
      // Columns generated here are computed here: a stream that sends them (test_decoding) has them left out.
      const generated = new Set(JSON.parse(row.generated ?? "[]") as string[]);
      let rel = upstream;
      const keep = upstream.columns.flatMap((c, i) => (generated.has(c.name) ? [] : [i]));
      if (keep.length < upstream.columns.length) {
        rel = { ...upstream, columns: keep.map((i) => upstream.columns[i]!) };
        this.writable.set(upstream, { rel, keep });
        this.anyGenerated = true;
      }
      const types = rel.columns.map((c) => {
        const t = local[c.name];
        if (t === undefined) throw new Error(`${name}: column ${c.name} (sent by ${from}) does not exist here: schema changes are not replicated`);
        return t;
      });
      const key = (JSON.parse(row.pk) as string[]).map((col) => {
        const i = rel.columns.findIndex((c) => c.name === col);
        if (i < 0) throw new Error(`${name}: primary key column ${col} is not among the columns ${from} sends`);
        return i;
      });
      if (!key.length && row.default_identity === "true") await this.identityFull(row.oid, row.quoted);
      this.metas.set(rel, { rel, qualified: name, key: key.length ? key : null, types, otherUnique: row.other_unique === "true" });
      this.relIds.set(rel, this.nextRelId++);
    }
    this.dropGenerated(tx);
  }

  /**
   * A peer's change reached a table without a primary key before this node's maintenance sweep made it
   * REPLICA IDENTITY FULL: PostgreSQL would refuse the applier's UPDATE or DELETE on it (the table is in a
   * FOR ALL TABLES publication), so do what the sweep would, now, on a connection of its own (this one
   * applies under the peer's origin). A failure is left to the sweep.
   */
  private async identityFull(oid: string, quoted: string): Promise<void> {
    let c: pg.Client | undefined;
    try {
      c = await connectClient(this.opts.localDsn, "pgraft_replica_identity");
      await c.query("SET lock_timeout = '5s'"); // a client holding the table: the apply fails and retries, as before
      await setReplicaIdentityFull(c, oid, quoted);
      this.opts.log.info("table without a primary key set to REPLICA IDENTITY FULL (a peer's change reached it before the maintenance sweep)", { table: quoted });
    } catch (e) {
      this.opts.log.warn("could not set REPLICA IDENTITY FULL", { table: quoted, error: errorText(e) });
    } finally {
      await c?.end().catch(() => undefined);
    }
  }

  // ------------------------------------------------------------------ who wrote a row

  /** The member whose origin is `roident` here (0: this node), or undefined when it is no member we know. */
  async writer(roident: number): Promise<NodeRef | undefined> {
    if (roident === 0) return this.opts.localNode;
    // An origin created after we connected, or an id retired since (origins.ts): only the slow path asks, so re-reading is cheap.
    if (!this.origins.has(roident) || Date.now() - this.originsReadAt > 1_000) await this.refreshOrigins();
    const name = this.origins.get(roident);
    return name === undefined ? undefined : this.opts.members().get(name);
  }

  /**
   * The writers as the resolving statements' history wants them: JSON of
   * roident → member name (0: this node), for every origin known here that
   * belongs to a member. Rebuilt when the origins were read again.
   */
  writersJson(): string {
    if (this.writers?.at !== this.originsReadAt) {
      const out: Record<string, string> = { "0": this.opts.localNode.name };
      const members = this.opts.members();
      for (const [id, name] of this.origins) {
        const m = members.get(name);
        if (m) out[String(id)] = m.name;
      }
      this.writers = { at: this.originsReadAt, json: JSON.stringify(out) };
    }
    return this.writers.json;
  }

  private async refreshOrigins(): Promise<void> {
    const r = await this.query<{ roident: string; roname: string }>({ text: "SELECT roident::text, roname FROM pg_replication_origin" });
    this.origins = new Map(r.rows.map((x) => [Number(x.roident), x.roname]));
    this.originsReadAt = Date.now();
  }

  // ------------------------------------------------------------------ closing

  /** A goodbye (waits for the pipeline to drain, bounded); `broken`: the connection failed, just drop it. */
  async close(broken: boolean): Promise<void> {
    this.closed = true;
    const c = this.client;
    if (!c) return;
    if (!broken) await within(c.end(), 5_000);
    destroyClient(c);
  }

  /** Drop the connection at once. */
  abort(): void {
    this.closed = true;
    destroyClient(this.client);
  }
}

/** Who holds a replication origin (the PID from PostgreSQL's message), for the error when it stays busy. */
async function holderOf(client: pg.Client, message: string): Promise<string> {
  const pid = /PID (\d+)/.exec(message)?.[1];
  if (!pid) return "no holder named";
  try {
    const r = await client.query<{ app: string; state: string; query: string; backend_start: string }>(
      "SELECT application_name AS app, state, left(query, 200) AS query, backend_start::text FROM pg_stat_activity WHERE pid = $1",
      [Number(pid)],
    );
    const h = r.rows[0];
    return h ? `pid ${pid} is ${h.app} (${h.state} since ${h.backend_start}; last statement: ${h.query})` : `pid ${pid} is not in pg_stat_activity`;
  } catch (e) {
    return `(could not look up pid ${pid}: ${errorText(e)})`;
  }
}
