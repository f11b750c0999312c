// The replicated state of a pgraft cluster: the KV store with its leases, the
// runtime configuration, and the member list. The Raft driver calls apply() for
// every committed command and membership change, in log order, on every node.
//
// apply() is pure and deterministic: no clock, no randomness, no I/O; time comes
// in command fields the leader stamped. A command that is malformed, refers to
// something missing, or whose compare fails changes nothing (except that its
// index counts as applied) and yields the same failure on every node.
import { decodeConfChange } from "../consensus/confchange.js";
import type { StateMachine } from "../consensus/driver.js";
import { RaftError } from "../consensus/errors.js";
import { EntryType, type ConfState, type Entry } from "../consensus/types.js";
import { decodeCommand, type Command } from "./commands.js";
import { getSetting, normalize, resolveSettings, SETTINGS, validateCombination, type RuntimeSettings, type SettingSpec } from "./config-registry.js";
import { ClusterError } from "./errors.js";
import { CasFailed, KvStore, type KvLimits } from "./kv.js";
import { MemberTable, type MemberInit } from "./members.js";
import { NodeGroupCatalog, type DataNode, type NodeGroup } from "./node-groups.js";
import { RoutingCatalog, type GroupRouting } from "./routing.js";
import type { CommandFailure, CommandOk, CommandResult, ConfigRow, KeyValue, KvListResult, LeaseInfo, Member } from "./types.js";

export interface ClusterStateOptions {
  /**
   * The founding members (the bootstrap voters), which join through the
   * bootstrap snapshot rather than ConfChange entries. Every founding node must
   * pass the same list so their bootstrap snapshots are the same bytes.
   */
  members?: readonly MemberInit[];
}

const SNAPSHOT_FORMAT = "pgraft.cluster-state";
const SNAPSHOT_VERSION = 1;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function failure(e: ClusterError): CommandFailure {
  const f: CommandFailure = { ok: false, code: e.code, message: e.message };
  if (e instanceof CasFailed && e.current) f.current = e.current;
  return f;
}

export class ClusterState implements StateMachine {
  private applied = 0;
  private kv = new KvStore();
  private memberTable: MemberTable;
  /** config.set values in effect, by canonical name, canonical text. */
  private overrides = new Map<string, string>();
  /** The overrides as of the last config.save. */
  private savedOverrides = new Map<string, string>();
  /** The log index of the last config.set / config.reset of each setting (none: never changed at runtime). */
  private changedAt = new Map<string, number>();
  private effective: RuntimeSettings;
  private pgd = new NodeGroupCatalog();
  private routingTable = new RoutingCatalog();

  constructor(private readonly opts: ClusterStateOptions = {}) {
    this.memberTable = new MemberTable(opts.members);
    this.effective = resolveSettings(this.overrides);
  }

  // ---------------------------------------------------------------- apply

  /**
   * Apply one committed entry. Entries at or below appliedIndex are skipped
   * (ALREADY_APPLIED), which makes a replay of the log over a newer snapshot
   * harmless. Never throws for bad input; an exception here is a bug.
   */
  apply(entry: Entry): CommandResult {
    if (entry.index <= this.applied) {
      return { ok: false, code: "ALREADY_APPLIED", message: `entry ${entry.index} is at or below the applied index ${this.applied}; skipped` };
    }
    this.applied = entry.index;
    try {
      if (entry.type === EntryType.ConfChange) return this.applyConfChange(entry.data);
      if (entry.type !== EntryType.Normal) throw new ClusterError("INVALID", `unknown entry type ${String(entry.type)}`);
      if (entry.data.byteLength === 0) return this.ok();
      return this.execute(decodeCommand(entry.data));
    } catch (e) {
      if (e instanceof ClusterError) return failure(e);
      throw e;
    }
  }

  private ok(extra: Omit<CommandOk, "ok" | "revision"> = {}): CommandOk {
    return { ok: true, revision: this.kv.revision, ...extra };
  }

