// bench/decode-origin-filter: what PostgreSQL 15's pgoutput costs a node of a
// multi-writer group for the transactions it applied from the other nodes
// (issue 11 §2), against wal2json with `filter-origins`, which drops them
// before they are decoded.
//
// PG15's pgoutput has no origin filter (`origin = none` is PG16+), so every
// walsender on a node decodes and sends each transaction the node applied
// from elsewhere, and our receivers skip it (decoder.ts). wal2json's
// `filter-origins` is a filter_by_origin callback: logical decoding drops such
// a transaction's records before they reach the reorder buffer, and nothing
// of it is sent.
//
// One PostgreSQL 15 server (fsync off, wal_level=logical), a pgbench_accounts-
// like table (BENCH_ACCOUNTS rows, prefilled), and a template slot (pgoutput)
// made before BENCH_TX one-row transactions (UPDATE of one account): of every
// three, one is local and two carry an origin (pgraft_x, pgraft_y: the session
// set up with pg_replication_origin_session_setup, each transaction marked with
// pg_replication_origin_xact_setup(lsn, ts)), as on one node of three that
// all write. A last local transaction inserts a marker row. Each run copies the
// template slot (pg_copy_logical_replication_slot, with the variant's plugin),
// so every run decodes exactly the same WAL, streams it over the replication
// protocol with pg-logical-replication's LogicalReplicationService (as our
// receiver does; no acknowledgements), and stops when the marker arrives:
//  - pgoutput: proto_version 1, the publication FOR ALL TABLES; consumed by our
//    own TextPgoutputPlugin + TransactionAssembler (which skip origin'd
//    transactions without decoding their rows): exactly the receiver's path;
//  - test_decoding + only-local (contrib; what pgraft's node slots use since
//    this bench's second run): include-xids, include-timestamp,
//    skip-empty-xacts; consumed by src/slots/text-decoding.ts's plugin and
//    assembler: exactly the receiver's path for such a slot;
//  - wal2json v2 / v1 + filter: format-version 2 (one JSON line per change, plus
//    B/C) or 1 (one JSON document per transaction), filter-origins = both
//    origins' ids, include-timestamp, include-lsn, include-xids (what an
//    applier would need; Debian's wal2json 2.5 has no
//    numeric-data-types-as-string); parsed with JSON.parse (the library's
//    parser) and grouped into transactions;
//  - wal2json v2, no filter: the format's own cost on the same stream, apart
//    from the filter's gain (reference).
// BENCH_REPS (3) repetitions; each repetition runs every variant, the order
// rotated from one repetition to the next. Measured per run: wall time from
// START_REPLICATION to the marker, the walsender's CPU (utime+stime from
// /proc/<pid>/stat of the slot's active_pid at the end: the whole life of that
// backend, its connection start included, a few ms), this process's CPU
// (the consumer), the bytes the walsender sent (XLogData payloads).
//
//   make build && node dist/bench/decode-origin-filter.js
//   (BENCH_TX=50000 BENCH_ACCOUNTS=100000 BENCH_REPS=3; BENCH_KEEP=1 keeps the temp dir)
//
// (c) pgoutput with `origin = none` would do the same filtering natively, but
// only on PostgreSQL 16+: not measurable on PG15.
//
// ---------------------------------------------------------------- results and design note
// Measured 2026-12-07 on the 2-core shared machine, load average 7-12 (busy:
// compare ratios, not seconds), PostgreSQL 15.18, wal2json 2.5 (Debian), 50,000
// transactions (2/3 with an origin), 14.3 MiB of WAL, BENCH_REPS=5,
// min / median / max:
//                          wall s            walsender CPU s   consumer CPU s    sent
//   (a) pgoutput           1.77 1.84 2.09    1.13 1.40 1.64    0.85 0.98 1.15     8.5 MiB, 183k msgs
//   (b) wal2json v2+filter 0.78 0.97 1.23    0.58 0.64 0.84    0.37 0.45 0.55    11.0 MiB,  50k msgs
//   (b) wal2json v1+filter 0.74 0.84 1.04    0.47 0.60 0.69    0.23 0.33 0.39     7.1 MiB,  17k msgs
//   wal2json v2, no filter 1.89 2.04 2.28    1.22 1.33 1.54    0.95 1.00 1.12    34.6 MiB, 150k msgs
// pgoutput / wal2json v2 + filter, per repetition: wall 1.69 / 1.92 / 2.37,
// walsender CPU 1.75 / 1.88 / 2.41, consumer CPU 1.87 / 2.27 / 2.66. (A run
// with the default 3 repetitions, load ~10: walsender 1.81, consumer 2.26,
// wall 1.83, medians.) Without the filter wal2json v2 costs the walsender
// about what pgoutput does (0.99) and sends 4x the bytes: the whole gain is
// the filter. Medians: each walsender spends 0.76 s less on the 33,334
// transactions with an origin, ~23 µs each (~16 µs in the 3-repetition run);
// the receiver ~16 µs each (it already skips their rows undecoded, but still
// gets Begin, Origin, the row messages and Commit). For each transaction a
// node of a 3-node group applies from a peer, its two walsenders spend
// 2 x 16-23 µs decoding and sending it for nothing, against ~21 µs of server
// CPU for the apply itself (src/slots/README.md): the filter would save the
// server more than the apply costs.
//
// What a switch of the data plane to wal2json (v2: v1 has no TRUNCATE at all,
// even with `actions`, and builds each transaction as one JSON document in
// memory) would entail, checked against wal2json 2.5's output:
//  - commit LSN and time: B and C carry "lsn" (the commit record) and
//    "nextlsn" (its end: the end_lsn the applier hands
//    pg_replication_origin_xact_setup) with include-lsn, and "timestamp"
//    (include-timestamp; for an origin'd transaction the origin's commit
//    time, as with pgoutput) as text in the walsender's TimeZone with µs
//    ("2020-01-01 00:00:00.123456+00"): exact, but parsed, not an integer.
//  - origin: include-origin exists, but gives the local roident (0 = local),
//    not the origin's name, and no origin LSN. filter-origins takes roidents
//    too, as a fixed list: every pgraft origin on the node (origins.ts never
//    reuses ids), and the stream restarts when one is added (a join).
//    Origins not listed (the join's unknown-writer origin) still come
//    through, so the receiver keeps its own origin check. The relay mode of
//    a part's catch-up (catchup.ts) needs the origin's name and LSN: it must
//    stay on pgoutput (a slot copy may change plugin:
//    pg_copy_logical_replication_slot(src, dst, false, 'wal2json'), as here).
//  - values: JSON; numbers are bare JSON numbers, so JSON.parse rounds int8
//    above 2^53 and every numeric (9007199254740993,
//    12345678901234567890.123456789 come out rounded); 2.5 has no
//    numeric-data-types-as-string (2.6 has), so a parser that keeps number
//    literals as text is needed (Node 20's JSON.parse cannot). bytea comes
//    without its "\x" prefix; booleans as true/false; the rest as the type's
//    text output. Unchanged TOAST columns are left out of the row (as now:
//    left out of the SET list).
//  - relation metadata: none. Each row names its schema, table, column names
//    and types (by name, with include-type-oids by oid): no relation OID, no
//    replica identity flag; the key of an UPDATE/DELETE is "identity" (every
//    old column under REPLICA IDENTITY FULL). The applier's session already
//    reads table metadata from the local catalog; the decoder would map by
//    name instead of relation id, and each row repeats the names (4x
//    pgoutput's bytes per row here).
//  - TRUNCATE: v2 sends one "T" per table, without pgoutput's CASCADE and
//    RESTART IDENTITY flags.
//  - a non-core .so on every node's server (Debian/PGDG package; most hosted
//    services ship wal2json): pgraft today needs only stock PostgreSQL.
// Recommendation then: keep pgoutput as the data plane, with wal2json v2 +
// filter-origins as an optional pre-filter on the node slots where
// wal2json.so is present; on PostgreSQL 16+ pgoutput's origin = 'none'.
//
// Second run, 2026-12-07, with (c) test_decoding + only-local added, same
// machine (load 2-3), BENCH_TX=30000 BENCH_REPS=3, µs per generated
// transaction (median):
//                               walsender  consumer  sent
//   (a) pgoutput                  16.0       16.2     5.1 MiB, 110k msgs
//   (c) test_decoding only-local   3.7        6.1     2.4 MiB,  30k msgs
//   (b) wal2json v2 + filter       6.3        6.5     6.6 MiB,  30k msgs
//   (b) wal2json v1 + filter       5.3        3.9     4.3 MiB,  10k msgs
// pgoutput / test_decoding per repetition: walsender 1.47 / 4.45 / 4.80,
// consumer 1.56 / 2.45 / 3.73. test_decoding's only-local drops every
// transaction with any origin (no id list to keep, nothing to restart at a
// join), ships with PostgreSQL itself (contrib), and its text keeps numbers
// as written (no JSON number rounding); its walsender cost for the local
// third is at most pgoutput's here. pgraft's node slots are therefore
// test_decoding with only-local (src/slots/text-decoding.ts,
// node-slot-plugin.ts), pgoutput where a server lacks it; the group slot
// and a part's relay stream stay pgoutput (they need origin names).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import type pg from "pg";
import { LogicalReplicationService, Wal2JsonPlugin, type Pgoutput } from "pg-logical-replication";
import { LocalPostgres, findPostgresBinaries, reachableTempDir } from "../src/postgres/index.js";
import { clientConfig } from "../src/slots/connection.js";
import { TextPgoutputPlugin, TransactionAssembler } from "../src/slots/decoder.js";
import { TextDecodingPlugin, TextTransactionAssembler } from "../src/slots/text-decoding.js";
import { readStat } from "./proc-cpu.js";
import { fmt, fmtSpread, loadAverageChecked, machineNote, repetitions, spread } from "./report.js";

