// The runtime settings of the cluster (pgraft_set_config / pgraft_get_config):
// the one place that defines each setting's name, type, default, bounds,
// description and whether it needs a restart. Everything here is pure and
// deterministic, because apply() on every node runs the same parsers.
import { ClusterError } from "./errors.js";

export type SettingType = "duration" | "boolean" | "integer" | "enum";

export interface SettingSpec {
  readonly name: string;
  readonly type: SettingType;
  /** Canonical text of the default. */
  readonly default: string;
  /** Bounds of durations (ms) and integers, inclusive. */
  readonly min?: number;
  readonly max?: number;
  /** Unit of an integer setting; "bytes" also accepts kB/MB/GB suffixes (1024-based). */
  readonly unit?: "bytes" | "entries" | "messages";
  /** Allowed values of an enum setting (canonical, lower case). */
  readonly values?: readonly string[];
  readonly description: string;
  /** True when a changed value takes effect only after the sidecar restarts. */
  readonly restartRequired: boolean;
  /** Set when this version cannot change the setting: why (ConfigSet refuses with it). */
  readonly fixed?: string;
}

const MiB = 1024 * 1024;

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Every runtime setting, sorted by name. */
export const SETTINGS: readonly SettingSpec[] = [
  {
    name: "conflict_log_origin_change",
    type: "boolean",
    default: "false",
    description:
      "Also log to pgraft.conflict_history the update_origin_change conflicts that the incoming update won (an update of a row another node wrote last, older than the update); off, as in EDB PGD, since in a multi-writer group they are most updates. Every node, at once",
    restartRequired: false,
  },
  {
    name: "debug",
    type: "boolean",
    default: "false",
    description: "Debug logging on every node, whatever log_level says (pgraft_set_debug sets this)",
    restartRequired: false,
  },
  {
    name: "election_timeout",
    type: "duration",
    default: "1s",
    min: 20,
    max: 300_000,
    description: "Time without a leader before a follower campaigns; at least 2 x heartbeat_interval",
    restartRequired: false,
  },
  {
    name: "failover_enabled",
    type: "boolean",
    default: "true",
    description:
      "Automatic failover of each data group's write leader: when its PostgreSQL stops answering or its sidecar is unreachable for failover_timeout, another ACTIVE node takes the writes (Raft elections always happen; a switchover works either way)",
    restartRequired: false,
  },
  {
    name: "failover_timeout",
    type: "duration",
    default: "1s",
    min: 100,
    max: 600_000,
    description: "How long a write leader's PostgreSQL may not answer, or its sidecar be unreachable, before another node takes the group's writes (with failover_enabled)",
    restartRequired: false,
  },
  { name: "heartbeat_interval", type: "duration", default: "100ms", min: 10, max: 60_000, description: "Interval between the leader's heartbeats", restartRequired: false },
  { name: "kv_max_key_bytes", type: "integer", unit: "bytes", default: "1024", min: 1, max: 65_536, description: "Largest KV key, in UTF-8 bytes", restartRequired: false },
  {
    name: "kv_max_value_bytes",
    type: "integer",
    unit: "bytes",
    default: String(MiB),
    min: 1,
    max: 8 * MiB,
    description: "Largest KV value (JSON text), in UTF-8 bytes",
    restartRequired: false,
  },
  {
    name: "log_level",
    type: "enum",
    values: LOG_LEVELS,
    default: "info",
    description: "Log level of every sidecar (once set, it wins over each sidecar's --log-level; debug = true wins over it)",
    restartRequired: false,
  },
  {
    name: "max_append_entries",
    type: "integer",
    unit: "entries",
    default: "64",
    min: 1,
    max: 10_000,
    description: "Most log entries the leader sends in one AppendEntries message; fixed in this version (batches are bounded by size, 1 MiB)",
    restartRequired: true,
    fixed: "the Raft core bounds each AppendEntries message by size (1 MiB), not by a number of entries, and cannot change that at run time",
  },
  {
    name: "max_inflight_msgs",
    type: "integer",
    unit: "messages",
    default: "256",
    min: 1,
    max: 65_536,
    description: "Most AppendEntries messages in flight to one follower; fixed at 256 in this version",
    restartRequired: true,
    fixed: "each follower's flow-control window is sized when the leader starts tracking it and cannot be resized at run time",
  },
  {
    name: "snapshot_interval",
    type: "integer",
    unit: "entries",
    default: "10000",
    min: 100,
    max: 10_000_000,
    description: "Applied entries between two snapshots of the replicated state (every node, at once)",
    restartRequired: false,
  },
];

const BY_NAME: ReadonlyMap<string, SettingSpec> = new Map(SETTINGS.map((s) => [s.name, s]));

export const settingNames = (): string[] => SETTINGS.map((s) => s.name);