  private applyConfChange(data: Uint8Array): CommandResult {
    let cc;
    try {
      cc = decodeConfChange(data);
    } catch (e) {
      if (e instanceof RaftError) throw new ClusterError("INVALID", e.message);
      throw e;
    }
    return this.ok({ member: this.memberTable.applyConfChange(cc) });
  }

  private limits(): KvLimits {
    return { maxKeyBytes: this.effective.kvMaxKeyBytes, maxValueBytes: this.effective.kvMaxValueBytes };
  }

  private execute(cmd: Command): CommandResult {
    switch (cmd.op) {
      case "kv.put": {
        const r = this.kv.put(cmd.key, cmd.value, this.limits(), {
          ...(cmd.leaseId !== undefined ? { leaseId: cmd.leaseId } : {}),
          ...(cmd.ifModRevision !== undefined ? { ifModRevision: cmd.ifModRevision } : {}),
        });
        return this.ok(r.prev ? { prev: r.prev } : {});
      }
      case "kv.delete": {
        const r = this.kv.delete(cmd.key, cmd.ifModRevision !== undefined ? { ifModRevision: cmd.ifModRevision } : {});
        return this.ok({ deleted: r.deleted, ...(r.prev ? { prev: r.prev } : {}) });
      }
      case "kv.deletePrefix":
        return this.ok({ deleted: this.kv.deletePrefix(cmd.prefix).deleted });
      case "lease.grant":
        return this.ok({ lease: this.kv.grantLease(cmd.leaseId, cmd.ttlMs, cmd.nowMs) });
      case "lease.keepAlive":
        return this.ok({ lease: this.kv.keepAlive(cmd.leaseId, cmd.nowMs) });
      case "lease.revoke":
        return this.ok({ deleted: this.kv.revokeLease(cmd.leaseId).deleted });
      case "lease.expire": {
        const r = this.kv.expireLeases(cmd.leaseIds, cmd.nowMs);
        return this.ok({ deleted: r.deleted, expired: r.expired });
      }
      case "config.set": {
        const spec = getSetting(cmd.name);
        const next = new Map(this.overrides).set(spec.name, normalize(spec.name, cmd.value));
        this.setOverrides(next);
        this.changedAt.set(spec.name, this.applied);
        return this.ok({ setting: this.row(spec) });
      }
      case "config.reset": {
        const spec = getSetting(cmd.name);
        const next = new Map(this.overrides);
        next.delete(spec.name);
        this.setOverrides(next);
        this.changedAt.set(spec.name, this.applied);
        return this.ok({ setting: this.row(spec) });
      }
      case "config.save":
        this.savedOverrides = new Map(this.overrides);
        return this.ok();
      case "member.update":
        return this.ok({ member: this.memberTable.update(cmd) });
      case "noop":
        return this.ok();
      case "pgd.node.create":
        return this.ok({ dataNode: this.pgd.createNode({ name: cmd.name, dsn: cmd.dsn, kind: cmd.kind, dbname: cmd.dbname, raftMemberId: cmd.raftMemberId ?? 0 }) });
      case "pgd.group.create":
        return this.ok({ nodeGroup: this.pgd.createGroup({ name: cmd.name, parent: cmd.parent ?? "", type: cmd.type ?? "", creator: cmd.creator ?? "" }) });
      case "pgd.node.state":
        return this.ok({ dataNode: this.pgd.setState({ name: cmd.name, state: cmd.state, group: cmd.group ?? "" }) });
      case "pgd.node.interface":
        return this.ok({ dataNode: this.pgd.setInterface({ name: cmd.name, dsn: cmd.dsn }) });
      case "pgd.node.drop":
        return this.ok({ dataNode: this.pgd.dropNode({ name: cmd.name, force: cmd.force ?? false }) });
      case "pgd.group.drop": {
        const g = this.pgd.dropGroup({ name: cmd.name });
        this.routingTable.drop(g.name);
        return this.ok({ nodeGroup: g });
      }
      case "routing.set":
        return this.ok({
          routing: this.routingTable.set(
            { group: cmd.group, epoch: cmd.epoch, leader: cmd.leader, switchingTo: cmd.switchingTo, readers: cmd.readers, reason: cmd.reason, nowMs: cmd.nowMs },
            this.pgd,
          ),
        });
      case "routing.scope":
        return this.ok({ routing: this.routingTable.setScope({ group: cmd.group, scope: cmd.scope }, this.pgd) });
    }
  }

