// The password the shim uses on the sidecar's SQL endpoint: random, created
// once per data dir, readable only by the sidecar's OS user. The local
// PostgreSQL keeps its copy in a user mapping, which only its owner can read.
import { randomBytes } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const SECRET_FILE = "shim-password";

export async function loadOrCreateShimPassword(dataDir: string): Promise<string> {
  const path = join(dataDir, SECRET_FILE);
  try {
    const s = (await readFile(path, "utf8")).trim();
    if (s.length >= 16) return s;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const secret = randomBytes(24).toString("hex");
  await writeFile(path, secret + "\n", { mode: 0o600 });
  await chmod(path, 0o600);
  return secret;
}