const TX = Math.max(3, Number(process.env.BENCH_TX ?? 50_000));
const ACCOUNTS = Math.max(1000, Number(process.env.BENCH_ACCOUNTS ?? 100_000));
const REPS = repetitions();
const RUN_TIMEOUT_MS = Number(process.env.BENCH_RUN_TIMEOUT_MS ?? 300_000);
const TEMPLATE = "bench_template";
const PUBLICATION = "bench_pub";
const ORIGINS = ["pgraft_x", "pgraft_y"];

type VariantId = "pgoutput" | "test_decoding-only-local" | "wal2json-v2-filter" | "wal2json-v1-filter" | "wal2json-v2-nofilter";

interface Variant {
  id: VariantId;
  label: string;
  plugin: "pgoutput" | "wal2json" | "test_decoding";
  /** Transactions it must hand the consumer (the marker's included); checked. */
  expectTx: (local: number, total: number) => number;
}

const VARIANTS: Variant[] = [
  { id: "pgoutput", label: "(a) pgoutput v1, all sent, receiver skips", plugin: "pgoutput", expectTx: (_l, t) => t },
  { id: "test_decoding-only-local", label: "(c) test_decoding + only-local (pgraft's node slots, its receiver's decoder)", plugin: "test_decoding", expectTx: (l) => l },
  { id: "wal2json-v2-filter", label: "(b) wal2json v2 + filter-origins", plugin: "wal2json", expectTx: (l) => l },
  { id: "wal2json-v1-filter", label: "(b) wal2json v1 + filter-origins", plugin: "wal2json", expectTx: (l) => l },
  { id: "wal2json-v2-nofilter", label: "    wal2json v2, no filter (reference)", plugin: "wal2json", expectTx: (_l, t) => t },
];

