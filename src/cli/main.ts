#!/usr/bin/env node
// The `pgraft` command: the sidecar daemon, the operator commands that talk to
// any sidecar over gRPC, and the consensus demo.
import { Command, InvalidArgumentError } from "commander";
import { runDemo } from "./demo.js";
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
  .description("run an in-process cluster of the Raft engine with real write-ahead logs on disk: election, writes, failover, restart, transfer")
  .option("--nodes <n>", "number of nodes (1..7)", positiveInt("--nodes", 7), 3)
  .option("--writes <n>", "writes to commit before the failover (1..100000)", positiveInt("--writes", 100_000), 1000)
  .option("--base-dir <dir>", "where the nodes keep their data (default: a new dir under the system temp dir)")
  .option("--verbose", "print every consensus decision (elections, step-downs, conf changes)", false)
  .action(async (opts: { nodes: number; writes: number; baseDir?: string; verbose: boolean }) => {
    if (opts.nodes < 3) throw new InvalidArgumentError("--nodes must be at least 3 to show a failover");
    await runDemo({ ...opts, out: (l) => process.stdout.write(l + "\n") });
  });

registerSidecarCommand(program);
registerOperatorCommands(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`pgraft: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
