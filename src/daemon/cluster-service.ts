// The sidecar's client API (proto/pgraft/v1/client.proto, service Cluster).
// Writes go through the leader: a follower forwards them once (never twice, so
// two nodes that disagree about the leader cannot bounce a request forever).
// Reads are linearizable (ReadIndex) unless the caller asks for `serializable`.
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { ConfChange } from "../consensus/confchange.js";
import type { RaftNode } from "../consensus/driver.js";
import { NotLeaderError } from "../consensus/errors.js";
import { majority } from "../consensus/quorum.js";
import { Role, type NodeId } from "../consensus/types.js";
import { encodeCommand, encodeMemberContext, validateCommand, type Command } from "../cluster/commands.js";
import { checkChangeable, getSetting, normalize } from "../cluster/config-registry.js";
import { ClusterError } from "../cluster/errors.js";
import type { GroupRouting } from "../cluster/routing.js";
import { TRANSFER_METHODS, type SwitchoverRequest, type TransferMethod } from "../routing/switchover.js";
import { INTERFACE_DSN_PASSWORD, INTERFACE_DSN_PASSWORD_HINT } from "../cluster/node-groups.js";
import { dsnHasPassword } from "../postgres/dsn.js";
import type { ClusterState } from "../cluster/state.js";
import type { CommandOk, CommandResult, ConfigRow, KeyValue } from "../cluster/types.js";
import * as pb from "../gen/pgraft/v1/client_pb.js";
import { statusError, type ClientOf, type HandlersOf } from "../transport/grpc-service.js";
import type { PostgresHealth } from "../postgres/monitor.js";
import { postgresHealthMessage } from "./postgres-status.js";
import { effectiveTiming } from "./control-loop.js";
import { certainlyNotApplied, invalidArgument, toServiceError } from "./grpc-errors.js";
import { handOverTarget } from "./hand-over.js";
import { autoPromoteKey, INTERNAL_HEADER, INTERNAL_PREFIX, isInternalCall, isInternalKey, joinKeyOf, partPrefixOf, reservedKeyError } from "./internal-keys.js";

export const FORWARDED_HEADER = "pgraft-forwarded";
/** How many times a write whose proposal was dropped is sent (see onLeader). */
const RESEND_ATTEMPTS = 4;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** KV keys under this prefix belong to pgraft itself: see internal-keys.ts. */
export { INTERNAL_PREFIX, autoPromoteKey };

export interface ClusterServiceDeps {
  clusterId: string;
  selfId: NodeId;
  selfName: string;
  version: string;
  node: RaftNode;
  state: ClusterState;
  /** A client for the current leader's Cluster service (undefined when unknown or self). */
  leaderClient(): ClientOf<typeof pb.Cluster> | undefined;
  /** Milliseconds since each peer last answered, as the leader sees it. */
  lastContactMs(): Map<NodeId, number>;
  requestTimeoutMs: number;
  /** Raft messages this node has sent and received (for Status). */
  messagesProcessed?: () => number;
  /** This node's heartbeat and election timeout from its flags (ConfigSet checks a timing change against them). */
  flagTiming?: { heartbeatMs: number; electionMs: number };
  /** This node's PostgreSQL as its last probe found it (Status); absent: none configured. */
  postgres?: () => PostgresHealth;
  /** Run a switchover of a group's write leader from this node (src/routing/switchover.ts). */
  switchover?: (req: SwitchoverRequest) => Promise<string>;
}

/** A group's routing as the wire carries it. */
export function routingMessage(r: GroupRouting): MessageInitShape<typeof pb.GroupRoutingSchema> {
  return {
    group: r.group,
    writeLeader: r.leader,
    previousWriteLeader: r.previous,
    readNodes: r.readers,
    commitScope: r.commitScope,
    switchoverTarget: r.switchingTo,
    changedUnixMs: BigInt(r.changedAtMs),
    reason: r.reason,
  };
}

type Cluster = ClientOf<typeof pb.Cluster>;