/** Accepts "Heartbeat_Interval", " pgraft.heartbeat_interval " and the like; returns the spec or throws UNKNOWN_SETTING. */
export function getSetting(name: string): SettingSpec {
  const key = typeof name === "string" ? canonicalName(name) : "";
  const spec = BY_NAME.get(key);
  if (!spec) {
    const shown = typeof name === "string" ? JSON.stringify(name) : String(name);
    throw new ClusterError("UNKNOWN_SETTING", `unknown setting ${shown}; valid settings: ${settingNames().join(", ")}`);
  }
  return spec;
}

function canonicalName(name: string): string {
  const n = name.trim().toLowerCase();
  return n.startsWith("pgraft.") ? n.slice("pgraft.".length) : n;
}

/**
 * Throws NOT_CHANGEABLE for a setting this version lists (the reference has it)
 * but cannot change; ConfigSet calls it before proposing. Resetting one to its
 * default is always allowed.
 */
export function checkChangeable(name: string, value: string): void {
  const spec = getSetting(name);
  if (spec.fixed && normalize(spec.name, value) !== spec.default) {
    throw new ClusterError("NOT_CHANGEABLE", `${spec.name} cannot be changed in this version: ${spec.fixed}`);
  }
}

// ------------------------------------------------------------------ parsers

const UNIT_MS: Readonly<Record<string, bigint>> = { ms: 1n, s: 1000n, m: 60_000n, min: 60_000n, h: 3_600_000n };

/**
 * "75ms", "1s", "1.5s", "2m", "1h", or a bare number of milliseconds. Decimal
 * arithmetic is exact ("1.1s" is 1100 ms, not 1100.0000000000002). Returns
 * undefined for anything else, including values that are not whole milliseconds.
 */
export function parseDurationMs(raw: string): number | undefined {
  const m = /^(\d{1,15})(?:\.(\d{1,9}))?\s*(ms|s|m|min|h)?$/i.exec(raw.trim());
  if (!m) return undefined;
  const frac = m[2] ?? "";
  const scale = 10n ** BigInt(frac.length);
  const unit = UNIT_MS[(m[3] ?? "ms").toLowerCase()]!;
  const scaled = (BigInt(m[1]!) * scale + BigInt(frac || "0")) * unit;
  if (scaled % scale !== 0n) return undefined;
  const ms = scaled / scale;
  return ms <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ms) : undefined;
}

/** The canonical text of a duration: the largest of h, m, s, ms that divides it exactly. */
export function formatDuration(ms: number): string {
  if (ms !== 0) {
    if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
    if (ms % 60_000 === 0) return `${ms / 60_000}m`;
    if (ms % 1000 === 0) return `${ms / 1000}s`;
  }
  return `${ms}ms`;
}

const TRUE_WORDS = new Set(["true", "on", "yes", "1", "t", "y"]);
const FALSE_WORDS = new Set(["false", "off", "no", "0", "f", "n"]);

/** true/false, on/off, yes/no, 1/0 (and t/f, y/n), any case. */
export function parseBoolean(raw: string): boolean | undefined {
  const w = raw.trim().toLowerCase();
  if (TRUE_WORDS.has(w)) return true;
  if (FALSE_WORDS.has(w)) return false;
  return undefined;
}

const BYTE_UNITS: Readonly<Record<string, bigint>> = { b: 1n, kb: 1024n, kib: 1024n, mb: 1024n ** 2n, mib: 1024n ** 2n, gb: 1024n ** 3n, gib: 1024n ** 3n };

/** A non-negative integer; with byte units also "64kB", "1MB", "1MiB", "1GB" (all 1024-based). */
export function parseInteger(raw: string, bytes = false): number | undefined {
  const m = /^\+?(\d{1,15})\s*([a-z]+)?$/i.exec(raw.trim());
  if (!m) return undefined;
  let n = BigInt(m[1]!);
  if (m[2] !== undefined) {
    const mult = bytes ? BYTE_UNITS[m[2].toLowerCase()] : undefined;
    if (mult === undefined) return undefined;
    n *= mult;
  }
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined;
}

function expected(spec: SettingSpec): string {
  switch (spec.type) {
    case "duration":
      return "expected a duration such as 75ms or 1s";
    case "boolean":
      return "expected a boolean: true/false, on/off, yes/no or 1/0";
    case "integer":
      return spec.unit === "bytes" ? "expected a number of bytes such as 1024 or 64kB" : "expected a whole number";
    case "enum":
      return `expected one of ${(spec.values ?? []).join(", ")}`;
  }
}

function show(spec: SettingSpec, n: number): string {
  return spec.type === "duration" ? formatDuration(n) : String(n);
}

/** A setting's value as a typed JS value: ms for durations, a number, a boolean or the enum's word. */
export type SettingValue = number | boolean | string;

