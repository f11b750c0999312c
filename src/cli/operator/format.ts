// How the Cluster service's messages read for people: state and role names,
// the members table, a KV pair, config entries.
import {
  ConfigSource,
  MemberRole,
  RaftState,
  type ConfigEntry,
  type KeyValue,
  type Member,
  type ResponseHeader,
} from "../../gen/pgraft/v1/client_pb.js";
import type { JsonObject } from "@bufbuild/protobuf";
import { escapeControl, renderKeyValues, renderTable } from "./output.js";

export function stateName(s: RaftState): string {
  switch (s) {
    case RaftState.FOLLOWER:
      return "follower";
    case RaftState.PRE_CANDIDATE:
      return "pre-candidate";
    case RaftState.CANDIDATE:
      return "candidate";
    case RaftState.LEADER:
      return "leader";
    default:
      return "unknown";
  }
}

export function roleName(r: MemberRole): string {
  switch (r) {
    case MemberRole.VOTER:
      return "voter";
    case MemberRole.LEARNER:
      return "learner";
    default:
      return "unknown";
  }
}

export function sourceName(s: ConfigSource): string {
  switch (s) {
    case ConfigSource.DEFAULT:
      return "default";
    case ConfigSource.FILE:
      return "file";
    case ConfigSource.RUNTIME:
      return "runtime";
    case ConfigSource.SAVED:
      return "saved";
    default:
      return "unknown";
  }
}

export const nodeList = (ids: readonly number[]): string => (ids.length ? [...ids].sort((a, b) => a - b).join(", ") : "none");
export const nodeOrNone = (id: number): string => (id ? String(id) : "none");
export const yesNo = (b: boolean): string => (b ? "yes" : "no");

/** Milliseconds since the last answer (-1: never) as "120ms ago" / "3.4s ago" (0, the leader's own row: "0ms ago"). */
export function ago(ms: bigint): string {
  if (ms < 0n) return "never";
  if (ms < 1000n) return `${ms}ms ago`;
  if (ms < 60_000n) return `${(Number(ms) / 1000).toFixed(1)}s ago`;
  return `${ms / 60_000n}m ago`;
}

/** The progress columns mean something only when the leader answered. */
export const answeredByLeader = (h: ResponseHeader | undefined): boolean => h !== undefined && h.memberId !== 0 && h.memberId === h.leaderId;

export const MEMBER_COLUMNS = ["ID", "NAME", "ADDRESS", "ROLE", "LEADER", "MATCH", "LAG", "REACHABLE", "LAST HEARTBEAT"] as const;

export function membersTable(members: readonly Member[], withProgress: boolean): string[] {
  const rows = [...members]
    .sort((a, b) => a.id - b.id)
    .map((m) => [
      String(m.id),
      m.name || "-",
      m.raftAddress || "-",
      roleName(m.role),
      m.isLeader ? "*" : "",
      withProgress ? String(m.matchIndex) : "-",
      withProgress ? String(m.lagEntries) : "-",
      withProgress ? yesNo(m.reachable) : "-",
      // The leader's own row: 0 (it is the one answering), as in --json.
      withProgress ? ago(m.lastHeartbeatMs) : "-",
    ]);
  return renderTable(MEMBER_COLUMNS, rows);
}

/** The member fields only the leader knows (its replication progress). */
export const PROGRESS_FIELDS = ["match_index", "lag_entries", "reachable", "last_heartbeat_ms", "replication_lag_bytes", "progress_state"] as const;

/**
 * A response with members (messageJson) for scripts: when the answer is not
 * the leader's, the progress fields are unknown — null, not false or 0 — and
 * `progress_from_leader` says which; a member never heard from has
 * `last_heartbeat_ms` null, and an empty `progress_state` is null.
 */
