// The commands of the replicated state machine and their encoding in the Raft
// log: versioned JSON, {"v":1,"op":"kv.put",...}, fields in a fixed order.
// Decoding is strict (unknown op, unknown field, wrong type → ClusterError) and
// deterministic, so every node reaches the same verdict on the same bytes.
// Semantic checks that depend on the state (key length limit, JSON-ness of a
// value, a lease that must exist) happen on apply, in state.ts.
import { ClusterError } from "./errors.js";

export const COMMAND_VERSION = 1;

export interface KvPutCommand {
  op: "kv.put";
  key: string;
  /** JSON text. */
  value: string;
  /** Attach the key to this lease; without it the key is detached from any lease. */
  leaseId?: number;
  /** Compare-and-set: 0 = the key must not exist; N = its modRevision must be N. */
  ifModRevision?: number;
}

export interface KvDeleteCommand {
  op: "kv.delete";
  key: string;
  ifModRevision?: number;
}

export interface KvDeletePrefixCommand {
  op: "kv.deletePrefix";
  /** Non-empty: deleting every key needs no shortcut. */
  prefix: string;
}

export interface LeaseGrantCommand {
  op: "lease.grant";
  leaseId: number;
  ttlMs: number;
  /** The leader's clock when it proposed the command. */
  nowMs: number;
}

export interface LeaseKeepAliveCommand {
  op: "lease.keepAlive";
  leaseId: number;
  nowMs: number;
}

export interface LeaseRevokeCommand {
  op: "lease.revoke";
  leaseId: number;
}

export interface LeaseExpireCommand {
  op: "lease.expire";
  /** Leases the leader believes expired; each is re-checked against nowMs on apply. */
  leaseIds: number[];
  nowMs: number;
}

export interface ConfigSetCommand {
  op: "config.set";
  name: string;
  /** Canonical text from the registry's normalize(); re-validated on apply. */
  value: string;
}

export interface ConfigResetCommand {
  op: "config.reset";
  name: string;
}

export interface ConfigSaveCommand {
  op: "config.save";
}

export interface MemberUpdateCommand {
  op: "member.update";
  id: number;
  name?: string;
  raftAddress?: string;
  /** "" clears it. */
  httpAddress?: string;
  /** "" clears it. Must not carry a password (it is replicated to every node). */
  postgresDsn?: string;
}

export interface NoopCommand {
  op: "noop";
}

// ---- node groups (seed 004): see node-groups.ts for the rules applied

export interface PgdNodeCreateCommand {
  op: "pgd.node.create";
  name: string;
  dsn: string;
  kind: string;
  dbname: string;
  /** The Raft member beside this database. */
  raftMemberId?: number;
}

export interface PgdGroupCreateCommand {
  op: "pgd.group.create";
  name: string;
  parent?: string;
  type?: string;
  /** The node creating the group becomes its first active member. */
  creator?: string;
}

export interface PgdNodeStateCommand {
  op: "pgd.node.state";
  name: string;
  state: string;
  /** The group a node joins (with state JOIN_START). */
  group?: string;
}

export interface PgdNodeInterfaceCommand {
  op: "pgd.node.interface";
  name: string;
  dsn: string;
}

export interface PgdNodeDropCommand {
  op: "pgd.node.drop";
  name: string;
  force?: boolean;
}

export interface PgdGroupDropCommand {
  op: "pgd.group.drop";
  name: string;
}

// ---- routing of a data group (src/cluster/routing.ts)

export interface RoutingSetCommand {
  op: "routing.set";
  group: string;
  /** Compare-and-set: the group's routing epoch the decision was taken on. */
  epoch: number;
  /** The write leader ("" = none). */
  leader: string;
  /** A switchover in progress to this node ("" = none). */
  switchingTo: string;
  /** Healthy nodes for reads, least lag first. */
  readers: string[];
  reason: string;
  /** The proposer's clock. */
  nowMs: number;
}

export interface RoutingScopeCommand {
  op: "routing.scope";
  group: string;
  scope: string;
}

export type Command =
  | KvPutCommand
  | KvDeleteCommand
  | KvDeletePrefixCommand
  | LeaseGrantCommand
  | LeaseKeepAliveCommand
  | LeaseRevokeCommand
  | LeaseExpireCommand
  | ConfigSetCommand
  | ConfigResetCommand
  | ConfigSaveCommand
  | MemberUpdateCommand
  | NoopCommand
  | PgdNodeCreateCommand
  | PgdGroupCreateCommand
  | PgdNodeStateCommand
  | PgdNodeInterfaceCommand
  | PgdNodeDropCommand
  | PgdGroupDropCommand
  | RoutingSetCommand
  | RoutingScopeCommand;

export type CommandOp = Command["op"];

/** Longest lease TTL: ten years. */
export const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
/** Latest leader timestamp accepted (the largest JS Date), so nowMs + ttlMs stays an exact integer. */
export const MAX_TIME_MS = 8_640_000_000_000_000;
/** Most leases one lease.expire may name. */
export const MAX_EXPIRE_IDS = 10_000;