export function clusterServiceHandlers(d: ClusterServiceDeps): HandlersOf<typeof pb.Cluster> {
  const isLeader = (): boolean => d.node.status().role === Role.Leader;

  const header = (): MessageInitShape<typeof pb.ResponseHeaderSchema> => {
    const st = d.node.status();
    return {
      clusterId: d.clusterId,
      memberId: d.selfId,
      leaderId: st.leader,
      raftTerm: BigInt(st.term),
      revision: BigInt(d.state.revision),
      appliedIndex: BigInt(st.applied),
    };
  };

  /** A unary handler: checks the cluster id, runs `fn`, maps errors to statuses. */
  function unary<I extends DescMessage, O extends DescMessage>(
    _in: I,
    out: O,
    fn: (req: MessageShape<I>, call: grpc.ServerUnaryCall<MessageShape<I>, MessageShape<O>>) => Promise<MessageInitShape<O>>,
  ): grpc.handleUnaryCall<MessageShape<I>, MessageShape<O>> {
    return (call, callback) => {
      const clusterId = (call.request as { clusterId?: unknown }).clusterId;
      if (clusterId !== d.clusterId) {
        callback(statusError(grpc.status.FAILED_PRECONDITION, `cluster id mismatch: expected ${d.clusterId}, got ${typeof clusterId === "string" && clusterId ? clusterId : "(empty)"}`));
        return;
      }
      // Through a promise so a synchronous throw is answered like a rejection.
      Promise.resolve()
        .then(() => fn(call.request, call))
        .then(
        (res) => callback(null, create(out, res)),
        (e: unknown) => callback(toServiceError(e)),
      );
    };
  }

  /**
   * Run on the leader: here if we are it, else forwarded once to it. A write
   * whose proposal was dropped — a new leader replaced it, or leadership was
   * being handed over — certainly had no effect: the node the client called
   * sends it again (to whoever leads by then) while the request's time lasts,
   * as etcd's client does, instead of failing the caller for a leader change.
   */
  async function onLeader<O extends DescMessage>(
    out: O,
    call: grpc.ServerUnaryCall<unknown, unknown>,
    here: () => Promise<MessageInitShape<O>>,
    forward: (c: Cluster, md: grpc.Metadata) => Promise<MessageInitShape<O>>,
  ): Promise<MessageInitShape<O>> {
    const deadline = Date.now() + d.requestTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await onLeaderOnce(out, call, here, forward);
      } catch (e) {
        const forwarded = call.metadata.get(FORWARDED_HEADER).length > 0;
        if (forwarded || attempt >= RESEND_ATTEMPTS || !certainlyNotApplied(e)) throw e;
        // Wait for a leader (the old one may still be stepping down), a little longer each time.
        const until = Math.min(deadline, Date.now() + 50 * attempt);
        while (Date.now() < until || (d.node.status().leader === 0 && Date.now() < deadline)) await sleep(10);
        if (Date.now() >= deadline) throw e;
      }
    }
  }

  async function onLeaderOnce<O extends DescMessage>(
    _out: O,
    call: grpc.ServerUnaryCall<unknown, unknown>,
    here: () => Promise<MessageInitShape<O>>,
    forward: (c: Cluster, md: grpc.Metadata) => Promise<MessageInitShape<O>>,
  ): Promise<MessageInitShape<O>> {
    if (isLeader()) return here();
    const leader = d.node.status().leader;
    if (call.metadata.get(FORWARDED_HEADER).length > 0 || leader === 0) throw new NotLeaderError(leader);
    const client = d.leaderClient();
    if (!client) throw new NotLeaderError(leader);
    const md = new grpc.Metadata();
    md.set(FORWARDED_HEADER, String(d.selfId));
    if (isInternalCall(call.metadata)) md.set(INTERNAL_HEADER, "1");
    return forward(client, md);
  }

  /** A user's call may not touch pgraft's own keys (internal-keys.ts). */
  const guardKey = (key: string, call: { metadata: grpc.Metadata }): void => {
    if (isInternalKey(key) && !isInternalCall(call.metadata)) throw reservedKeyError(`key ${JSON.stringify(key)}`);
  };

  /** Delete pgraft's own keys about something just removed (the control loop sweeps whatever this misses). */
  async function dropInternalKeys(keys: string[], prefixes: string[] = []): Promise<void> {
    try {
      for (const key of keys) if (d.state.kvGet(key)) await propose({ op: "kv.delete", key });
      for (const prefix of prefixes) if (d.state.kvList(prefix, { limit: 1 }).count > 0) await propose({ op: "kv.deletePrefix", prefix });
    } catch {
      // The removal itself succeeded; the leader's control loop deletes what is left.
    }
  }

  const opts = (md: grpc.Metadata) => ({ metadata: md, timeoutMs: d.requestTimeoutMs });

  async function propose(cmd: Command): Promise<CommandResult> {
    return (await d.node.propose(encodeCommand(cmd))) as CommandResult;
  }

  function okOrThrow(r: CommandResult): CommandOk {
    if (!r.ok) throw new ClusterError(r.code, r.message);
    return r;
  }

  const kvOut = (kv: KeyValue): MessageInitShape<typeof pb.KeyValueSchema> => ({
    key: kv.key,
    value: kv.value,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    lease: BigInt(kv.lease),
  });

  const members = (): MessageInitShape<typeof pb.MemberSchema>[] => {
    const st = d.node.status();
    const contact = d.lastContactMs();
    const electionMs = d.flagTiming ? effectiveTiming(d.state, d.flagTiming).electionMs : 1_000;
    return d.state.members().map((m) => {
      const p = st.progress.get(m.id);
      const last = m.id === d.selfId ? 0 : contact.get(m.id);
      return {
        id: m.id,
        name: m.name,
        raftAddress: m.raftAddress,
        role: m.role === "voter" ? pb.MemberRole.VOTER : pb.MemberRole.LEARNER,
        isLeader: st.leader === m.id,
        matchIndex: BigInt(p?.match ?? 0),
        lagEntries: BigInt(p ? Math.max(0, st.lastIndex - p.match) : 0),
        // Not recentActive: check-quorum resets it for every follower once per election timeout.
        reachable: m.id === d.selfId || (last !== undefined && last <= electionMs),
        lastHeartbeatMs: BigInt(p ? (last ?? -1) : -1),
        replicationLagBytes: BigInt(p && m.id !== d.selfId ? d.node.logBytesAfter(p.match) : 0),
        progressState: p && m.id !== d.selfId ? p.state : "",
      };
    });
  };

  async function confChange(cc: ConfChange): Promise<void> {
    await d.node.proposeConfChange(cc, { timeoutMs: d.requestTimeoutMs });
  }

  const configEntry = (r: ConfigRow): MessageInitShape<typeof pb.ConfigEntrySchema> => ({
    name: r.name,
    value: r.value,
    defaultValue: r.default,
    source: r.saved && r.overridden ? pb.ConfigSource.SAVED : r.overridden ? pb.ConfigSource.RUNTIME : pb.ConfigSource.DEFAULT,
    description: r.description,
    modRevision: BigInt(r.modIndex),
  });

  const checkJson = (value: string): void => {
    try {
      JSON.parse(value);
    } catch {
      throw invalidArgument(`value is not valid JSON: ${value.length > 80 ? value.slice(0, 80) + "…" : value}`);
    }
  };

  return {
    status: unary(pb.StatusRequestSchema, pb.StatusResponseSchema, () => {
      const st = d.node.status();
      const voters = st.conf.voters;
      const active = voters.filter((v) => v === d.selfId || st.progress.get(v)?.recentActive).length;
      return Promise.resolve({
        header: header(),
        nodeId: d.selfId,
        name: d.selfName,
        state:
          st.role === Role.Leader
            ? pb.RaftState.LEADER
            : st.role === Role.Candidate
              ? pb.RaftState.CANDIDATE
              : st.role === Role.PreCandidate
                ? pb.RaftState.PRE_CANDIDATE
                : pb.RaftState.FOLLOWER,
        term: BigInt(st.term),
        leaderId: st.leader,
        commitIndex: BigInt(st.commit),
        appliedIndex: BigInt(st.applied),
        firstIndex: BigInt(st.firstIndex),
        lastIndex: BigInt(st.lastIndex),
        voters,
        learners: st.conf.learners,
        electionsStarted: BigInt(st.electionsStarted),
        messagesProcessed: BigInt(d.messagesProcessed?.() ?? 0),
        version: d.version,
        quorumMet: st.role === Role.Leader ? active >= majority(voters.length) : st.leader !== 0,
        postgres: postgresHealthMessage(d.postgres?.() ?? { state: "not_configured" }),
        // Groups with data nodes: the routing each one has (or would have: none yet).
        routing: d.state
          .nodeGroups()
          .filter((g) => d.state.dataNodes().some((n) => n.group === g.name))
          .map((g) => routingMessage(d.state.routing(g.name))),
      });
    }),

    switchover: unary(pb.SwitchoverRequestSchema, pb.SwitchoverResponseSchema, async (req) => {
      if (!req.group) throw invalidArgument("group must not be empty");
      if (!req.target) throw invalidArgument("target must not be empty");
      const method = req.method === "" ? "strict" : req.method;
      if (!(TRANSFER_METHODS as readonly string[]).includes(method)) throw invalidArgument(`method must be one of ${TRANSFER_METHODS.join(", ")}, got ${JSON.stringify(req.method)}`);
      if (!d.switchover) throw new ClusterError("INVALID", "this sidecar cannot run a switchover");
      await d.node.read({ timeoutMs: d.requestTimeoutMs });
      const message = await d.switchover({ group: req.group, target: req.target, method: method as TransferMethod, timeoutMs: req.timeoutMs || 10_000 });
      return { header: header(), message, routing: routingMessage(d.state.routing(req.group)) };
    }),

    members: unary(pb.MembersRequestSchema, pb.MembersResponseSchema, (req, call) =>
      req.fromLeader
        ? onLeader(
            pb.MembersResponseSchema,
            call,
            () => Promise.resolve({ header: header(), members: members(), commitIndex: BigInt(d.node.status().commit) }),
            (c, md) => c.members(req, opts(md)),
          )
        : Promise.resolve({ header: header(), members: members(), commitIndex: BigInt(d.node.status().commit) }),
    ),

    addMember: unary(pb.AddMemberRequestSchema, pb.AddMemberResponseSchema, (req, call) =>
      onLeader(
        pb.AddMemberResponseSchema,
        call,
        async () => {
          await confChange({
            type: req.asLearner ? "addLearner" : "addVoter",
            nodeId: req.id,
            context: encodeMemberContext({ name: req.name || `node${req.id}`, raftAddress: req.raftAddress }),
          });
          const all = members();
          return { header: header(), members: all, ...(all.find((m) => m.id === req.id) ? { member: all.find((m) => m.id === req.id) } : {}) };
        },
        (c, md) => c.addMember(req, opts(md)),
      ),
    ),

    removeMember: unary(pb.RemoveMemberRequestSchema, pb.RemoveMemberResponseSchema, (req, call) =>
      onLeader(
        pb.RemoveMemberResponseSchema,
        call,
        async () => {
          if (req.id === d.selfId) {
            // A leader never removes itself (see ARCHITECTURE): hand over, then ask the new leader.
            await d.node.transferLeadership(handOverTarget(d.node.status(), d.selfId), { timeoutMs: d.requestTimeoutMs });
            const client = d.leaderClient();
            if (!client) throw new NotLeaderError(d.node.status().leader);
            const md = new grpc.Metadata();
            md.set(FORWARDED_HEADER, String(d.selfId));
            return client.removeMember(req, opts(md));
          }
          await confChange({ type: "removeNode", nodeId: req.id });
          await dropInternalKeys([autoPromoteKey(req.id)]);
          return { header: header(), members: members() };
        },
        (c, md) => c.removeMember(req, opts(md)),
      ),
    ),

    promoteMember: unary(pb.PromoteMemberRequestSchema, pb.PromoteMemberResponseSchema, (req, call) =>
      onLeader(
        pb.PromoteMemberResponseSchema,
        call,
        async () => {
          if (!d.node.status().conf.learners.includes(req.id)) throw invalidArgument(`node ${req.id} is not a learner`);
          await confChange({ type: "addVoter", nodeId: req.id });
          return { header: header(), members: members() };
        },
        (c, md) => c.promoteMember(req, opts(md)),
      ),
    ),

    transferLeader: unary(pb.TransferLeaderRequestSchema, pb.TransferLeaderResponseSchema, (req, call) =>
      onLeader(
        pb.TransferLeaderResponseSchema,
        call,
        async () => {
          const target = req.targetId || handOverTarget(d.node.status(), d.selfId);
          await d.node.transferLeadership(target, { timeoutMs: d.requestTimeoutMs });
          return { header: header(), leaderId: target };
        },
        (c, md) => c.transferLeader(req, opts(md)),
      ),
    ),

    join: unary(pb.JoinRequestSchema, pb.JoinResponseSchema, (req, call) =>
      onLeader(
        pb.JoinResponseSchema,
        call,
        async () => {
          if (!req.raftAddress) throw invalidArgument("join needs the new member's raft address");
          const existing = d.state.member(req.id);
          if (existing) {
            if (existing.raftAddress !== req.raftAddress) {
              throw statusError(
                grpc.status.ALREADY_EXISTS,
                `node id ${req.id} is already a member at ${existing.raftAddress || "(unknown address)"}; pick another id or remove it first`,
              );
            }
            return { header: header(), members: members() };
          }
          const clash = d.state.members().find((m) => m.raftAddress === req.raftAddress);
          if (clash) throw statusError(grpc.status.ALREADY_EXISTS, `address ${req.raftAddress} already belongs to node ${clash.id}`);
          if (!req.asVoter) {
            // Remember to promote it once caught up (the control loop does; survives leader changes).
            await propose({ op: "kv.put", key: autoPromoteKey(req.id), value: "true" }).then(okOrThrow);
          }
          await confChange({
            type: req.asVoter ? "addVoter" : "addLearner",
            nodeId: req.id,
            context: encodeMemberContext({ name: req.name || `node${req.id}`, raftAddress: req.raftAddress }),
          });
          return { header: header(), members: members() };
        },
        (c, md) => c.join(req, opts(md)),
      ),
    ),

    nodeGroupCommand: unary(pb.NodeGroupCommandRequestSchema, pb.NodeGroupCommandResponseSchema, (req, call) =>
      onLeader(
        pb.NodeGroupCommandResponseSchema,
        call,
        async () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(req.command);
          } catch {
            throw invalidArgument("command is not JSON");
          }
          const cmd = validateCommand(parsed);
          if (!cmd.op.startsWith("pgd.") && !cmd.op.startsWith("routing.")) throw invalidArgument(`only pgd.* and routing.* commands may be sent here, got ${cmd.op}`);
          if ((cmd.op === "pgd.node.create" || cmd.op === "pgd.node.interface") && dsnHasPassword(cmd.dsn)) {
            throw invalidArgument(`${cmd.op}: ${INTERFACE_DSN_PASSWORD}; ${INTERFACE_DSN_PASSWORD_HINT}`);
          }
          const ok = okOrThrow(await propose(cmd));
          if (cmd.op === "pgd.node.drop" && ok.dataNode) await dropInternalKeys([joinKeyOf(ok.dataNode.name)], [partPrefixOf(ok.dataNode)]);
          return { header: header(), result: JSON.stringify(ok.dataNode ?? ok.nodeGroup ?? ok.routing ?? {}) };
        },
        (c, md) => c.nodeGroupCommand(req, opts(md)),
      ),
    ),

    kvPut: unary(pb.KvPutRequestSchema, pb.KvPutResponseSchema, (req, call) => {
      guardKey(req.key, call);
      return onLeader(
        pb.KvPutResponseSchema,
        call,
        async () => {
          checkJson(req.value);
          const r = await propose({
            op: "kv.put",
            key: req.key,
            value: req.value,
            ...(req.lease ? { leaseId: Number(req.lease) } : {}),
            ...(req.ifModRevision !== undefined ? { ifModRevision: Number(req.ifModRevision) } : {}),
          });
          if (!r.ok && r.code === "CAS_FAILED") return { header: header(), succeeded: false, ...(r.current ? { kv: kvOut(r.current) } : {}) };
          const ok = okOrThrow(r);
          const prev = ok.prev;
          // The pair as this put left it (later writes may already be applied here).
          const kv: KeyValue = {
            key: req.key,
            value: req.value,
            createRevision: prev ? prev.createRevision : ok.revision,
            modRevision: ok.revision,
            version: prev ? prev.version + 1 : 1,
            lease: Number(req.lease),
          };
          return { header: { ...header(), revision: BigInt(ok.revision) }, succeeded: true, kv: kvOut(kv), ...(req.prevKv && prev ? { prevKv: kvOut(prev) } : {}) };
        },
        (c, md) => c.kvPut(req, opts(md)),
      );
    }),

    kvGet: unary(pb.KvGetRequestSchema, pb.KvGetResponseSchema, async (req, call) => {
      if (!req.key) throw invalidArgument("key must not be empty");
      guardKey(req.key, call);
      if (!req.serializable) await d.node.read({ timeoutMs: d.requestTimeoutMs });
      const kv = d.state.kvGet(req.key);
      return { header: header(), ...(kv ? { kv: kvOut(kv) } : {}) };
    }),

    kvDelete: unary(pb.KvDeleteRequestSchema, pb.KvDeleteResponseSchema, (req, call) => {
      guardKey(req.key, call);
      return onLeader(
        pb.KvDeleteResponseSchema,
        call,
        async () => {
          const r = await propose({ op: "kv.delete", key: req.key, ...(req.ifModRevision !== undefined ? { ifModRevision: Number(req.ifModRevision) } : {}) });
          if (!r.ok && r.code === "CAS_FAILED") return { header: header(), succeeded: false, deleted: 0n };
          if (!r.ok && r.code === "NOT_FOUND") return { header: header(), succeeded: true, deleted: 0n };
          const ok = okOrThrow(r);
          return { header: { ...header(), revision: BigInt(ok.revision) }, succeeded: true, deleted: 1n, ...(req.prevKv && ok.prev ? { prevKv: kvOut(ok.prev) } : {}) };
        },
        (c, md) => c.kvDelete(req, opts(md)),
      );
    }),

    kvList: unary(pb.KvListRequestSchema, pb.KvListResponseSchema, async (req, call) => {
      if (req.limit < 0n) throw invalidArgument("limit must not be negative");
      // A user's listing never shows pgraft's own keys, and may not look inside their namespace.
      const internal = isInternalCall(call.metadata);
      if (!internal && isInternalKey(req.prefix)) throw reservedKeyError(`prefix ${JSON.stringify(req.prefix)}`);
      if (!req.serializable) await d.node.read({ timeoutMs: d.requestTimeoutMs });
      const r = d.state.kvList(req.prefix, {
        ...(req.limit ? { limit: Number(req.limit) } : {}),
        ...(req.startAfter ? { startAfter: req.startAfter } : {}),
        ...(internal ? {} : { exclude: INTERNAL_PREFIX }),
      });
      return {
        header: header(),
        kvs: r.kvs.map((kv) => kvOut(req.keysOnly ? { ...kv, value: "" } : kv)),
        more: r.more,
        count: BigInt(r.count),
      };
    }),

    configGet: unary(pb.ConfigGetRequestSchema, pb.ConfigGetResponseSchema, (req) => {
      const rows = d.state.config();
      if (!req.name) return Promise.resolve({ header: header(), entries: rows.map(configEntry) });
      const name = getSetting(req.name).name;
      return Promise.resolve({ header: header(), entries: rows.filter((r) => r.name === name).map(configEntry) });
    }),

    configSet: unary(pb.ConfigSetRequestSchema, pb.ConfigSetResponseSchema, (req, call) =>
      onLeader(
        pb.ConfigSetResponseSchema,
        call,
        async () => {
          const name = getSetting(req.name).name;
          const value = normalize(name, req.value);
          checkChangeable(name, value);
          if (d.flagTiming && (name === "heartbeat_interval" || name === "election_timeout")) {
            // The registry checks the pair against its defaults; this node runs with its flags.
            const t = effectiveTiming(d.state, d.flagTiming, { name, value });
            if (t.electionMs < 2 * t.heartbeatMs) {
              throw invalidArgument(
                `${name} ${value} would leave the election timeout (${t.electionMs}ms) under twice the heartbeat interval (${t.heartbeatMs}ms) this node runs with; election_timeout must be at least 2 x heartbeat_interval`,
              );
            }
          }
          const previous = d.state.config().find((r) => r.name === name)?.value ?? "";
          const ok = okOrThrow(await propose({ op: "config.set", name, value }));
          const row = ok.setting ?? d.state.config().find((r) => r.name === name);
          return { header: header(), previousValue: previous, ...(row ? { entry: configEntry(row) } : {}) };
        },
        (c, md) => c.configSet(req, opts(md)),
      ),
    ),

    configReset: unary(pb.ConfigResetRequestSchema, pb.ConfigResetResponseSchema, (req, call) =>
      onLeader(
        pb.ConfigResetResponseSchema,
        call,
        async () => {
          const name = getSetting(req.name).name;
          const spec = d.state.config().find((r) => r.name === name);
          if (d.flagTiming && (name === "heartbeat_interval" || name === "election_timeout") && spec) {
            // Back to the default as far as the replicated set goes; this node then runs with its flags for it.
            const t = effectiveTiming(d.state, d.flagTiming, { name, value: spec.default });
            if (t.electionMs < 2 * t.heartbeatMs) {
              throw invalidArgument(
                `resetting ${name} to ${spec.default} would leave the election timeout (${t.electionMs}ms) under twice the heartbeat interval (${t.heartbeatMs}ms) this node runs with; reset or change the other one first`,
              );
            }
          }
          const previous = spec?.value ?? "";
          const ok = okOrThrow(await propose({ op: "config.reset", name }));
          const row = ok.setting ?? d.state.config().find((r) => r.name === name);
          return { header: header(), previousValue: previous, ...(row ? { entry: configEntry(row) } : {}) };
        },
        (c, md) => c.configReset(req, opts(md)),
      ),
    ),

    configSave: unary(pb.ConfigSaveRequestSchema, pb.ConfigSaveResponseSchema, (req, call) =>
      onLeader(
        pb.ConfigSaveResponseSchema,
        call,
        async () => {
          okOrThrow(await propose({ op: "config.save" }));
          return { header: header(), entries: d.state.config().filter((r) => r.overridden).map(configEntry) };
        },
        (c, md) => c.configSave(req, opts(md)),
      ),
    ),

    leaseGrant: unary(pb.LeaseGrantRequestSchema, pb.LeaseGrantResponseSchema, (req, call) =>
      onLeader(
        pb.LeaseGrantResponseSchema,
        call,
        async () => {
          if (req.ttlSeconds <= 0n || req.ttlSeconds > 86_400n) throw invalidArgument("ttl_seconds must be in 1..86400");
          const id = req.id ? Number(req.id) : Date.now() * 1000 + Math.floor(Math.random() * 1000);
          const ok = okOrThrow(await propose({ op: "lease.grant", leaseId: id, ttlMs: Number(req.ttlSeconds) * 1000, nowMs: Date.now() }));
          return { header: header(), id: BigInt(ok.lease?.id ?? id), ttlSeconds: req.ttlSeconds };
        },
        (c, md) => c.leaseGrant(req, opts(md)),
      ),
    ),

    leaseKeepAlive: unary(pb.LeaseKeepAliveRequestSchema, pb.LeaseKeepAliveResponseSchema, (req, call) =>
      onLeader(
        pb.LeaseKeepAliveResponseSchema,
        call,
        async () => {
          const r = await propose({ op: "lease.keepAlive", leaseId: Number(req.id), nowMs: Date.now() });
          if (!r.ok && r.code === "NOT_FOUND") return { header: header(), id: req.id, ttlSeconds: 0n };
          const ok = okOrThrow(r);
          return { header: header(), id: req.id, ttlSeconds: BigInt(Math.round((ok.lease?.ttlMs ?? 0) / 1000)) };
        },
        (c, md) => c.leaseKeepAlive(req, opts(md)),
      ),
    ),

    leaseRevoke: unary(pb.LeaseRevokeRequestSchema, pb.LeaseRevokeResponseSchema, (req, call) =>
      onLeader(
        pb.LeaseRevokeResponseSchema,
        call,
        async () => {
          const ok = okOrThrow(await propose({ op: "lease.revoke", leaseId: Number(req.id) }));
          return { header: header(), deletedKeys: BigInt(ok.deleted ?? 0) };
        },
        (c, md) => c.leaseRevoke(req, opts(md)),
      ),
    ),
  };
}