/** Parse and bound-check `raw` for setting `name`; throws UNKNOWN_SETTING, INVALID_VALUE or OUT_OF_RANGE. */
export function parseSetting(name: string, raw: string): SettingValue {
  const spec = getSetting(name);
  const bad = (): ClusterError =>
    new ClusterError("INVALID_VALUE", `invalid value for ${spec.name}: ${typeof raw === "string" ? JSON.stringify(raw) : String(raw)} (${expected(spec)})`);
  if (typeof raw !== "string") throw bad();
  let value: SettingValue | undefined;
  switch (spec.type) {
    case "duration":
      value = parseDurationMs(raw);
      break;
    case "boolean":
      value = parseBoolean(raw);
      break;
    case "integer":
      value = parseInteger(raw, spec.unit === "bytes");
      break;
    case "enum": {
      const w = raw.trim().toLowerCase();
      value = spec.values?.includes(w) ? w : undefined;
      break;
    }
  }
  if (value === undefined) throw bad();
  if (typeof value === "number" && ((spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max))) {
    throw new ClusterError(
      "OUT_OF_RANGE",
      `invalid value for ${spec.name}: ${JSON.stringify(raw)} (must be between ${show(spec, spec.min ?? 0)} and ${show(spec, spec.max ?? Number.MAX_SAFE_INTEGER)})`,
    );
  }
  return value;
}

/** The canonical text of a typed value of `spec`. */
export function formatSetting(spec: SettingSpec, value: SettingValue): string {
  if (spec.type === "duration") return formatDuration(value as number);
  return String(value);
}

/** Parse, bound-check and return the canonical text ("0.075s" → "75ms", "ON" → "true"). */
export function normalize(name: string, raw: string): string {
  const spec = getSetting(name);
  return formatSetting(spec, parseSetting(spec.name, raw));
}

// ------------------------------------------------------------------ the whole set

/** The effective settings, typed. */
export interface RuntimeSettings {
  conflictLogOriginChange: boolean;
  debug: boolean;
  electionTimeoutMs: number;
  failoverEnabled: boolean;
  failoverTimeoutMs: number;
  heartbeatIntervalMs: number;
  kvMaxKeyBytes: number;
  kvMaxValueBytes: number;
  logLevel: LogLevel;
  maxAppendEntries: number;
  maxInflightMsgs: number;
  snapshotInterval: number;
}

/** The effective canonical value of every setting: the override when there is one, else the default. */
export function effectiveValues(overrides: ReadonlyMap<string, string>): Map<string, string> {
  return new Map(SETTINGS.map((s) => [s.name, overrides.get(s.name) ?? s.default]));
}

/**
 * Check the rules that tie settings together. `overrides` holds canonical
 * values by canonical name. Throws INCOMPATIBLE_SETTINGS naming both values.
 */
export function validateCombination(overrides: ReadonlyMap<string, string>): void {
  const s = resolveSettings(overrides, false);
  if (s.electionTimeoutMs < 2 * s.heartbeatIntervalMs) {
    throw new ClusterError(
      "INCOMPATIBLE_SETTINGS",
      `election_timeout (${formatDuration(s.electionTimeoutMs)}) must be at least 2 x heartbeat_interval ` +
        `(${formatDuration(s.heartbeatIntervalMs)}), i.e. at least ${formatDuration(2 * s.heartbeatIntervalMs)}`,
    );
  }
}

/** The typed settings for the given overrides (validated, including the cross-setting rules). */
export function resolveSettings(overrides: ReadonlyMap<string, string>, check = true): RuntimeSettings {
  if (check) validateCombination(overrides);
  const v = effectiveValues(overrides);
  const get = (name: string): SettingValue => parseSetting(name, v.get(name)!);
  return {
    conflictLogOriginChange: get("conflict_log_origin_change") as boolean,
    debug: get("debug") as boolean,
    electionTimeoutMs: get("election_timeout") as number,
    failoverEnabled: get("failover_enabled") as boolean,
    failoverTimeoutMs: get("failover_timeout") as number,
    heartbeatIntervalMs: get("heartbeat_interval") as number,
    kvMaxKeyBytes: get("kv_max_key_bytes") as number,
    kvMaxValueBytes: get("kv_max_value_bytes") as number,
    logLevel: get("log_level") as LogLevel,
    maxAppendEntries: get("max_append_entries") as number,
    maxInflightMsgs: get("max_inflight_msgs") as number,
    snapshotInterval: get("snapshot_interval") as number,
  };
}

/** Below this many heartbeats per election timeout (2 is refused), a busy host or network risks needless elections. */
export const SAFE_ELECTION_HEARTBEATS = 5;

/**
 * The warning pgraft_set_config and `pgraft config set` give when the election
 * timeout is under SAFE_ELECTION_HEARTBEATS heartbeat intervals, or null.
 */
export function electionTimingWarning(heartbeatMs: number, electionMs: number): string | null {
  if (electionMs >= SAFE_ELECTION_HEARTBEATS * heartbeatMs) return null;
  return (
    `election_timeout (${formatDuration(electionMs)}) is under ${SAFE_ELECTION_HEARTBEATS} x heartbeat_interval (${formatDuration(heartbeatMs)}): ` +
    `a heartbeat delayed by a busy host or network can start needless elections; ${formatDuration(SAFE_ELECTION_HEARTBEATS * heartbeatMs)} or more is safer`
  );
}
