#!/usr/bin/env node
// A `pgraft` with only the operator commands, independent of the full CLI in
// ../main.ts: what test/cli runs as a child process.
import { Command } from "commander";
import { registerOperatorCommands } from "./index.js";

const program = new Command().name("pgraft").description("pgraft operator commands (test entry)");
registerOperatorCommands(program);
program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`pgraft: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