type FieldKind = "string" | "revision" | "leaseId" | "nodeId" | "ttl" | "time" | "leaseIds" | "bool" | "names";
/** Most names one routing.set may list. */
export const MAX_NAMES = 1_000;
interface FieldSpec {
  kind: FieldKind;
  optional?: true;
}

// Field order here is the order on the wire.
const SCHEMA: { readonly [K in CommandOp]: Readonly<Record<Exclude<keyof Extract<Command, { op: K }>, "op">, FieldSpec>> } = {
  "kv.put": { key: { kind: "string" }, value: { kind: "string" }, leaseId: { kind: "leaseId", optional: true }, ifModRevision: { kind: "revision", optional: true } },
  "kv.delete": { key: { kind: "string" }, ifModRevision: { kind: "revision", optional: true } },
  "kv.deletePrefix": { prefix: { kind: "string" } },
  "lease.grant": { leaseId: { kind: "leaseId" }, ttlMs: { kind: "ttl" }, nowMs: { kind: "time" } },
  "lease.keepAlive": { leaseId: { kind: "leaseId" }, nowMs: { kind: "time" } },
  "lease.revoke": { leaseId: { kind: "leaseId" } },
  "lease.expire": { leaseIds: { kind: "leaseIds" }, nowMs: { kind: "time" } },
  "config.set": { name: { kind: "string" }, value: { kind: "string" } },
  "config.reset": { name: { kind: "string" } },
  "config.save": {},
  "member.update": {
    id: { kind: "nodeId" },
    name: { kind: "string", optional: true },
    raftAddress: { kind: "string", optional: true },
    httpAddress: { kind: "string", optional: true },
    postgresDsn: { kind: "string", optional: true },
  },
  noop: {},
  "pgd.node.create": { name: { kind: "string" }, dsn: { kind: "string" }, kind: { kind: "string" }, dbname: { kind: "string" }, raftMemberId: { kind: "nodeId", optional: true } },
  "pgd.group.create": { name: { kind: "string" }, parent: { kind: "string", optional: true }, type: { kind: "string", optional: true }, creator: { kind: "string", optional: true } },
  "pgd.node.state": { name: { kind: "string" }, state: { kind: "string" }, group: { kind: "string", optional: true } },
  "pgd.node.interface": { name: { kind: "string" }, dsn: { kind: "string" } },
  "pgd.node.drop": { name: { kind: "string" }, force: { kind: "bool", optional: true } },
  "pgd.group.drop": { name: { kind: "string" } },
  "routing.set": {
    group: { kind: "string" },
    epoch: { kind: "revision" },
    leader: { kind: "string" },
    switchingTo: { kind: "string" },
    readers: { kind: "names" },
    reason: { kind: "string" },
    nowMs: { kind: "time" },
  },
  "routing.scope": { group: { kind: "string" }, scope: { kind: "string" } },
};

export const COMMAND_OPS: readonly CommandOp[] = Object.keys(SCHEMA) as CommandOp[];

const isInt = (v: unknown, lo: number, hi: number): boolean => typeof v === "number" && Number.isSafeInteger(v) && v >= lo && v <= hi;

