// PostgreSQL refuses to run as root. When pgraft runs as root (containers,
// systemd units without User=), the server programs run as the `postgres` OS
// user instead, on directories that user owns and can reach.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { PostgresError } from "./errors.js";

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user from /etc/passwd, else from `id` (NSS: LDAP, sssd, ...); undefined when it does not exist. */
export function lookupOsUser(name: string): OsUser | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f.length >= 4) return { name, uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // no /etc/passwd: ask id
  }
  try {
    const id = (flag: string) => Number(execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
    const uid = id("-u");
    const gid = id("-g");
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { name, uid, gid };
  } catch {
    // no such user
  }
  return undefined;
}

/**
 * The OS user to run the server programs as: undefined when we are not root
 * (they run as we do), else `name` (default "postgres"). Throws
 * PG_NO_SERVER_USER when we are root and that user does not exist.
 */
export function serverOsUser(name = "postgres"): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const u = lookupOsUser(name);
  if (!u) {
    throw new PostgresError(
      "PG_NO_SERVER_USER",
      `running as root, and PostgreSQL refuses to run as root, but there is no OS user "${name}" to run it as; ` +
        `create one (useradd --system --user-group --home-dir /var/lib/postgresql ${name}; the postgresql packages do this) or run pgraft as a non-root user`,
    );
  }
  if (u.uid === 0) throw new PostgresError("PG_NO_SERVER_USER", `OS user "${name}" has uid 0; PostgreSQL refuses to run as root: pick a non-root user`);
  return u;
}

/** chown `path` and everything under it (symlinks themselves, not their targets). */
export async function chownTree(path: string, user: OsUser): Promise<void> {
  await chown(path, user.uid, user.gid);
  if (!(await lstat(path)).isDirectory()) return;
  for (const e of await readdir(path, { withFileTypes: true })) {
    const p = join(path, e.name);
    if (e.isDirectory()) await chownTree(p, user);
    else if (!e.isSymbolicLink()) await chown(p, user.uid, user.gid);
  }
}

/**
 * Throws PG_DIR_NOT_REACHABLE when `user` cannot traverse some ancestor of
 * `dir` — typically a mkdtemp dir (mode 0700, owned by root) or /root. Node
 * drops supplementary groups when it spawns as another user, so owner, group
 * and other bits are all that count.
 */
export async function assertReachable(dir: string, user: OsUser): Promise<void> {
  const chain: string[] = [];
  for (let d = dirname(resolve(dir)); ; d = dirname(d)) {
    chain.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of chain) {
    const st = await stat(d);
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) {
      throw new PostgresError(
        "PG_DIR_NOT_REACHABLE",
        `the PostgreSQL server runs as OS user "${user.name}" (we are root), which cannot reach ${dir}: ${d} is mode ` +
          `${(st.mode & 0o777).toString(8).padStart(4, "0")} owned by uid ${st.uid}; choose a directory ${user.name} can reach ` +
          `(e.g. under /var/lib/postgresql or /tmp), or run \`chmod o+x ${d}\` or \`chown ${user.name} ${d}\``,
      );
    }
  }
}

/**
 * mkdir -p `dir` (new dirs get `mode`), and hand every directory it created
 * to `user`. Existing directories are left alone: chowning a directory we did
 * not make (say /tmp) would be a nasty surprise.
 */
export async function createServerDir(dir: string, user: OsUser | undefined, mode = 0o700): Promise<void> {
  const abs = resolve(dir);
  const first = await mkdir(abs, { recursive: true, mode });
  if (!user || first === undefined) return;
  for (let d = abs; ; d = dirname(d)) {
    await chown(d, user.uid, user.gid);
    if (d === resolve(first) || dirname(d) === d) break;
  }
}

/**
 * A new directory under the system temp dir that a PostgreSQL server run as
 * `postgres` (when we are root) can reach: mkdtemp makes 0700 dirs.
 */
export async function reachableTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}
