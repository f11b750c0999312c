// The values the replicated state hands out: KV entries, leases, members,
// configuration rows and the result of applying one command. Plain data.
import type { ClusterErrorCode } from "./errors.js";
import type { SettingType } from "./config-registry.js";
import type { DataNode, NodeGroup } from "./node-groups.js";
import type { GroupRouting } from "./routing.js";

/** One KV entry, with etcd's revision bookkeeping. */
export interface KeyValue {
  key: string;
  /** JSON text, as written. */
  value: string;
  /** Revision of the put that created the key (since its last deletion). */
  createRevision: number;
  /** Revision of the last put to the key. */
  modRevision: number;
  /** Puts since creation: 1 after the creating put; reset by a delete. */
  version: number;
  /** The lease the key is attached to; 0 for none. */
  lease: number;
}

export interface KvListResult {
  /** Matching entries in key order (UTF-8 byte order), at most `limit`. */
  kvs: KeyValue[];
  /** True when more entries match than were returned. */
  more: boolean;
  /** How many entries match in all (ignoring the limit). */
  count: number;
}

export interface LeaseInfo {
  id: number;
  ttlMs: number;
  /** Leader-stamped time after which the lease may be expired. */
  expiresAtMs: number;
  /** Attached keys, in key order. */
  keys: string[];
}

export type MemberRole = "voter" | "learner";

export interface Member {
  id: number;
  name: string;
  /** host:port peers use for Raft; "" while unknown. */
  raftAddress: string;
  httpAddress?: string;
  postgresDsn?: string;
  role: MemberRole;
}

/** One row of pgraft_get_config(). */
export interface ConfigRow {
  name: string;
  /** Effective canonical value. */
  value: string;
  default: string;
  /** True when a config.set is in effect (even one that set the default's value). */
  overridden: boolean;
  /** True when the effective value is the one recorded by the last config.save. */
  saved: boolean;
  description: string;
  type: SettingType;
  restartRequired: boolean;
  /** The log index of the last config.set / config.reset of this setting; 0 = never changed at runtime. */
  modIndex: number;
}

export interface CommandOk {
  ok: true;
  /** The KV revision after the command (unchanged by commands that change no key). */
  revision: number;
  /** The entry a kv.put replaced or a kv.delete removed. */
  prev?: KeyValue;
  /** Keys removed (kv.delete, kv.deletePrefix, lease.revoke, lease.expire). */
  deleted?: number;
  /** The lease after lease.grant / lease.keepAlive. */
  lease?: LeaseInfo;
  /** Leases removed by lease.expire. */
  expired?: number[];
  /** The row after config.set / config.reset. */
  setting?: ConfigRow;
  /** The member after member.update or a membership change. */
  member?: Member;
  /** The data node after a pgd.node.* command. */
  dataNode?: DataNode;
  /** The group after pgd.group.create / pgd.group.drop. */
  nodeGroup?: NodeGroup;
  /** A group's routing after routing.set / routing.scope. */
  routing?: GroupRouting;
}

export interface CommandFailure {
  ok: false;
  code: ClusterErrorCode;
  message: string;
  /** On CAS_FAILED: the entry as it is now (absent when the key does not exist). */
  current?: KeyValue;
}

export type CommandResult = CommandOk | CommandFailure;
