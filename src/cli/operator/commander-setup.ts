// Commander's own errors (a missing argument, an unknown option) are usage
// errors too: the same "pgraft: <command>: " prefix and exit code 2 as the
// ones the commands find themselves. Set on each operator command only, so the
// rest of the program keeps its own behaviour.
import type { Command } from "commander";
import { addCommonOptions } from "./common-options.js";
import { EXIT_USAGE } from "./errors.js";

/** "kv put": the command's names below the program. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/**
 * A subcommand of `parent` with the operator commands' error handling. The
 * common options come later (finishOperatorCommands), so --help lists a
 * command's own options first.
 */
export function operatorCommand(parent: Command, nameAndArgs: string, description: string): Command {
  const cmd = parent.command(nameAndArgs).description(description);
  return cmd
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, `pgraft: ${commandPath(cmd)}: `)) })
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE));
}

/** Add the common options to each of `commands` (and their subcommands) that calls the sidecar: the leaves. */
export function finishOperatorCommands(commands: readonly Command[]): void {
  const visit = (c: Command): void => {
    if (c.commands.length === 0) addCommonOptions(c);
    c.commands.forEach(visit);
  };
  commands.forEach(visit);
}
