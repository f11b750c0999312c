// What the PostgreSQL benchmarks share: the built CLI and pgbench must exist,
// and their servers live in a temp dir the `postgres` user can reach.
import { existsSync } from "node:fs";
import { findPostgresBinaries, type PostgresBinaries } from "../src/postgres/index.js";
import { MAIN } from "./pgraft-cluster.js";

export { reachableTempDir } from "../src/postgres/index.js";

/** The server binaries and pgbench, or a clear error naming what is missing. */
export async function requirePgbench(): Promise<{ bins: PostgresBinaries; pgbench: string }> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\` first`);
  const bins = await findPostgresBinaries();
  const pgbench = bins.bin("pgbench");
  if (!existsSync(pgbench)) throw new Error(`${pgbench} is missing: pgbench ships with the PostgreSQL ${bins.major} server packages`);
  return { bins, pgbench };
}
