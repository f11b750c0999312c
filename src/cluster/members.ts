// The member list: who is in the cluster (from ConfChange entries, mirroring
// the Raft core's verdict on each change) and how to reach them (from the
// change's context and member.update commands).
import { applyToConfState, type ConfChange } from "../consensus/confchange.js";
import { RaftError } from "../consensus/errors.js";
import type { ConfState } from "../consensus/types.js";
import { decodeMemberContext, type MemberContext, type MemberUpdateCommand } from "./commands.js";
import { ClusterError } from "./errors.js";
import { utf8Length } from "./kv.js";
import type { Member, MemberRole } from "./types.js";

/** A founding member, known before any ConfChange (from --initial-cluster). */
export interface MemberInit {
  id: number;
  name?: string;
  raftAddress?: string;
  httpAddress?: string;
  postgresDsn?: string;
  role?: MemberRole;
}

const MAX_TEXT_BYTES = 255;
const MAX_DSN_BYTES = 4096;

const defaultName = (id: number): string => `node${id}`;

function checkText(field: string, v: string, allowEmpty: boolean, max = MAX_TEXT_BYTES): void {
  if (!allowEmpty && v === "") throw new ClusterError("INVALID", `${field} must not be empty`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(v)) throw new ClusterError("INVALID", `${field} must not contain control characters`);
  if (utf8Length(v) > max) throw new ClusterError("INVALID", `${field} is longer than ${max} bytes`);
}

/**
 * A DSN is replicated to every node and kept in every snapshot, so it must not
 * carry a password: use a password file or a client certificate instead.
 */
export function checkDsn(dsn: string): void {
  checkText("postgresDsn", dsn, true, MAX_DSN_BYTES);
  if (/^postgres(ql)?:\/\//i.test(dsn)) {
    let url: URL;
    try {
      url = new URL(dsn);
    } catch {
      throw new ClusterError("INVALID", "postgresDsn is not a valid connection URI");
    }
    if (url.password !== "" || url.searchParams.has("password")) {
      throw new ClusterError("INVALID", "postgresDsn must not contain a password (it is replicated to every node); use a password file or a client certificate");
    }
  } else if (/(^|\s)password\s*=/i.test(dsn)) {
    throw new ClusterError("INVALID", "postgresDsn must not contain a password (it is replicated to every node); use a password file or a client certificate");
  }
}

const copy = (m: Member): Member => ({ ...m });

export class MemberTable {
  private readonly byId = new Map<number, Member>();

  constructor(init: readonly MemberInit[] = []) {
    for (const m of init) {
      if (!Number.isInteger(m.id) || m.id < 1 || m.id > 0xffffffff) throw new ClusterError("INVALID", `member id must be in 1..4294967295, got ${m.id}`);
      if (this.byId.has(m.id)) throw new ClusterError("INVALID", `member ${m.id} listed twice`);
      const member: Member = { id: m.id, name: m.name ?? defaultName(m.id), raftAddress: m.raftAddress ?? "", role: m.role ?? "voter" };
      checkText("name", member.name, false);
      checkText("raftAddress", member.raftAddress, true);
      if (m.httpAddress) {
        checkText("httpAddress", m.httpAddress, true);
        member.httpAddress = m.httpAddress;
      }
      if (m.postgresDsn) {
        checkDsn(m.postgresDsn);
        member.postgresDsn = m.postgresDsn;
      }
      this.byId.set(m.id, member);
    }
  }

