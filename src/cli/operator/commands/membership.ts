// Membership and leadership: pgraft members, add-node, remove-node,
// promote-node, transfer-leader.
import type { Command } from "commander";
import {
  AddMemberResponseSchema,
  MembersResponseSchema,
  PromoteMemberResponseSchema,
  RemoveMemberResponseSchema,
  TransferLeaderResponseSchema,
} from "../../../gen/pgraft/v1/client_pb.js";
import { operatorAction } from "../action.js";
import { parseHostPort, unresolvableHost } from "../../../config/address.js";
import { parseNodeId, parseRaftAddress } from "../arguments.js";
import { operatorCommand } from "../commander-setup.js";
import { answeredByLeader, membersJson, membersTable } from "../format.js";
import { messageJson } from "../output.js";

export function registerMembership(program: Command): Command[] {
  const members = operatorCommand(program, "members", "list the members: id, name, address, role, leader and (from the leader) replication progress")
    .option("--from-leader", "ask the leader (forwarded by the sidecar) for fresh progress columns")
    .action(
      operatorAction(async (ctx, _args, opts) => {
        const fromLeader = opts["fromLeader"] === true;
        const res = await ctx.request("members", (c, o) => c.members({ clusterId: ctx.clusterId, fromLeader }, o));
        const withProgress = fromLeader || answeredByLeader(res.header);
        ctx.showJson(membersJson(messageJson(MembersResponseSchema, res), withProgress), () => [
          ...membersTable(res.members, withProgress),
          ...(withProgress ? [] : ["(match, lag, reachable and last heartbeat are known only to the leader: add --from-leader)"]),
        ]);
      }),
    );

  const addNode = operatorCommand(program, "add-node <id> <raft-address>", "add a member: a voter, or with --learner one that receives the log without voting")
    .option("--name <name>", "the member's human-readable name (default: chosen by the sidecar)")
    .option("--learner", "add as a learner (promote it later with promote-node)")
    .action(
      operatorAction(async (ctx, [rawId, rawAddress], opts) => {
        const id = parseNodeId(rawId ?? "");
        const raftAddress = parseRaftAddress(rawAddress ?? "");
        const name = typeof opts["name"] === "string" ? opts["name"] : "";
        const asLearner = opts["learner"] === true;
        const hp = parseHostPort(raftAddress);
        const unresolved = typeof hp === "string" ? undefined : await unresolvableHost(hp.host);
        const res = await ctx.request(`add node ${id}`, (c, o) => c.addMember({ clusterId: ctx.clusterId, id, name, raftAddress, asLearner }, o));
        if (unresolved) {
          // As pgraft_add_node warns: the node is added, but nothing reaches it until its name resolves.
          const host = typeof hp === "string" ? raftAddress : hp.host;
          ctx.warn(`node ${id} was added, but its address ${JSON.stringify(host)} does not resolve here (${unresolved}): nothing can reach it until it does; "pgraft remove-node ${id}" takes it out again`);
        }
        ctx.showJson(membersJson(messageJson(AddMemberResponseSchema, res), answeredByLeader(res.header)), () => [
          `added node ${id}${res.member?.name ? ` (${res.member.name})` : name ? ` (${name})` : ""} at ${raftAddress} as a ${asLearner ? "learner" : "voter"}`,
          "",
          ...membersTable(res.members, answeredByLeader(res.header)),
        ]);
      }),
    );

  const removeNode = operatorCommand(program, "remove-node <id>", "remove a member (voter or learner) from the cluster").action(
    operatorAction(async (ctx, [rawId]) => {
      const id = parseNodeId(rawId ?? "");
      const res = await ctx.request(`remove node ${id}`, (c, o) => c.removeMember({ clusterId: ctx.clusterId, id }, o));
      ctx.showJson(membersJson(messageJson(RemoveMemberResponseSchema, res), answeredByLeader(res.header)), () => [`removed node ${id}`, "", ...membersTable(res.members, answeredByLeader(res.header))]);
    }),
  );

  const promoteNode = operatorCommand(program, "promote-node <id>", "make a learner a voter").action(
    operatorAction(async (ctx, [rawId]) => {
      const id = parseNodeId(rawId ?? "");
      const res = await ctx.request(`promote node ${id}`, (c, o) => c.promoteMember({ clusterId: ctx.clusterId, id }, o));
      ctx.showJson(membersJson(messageJson(PromoteMemberResponseSchema, res), answeredByLeader(res.header)), () => [`node ${id} is now a voter`, "", ...membersTable(res.members, answeredByLeader(res.header))]);
    }),
  );

  const transferLeader = operatorCommand(program, "transfer-leader [target-id]", "hand leadership to a voter (default: the most up-to-date other voter)").action(
    operatorAction(async (ctx, [rawTarget]) => {
      const targetId = rawTarget === undefined ? 0 : parseNodeId(rawTarget, "target node id");
      const what = targetId ? `transfer leadership to node ${targetId}` : "transfer leadership";
      const res = await ctx.request(what, (c, o) => c.transferLeader({ clusterId: ctx.clusterId, targetId }, o));
      ctx.show(TransferLeaderResponseSchema, res, () => [
        res.leaderId ? `node ${res.leaderId} is now the leader` : "leadership transfer started; no leader is known yet (see pgraft status)",
      ]);
    }),
  );

  return [members, addNode, removeNode, promoteNode, transferLeader];
}
