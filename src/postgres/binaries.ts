// Where the PostgreSQL server binaries are, and which major version they are.
// pgraft drives a stock PostgreSQL, so it looks where packages put it rather
// than bundling one: an explicit setting wins, then pg_config on PATH, then the
// usual package locations (highest version first).
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, readdir } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { PostgresError } from "./errors.js";

const execFileP = promisify(execFile);

/** pgraft relies on PostgreSQL 15 features (e.g. row filters and column lists in publications). */
export const MIN_POSTGRES_MAJOR = 15;

/** The binaries every server needs; psql & co. are only used when present. */
const REQUIRED = ["initdb", "postgres"] as const;

const INSTALL_PACKAGES = "postgresql-15 or newer (Debian/Ubuntu: apt-get install postgresql-15; RHEL/Fedora: dnf install postgresql15-server)";
const INSTALL_HINT = `install ${INSTALL_PACKAGES} or set PGRAFT_PG_BIN=/path/to/bin (the directory holding initdb and postgres)`;

export type BinariesSource = "option" | "PGRAFT_PG_BIN" | "pg_config" | "search";

export interface PostgresBinaries {
  binDir: string;
  /** How binDir was chosen (for messages). */
  source: BinariesSource;
  /** e.g. 15 */
  major: number;
  /** e.g. "15.8", as `postgres --version` prints it. */
  version: string;
  /** Absolute path of a program in binDir (`initdb`, `postgres`, `psql`, ...). */
  bin(name: string): string;
}

export interface FindBinariesOptions {
  /** Use this directory and nothing else (beats PGRAFT_PG_BIN). */
  binDir?: string;
  /** Defaults to process.env (PGRAFT_PG_BIN, PATH). */
  env?: NodeJS.ProcessEnv;
  /** Replaces the package locations searched last (for tests). */
  searchDirs?: string[];
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The required programs missing from `dir`. */
async function missingIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of REQUIRED) if (!(await isExecutable(join(dir, name)))) out.push(name);
  return out;
}

/** `postgres (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)` → { major: 15, version: "15.8" }; also "16beta2", "10.23". */
export function parsePostgresVersion(text: string): { major: number; version: string } | undefined {
  const m = /\(PostgreSQL\)\s+((\d+)(?:\.\d+)*(?:[a-z]+\d*)?)/.exec(text);
  return m ? { major: Number(m[2]), version: m[1]! } : undefined;
}

/** `pg_config --bindir` for the first pg_config on PATH, if any. */
async function pgConfigBinDir(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const pgConfig = join(dir, "pg_config");
    if (!(await isExecutable(pgConfig))) continue;
    try {
      const { stdout } = await execFileP(pgConfig, ["--bindir"], { timeout: 10_000 });
      const binDir = stdout.trim();
      return binDir || undefined;
    } catch {
      return undefined; // a broken pg_config: fall through to the package locations
    }
  }
  return undefined;
}

async function versionedDirs(parent: string, pattern: RegExp, sub: (name: string) => string): Promise<{ dir: string; ver: number }[]> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return [];
  }
  const out: { dir: string; ver: number }[] = [];
  for (const n of names) {
    const m = pattern.exec(n);
    if (m) out.push({ dir: sub(n), ver: Number(m[1]) });
  }
  return out;
}

/** Where packages install the server, highest version first: Debian/Ubuntu, PGDG RPMs, source builds. */
export async function defaultSearchDirs(): Promise<string[]> {
  const found = [
    ...(await versionedDirs("/usr/lib/postgresql", /^(\d+)$/, (n) => join("/usr/lib/postgresql", n, "bin"))),
    ...(await versionedDirs("/usr", /^pgsql-(\d+)$/, (n) => join("/usr", n, "bin"))),
  ];
  found.sort((a, b) => b.ver - a.ver);
  return [...found.map((f) => f.dir), "/usr/local/pgsql/bin"];
}

async function describe(binDir: string, source: BinariesSource): Promise<PostgresBinaries> {
  const postgres = join(binDir, "postgres");
  let text: string;
  try {
    // --version is answered before postgres' refusal to run as root, so this works as root too.
    text = (await execFileP(postgres, ["--version"], { timeout: 10_000 })).stdout;
  } catch (e) {
    throw new PostgresError("PG_BINARIES_NOT_FOUND", `${postgres} --version failed (${e instanceof Error ? e.message : String(e)}); ${INSTALL_HINT}`, { cause: e });
  }
  const v = parsePostgresVersion(text);
  if (!v) throw new PostgresError("PG_BINARIES_NOT_FOUND", `could not read the version from \`${postgres} --version\` (it printed ${JSON.stringify(text.trim())}); ${INSTALL_HINT}`);
  if (v.major < MIN_POSTGRES_MAJOR) {
    throw new PostgresError(
      "PG_VERSION_UNSUPPORTED",
      `PostgreSQL ${v.version} found in ${binDir} (${source}), but pgraft needs PostgreSQL ${MIN_POSTGRES_MAJOR} or newer; ${INSTALL_HINT}`,
    );
  }
  return { binDir, source, major: v.major, version: v.version, bin: (name) => join(binDir, name) };
}

/**
 * Find the server binaries. An explicit `binDir` or PGRAFT_PG_BIN is used as
 * is: when it lacks a binary that is an error, not a reason to look elsewhere
 * (the user asked for that directory). Throws PostgresError
 * PG_BINARIES_NOT_FOUND or PG_VERSION_UNSUPPORTED.
 */
export async function findPostgresBinaries(opts: FindBinariesOptions = {}): Promise<PostgresBinaries> {
  const env = opts.env ?? process.env;
  const explicit: [string, BinariesSource] | undefined = opts.binDir
    ? [opts.binDir, "option"]
    : env.PGRAFT_PG_BIN
      ? [env.PGRAFT_PG_BIN, "PGRAFT_PG_BIN"]
      : undefined;
  if (explicit) {
    const [dir, source] = explicit;
    const missing = await missingIn(dir);
    if (missing.length) {
      const fix =
        source === "option"
          ? "pass the directory holding initdb and postgres (e.g. /usr/lib/postgresql/15/bin)"
          : "set PGRAFT_PG_BIN to the directory holding initdb and postgres (e.g. /usr/lib/postgresql/15/bin), or unset it to search the usual places";
      throw new PostgresError(
        "PG_BINARIES_NOT_FOUND",
        `PostgreSQL server binaries (${missing.join(", ")}) not found in ${source === "option" ? dir : `PGRAFT_PG_BIN=${dir}`}; ${fix}; if they are not installed: install ${INSTALL_PACKAGES}`,
      );
    }
    return describe(dir, source);
  }

  const looked: string[] = [];
  const fromPgConfig = await pgConfigBinDir(env);
  if (fromPgConfig) {
    looked.push(`${fromPgConfig} (pg_config --bindir)`);
    if ((await missingIn(fromPgConfig)).length === 0) return describe(fromPgConfig, "pg_config");
  } else {
    looked.push("pg_config on PATH (none)");
  }
  for (const dir of opts.searchDirs ?? (await defaultSearchDirs())) {
    looked.push(dir);
    if ((await missingIn(dir)).length === 0) return describe(dir, "search");
  }
  throw new PostgresError(
    "PG_BINARIES_NOT_FOUND",
    `PostgreSQL server binaries (${REQUIRED.join(", ")}) not found; looked in: ${looked.join(", ")}; ${INSTALL_HINT}`,
  );
}