function checkField(op: string, name: string, kind: FieldKind, v: unknown): void {
  const bad = (what: string): ClusterError => new ClusterError("INVALID", `${op}: field ${name} must be ${what}, got ${describe(v)}`);
  switch (kind) {
    case "string":
      if (typeof v !== "string") throw bad("a string");
      return;
    case "revision":
      if (!isInt(v, 0, Number.MAX_SAFE_INTEGER)) throw bad("a non-negative integer");
      return;
    case "leaseId":
      if (!isInt(v, 1, Number.MAX_SAFE_INTEGER)) throw bad("a positive integer");
      return;
    case "nodeId":
      if (!isInt(v, 1, 0xffffffff)) throw bad("an integer in 1..4294967295");
      return;
    case "bool":
      if (typeof v !== "boolean") throw bad("a boolean");
      return;
    case "ttl":
      if (!isInt(v, 1, MAX_TTL_MS)) throw bad(`an integer in 1..${MAX_TTL_MS} (ms)`);
      return;
    case "time":
      if (!isInt(v, 0, MAX_TIME_MS)) throw bad(`an integer in 0..${MAX_TIME_MS} (ms since the epoch)`);
      return;
    case "names":
      if (!Array.isArray(v) || v.length > MAX_NAMES || !v.every((x) => typeof x === "string")) throw bad(`an array of at most ${MAX_NAMES} strings`);
      return;
    case "leaseIds":
      if (!Array.isArray(v) || v.length > MAX_EXPIRE_IDS || !v.every((x) => isInt(x, 1, Number.MAX_SAFE_INTEGER))) {
        throw bad(`an array of at most ${MAX_EXPIRE_IDS} positive integers`);
      }
      return;
  }
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "an array";
  if (v === null) return "null";
  if (typeof v === "object") return "an object";
  const s = JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Check a command object's shape and return a fresh copy with fields in wire
 * order (so encode(c) is the same bytes for equal commands). `withVersion`
 * expects and checks the "v" field of an encoded command.
 */
function checkShape(obj: unknown, withVersion: boolean): { v?: number } & Command {
  if (!isRecord(obj)) throw new ClusterError("INVALID", `a command must be a JSON object, got ${describe(obj)}`);
  if (withVersion) {
    const v = obj["v"];
    if (!isInt(v, 1, Number.MAX_SAFE_INTEGER)) throw new ClusterError("INVALID", `command version "v" must be a positive integer, got ${describe(v)}`);
    if (v !== COMMAND_VERSION) {
      throw new ClusterError("UNSUPPORTED_VERSION", `command version ${String(v)} is newer than this node understands (${COMMAND_VERSION}); upgrade this node`);
    }
  }
  const op = obj["op"];
  if (typeof op !== "string" || !Object.hasOwn(SCHEMA, op)) {
    throw new ClusterError("INVALID", `unknown command op ${describe(op)}; expected one of ${COMMAND_OPS.join(", ")}`);
  }
  const fields = SCHEMA[op as CommandOp] as Readonly<Record<string, FieldSpec>>;
  for (const k of Object.keys(obj)) {
    if (k !== "op" && !(withVersion && k === "v") && !Object.hasOwn(fields, k)) {
      throw new ClusterError("INVALID", `${op}: unknown field ${JSON.stringify(k)}`);
    }
  }
  const out: Record<string, unknown> = withVersion ? { v: COMMAND_VERSION, op } : { op };
  for (const [name, spec] of Object.entries(fields)) {
    const v = Object.hasOwn(obj, name) ? obj[name] : undefined;
    if (v === undefined) {
      if (spec.optional) continue;
      throw new ClusterError("INVALID", `${op}: missing field ${name}`);
    }
    checkField(op, name, spec.kind, v);
    out[name] = Array.isArray(v) ? [...(v as unknown[])] : v;
  }
  return out as unknown as { v?: number } & Command;
}

/** Check a command built in code (e.g. from a shim call) without encoding it. Throws ClusterError. */
export function validateCommand(cmd: unknown): Command {
  return checkShape(cmd, false);
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The log bytes of `cmd`. Throws ClusterError(INVALID) for a malformed command. */
export function encodeCommand(cmd: Command): Uint8Array {
  const body = checkShape(cmd, false);
  return encoder.encode(JSON.stringify({ v: COMMAND_VERSION, ...body }));
}

/** Decode log bytes; throws ClusterError (INVALID / UNSUPPORTED_VERSION), never anything else. */
export function decodeCommand(data: Uint8Array): Command {
  let text: string;
  try {
    text = strictDecoder.decode(data);
  } catch {
    throw new ClusterError("INVALID", "command is not valid UTF-8");
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new ClusterError("INVALID", "command is not valid JSON");
  }
  const { v: _v, ...cmd } = checkShape(obj, true);
  return cmd;
}

// ------------------------------------------------------------------ ConfChange context

/** What a ConfChange entry's `context` says about the member it adds. */
export interface MemberContext {
  name: string;
  raftAddress: string;
  httpAddress?: string;
}

function checkMemberContext(obj: unknown): MemberContext {
  if (!isRecord(obj)) throw new ClusterError("INVALID", `member context must be a JSON object, got ${describe(obj)}`);
  for (const k of Object.keys(obj)) {
    if (!["v", "name", "raftAddress", "httpAddress"].includes(k)) throw new ClusterError("INVALID", `member context: unknown field ${JSON.stringify(k)}`);
  }
  const { name, raftAddress, httpAddress } = obj;
  if (typeof name !== "string" || name === "") throw new ClusterError("INVALID", `member context: name must be a non-empty string, got ${describe(name)}`);
  if (typeof raftAddress !== "string") throw new ClusterError("INVALID", `member context: raftAddress must be a string, got ${describe(raftAddress)}`);
  if (httpAddress !== undefined && typeof httpAddress !== "string") {
    throw new ClusterError("INVALID", `member context: httpAddress must be a string, got ${describe(httpAddress)}`);
  }
  return httpAddress === undefined ? { name, raftAddress } : { name, raftAddress, httpAddress };
}

export function encodeMemberContext(ctx: MemberContext): Uint8Array {
  const c = checkMemberContext(ctx);
  return encoder.encode(JSON.stringify({ v: 1, ...c }));
}

/** Throws ClusterError (INVALID / UNSUPPORTED_VERSION) for bytes that are not a member context. */
export function decodeMemberContext(data: Uint8Array): MemberContext {
  let obj: unknown;
  try {
    obj = JSON.parse(strictDecoder.decode(data));
  } catch {
    throw new ClusterError("INVALID", "member context is not UTF-8 JSON");
  }
  if (!isRecord(obj) || !isInt(obj["v"], 1, Number.MAX_SAFE_INTEGER)) throw new ClusterError("INVALID", "member context has no version");
  if (obj["v"] !== 1) throw new ClusterError("UNSUPPORTED_VERSION", `member context version ${String(obj["v"])} is newer than this node understands (1)`);
  return checkMemberContext(obj);
}
