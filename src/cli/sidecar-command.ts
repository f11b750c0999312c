// `pgraft sidecar`: run the daemon. Options come from SIDECAR_OPTIONS (one
// table for flags, env vars, YAML keys and --help); SIGTERM/SIGINT stop it
// gracefully (a leader hands leadership over first).
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../config/errors.js";
import { resolveSidecarConfig, SIDECAR_OPTIONS, type RawConfig } from "../config/sidecar-config.js";
import { createLogger } from "../daemon/logger.js";
import { Sidecar } from "../daemon/sidecar.js";

/** commander's attribute for a flag: "--node-id <id>" → "nodeId". */
const attributeOf = (flag: string): string => flag.split(" ")[0]!.replace(/^--/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function loadYaml(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError([`--config: cannot read ${path}: ${(e as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError([`--config: ${path} is not valid YAML: ${(e as Error).message}`]);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError([`--config: ${path} must hold a mapping of option names to values`]);
  return doc as Record<string, unknown>;
}

export function registerSidecarCommand(program: Command): void {
  const cmd = program
    .command("sidecar")
    .description("run the pgraft sidecar: Raft over gRPC, the replicated catalog and KV, HTTP /metrics, /health and routing endpoints")
    .addHelpText(
      "after",
      `
Every option can also come from an environment variable or the YAML file given by --config:
${SIDECAR_OPTIONS.filter((o) => o.yaml)
  .map((o) => `  ${o.flag.split(" ")[0]!.padEnd(22)} $${o.env.padEnd(28)} ${o.yaml}`)
  .join("\n")}
Precedence: flag > environment > file > default.

Passwords: a DSN the sidecar connects to without a password in it (interface DSNs must not have one:
they are replicated to every node) gets it as libpq would: $PGPASSWORD, else the password file named
by passfile= in the DSN, else $PGPASSFILE, else ~/.pgpass of the user the sidecar runs as (lines
host:port:dbname:user:password; a file group or others can read is ignored).
Files: the data dir is 0700 and everything the sidecar writes in it 0600, whatever the umask; what is
found wider at start (an older version's WAL) is tightened, with a warning.

Examples:
  pgraft sidecar --node-id 1 --cluster-id prod --data-dir /var/lib/pgraft --plaintext \\
      --initial-cluster 1=127.0.0.1:7400,2=127.0.0.1:7410,3=127.0.0.1:7420
  pgraft sidecar --node-id 4 --cluster-id prod --data-dir /var/lib/pgraft4 --plaintext \\
      --listen 127.0.0.1:7430 --http-listen 127.0.0.1:8038 --join 127.0.0.1:7400
  # in a StatefulSet pod (POD_NAME=pgraft-1 → node 2; pods 0..2 found the cluster, later pods join):
  pgraft sidecar --cluster-id prod --data-dir /var/lib/pgraft/data --plaintext --initial-replicas 3 \\
      --peer-template '{name}-{i}.{service}.{namespace}.svc:7400' --service pgraft-headless
  (docs/kubernetes.md; the Helm chart sets all of this through the environment)`,
    );
  for (const o of SIDECAR_OPTIONS) {
    const def = o.default ? ` (default ${o.default})` : "";
    cmd.option(o.flag, `${o.help}${def}`);
  }
  cmd.action(async (opts: Record<string, string | boolean | undefined>) => {
    const raw: RawConfig = {};
    for (const o of SIDECAR_OPTIONS) raw[o.key] = opts[attributeOf(o.flag)];
    let cfg;
    try {
      const file = (raw.config as string | undefined) ?? process.env.PGRAFT_CONFIG;
      cfg = resolveSidecarConfig(raw, process.env, file ? loadYaml(file) : {});
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`pgraft sidecar: ${e.message}\n`);
        process.exitCode = 2;
        return;
      }
      throw e;
    }
    const log = createLogger({ level: cfg.logLevel, nodeId: cfg.nodeId, clusterId: cfg.clusterId });
    const sidecar = await Sidecar.start(cfg, log);
    await new Promise<void>((resolve) => {
      const onSignal = (sig: NodeJS.Signals): void => {
        log.info(`received ${sig}: stopping`);
        process.off("SIGTERM", onSignal);
        process.off("SIGINT", onSignal);
        sidecar.stop().then(resolve, (e: unknown) => {
          log.error(`stop failed: ${e instanceof Error ? e.message : String(e)}`);
          process.exitCode = 1;
          resolve();
        });
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    });
  });
}
