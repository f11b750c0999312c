// pgraft config get|set|reset|save: the runtime settings replicated through Raft
// (heartbeat_interval, election_timeout, ...).
import type { Command } from "commander";
import { electionTimingWarning, parseDurationMs } from "../../../cluster/config-registry.js";
import { ConfigGetResponseSchema, ConfigResetResponseSchema, ConfigSaveResponseSchema, ConfigSetResponseSchema } from "../../../gen/pgraft/v1/client_pb.js";
import { operatorAction } from "../action.js";
import { UsageError } from "../errors.js";
import { allowDashValues, operatorCommand } from "../commander-setup.js";
import { configEntryLines, configTable } from "../format.js";

const settingName = (raw: string | undefined): string => {
  const name = (raw ?? "").trim();
  if (name === "") throw new UsageError(["the setting name must not be empty"]);
  return name;
};

/**
 * What set and reset print after the change. A change is replicated through
 * Raft: it applies on every node at once and stays across restarts without
 * config save, which only marks the current values as the saved set (source
 * "saved") and has each sidecar copy them into pgraft.saved_config.
 */
export const SAVE_HINT =
  '(applies to every node now and survives restarts; "pgraft config save" marks the current values as the saved set, copied to the table pgraft.saved_config on every node)';

export function registerConfig(program: Command): Command[] {
  const config = operatorCommand(program, "config", "read and change the runtime settings every node shares");

  operatorCommand(config, "get [name]", "show one setting, or all of them: value, default, where the value comes from").action(
    operatorAction(async (ctx, [rawName]) => {
      const name = rawName === undefined ? "" : settingName(rawName);
      const res = await ctx.request(name ? `config get ${name}` : "config get", (c, o) => c.configGet({ clusterId: ctx.clusterId, name }, o));
      ctx.show(ConfigGetResponseSchema, res, () => {
        const only = res.entries[0];
        if (name && res.entries.length === 1 && only) return configEntryLines(only);
        return res.entries.length ? configTable(res.entries) : ["no settings"];
      });
    }),
  );

  allowDashValues(
    operatorCommand(config, "set <name> <value>", "change a setting on every node now, through Raft, so it also survives restarts (e.g. heartbeat_interval 75ms; a value may start with -)"),
  ).action(
    operatorAction(async (ctx, [rawName, rawValue]) => {
      const name = settingName(rawName);
      const value = (rawValue ?? "").trim();
      if (value === "") throw new UsageError(["the value must not be empty"]);
      const res = await ctx.request(`config set ${name}`, (c, o) => c.configSet({ clusterId: ctx.clusterId, name, value }, o));
      ctx.show(ConfigSetResponseSchema, res, () => [
        `${name}: ${res.previousValue || "?"} -> ${res.entry?.value ?? value}`,
        SAVE_HINT,
      ]);
      const set = res.entry?.name ?? name;
      if (set === "heartbeat_interval" || set === "election_timeout") {
        // As pgraft_set_config warns: the other half of the pair, read after the change.
        const other = set === "heartbeat_interval" ? "election_timeout" : "heartbeat_interval";
        // The change is made: a failed read only loses the advice, not the exit code.
        const got = await ctx.request(`config get ${other}`, (c, o) => c.configGet({ clusterId: ctx.clusterId, name: other }, o)).catch(() => ({ entries: [] }));
        const otherMs = parseDurationMs(got.entries.find((e) => e.name === other)?.value ?? "");
        const setMs = parseDurationMs(res.entry?.value ?? value);
        if (otherMs !== undefined && setMs !== undefined) {
          const warning = set === "heartbeat_interval" ? electionTimingWarning(setMs, otherMs) : electionTimingWarning(otherMs, setMs);
          if (warning) ctx.warn(warning);
        }
      }
    }),
  );

  operatorCommand(config, "reset <name>", "put a setting back to its default on every node now, through Raft, so it also survives restarts").action(
    operatorAction(async (ctx, [rawName]) => {
      const name = settingName(rawName);
      const res = await ctx.request(`config reset ${name}`, (c, o) => c.configReset({ clusterId: ctx.clusterId, name }, o));
      ctx.show(ConfigResetResponseSchema, res, () => [
        `${name}: ${res.previousValue || "?"} -> ${res.entry?.value ?? "?"} (the default)`,
        SAVE_HINT,
      ]);
    }),
  );

  operatorCommand(config, "save", "mark the current runtime values as the saved set (source \"saved\" in config get), copied to pgraft.saved_config on every node").action(
    operatorAction(async (ctx) => {
      const res = await ctx.request("config save", (c, o) => c.configSave({ clusterId: ctx.clusterId }, o));
      ctx.show(ConfigSaveResponseSchema, res, () =>
        res.entries.length ? [`saved ${res.entries.length} setting${res.entries.length === 1 ? "" : "s"}`, "", ...configTable(res.entries)] : ["nothing to save: no setting was changed at runtime"],
      );
    }),
  );

  return [config];
}
