// The server settings the data plane needs, checked at start so a
// misconfigured server is reported with the exact change to make instead of
// failing later with a decoding or commit-timestamp error.
import type pg from "pg";

export interface SettingProblem {
  setting: string;
  /** The value the server runs with now. */
  current: string;
  /** What it must be (or at least be). */
  required: string;
  /** The exact SQL to run, and what else it takes (a restart for postmaster-context settings). */
  fix: string;
  /** True when the change only takes effect at server start. */
  restart: boolean;
}

export interface SettingsReport {
  ok: boolean;
  problems: SettingProblem[];
  /** Not blocking, but worth knowing (e.g. a WAL cap that can invalidate slots of a node that is down). */
  warnings: string[];
}

export interface SettingsNeed {
  /** Peers this node keeps a node slot for (each also streams from us through one walsender). */
  peers: number;
}

interface Row {
  name: string;
  setting: string;
  context: string;
  pending_restart: boolean | string;
}

const NAMES = ["wal_level", "track_commit_timestamp", "max_replication_slots", "max_wal_senders", "max_worker_processes", "max_slot_wal_keep_size"];

/** Spare walsenders/slots for a join's initial copy and an operator's own tools. */
const HEADROOM = 2;

function pendingRestart(r: Row): boolean {
  return r.pending_restart === true || r.pending_restart === "t" || r.pending_restart === "true";
}

/** The problem with `r`, whose value must become `value` (`required` says why). */
function problem(r: Row, value: string, required: string): SettingProblem {
  const restart = r.context === "postmaster";
  const fix = pendingRestart(r)
    ? `already changed (ALTER SYSTEM or the config file) but not yet in effect: restart PostgreSQL so ${r.name} takes effect`
    : `ALTER SYSTEM SET ${r.name} = ${value}; then ${restart ? "restart PostgreSQL (this setting only takes effect at server start)" : "SELECT pg_reload_conf();"}`;
  return { setting: r.name, current: r.setting, required, fix, restart };
}

/**
 * What is wrong with the server for a node with `need.peers` peers. Reads
 * pg_settings and the current slot/walsender usage; changes nothing.
 */
export async function checkSettings(client: pg.Client, need: SettingsNeed): Promise<SettingsReport> {
  const rows = (await client.query<Row>("SELECT name, setting, context, pending_restart FROM pg_settings WHERE name = ANY($1)", [NAMES])).rows;
  const get = (n: string): Row | undefined => rows.find((r) => r.name === n);
  const usage = (
    await client.query<{ slots: string; senders: string }>(
      // Usage by others: our own (bdr_) slots and the walsenders serving them are already in `need`.
      `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name NOT LIKE 'bdr\\_%')::text AS slots,
              (SELECT count(*) FROM pg_stat_replication r
                WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_name LIKE 'bdr\\_%'))::text AS senders`,
    )
  ).rows[0];
  const slotsInUse = Number(usage?.slots ?? 0);
  const sendersInUse = Number(usage?.senders ?? 0);
  const problems: SettingProblem[] = [];
  const warnings: string[] = [];

  const wal = get("wal_level");
  if (wal && wal.setting !== "logical") {
    problems.push(problem(wal, "logical", "logical (peers decode this node's WAL)"));
  }
  const ts = get("track_commit_timestamp");
  if (ts && ts.setting !== "on") {
    problems.push(problem(ts, "on", "on (conflicts are resolved by the origin commit timestamp: last update wins)"));
  }
  // One group slot + one node slot per peer, on top of whatever else uses slots here.
  const slotsNeeded = slotsInUse + need.peers + 1 + HEADROOM;
  const slots = get("max_replication_slots");
  if (slots && Number(slots.setting) < slotsNeeded) {
    problems.push(
      problem(slots, String(slotsNeeded), `>= ${slotsNeeded} (${need.peers} node slots + 1 group slot + ${slotsInUse} in use by others + ${HEADROOM} spare)`),
    );
  }
  // Each peer streams its node slot through one walsender (plus spares for a join's copy).
  const sendersNeeded = sendersInUse + need.peers + HEADROOM;
  const senders = get("max_wal_senders");
  if (senders && Number(senders.setting) < sendersNeeded) {
    problems.push(problem(senders, String(sendersNeeded), `>= ${sendersNeeded} (${need.peers} peers + ${sendersInUse} in use + ${HEADROOM} spare)`));
  }
  // pgraft applies changes from its own sidecar connections, not background
  // workers, so it needs none of its own; PostgreSQL still needs the default
  // handful for its own helpers (parallel query, logical replication launcher).
  const workers = get("max_worker_processes");
  if (workers && Number(workers.setting) < 4) {
    problems.push(problem(workers, "8", ">= 4"));
  }
  const keep = get("max_slot_wal_keep_size");
  if (keep && keep.setting !== "-1") {
    warnings.push(
      `max_slot_wal_keep_size = ${keep.setting} MB: a peer that is down longer than that much WAL loses its node slot (it then has to be parted and joined again); ` +
        "ALTER SYSTEM SET max_slot_wal_keep_size = -1; SELECT pg_reload_conf(); keeps all WAL a slot needs (watch disk space instead)",
    );
  }
  return { ok: problems.length === 0, problems, warnings };
}

/** One message listing every problem and its fix (for an error or a log line). */
export function describeProblems(report: SettingsReport): string {
  return report.problems.map((p) => `${p.setting} is ${p.current}, needs ${p.required}: ${p.fix}`).join("\n");
}

/** The error start() throws when the server is not ready for the data plane. */
export class SettingsError extends Error {
  constructor(readonly report: SettingsReport) {
    super(`PostgreSQL is not configured for pgraft's replication:\n${describeProblems(report)}`);
    this.name = "SettingsError";
  }
}