  /** Validate the whole set (throws INCOMPATIBLE_SETTINGS) before anything changes. */
  private setOverrides(next: Map<string, string>): void {
    validateCombination(next);
    const effective = resolveSettings(next);
    this.overrides = next;
    this.effective = effective;
  }

  // ---------------------------------------------------------------- reads

  get appliedIndex(): number {
    return this.applied;
  }

  /** The KV store's revision. */
  get revision(): number {
    return this.kv.revision;
  }

  kvGet(key: string): KeyValue | undefined {
    return this.kv.get(key);
  }

  /** Entries under `prefix` ("" = all) in UTF-8 byte order of their keys; limit 0 = no limit; none under `exclude`. */
  kvList(prefix: string, opts: { limit?: number; startAfter?: string; exclude?: string } = {}): KvListResult {
    return this.kv.list(prefix, opts);
  }

  leases(): LeaseInfo[] {
    return this.kv.leases();
  }

  lease(id: number): LeaseInfo | undefined {
    return this.kv.lease(id);
  }

  /** Leases due at `nowMs`: what the leader should put in a lease.expire command. */
  expiredLeases(nowMs: number): number[] {
    return this.kv.expiredLeases(nowMs);
  }

  /** Data nodes (seed 004), by sequence number. */
  dataNodes(): DataNode[] {
    return this.pgd.allNodes();
  }

  nodeGroups(): NodeGroup[] {
    return this.pgd.allGroups();
  }

  /** A data group's routing: write leader, read nodes, switchover, commit scope (src/cluster/routing.ts). */
  routing(group: string): GroupRouting {
    return this.routingTable.get(group);
  }

  /** The routing of every group that has one. */
  routings(): GroupRouting[] {
    return this.routingTable.all();
  }

  members(): Member[] {
    return this.memberTable.list();
  }

  member(id: number): Member | undefined {
    return this.memberTable.get(id);
  }

  /** The membership as the member list sees it (matches the Raft core's). */
  confState(): ConfState {
    return this.memberTable.confState();
  }

  /** Rows of pgraft_get_config(), by name. */
  config(): ConfigRow[] {
    return SETTINGS.map((s) => this.row(s));
  }

  /** The effective settings, typed (durations in ms). */
  settings(): RuntimeSettings {
    return { ...this.effective };
  }

  private row(spec: SettingSpec): ConfigRow {
    const override = this.overrides.get(spec.name);
    return {
      name: spec.name,
      value: override ?? spec.default,
      default: spec.default,
      overridden: override !== undefined,
      saved: this.savedOverrides.get(spec.name) === override,
      description: spec.description,
      type: spec.type,
      restartRequired: spec.restartRequired,
      modIndex: this.changedAt.get(spec.name) ?? 0,
    };
  }

  // ---------------------------------------------------------------- snapshots

