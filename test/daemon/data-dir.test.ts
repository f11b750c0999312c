// Everything the sidecar writes is private to its OS user: files 0600 in 0700
// directories, whatever the umask, and files left wider by an older version
// are tightened. Checked on the WAL and snapshot store directly (umask 000),
// on secureDataDir, and on a real sidecar process whose data dir and WAL were
// world-readable before it started: every file and directory it holds is
// stat'ed.
import assert from "node:assert/strict";
import { chmodSync, lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { SnapshotStore } from "../../src/consensus/wal/snapshot-store.js";
import { Wal } from "../../src/consensus/wal/wal.js";
import { exposedKeyFile, secureDataDir } from "../../src/daemon/data-dir.js";
import { loadOrCreateShimPassword } from "../../src/shim/secret.js";
import { ents, tempDir } from "../consensus/wal-fs-helpers.js";
import { SidecarProcess, sleep } from "../integration/harness.js";
import { freePorts } from "../support/ports.js";

const modeOf = (p: string): number => lstatSync(p).mode & 0o777;

/** Every path under `dir` (itself included) with its mode, symlinks left out. */
function tree(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (p: string): void => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    out.set(p, st.mode & 0o777);
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
  };
  walk(dir);
  return out;
}

function assertPrivate(dir: string, what: string): void {
  const all = tree(dir);
  assert.ok(all.size > 1, `${what}: something was written`);
  for (const [p, mode] of all) {
    const want = lstatSync(p).isDirectory() ? 0o700 : 0o600;
    assert.equal(mode, want, `${what}: ${p} is ${mode.toString(8)}, want ${want.toString(8)}`);
  }
}

/** Run `f` with umask 000, so nothing relies on the umask to keep files private. */
async function withUmask0<T>(f: () => Promise<T>): Promise<T> {
  const old = process.umask(0);
  try {
    return await f();
  } finally {
    process.umask(old);
  }
}

test("the WAL, the snapshot store and the shim password create 0600 files in 0700 dirs, even with umask 000", async (t: TestContext) => {
  const base = await tempDir(t, "pgraft-modes-");
  const dataDir = join(base, "data");
  await withUmask0(async () => {
    const { wal } = await Wal.open({ dir: join(dataDir, "wal"), segmentBytes: 4096 });
    for (let i = 0; i < 20; i++) await wal.save(ents(i * 10 + 1, i * 10 + 10, 1), { term: 1, vote: 1, commit: i * 10 });
    await wal.close();
    const snaps = new SnapshotStore(join(dataDir, "snap"));
    await snaps.save({ meta: { index: 50, term: 1, conf: { voters: [1], learners: [] } }, data: new Uint8Array(100) });
    await loadOrCreateShimPassword(dataDir);
  });
  assert.ok(readdirSync(join(dataDir, "wal")).length > 1, "several WAL segments");
  assertPrivate(dataDir, "written with umask 000");
});

test("a WAL segment and directory left wider by an older version are tightened when the WAL opens them", async (t: TestContext) => {
  const base = await tempDir(t, "pgraft-modes-");
  const dir = join(base, "wal");
  const { wal } = await Wal.open({ dir });
  await wal.save(ents(1, 5, 1), { term: 1, vote: 1, commit: 1 });
  await wal.close();
  chmodSync(dir, 0o755);
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
  const again = await Wal.open({ dir });
  await again.wal.save(ents(6, 6, 1), { term: 1, vote: 1, commit: 5 });
  await again.wal.close();
  assert.equal(modeOf(dir), 0o700);
  const last = readdirSync(dir).sort().at(-1)!;
  assert.equal(modeOf(join(dir, last)), 0o600, "the segment it appends to");
});

