// The operator commands of the `pgraft` CLI: clients of a sidecar's Cluster
// gRPC service (status, membership, leadership, KV, runtime config).
import type { Command } from "commander";
import { finishOperatorCommands } from "./commander-setup.js";
import { registerConfig } from "./commands/config.js";
import { registerKv } from "./commands/kv.js";
import { registerMembership } from "./commands/membership.js";
import { registerStatus } from "./commands/status.js";
import { registerRouting } from "./commands/routing.js";

export { COMMON_OPTIONS, resolveCommonOptions, type CommonSettings } from "./common-options.js";

/** Add status, members, add-node, remove-node, promote-node, transfer-leader, kv and config to `program`. */
export function registerOperatorCommands(program: Command): void {
  finishOperatorCommands([...registerStatus(program), ...registerMembership(program), ...registerKv(program), ...registerConfig(program), ...registerRouting(program)]);
}