  /** The whole state as bytes; equal states give equal bytes. */
  snapshot(): Uint8Array {
    const sortedPairs = (m: ReadonlyMap<string, string>): [string, string][] => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return encoder.encode(
      JSON.stringify({
        format: SNAPSHOT_FORMAT,
        v: SNAPSHOT_VERSION,
        appliedIndex: this.applied,
        kv: this.kv.dump(),
        // changedAt only when there is one, so a state without runtime changes gives the bytes it always did.
        config: {
          overrides: sortedPairs(this.overrides),
          saved: sortedPairs(this.savedOverrides),
          ...(this.changedAt.size ? { changedAt: [...this.changedAt].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) } : {}),
        },
        members: this.memberTable.dump(),
        nodeGroups: this.pgd.dump(),
        // Only once a group has routing, so a state without any gives the bytes it always did.
        ...(this.routingTable.all().length ? { routing: this.routingTable.dump() } : {}),
      }),
    );
  }

  /**
   * Replace the whole state with a snapshot's. Empty bytes mean the initial
   * state. Throws ClusterError(CORRUPT_SNAPSHOT) and keeps the current state
   * when the bytes do not decode to a consistent state.
   */
  restore(data: Uint8Array): void {
    if (data.byteLength === 0) {
      this.applied = 0;
      this.kv = new KvStore();
      this.memberTable = new MemberTable(this.opts.members);
      this.overrides = new Map();
      this.savedOverrides = new Map();
      this.changedAt = new Map();
      this.effective = resolveSettings(this.overrides);
      this.pgd = new NodeGroupCatalog();
      this.routingTable = new RoutingCatalog();
      return;
    }
    const bad = (why: string): ClusterError => new ClusterError("CORRUPT_SNAPSHOT", `snapshot: ${why}`);
    let d: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(strictDecoder.decode(data));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw bad("not an object");
      d = parsed as Record<string, unknown>;
    } catch (e) {
      if (e instanceof ClusterError) throw e;
      throw bad("not UTF-8 JSON");
    }
    if (d["format"] !== SNAPSHOT_FORMAT) throw bad(`unknown format ${JSON.stringify(d["format"])}`);
    if (d["v"] !== SNAPSHOT_VERSION) throw bad(`unsupported version ${JSON.stringify(d["v"])} (this node reads ${SNAPSHOT_VERSION})`);
    const applied = d["appliedIndex"];
    if (typeof applied !== "number" || !Number.isSafeInteger(applied) || applied < 0) throw bad("bad appliedIndex");
    const kv = KvStore.load(d["kv"]);
    const members = MemberTable.load(d["members"]);
    const pgd = NodeGroupCatalog.load(d["nodeGroups"]);
    const routing = RoutingCatalog.load(d["routing"]);
    const cfg = d["config"];
    if (typeof cfg !== "object" || cfg === null) throw bad("missing config");
    const overrides = loadOverrides((cfg as Record<string, unknown>)["overrides"], bad);
    const saved = loadOverrides((cfg as Record<string, unknown>)["saved"], bad);
    const changedAt = loadChangedAt((cfg as Record<string, unknown>)["changedAt"], bad);
    let effective: RuntimeSettings;
    try {
      effective = resolveSettings(overrides);
    } catch (e) {
      if (e instanceof ClusterError) throw bad(e.message);
      throw e;
    }
    this.applied = applied;
    this.kv = kv;
    this.memberTable = members;
    this.pgd = pgd;
    this.routingTable = routing;
    this.overrides = overrides;
    this.savedOverrides = saved;
    this.changedAt = changedAt;
    this.effective = effective;
  }
}

/** [name, log index] pairs by name; absent in snapshots of older versions (and of states never configured). */
function loadChangedAt(v: unknown, bad: (why: string) => ClusterError): Map<string, number> {
  const out = new Map<string, number>();
  if (v === undefined) return out;
  if (!Array.isArray(v)) throw bad("config changedAt must be an array");
  let last = "";
  for (const pair of v as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "number" || !Number.isSafeInteger(pair[1]) || pair[1] < 1) {
      throw bad("malformed config changedAt");
    }
    const [name, index] = pair as [string, number];
    if (name <= last) throw bad("config changedAt out of order");
    try {
      if (getSetting(name).name !== name) throw bad(`config changedAt names ${name}`);
    } catch (e) {
      if (e instanceof ClusterError) throw bad(e.message);
      throw e;
    }
    out.set(name, index);
    last = name;
  }
  return out;
}

function loadOverrides(v: unknown, bad: (why: string) => ClusterError): Map<string, string> {
  if (!Array.isArray(v)) throw bad("config overrides must be an array");
  const out = new Map<string, string>();
  let last = "";
  for (const pair of v as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") throw bad("malformed config override");
    const [name, value] = pair as [string, string];
    if (name <= last) throw bad("config overrides out of order");
    let canonical: string;
    try {
      canonical = normalize(name, value);
    } catch (e) {
      if (e instanceof ClusterError) throw bad(e.message);
      throw e;
    }
    if (getSetting(name).name !== name || canonical !== value) throw bad(`config override ${name}=${value} is not canonical`);
    out.set(name, value);
    last = name;
  }
  return out;
}
