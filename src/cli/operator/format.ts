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
import { renderKeyValues, renderTable } from "./output.js";

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

/** Milliseconds since the last answer (-1: never) as "120ms ago" / "3.4s ago". */
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
      withProgress ? (m.isLeader ? "-" : ago(m.lastHeartbeatMs)) : "-",
    ]);
  return renderTable(MEMBER_COLUMNS, rows);
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

export function kvTable(kvs: readonly KeyValue[]): string[] {
  return renderTable(
    ["KEY", "MOD_REVISION", "VERSION", "LEASE", "VALUE"],
    kvs.map((kv) => [kv.key, String(kv.modRevision), String(kv.version), kv.lease ? String(kv.lease) : "-", compactJson(kv.value)]),
  );
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