export function membersJson(doc: JsonObject, withProgress: boolean): JsonObject {
  const members = Array.isArray(doc["members"]) ? (doc["members"] as JsonObject[]) : [];
  const single = doc["member"];
  if (single && typeof single === "object" && !Array.isArray(single)) members.push(single);
  for (const m of members) {
    if (!withProgress) for (const f of PROGRESS_FIELDS) m[f] = null;
    else {
      if (typeof m["last_heartbeat_ms"] === "number" && m["last_heartbeat_ms"] < 0) m["last_heartbeat_ms"] = null;
      if (m["progress_state"] === "") m["progress_state"] = null;
    }
  }
  return { ...doc, progress_from_leader: withProgress };
}

/**
 * `status --json`: the `postgres` object with what is not known as null, not
 * "" or 0 — `error` unless PostgreSQL is down, `since_unix_ms`
 * and `checked_unix_ms` before the first probe.
 */
export function statusJson(doc: JsonObject): JsonObject {
  const pg = doc["postgres"];
  if (pg && typeof pg === "object" && !Array.isArray(pg)) {
    if (pg["state"] !== "down" || pg["error"] === "") pg["error"] = null;
    for (const f of ["since_unix_ms", "checked_unix_ms"]) if (pg[f] === 0) pg[f] = null;
  }
  if (Array.isArray(doc["routing"])) for (const r of doc["routing"]) if (r && typeof r === "object" && !Array.isArray(r)) routingJson(r);
  return doc;
}

/** A group's routing: none is null, not "" or 0. */
export function routingJson(r: JsonObject): JsonObject {
  for (const f of ["write_leader", "previous_write_leader", "switchover_target", "reason"]) if (r[f] === "") r[f] = null;
  if (r["changed_unix_ms"] === 0) r["changed_unix_ms"] = null;
  return r;
}

export function keyValueLines(kv: KeyValue): string[] {
  return renderKeyValues([
    ["key", kv.key],
    ["value", kv.value],
    ["create_revision", String(kv.createRevision)],
    ["mod_revision", String(kv.modRevision)],
    ["version", String(kv.version)],
    ["lease", kv.lease ? String(kv.lease) : "none"],
  ]);
}

/** A JSON value on one line (values may be stored pretty-printed). */
export function compactJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text.replace(/\s*\n\s*/g, " ");
  }
}

/** The widest a key and a value are shown in `kv list`'s table (the rest is cut, marked …). */
export const KV_KEY_WIDTH = 48;
export const KV_VALUE_WIDTH = 64;

/** At most `max` characters: longer text is cut and ends in "…". */
export function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : chars.slice(0, max - 1).join("") + "…";
}

/** The pairs as a table; keys and values cut to KV_KEY_WIDTH/KV_VALUE_WIDTH (control characters escaped, by renderTable). */
export function kvTable(kvs: readonly KeyValue[]): { lines: string[]; cut: boolean } {
  let cut = false;
  const cell = (text: string, max: number): string => {
    const t = truncate(escapeControl(text), max);
    if (t !== escapeControl(text)) cut = true;
    return t;
  };
  const lines = renderTable(
    ["KEY", "MOD_REVISION", "VERSION", "LEASE", "VALUE"],
    kvs.map((kv) => [cell(kv.key, KV_KEY_WIDTH), String(kv.modRevision), String(kv.version), kv.lease ? String(kv.lease) : "-", cell(compactJson(kv.value), KV_VALUE_WIDTH)]),
  );
  return { lines, cut };
}

export function configTable(entries: readonly ConfigEntry[]): string[] {
  return renderTable(
    ["NAME", "VALUE", "DEFAULT", "SOURCE", "DESCRIPTION"],
    [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((e) => [e.name, e.value, e.defaultValue, sourceName(e.source), e.description]),
  );
}

export function configEntryLines(e: ConfigEntry): string[] {
  return renderKeyValues([
    ["name", e.name],
    ["value", e.value],
    ["default", e.defaultValue],
    ["source", sourceName(e.source)],
    ["mod_revision", e.modRevision ? String(e.modRevision) : "never changed at runtime"],
    ["description", e.description],
  ]);
}
