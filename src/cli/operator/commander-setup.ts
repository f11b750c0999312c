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

/** "-5s", "-1", "-.5": a value, not an option (no option of pgraft is a dash and a digit). */
const DASH_VALUE = /^-\.?\d/;

/**
 * Let an argument that starts with a dash and a digit ("-5s") through as an
 * argument instead of an unknown option, so `config set election_timeout
 * -5s` reaches the setting's validator (and its "invalid value" error) as the
 * SQL function does. The option after a flag that takes a value
 * (`--timeout -5s`) is still that flag's value.
 */
export function allowDashValues(cmd: Command): Command {
  const parse = cmd.parseOptions.bind(cmd);
  cmd.parseOptions = (args: string[]) => {
    const held = new Map<string, string>();
    const takesValue = (arg: string | undefined): boolean => arg !== undefined && cmd.options.some((o) => (o.required || o.optional) && (o.long === arg || o.short === arg));
    const marked = args.map((arg, i) => {
      if (!DASH_VALUE.test(arg) || takesValue(args[i - 1])) return arg;
      const mark = `\u0000pgraft-dash-value-${i}`;
      held.set(mark, arg);
      return mark;
    });
    const restore = (a: string): string => held.get(a) ?? a;
    const r = parse(marked);
    return { operands: r.operands.map(restore), unknown: r.unknown.map(restore) };
  };
  return cmd;
}
