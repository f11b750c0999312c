// The data plane's health-check row past its thresholds (src/slots/index.ts
// dataPlaneHealth: apply lag, retained WAL, conflict rate) and the conflict
// rate itself (src/slots/rate-window.ts), on constructed states: the states
// a real data plane reports are covered by outage.test.ts and
// multi-writer.test.ts; these are the edges.
import assert from "node:assert/strict";
import { test } from "node:test";
import { emptyStats } from "../../src/slots/applier.js";
import { CONFLICTS_WARN_PER_SECOND, dataPlaneHealth, LAG_WARN_SECONDS, RETAINED_WARN_BYTES, watchedConflicts, type DataPlaneStatus } from "../../src/slots/index.js";
import { RateWindow } from "../../src/slots/rate-window.js";
import type { ReceiverStatus } from "../../src/slots/receiver.js";
import type { SlotInfo } from "../../src/slots/provider.js";

const receiver = (peer: string, over: Partial<ReceiverStatus> = {}): ReceiverStatus => ({
  peer,
  slot: `bdr_db_g_${peer}`,
  origin: `pgraft_db_g_${peer}`,
  state: "streaming",
  since: new Date(0),
  receivedLsn: "0/10",
  durableLsn: "0/10",
  confirmedLsn: "0/10",
  upstreamLsn: "0/10",
  lagBytes: 0,
  lagSeconds: 0,
  lastError: null,
  sessions: 1,
  stats: emptyStats(),
  ...over,
});
const slot = (name: string, over: Partial<SlotInfo> = {}): SlotInfo => ({ name, kind: "node", peer: "b", state: "streaming", active: true, confirmedFlushLsn: "0/10", restartLsn: "0/8", lagBytes: 0, retainedBytes: 8, ...over });
const status = (over: Partial<DataPlaneStatus> = {}): DataPlaneStatus => ({
  node: "a",
  group: "g",
  db: "db",
  publication: "pub",
  groupSlot: "bdr_db_g",
  slots: [slot("bdr_db_g", { kind: "group", state: "inactive" }), slot("bdr_db_g_b")],
  receivers: [receiver("b")],
  notReceiving: [],
  connection: { connected: true } as DataPlaneStatus["connection"],
  conflictsPerSecond: null,
  ...over,
});

test("under every threshold: ok", () => {
  assert.equal(dataPlaneHealth(status({ conflictsPerSecond: CONFLICTS_WARN_PER_SECOND })).severity, "ok");
});

test("a peer's changes behind, a slot retaining WAL, a conflict rate: each a warning naming it", () => {
  const lag = dataPlaneHealth(status({ receivers: [receiver("b", { lagSeconds: LAG_WARN_SECONDS + 1, lagBytes: 4096 })] }));
  assert.equal(lag.severity, "warning");
  assert.match(lag.detail, /applying b's changes 31\.0 s behind \(4096 bytes\)/);
  const wal = dataPlaneHealth(status({ slots: [slot("bdr_db_g", { kind: "group" }), slot("bdr_db_g_b", { retainedBytes: RETAINED_WARN_BYTES + 2 ** 20 })] }));
  assert.equal(wal.severity, "warning");
  assert.match(wal.detail, /slot bdr_db_g_b retains 1025 MiB of WAL \(for b\)/);
  const conflicts = dataPlaneHealth(status({ conflictsPerSecond: 42.5 }));
  assert.equal(conflicts.severity, "warning");
  assert.match(conflicts.detail, /42\.5 conflicts\/s over the last minute \(.*an update of a row another node wrote earlier is not counted\): several nodes write the same rows at the same time/);
});

test("a lost slot stays critical whatever else", () => {
  const h = dataPlaneHealth(status({ conflictsPerSecond: 100, slots: [slot("bdr_db_g_b", { state: "slot_lost", error: "slot bdr_db_g_b lost" })] }));
  assert.equal(h.severity, "critical");
});

test("the rate: none before a minute of samples, then the increase per second; a total that went down starts over", () => {
  const r = new RateWindow(60_000, 600_000);
  assert.equal(r.sample(0, 0), undefined);
  assert.equal(r.sample(100, 30_000), undefined, "under a minute of history");
  assert.equal(r.sample(600, 60_000), 10, "600 conflicts in 60 s");
  assert.equal(r.sample(1_200, 90_000), 1_100 / 60, "over the span from the newest sample a minute old (30 s: 100)");
  assert.equal(r.sample(5, 100_000), undefined, "a receiver started again: counting starts over");
  assert.equal(r.sample(65, 160_000), 1);
});

test("the conflicts watched leave out updates of rows another node wrote earlier (update_origin_change/apply_remote), and only those", () => {
  const kinds = new Map([
    ["update_origin_change/apply_remote", 640],
    ["update_origin_change/keep_local", 3],
    ["insert_exists/apply_remote", 2],
  ]);
  assert.equal(watchedConflicts({ conflicts: 645, conflictsByKind: kinds }), 5);
  assert.equal(watchedConflicts({ conflicts: 0, conflictsByKind: new Map() }), 0);
});