  list(): Member[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id).map(copy);
  }

  get(id: number): Member | undefined {
    const m = this.byId.get(id);
    return m && copy(m);
  }

  confState(): ConfState {
    const all = [...this.byId.values()].sort((a, b) => a.id - b.id);
    return { voters: all.filter((m) => m.role === "voter").map((m) => m.id), learners: all.filter((m) => m.role === "learner").map((m) => m.id) };
  }

  /**
   * Apply a membership change exactly when the Raft core applies it (the same
   * validation, applyToConfState, on the same membership), so the list always
   * matches the core's configuration. Returns the member after the change (or
   * as it was, for a removal). Throws INVALID for a change the core ignores.
   */
  applyConfChange(cc: ConfChange): Member {
    let next: ConfState;
    try {
      next = applyToConfState(this.confState(), cc);
    } catch (e) {
      if (e instanceof RaftError) throw new ClusterError("INVALID", `conf change ${cc.type} ${cc.nodeId} ignored: ${e.message}`);
      throw e;
    }
    const cur = this.byId.get(cc.nodeId);
    if (cc.type === "removeNode") {
      this.byId.delete(cc.nodeId);
      return copy(cur!);
    }
    // A context that does not decode cannot stop a membership change the core
    // has made; the member then keeps what it had (or a default name).
    let ctx: MemberContext | undefined;
    try {
      ctx = cc.context && cc.context.byteLength > 0 ? decodeMemberContext(cc.context) : undefined;
      if (ctx) {
        checkText("name", ctx.name, false);
        checkText("raftAddress", ctx.raftAddress, true);
        if (ctx.httpAddress !== undefined) checkText("httpAddress", ctx.httpAddress, true);
      }
    } catch {
      ctx = undefined;
    }
    const m: Member = cur ?? { id: cc.nodeId, name: defaultName(cc.nodeId), raftAddress: "", role: "voter" };
    m.role = next.voters.includes(cc.nodeId) ? "voter" : "learner";
    if (ctx) {
      m.name = ctx.name;
      m.raftAddress = ctx.raftAddress;
      if (ctx.httpAddress) m.httpAddress = ctx.httpAddress;
    }
    this.byId.set(m.id, m);
    return copy(m);
  }

  /** Throws NOT_FOUND, INVALID or ALREADY_EXISTS (a name another member has) with nothing changed. */
  update(cmd: MemberUpdateCommand): Member {
    const cur = this.byId.get(cmd.id);
    if (!cur) throw new ClusterError("NOT_FOUND", `member ${cmd.id} not found`);
    if (cmd.name !== undefined) {
      checkText("name", cmd.name, false);
      for (const m of this.byId.values()) {
        if (m.id !== cmd.id && m.name === cmd.name) throw new ClusterError("ALREADY_EXISTS", `member ${m.id} is already named ${JSON.stringify(cmd.name)}`);
      }
    }
    if (cmd.raftAddress !== undefined) checkText("raftAddress", cmd.raftAddress, false);
    if (cmd.httpAddress !== undefined) checkText("httpAddress", cmd.httpAddress, true);
    if (cmd.postgresDsn !== undefined) checkDsn(cmd.postgresDsn);
    const m = cur;
    if (cmd.name !== undefined) m.name = cmd.name;
    if (cmd.raftAddress !== undefined) m.raftAddress = cmd.raftAddress;
    if (cmd.httpAddress !== undefined) {
      if (cmd.httpAddress === "") delete m.httpAddress;
      else m.httpAddress = cmd.httpAddress;
    }
    if (cmd.postgresDsn !== undefined) {
      if (cmd.postgresDsn === "") delete m.postgresDsn;
      else m.postgresDsn = cmd.postgresDsn;
    }
    return copy(m);
  }

  /** Plain, deterministic form (by id, fields in a fixed order). */
  dump(): Member[] {
    return this.list().map((m) => ({
      id: m.id,
      name: m.name,
      raftAddress: m.raftAddress,
      ...(m.httpAddress !== undefined ? { httpAddress: m.httpAddress } : {}),
      ...(m.postgresDsn !== undefined ? { postgresDsn: m.postgresDsn } : {}),
      role: m.role,
    }));
  }

  static load(d: unknown): MemberTable {
    const bad = (why: string): ClusterError => new ClusterError("CORRUPT_SNAPSHOT", `snapshot members: ${why}`);
    if (!Array.isArray(d)) throw bad("not an array");
    const t = new MemberTable();
    let last = 0;
    for (const row of d as unknown[]) {
      if (typeof row !== "object" || row === null) throw bad("malformed member");
      const { id, name, raftAddress, httpAddress, postgresDsn, role, ...rest } = row as Record<string, unknown>;
      if (Object.keys(rest).length) throw bad(`unknown fields ${Object.keys(rest).join(", ")}`);
      if (typeof id !== "number" || !Number.isInteger(id) || id <= last || id > 0xffffffff) throw bad("bad or unordered id");
      if (typeof name !== "string" || name === "" || typeof raftAddress !== "string") throw bad(`member ${id}: bad name or raftAddress`);
      if ((httpAddress !== undefined && typeof httpAddress !== "string") || (postgresDsn !== undefined && typeof postgresDsn !== "string")) {
        throw bad(`member ${id}: bad httpAddress or postgresDsn`);
      }
      if (role !== "voter" && role !== "learner") throw bad(`member ${id}: bad role`);
      const m: Member = { id, name, raftAddress, role };
      if (httpAddress !== undefined) m.httpAddress = httpAddress;
      if (postgresDsn !== undefined) m.postgresDsn = postgresDsn;
      t.byId.set(id, m);
      last = id;
    }
    return t;
  }
}
