// `pgraft extension --out DIR`: write the shim as a real PostgreSQL extension
// (pgraft.control + pgraft--<version>.sql + an update script from each earlier version), for hosts where files can be put in
// `pg_config --sharedir`/extension (`make install-extension` does that); then
// `CREATE EXTENSION pgraft CASCADE` installs what the sidecar would otherwise install itself.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { extensionControl, extensionScript, extensionUpdateScript, PREVIOUS_SHIM_VERSIONS, SHIM_VERSION } from "../shim/install-sql.js";

export function registerExtensionCommand(program: Command): void {
  program
    .command("extension")
    .description("write the SQL shim as a PostgreSQL extension (pgraft.control, pgraft--<version>.sql) into a directory")
    .requiredOption("--out <dir>", "target directory, e.g. $(pg_config --sharedir)/extension")
    .action(async (o: { out: string }) => {
      await mkdir(o.out, { recursive: true });
      const control = join(o.out, "pgraft.control");
      const script = join(o.out, `pgraft--${SHIM_VERSION}.sql`);
      await writeFile(control, extensionControl());
      await writeFile(script, extensionScript());
      const updates = PREVIOUS_SHIM_VERSIONS.map((v) => join(o.out, `pgraft--${v}--${SHIM_VERSION}.sql`));
      for (const [i, v] of PREVIOUS_SHIM_VERSIONS.entries()) await writeFile(updates[i]!, extensionUpdateScript(v));
      process.stdout.write(
        `wrote ${control}, ${script} and ${updates.length} update script(s)\nthen, in psql: CREATE EXTENSION pgraft CASCADE;  (an installed older version: ALTER EXTENSION pgraft UPDATE;)\n`,
      );
    });
}