test("secureDataDir makes the dir 0700 and tightens every file and dir its group or others can reach, not following symlinks", async (t: TestContext) => {
  const base = await tempDir(t, "pgraft-modes-");
  const dataDir = join(base, "data");
  mkdirSync(join(dataDir, "wal"), { recursive: true, mode: 0o755 });
  chmodSync(dataDir, 0o755);
  chmodSync(join(dataDir, "wal"), 0o755);
  writeFileSync(join(dataDir, "wal", "0001.wal"), "x", { mode: 0o644 });
  writeFileSync(join(dataDir, "shim-password"), "x", { mode: 0o640 });
  writeFileSync(join(dataDir, "private"), "x", { mode: 0o400 });
  const outside = join(base, "outside");
  writeFileSync(outside, "x", { mode: 0o644 });
  chmodSync(outside, 0o644);
  symlinkSync(outside, join(dataDir, "link"));
  const changes = await secureDataDir(dataDir);
  assert.equal(changes.length, 4, changes.join("\n"));
  assert.match(changes.join("\n"), /shim-password: mode 0640 -> 0600/);
  assert.equal(modeOf(dataDir), 0o700);
  assert.equal(modeOf(join(dataDir, "wal")), 0o700);
  assert.equal(modeOf(join(dataDir, "wal", "0001.wal")), 0o600);
  assert.equal(modeOf(join(dataDir, "shim-password")), 0o600);
  assert.equal(modeOf(join(dataDir, "private")), 0o400, "narrower than 0600 is left alone");
  assert.equal(modeOf(outside), 0o644, "a symlink's target outside is not touched");
  assert.deepEqual(await secureDataDir(dataDir), [], "nothing left to do");
  // A data dir that does not exist yet is created 0700.
  await withUmask0(() => secureDataDir(join(base, "new", "data")));
  assert.equal(modeOf(join(base, "new", "data")), 0o700);
});

test("a TLS key others can read is reported (the sidecar does not write it)", async (t: TestContext) => {
  const base = await tempDir(t, "pgraft-modes-");
  const key = join(base, "node.key");
  writeFileSync(key, "k", { mode: 0o644 });
  chmodSync(key, 0o644);
  assert.match((await exposedKeyFile(key)) ?? "", /readable by its group or others \(mode 0644\): chmod 600 it/);
  chmodSync(key, 0o600);
  assert.equal(await exposedKeyFile(key), undefined);
});

test("a real sidecar: its data dir, WAL, snapshots and shim password are private, and what an older version left open is tightened at start", async (t: TestContext) => {
  const base = await tempDir(t, "pgraft-modes-");
  const dataDir = join(base, "n1");
  const [grpcPort, httpPort, sqlPort] = await freePorts(3);
  const mk = (): SidecarProcess =>
    new SidecarProcess(1, grpcPort!, httpPort!, dataDir, join(base, "n1.log"), ["--initial-cluster", `1=127.0.0.1:${grpcPort}`, "--sql-listen", `127.0.0.1:${sqlPort}`], {
      clusterId: "modes",
      heartbeat: "50ms",
      election: "500ms",
      env: {},
    });
  let s = mk();
  t.after(async () => {
    if (s.state !== "stopped") {
      s.signal("SIGKILL");
      await s.waitExit(10_000);
    }
  });
  s.spawn();
  await s.waitReady(30_000);
  // Leader of its own one-node cluster, so the WAL has more than the bootstrap.
  for (let i = 0; ; i++) {
    const status = await fetch(`http://127.0.0.1:${httpPort}/primary`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.status, () => 0);
    if (status === 200) break;
    if (i > 400) assert.fail(`no leader: ${s.tail()}`);
    await sleep(50);
  }
  s.signal("SIGTERM");
  await s.waitExit(20_000);
  assert.ok(readdirSync(join(dataDir, "wal")).length > 0 && readdirSync(join(dataDir, "snap")).length > 0);
  assertPrivate(dataDir, "after a first run");

  // As an older version left it: everything world-readable.
  for (const [p] of tree(dataDir)) chmodSync(p, lstatSync(p).isDirectory() ? 0o755 : 0o644);
  s = mk();
  s.spawn();
  await s.waitReady(30_000);
  assertPrivate(dataDir, "after a restart on a data dir left open");
  assert.match(s.tail(200), /data dir: tightened .*shim-password: mode 0644 -> 0600/);
  s.signal("SIGTERM");
  await s.waitExit(20_000);
});
