// pgraft switchover: move a data group's write leader on purpose (the SQL
// pgraft.routing_leadership_transfer), run by the answering sidecar.
import type { Command } from "commander";
import { parseDurationMs } from "../../../cluster/config-registry.js";
import { SwitchoverResponseSchema } from "../../../gen/pgraft/v1/client_pb.js";
import { TRANSFER_METHODS } from "../../../cluster/routing.js";
import { operatorAction } from "../action.js";
import { operatorCommand } from "../commander-setup.js";
import { UsageError } from "../errors.js";
import { routingJson } from "../format.js";
import { messageJson } from "../output.js";

/** Longest wait for the target to catch up. */
const MAX_TRANSFER_MS = 3_600_000;

export function registerRouting(program: Command): Command[] {
  const switchover = operatorCommand(program, "switchover", "make a node its data group's write leader (the proxies send new writes there); strict waits until it has every write")
    .requiredOption("--group <name>", "the data group")
    .requiredOption("--to <node>", "the node to lead the group's writes (an ACTIVE data node of the group)")
    .option("--method <method>", `strict (wait until the node has every write of the old leader; clients of the proxies wait meanwhile) or fast (at once)`, "strict")
    .option("--transfer-timeout <duration>", "how long the node may take to catch up, e.g. 10s (the call may last that long plus the steps after it, whatever --timeout says)", "10s")
    .action(
      operatorAction(async (ctx, _args, opts) => {
        const method = String(opts["method"]).toLowerCase();
        if (!(TRANSFER_METHODS as readonly string[]).includes(method)) throw new UsageError([`--method must be one of ${TRANSFER_METHODS.join(", ")}, got ${JSON.stringify(opts["method"])}`]);
        const raw = String(opts["transferTimeout"]);
        const ms = parseDurationMs(raw);
        if (ms === undefined || ms < 100 || ms > MAX_TRANSFER_MS) throw new UsageError([`--transfer-timeout must be a duration from 100ms to 1h (e.g. 10s), got ${JSON.stringify(raw)}`]);
        const group = String(opts["group"]);
        const target = String(opts["to"]);
        // The call lasts as long as the catch-up may, whatever --timeout says for quick requests.
        const res = await ctx.request(`switch group ${group}'s write leader to ${target}`, (c, o) =>
          c.switchover({ clusterId: ctx.clusterId, group, target, method, timeoutMs: ms }, { ...o, timeoutMs: Math.max(o.timeoutMs ?? 0, ms + 15_000) }),
        );
        const doc = messageJson(SwitchoverResponseSchema, res);
        if (doc["routing"] && typeof doc["routing"] === "object" && !Array.isArray(doc["routing"])) routingJson(doc["routing"]);
        ctx.showJson(doc, () => [res.message]);
      }),
    );
  return [switchover];
}
