// The pure parts: socket path limits, config rendering, DSNs and shell
// quoting, OS users and directory reachability.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import pg from "pg";
import { keyValueDsn, shellQuote, uriDsn } from "../../src/postgres/dsn.js";
import { isPostgresError } from "../../src/postgres/errors.js";
import { LocalPostgres } from "../../src/postgres/local-server.js";
import { assertReachable, lookupOsUser } from "../../src/postgres/os-user.js";
import { checkSocketPath, MAX_SOCKET_PATH, renderConf } from "../../src/postgres/settings.js";

test("a socket path over 107 bytes is refused up front, with the fix", () => {
  const fits = "/" + "d".repeat(MAX_SOCKET_PATH - "/.s.PGSQL.5432".length - 1);
  checkSocketPath(fits, 5432);
  assert.throws(() => checkSocketPath(fits + "x", 5432), (e: unknown) => {
    assert.ok(isPostgresError(e, "PG_SOCKET_PATH_TOO_LONG"), String(e));
    assert.match(e.message, /is 108 bytes, over the 107-byte limit of unix socket addresses; choose a shorter socket directory/);
    return true;
  });
  const deep = join("/tmp", "x".repeat(100), "data");
  assert.throws(() => new LocalPostgres({ dataDir: deep, port: 5432, password: "p" }), (e: unknown) => isPostgresError(e, "PG_SOCKET_PATH_TOO_LONG"));
  // A short socket dir makes a deep data dir fine.
  new LocalPostgres({ dataDir: deep, socketDir: "/tmp", port: 5432, password: "p" });
});

test("renderConf quotes strings and spells booleans", () => {
  assert.equal(
    renderConf({ a: "x'y\\z", b: true, c: 16, d: "" }).split("\n").slice(1).join("\n"),
    "a = 'x''y\\\\z'\nb = on\nc = 16\nd = ''\n",
  );
  assert.throws(() => renderConf({ "bad name": 1 }), /invalid PostgreSQL setting name/);
});

test("DSNs encode awkward passwords; pg parses the URI back", () => {
  const p = { host: "127.0.0.1", port: 5433, user: "postgres", password: "p@ss w'rd/:?#%", database: "my db" };
  const uri = uriDsn(p);
  assert.equal(uri, "postgresql://postgres:p%40ss%20w'rd%2F%3A%3F%23%25@127.0.0.1:5433/my%20db");
  const c = new pg.Client({ connectionString: uri });
  assert.deepEqual([c.host, c.port, c.user, c.password, c.database], ["127.0.0.1", 5433, "postgres", p.password, "my db"]);
  assert.equal(keyValueDsn(p), "host=127.0.0.1 port=5433 user=postgres password='p@ss w\\'rd/:?#%' dbname='my db'");
  assert.equal(keyValueDsn({ ...p, password: "plain", database: "postgres" }), "host=127.0.0.1 port=5433 user=postgres password=plain dbname=postgres");
});

test("shellQuote survives bash", () => {
  for (const s of ["plain", "it's", "a b", "$HOME", "`x`", "\\n", "", "postgresql://u:p%40@h:1/d"]) {
    const out = execFileSync("bash", ["-c", `printf %s ${shellQuote(s)}`], { encoding: "utf8" });
    assert.equal(out, s);
  }
});

test("OS users are looked up; unknown ones are undefined", () => {
  assert.equal(lookupOsUser("root")?.uid, 0);
  assert.equal(lookupOsUser("no-such-user-pgraft"), undefined);
});

test("assertReachable names the directory the server user cannot traverse", { skip: process.getuid?.() !== 0 && "needs root" }, async () => {
  const pgUser = lookupOsUser("postgres");
  if (!pgUser) return;
  const dir = mkdtempSync(join(tmpdir(), "pgraft-reach-")); // 0700, root's
  try {
    await assert.rejects(assertReachable(join(dir, "node", "data"), pgUser), (e: unknown) => {
      assert.ok(isPostgresError(e, "PG_DIR_NOT_REACHABLE"), String(e));
      assert.ok(e.message.includes(`${dir} is mode 0700 owned by uid 0`), e.message);
      assert.match(e.message, /chmod o\+x/);
      return true;
    });
    await assertReachable(dir, pgUser); // its parent (/tmp) is fine
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
