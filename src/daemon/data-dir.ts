// The sidecar's data dir holds the Raft WAL and snapshots (the replicated
// catalog: members, DSNs, KV values) and the shim's password: only the sidecar's
// OS user may read any of it. At start the dir is made (mode 0700) or
// tightened, and everything in it that a group or others could reach —
// written by an older version, or copied in with a loose umask — is made 0700
// (directories) or 0600 (files). New files are created private by the WAL's
// file layer (src/consensus/wal/fs-layer.ts) and src/shim/secret.ts.
import { constants } from "node:fs";
import { access, chmod, lstat, mkdir, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { DIR_MODE, FILE_MODE } from "../consensus/wal/fs-layer.js";

const octal = (mode: number): string => (mode & 0o777).toString(8).padStart(4, "0");

/**
 * mkdir -p `dir` (0700), then chmod every directory and regular file under it
 * (symlinks are not followed) that its group or others can reach. Returns one
 * line per change (or failed chmod: a dir we do not own), for the log.
 */
export async function secureDataDir(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  const changed: string[] = [];
  const tighten = async (path: string, from: number, to: number): Promise<void> => {
    try {
      await chmod(path, to);
      changed.push(`${path}: mode ${octal(from)} -> ${octal(to)}`);
    } catch (e) {
      changed.push(`${path}: mode ${octal(from)}, and chmod ${octal(to)} failed (${e instanceof Error ? e.message : String(e)})`);
    }
  };
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path);
    if (st.isSymbolicLink()) return;
    if (st.isDirectory()) {
      if ((st.mode & 0o077) !== 0) await tighten(path, st.mode, DIR_MODE);
      for (const name of await readdir(path)) await walk(join(path, name));
    } else if (st.isFile() && (st.mode & 0o077) !== 0) {
      await tighten(path, st.mode, FILE_MODE);
    }
  };
  await walk(dir);
  return changed;
}

/**
 * Why a private key file is exposed (readable by its group or others), or
 * undefined. The sidecar does not write it, so it only says so (a Kubernetes
 * secret volume is 0644 unless its defaultMode says otherwise).
 */
export async function exposedKeyFile(path: string): Promise<string | undefined> {
  try {
    await access(path, constants.R_OK);
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0) return `the TLS private key ${path} is readable by its group or others (mode ${octal(st.mode)}): chmod 600 it (in Kubernetes, defaultMode: 0400 on the secret volume)`;
  } catch {
    // unreadable: the TLS setup reports it
  }
  return undefined;
}
