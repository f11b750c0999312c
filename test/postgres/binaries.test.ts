// Finding the server binaries: where we look, in which order, and the errors
// when they are missing or too old.
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { findPostgresBinaries, MIN_POSTGRES_MAJOR, parsePostgresVersion } from "../../src/postgres/binaries.js";
import { isPostgresError } from "../../src/postgres/errors.js";

const scratch = mkdtempSync(join(tmpdir(), "pgraft-bin-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A directory with fake `initdb` and `postgres` scripts; `postgres --version` prints `version`. */
function fakeBinDir(name: string, version: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "postgres"), `#!/bin/sh\necho 'postgres (PostgreSQL) ${version}'\n`);
  writeFileSync(join(dir, "initdb"), "#!/bin/sh\nexit 1\n");
  chmodSync(join(dir, "postgres"), 0o755);
  chmodSync(join(dir, "initdb"), 0o755);
  return dir;
}

test("the installed server binaries are found, version >= 15", async () => {
  const b = await findPostgresBinaries({ env: { PATH: process.env.PATH ?? "" } });
  assert.ok(b.major >= MIN_POSTGRES_MAJOR, `major ${b.major}`);
  assert.match(b.version, /^\d+\.\d+/);
  assert.equal(b.bin("postgres"), join(b.binDir, "postgres"));
  assert.ok(["pg_config", "search"].includes(b.source), b.source);
});

test("without pg_config on PATH the package locations are searched", async () => {
  const b = await findPostgresBinaries({ env: { PATH: "" } });
  assert.equal(b.source, "search");
  assert.ok(b.major >= MIN_POSTGRES_MAJOR);
});

test("PGRAFT_PG_BIN pointing at an empty dir: a clear error, no fallback", async () => {
  const empty = join(scratch, "empty");
  mkdirSync(empty);
  await assert.rejects(findPostgresBinaries({ env: { PATH: process.env.PATH ?? "", PGRAFT_PG_BIN: empty } }), (e: unknown) => {
    assert.ok(isPostgresError(e, "PG_BINARIES_NOT_FOUND"), String(e));
    assert.match(e.message, new RegExp(`PostgreSQL server binaries \\(initdb, postgres\\) not found in PGRAFT_PG_BIN=${empty}`));
    assert.match(e.message, /set PGRAFT_PG_BIN to the directory holding initdb and postgres/);
    assert.match(e.message, /apt-get install postgresql-15/);
    return true;
  });
});

test("an explicit binDir beats PGRAFT_PG_BIN", async () => {
  const real = await findPostgresBinaries();
  const b = await findPostgresBinaries({ binDir: real.binDir, env: { PGRAFT_PG_BIN: join(scratch, "nope") } });
  assert.equal(b.source, "option");
  assert.equal(b.binDir, real.binDir);
});

test("nothing anywhere: the error lists every place looked", async () => {
  const nowhere = join(scratch, "nowhere");
  await assert.rejects(findPostgresBinaries({ env: { PATH: "" }, searchDirs: [nowhere] }), (e: unknown) => {
    assert.ok(isPostgresError(e, "PG_BINARIES_NOT_FOUND"), String(e));
    assert.match(e.message, /^PostgreSQL server binaries \(initdb, postgres\) not found; looked in: pg_config on PATH \(none\), /);
    assert.ok(e.message.includes(nowhere), e.message);
    assert.match(e.message, /or set PGRAFT_PG_BIN=\/path\/to\/bin/);
    return true;
  });
});

test("a version older than 15 is refused, naming the version found", async () => {
  const old = fakeBinDir("old", "14.11 (Debian 14.11-1)");
  await assert.rejects(findPostgresBinaries({ env: { PGRAFT_PG_BIN: old } }), (e: unknown) => {
    assert.ok(isPostgresError(e, "PG_VERSION_UNSUPPORTED"), String(e));
    assert.match(e.message, /PostgreSQL 14\.11 found in .*old \(PGRAFT_PG_BIN\), but pgraft needs PostgreSQL 15 or newer/);
    return true;
  });
  const b = await findPostgresBinaries({ env: { PATH: "" }, searchDirs: [fakeBinDir("new", "17.2")] });
  assert.deepEqual([b.major, b.version], [17, "17.2"]);
});

test("parsePostgresVersion", () => {
  assert.deepEqual(parsePostgresVersion("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), { major: 15, version: "15.18" });
  assert.deepEqual(parsePostgresVersion("postgres (PostgreSQL) 16beta2"), { major: 16, version: "16beta2" });
  assert.deepEqual(parsePostgresVersion("postgres (PostgreSQL) 9.6.24"), { major: 9, version: "9.6.24" });
  assert.equal(parsePostgresVersion("something else"), undefined);
});
