#!/usr/bin/env node
// The `pgraft` command: the sidecar daemon, the operator commands that talk to
// any sidecar over gRPC, and the local demo cluster.
import { Command, InvalidArgumentError, Option } from "commander";
import { runDemoCommand } from "./demo.js";
import { registerExtensionCommand } from "./extension-command.js";
import { registerOperatorCommands } from "./operator/index.js";
import { registerSidecarCommand } from "./sidecar-command.js";

const positiveInt = (name: string, max: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${name} must be an integer in 1..${max}`);
  return n;
};

const program = new Command()
  .name("pgraft")
  .description("Raft-coordinated sidecar for stock PostgreSQL")
  .version("0.1.0");

program
  .command("demo")
  .description("start a local cluster: N PostgreSQL servers (initdb'd here) with a pgraft sidecar each, the shim installed; prints a psql command, metrics URL and node-group examples per node (no password on any command line: DSNs name each node's 0600 pgpass file)")
  .option("--nodes <n>", "number of nodes (1..7)", positiveInt("--nodes", 7), 3)
  .option("--base-dir <dir>", "where the nodes keep PostgreSQL, Raft data and logs (default: a new dir under the system temp dir); an existing demo dir is restarted")
  .option("--json", "print the nodes' DSNs and endpoints as JSON once the cluster is ready", false)
  .option("--detach", "leave the cluster running in the background and return once it is ready", false)
  .option("--stop", "stop the demo running in --base-dir (started with --detach)", false)
  .addOption(new Option("--background").hideHelp().default(false))
  .action(async (opts: { nodes: number; baseDir?: string; json: boolean; detach: boolean; stop: boolean; background: boolean }) => {
    await runDemoCommand(opts);
  });

registerSidecarCommand(program);
registerExtensionCommand(program);
registerOperatorCommands(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`pgraft: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
