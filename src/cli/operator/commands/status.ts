// pgraft status: what the answering sidecar knows of itself and the cluster.
import type { Command } from "commander";
import { StatusResponseSchema } from "../../../gen/pgraft/v1/client_pb.js";
import { operatorAction } from "../action.js";
import { operatorCommand } from "../commander-setup.js";
import { nodeList, nodeOrNone, stateName, statusJson, yesNo } from "../format.js";
import { messageJson, renderKeyValues } from "../output.js";

export function registerStatus(program: Command): Command[] {
  const status = operatorCommand(program, "status", "show the answering sidecar's view: its state, term, leader, log indexes and the membership").action(
    operatorAction(async (ctx) => {
      const res = await ctx.request("status", (c, o) => c.status({ clusterId: ctx.clusterId }, o));
      ctx.showJson(statusJson(messageJson(StatusResponseSchema, res)), () =>
        renderKeyValues([
          ["node", String(res.nodeId)],
          ["name", res.name || "-"],
          ["cluster", res.header?.clusterId || ctx.clusterId],
          ["state", stateName(res.state)],
          ["term", String(res.term)],
          ["leader", nodeOrNone(res.leaderId)],
          ["commit_index", String(res.commitIndex)],
          ["applied_index", String(res.appliedIndex)],
          ["first_index", String(res.firstIndex)],
          ["last_index", String(res.lastIndex)],
          ["voters", nodeList(res.voters)],
          ["learners", nodeList(res.learners)],
          ["quorum_met", yesNo(res.quorumMet)],
          ["version", res.version || "-"],
          // One line per data group: where its writes go.
          ...res.routing.map(
            (r): [string, string] => [
              `write_leader[${r.group}]`,
              `${r.switchoverTarget ? `switching to ${r.switchoverTarget} from ` : ""}${r.writeLeader || "none"} (commit scope ${r.commitScope}; read nodes ${r.readNodes.join(", ") || "none"})`,
            ],
          ),
        ]),
      );
    }),
  );
  return [status];
}