interface RunResult {
  wallS: number;
  walsenderCpuS: number;
  consumerCpuS: number;
  bytes: number;
  messages: number;
  /** Transactions handed to the consumer (begin/commit pairs or v1 documents). */
  txSeen: number;
  /** Of those, kept for apply (local). */
  txKept: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The generated WAL: BENCH_TX one-row transactions, 2 of 3 under an origin, then the local marker. */
function generateSql(n: number): string {
  return `DO $$
DECLARE o text;
BEGIN
  FOR i IN 1..${n} LOOP
    o := CASE i % 3 WHEN 1 THEN 'pgraft_x' WHEN 2 THEN 'pgraft_y' ELSE NULL END;
    IF o IS NOT NULL THEN
      PERFORM pg_replication_origin_session_setup(o);
      PERFORM pg_replication_origin_xact_setup(('0/' || to_hex(i * 256))::pg_lsn, clock_timestamp());
    END IF;
    UPDATE bench_accounts SET abalance = abalance + 1 WHERE aid = 1 + (i * 7919) % ${ACCOUNTS};
    COMMIT;
    IF o IS NOT NULL THEN PERFORM pg_replication_origin_session_reset(); END IF;
  END LOOP;
END $$`;
}

/** wal2json's options for a variant (the library passes each as "key" 'value'). */
function wal2jsonOptions(v: VariantId, originIds: string): Record<string, string | boolean> {
  const common = { includeTimestamp: true, includeLsn: true, includeXids: true } as Record<string, string | boolean>;
  if (v === "wal2json-v2-filter") return { ...common, formatVersion: "2", filterOrigins: originIds };
  if (v === "wal2json-v1-filter") return { ...common, formatVersion: "1", filterOrigins: originIds };
  return { ...common, formatVersion: "2", includeOrigin: true };
}

/** `plugin`, counting the bytes and messages it is handed to parse. */
function counted<P extends { parse(buffer: Buffer): unknown }>(plugin: P): P & { bytes: number; messages: number } {
  const c = Object.assign(plugin, { bytes: 0, messages: 0 });
  const parse = plugin.parse.bind(plugin);
  c.parse = (buffer: Buffer) => {
    c.bytes += buffer.length;
    c.messages++;
    return parse(buffer);
  };
  return c;
}

type W2jChange = { action?: string; kind?: string; table?: string; schema?: string; timestamp?: string; nextlsn?: string; lsn?: string; origin?: number | null; change?: W2jChange[] };

async function streamOnce(server: LocalPostgres, admin: pg.Client, v: Variant, slot: string, originIds: string): Promise<RunResult> {
  await admin.query("SELECT pg_copy_logical_replication_slot($1, $2, false, $3)", [TEMPLATE, slot, v.plugin]);
  const service = new LogicalReplicationService(clientConfig(server.dsn(), `bench_${v.id}`), {
    acknowledge: { auto: false, timeoutSeconds: 0 },
    flowControl: { enabled: false },
  });
  let txSeen = 0;
  let txKept = 0;
  let finish!: () => void;
  let fail!: (e: Error) => void;
  const finished = new Promise<void>((res, rej) => {
    finish = res;
    fail = rej;
  });
  let onData: (msg: unknown, lsn: string) => void;
  let plugin: { bytes: number; messages: number } & (TextPgoutputPlugin | Wal2JsonPlugin | TextDecodingPlugin);
  if (v.plugin === "test_decoding") {
    // Exactly the receiver's path for such a slot: the server sends only local transactions.
    const assembler = new TextTransactionAssembler();
    plugin = counted(new TextDecodingPlugin());
    onData = (msg, lsn) => {
      const out = assembler.push(msg as string, lsn);
      if (out) txSeen++;
      if (out?.kind === "apply") {
        txKept++;
        if (out.tx.changes.some((c) => c.kind === "insert" && c.rel.name === "bench_marker")) finish();
      }
    };
  } else if (v.plugin === "pgoutput") {
    const assembler = new TransactionAssembler();
    plugin = counted(new TextPgoutputPlugin(PUBLICATION, (origin) => assembler.wanted(origin)));
    onData = (msg) => {
      const m = msg as Pgoutput.Message;
      const out = assembler.push(m);
      if (m.tag === "commit") txSeen++;
      if (out?.kind === "apply") {
        txKept++;
        if (out.tx.changes.some((c) => c.kind === "insert" && c.rel.name === "bench_marker")) finish();
      }
    };
  } else {
    plugin = counted(new Wal2JsonPlugin(wal2jsonOptions(v.id, originIds)));
    if (v.id === "wal2json-v1-filter") {
      onData = (msg) => {
        const doc = msg as W2jChange;
        txSeen++;
        txKept++;
        if (doc.change?.some((c) => c.kind === "insert" && c.table === "bench_marker")) finish();
      };
    } else {
      // v2: B, then one line per change, then C; with include-origin (no filter) B says the origin's id.
      let origin = 0;
      let changes: W2jChange[] = [];
      const filtering = v.id === "wal2json-v2-filter";
      onData = (msg) => {
        const m = msg as W2jChange;
        switch (m.action) {
          case "B":
            origin = m.origin ?? 0; // 0: no origin (local)
            changes = [];
            break;
          case "C":
            txSeen++;
            if (filtering || origin === 0) {
              txKept++;
              if (changes.some((c) => c.action === "I" && c.table === "bench_marker")) finish();
            }
            break;
          case "I":
          case "U":
          case "D":
          case "T":
            // a receiver skipping by origin would not even keep the change (it stays parsed: wal2json's text is JSON)
            if (filtering || origin === 0) changes.push(m);
            break;
          default:
            break;
        }
      };
    }
  }
  service.on("data", (lsn: string, msg: unknown) => onData(msg, lsn));
  service.on("error", (e: Error) => fail(e));
  let pid: number | undefined;
  service.on("start", () => {
    void admin
      .query<{ pid: number | null }>("SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1", [slot])
      .then((r) => {
        pid = r.rows[0]?.pid ?? undefined;
      })
      .catch(() => undefined);
  });
  const timer = setTimeout(() => fail(new Error(`${v.id}: no marker after ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const sub = service.subscribe(plugin, slot).catch((e: unknown) => fail(e instanceof Error ? e : new Error(String(e))));
  try {
    await finished;
  } finally {
    clearTimeout(timer);
  }
  const wallS = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  // the pid query may still be on its way (tiny streams)
  for (let i = 0; pid === undefined && i < 50; i++) await sleep(10);
  const walsenderCpuS = pid === undefined ? NaN : (readStat(pid)?.self ?? NaN);
  await service.stop();
  await sub;
  for (let i = 0; i < 100; i++) {
    const r = await admin.query<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_name = $1", [slot]);
    if (!r.rows[0]?.active) break;
    await sleep(20);
  }
  await admin.query("SELECT pg_drop_replication_slot($1)", [slot]);
  return { wallS, walsenderCpuS, consumerCpuS: (c.user + c.system) / 1e6, bytes: plugin.bytes, messages: plugin.messages, txSeen, txKept };
}

/** What wal2json v2 says about one local and one origin'd transaction (for the design note). */
async function formatProbe(admin: pg.Client, originIds: string): Promise<void> {
  await admin.query("SELECT pg_copy_logical_replication_slot($1, 'bench_probe', false, 'wal2json')", [TEMPLATE]);
  try {
    const opts = ["'format-version'", "'2'", "'include-timestamp'", "'1'", "'include-lsn'", "'1'", "'include-xids'", "'1'", "'include-origin'", "'1'"];
    const r = await admin.query<{ data: string }>(`SELECT data FROM pg_logical_slot_peek_changes('bench_probe', NULL, 9, ${opts.join(", ")})`);
    console.log("  wal2json v2 (include-timestamp/-lsn/-xids/-origin), the first transactions, as sent:");
    for (const row of r.rows) console.log(`    ${row.data}`);
    const f = await admin.query<{ data: string }>(`SELECT data FROM pg_logical_slot_peek_changes('bench_probe', NULL, 3, ${opts.join(", ")}, 'filter-origins', $1)`, [originIds]);
    console.log(`  …and with filter-origins '${originIds}' (only local transactions):`);
    for (const row of f.rows) console.log(`    ${row.data}`);
  } finally {
    await admin.query("SELECT pg_drop_replication_slot('bench_probe')");
  }
}

async function main(): Promise<void> {
  const bins = await findPostgresBinaries();
  const libDir = pkglibdir(bins.bin("pg_config"));
  if (libDir && !existsSync(join(libDir, "wal2json.so"))) throw new Error(`${libDir}/wal2json.so is missing: install postgresql-${bins.major}-wal2json (Debian's package; \`make bench\` installs it when root)`);
  const baseDir = await reachableTempDir("pgraft-bench-decode-");
  let server: LocalPostgres | undefined;
  let admin: pg.Client | undefined;
  try {
    console.log(`bench/decode-origin-filter: PostgreSQL ${bins.version} (fsync off), ${TX} one-row transactions (UPDATE of one of ${ACCOUNTS} accounts): 2 of 3 carry an origin (applied from elsewhere), 1 of 3 local`);
    console.log(`  each run: a copy of one template slot (same WAL), streamed over the replication protocol to the marker; ${REPS} repetitions, the order of the variants rotated`);
    console.log(`  load average before: ${loadAverageChecked()} (${machineNote()})`);
    server = await LocalPostgres.initdb({ dataDir: join(baseDir, "data"), port: await freePort(), password: `pw-${Math.random().toString(36).slice(2)}`, binaries: bins, fsync: false, noSync: true, settings: { max_wal_size: "4GB", shared_buffers: "128MB" } });
    await server.start();
    admin = await server.connect();
    await admin.query(`CREATE TABLE bench_accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84));
      INSERT INTO bench_accounts SELECT g, 1 + g / 100000, 0, '' FROM generate_series(1, ${ACCOUNTS}) g;
      CREATE TABLE bench_marker (id int PRIMARY KEY);
      CREATE PUBLICATION ${PUBLICATION} FOR ALL TABLES;`);
    await admin.query("VACUUM ANALYZE bench_accounts");
    const ids: string[] = [];
    for (const o of ORIGINS) ids.push(String((await admin.query<{ id: string }>("SELECT pg_replication_origin_create($1)::text AS id", [o])).rows[0]!.id));
    const originIds = ids.join(",");
    await admin.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [TEMPLATE]);
    const lsn0 = (await admin.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]!.l;
    const g0 = performance.now();
    await admin.query(generateSql(TX));
    await admin.query("INSERT INTO bench_marker VALUES (1)");
    const genS = (performance.now() - g0) / 1000;
    const wal = (await admin.query<{ b: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::bigint::text AS b", [lsn0])).rows[0]!.b;
    const local = Math.floor(TX / 3) + 1; // i % 3 == 0, and the marker
    const total = TX + 1;
    console.log(`  generated in ${fmt(genS, 1)} s: ${(Number(wal) / 2 ** 20).toFixed(1)} MiB of WAL, ${total} transactions, ${local} local (marker included); origins ${ORIGINS.map((o, i) => `${o}=${ids[i]}`).join(", ")}`);
    await formatProbe(admin, originIds);
    console.log("");

    const got = new Map<VariantId, RunResult[]>(VARIANTS.map((v) => [v.id, []]));
    for (let rep = 0; rep < REPS; rep++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + rep) % VARIANTS.length]!);
      for (const v of order) {
        const r = await streamOnce(server, admin, v, `bench_${v.id.replace(/-/g, "_")}_${rep}`, originIds);
        const want = v.expectTx(local, total);
        const kept = v.id === "pgoutput" || v.id === "wal2json-v2-nofilter" ? local : want;
        if (r.txSeen !== want || r.txKept !== kept) throw new Error(`${v.id}: ${r.txSeen} transactions sent (${r.txKept} kept), expected ${want} (${kept} kept)`);
        got.get(v.id)!.push(r);
        console.log(`  rep ${rep + 1} ${v.id.padEnd(21)} wall ${fmt(r.wallS, 2)} s  walsender ${fmt(r.walsenderCpuS, 2)} s  consumer ${fmt(r.consumerCpuS, 2)} s  ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${r.messages} messages, ${r.txSeen} tx (${r.txKept} kept)   load ${loadAverageChecked()}`);
      }
    }
    console.log("");
    console.log(`  per variant, min / median / max over ${REPS} repetitions (seconds for the whole stream; µs per generated transaction in brackets, median)`);
    const per = (s: number): string => fmt((s * 1e6) / total, 1);
    for (const v of VARIANTS) {
      const rs = got.get(v.id)!;
      const med = (f: (r: RunResult) => number): number => spread(rs.map(f)).median;
      console.log(`  ${v.label}`);
      console.log(`      wall       ${fmtSpread(rs.map((r) => r.wallS))}  [${per(med((r) => r.wallS))} µs/tx]`);
      console.log(`      walsender  ${fmtSpread(rs.map((r) => r.walsenderCpuS))}  [${per(med((r) => r.walsenderCpuS))} µs/tx]`);
      console.log(`      consumer   ${fmtSpread(rs.map((r) => r.consumerCpuS))}  [${per(med((r) => r.consumerCpuS))} µs/tx]`);
      console.log(`      sent       ${(med((r) => r.bytes) / 2 ** 20).toFixed(1)} MiB, ${fmt(med((r) => r.messages))} messages`);
    }
    console.log("");
    console.log("  ratios, each repetition's pgoutput run over the same repetition's other run (> 1: pgoutput costs more)");
    const base = got.get("pgoutput")!;
    for (const v of VARIANTS.slice(1)) {
      const rs = got.get(v.id)!;
      const ratio = (f: (r: RunResult) => number): string => fmtSpread(base.map((b, i) => f(b) / f(rs[i]!)));
      console.log(`  pgoutput / ${v.id}`);
      console.log(`      wall ${ratio((r) => r.wallS)}   walsender cpu ${ratio((r) => r.walsenderCpuS)}   consumer cpu ${ratio((r) => r.consumerCpuS)}   bytes ${ratio((r) => r.bytes)}`);
    }
    console.log("");
    console.log(`load average after: ${loadAverageChecked()}`);
    console.log("the cores are shared with the rest of the machine: compare ratios within one run");
  } finally {
    await admin?.end().catch(() => undefined);
    await server?.stop({ mode: "fast" }).catch((e: unknown) => console.error("stopping the server:", e));
    if (process.env.BENCH_KEEP === "1") console.log(`kept ${baseDir}`);
    else await rm(baseDir, { recursive: true, force: true });
  }
}

/** `pg_config --pkglibdir` (where wal2json.so must be), or undefined when pg_config is not there. */
function pkglibdir(pgConfig: string): string | undefined {
  try {
    return execFileSync(pgConfig, ["--pkglibdir"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
