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
  .description(
    "start a local cluster: N PostgreSQL servers (initdb'd here) with a pgraft sidecar each, the shim installed; prints a psql command, metrics URL, HTTP routes, process ids and node-group examples per node (no password on any command line: DSNs name each node's 0600 pgpass file). " +
      "A sidecar or PostgreSQL that exits on its own (kill -9) is reported, with the last error in its log, and restarted after a backoff (1s doubling to 30s); the others keep running. DIR/pids.json holds the current process ids",
  )
  .option("--nodes <n>", "number of nodes (1..7)", positiveInt("--nodes", 7), 3)
  .option("--base-dir <dir>", "where the nodes keep PostgreSQL, Raft data and logs (default: a new dir under the system temp dir); an existing demo dir is restarted on the ports it saved (refused, naming node, role and port, while another program holds one)")
  .option("--json", "print the cluster id, the nodes' DSNs, endpoints and process ids as JSON once the cluster is ready (docs/cli-json.md)", false)
  .option("--detach", "leave the cluster running in the background and return once it is ready (what happens later goes to DIR/demo.log)", false)
  .option("--stop", "stop every process of the demo in --base-dir, however it was left (the supervisor, and sidecars or postmasters it left behind)", false)
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
