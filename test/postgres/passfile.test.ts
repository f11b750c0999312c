// libpq's password sources as the sidecar resolves them (src/postgres/passfile.ts):
// the password file's matching rules, which file is read, the refusal of a
// file others can read, and — against a real PostgreSQL 15 — connections made
// through dsnClientConfig with a `passfile` in the DSN, PGPASSFILE and
// ~/.pgpass, and pg_dump (libpq itself) given the DSN the way the join does.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { dsnClientConfig, dsnHasPassword, keyValueDsn, toUriDsn, unknownDsnKeys } from "../../src/postgres/dsn.js";
import { findPassword, lookupPassword, noPasswordMessage, passfileLine, passfilePath, type PasswordLookup } from "../../src/postgres/passfile.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";

const execFileP = promisify(execFile);

describe("password file lines, matched as libpq matches them", () => {
  const target = { host: "db1", port: 5433, database: "app", user: "alice" };

  test("fields in order; the first matching line wins; comments and CRLF", () => {
    const text = ["# comment db1:5433:app:alice:nope", "db2:5433:app:alice:wrong-host", "db1:5433:app:alice:first\r", "db1:5433:app:alice:second"].join("\n");
    assert.equal(findPassword(text, target), "first");
    assert.equal(findPassword(text, { ...target, user: "bob" }), undefined);
    assert.equal(findPassword(text, { ...target, port: "5432" }), undefined);
  });

  test("a field that is exactly * matches anything; *x is literal", () => {
    assert.equal(findPassword("*:*:*:alice:w", target), "w");
    assert.equal(findPassword("db1:*:*:*:w", { ...target, user: "anyone" }), "w");
    assert.equal(findPassword("*x:*:*:*:w", target), undefined);
    assert.equal(findPassword("*x:*:*:*:w", { ...target, host: "*x" }), "w");
  });

  test("backslash escapes : and \\ in fields and in the password; the password ends at an unescaped :", () => {
    assert.equal(findPassword("db1:5433:my\\:db:alice:p\\:w\\\\d:ignored", { ...target, database: "my:db" }), "p:w\\d");
    assert.equal(findPassword("db1:5433:a\\\\b:alice:x", { ...target, database: "a\\b" }), "x");
    assert.equal(findPassword("db1:5433:a\\\\b:alice:x", { ...target, database: "a\\\\b" }), undefined);
    // A line passfileLine writes reads back.
    const pw = "a:b\\c:*";
    assert.equal(findPassword(passfileLine({ host: "h:1", port: 1, database: "*", user: "u\\v", password: pw }), { host: "h:1", port: 1, database: "whatever", user: "u\\v" }), pw);
  });

  test("defaults: port 5432, database = user, no host or the default socket dir = localhost", () => {
    assert.equal(findPassword("localhost:5432:alice:alice:d", { user: "alice" }), "d");
    assert.equal(findPassword("localhost:5432:alice:alice:d", { host: "/var/run/postgresql", user: "alice" }), "d");
    assert.equal(findPassword("localhost:5432:alice:alice:d", { host: "/tmp/elsewhere", user: "alice" }), undefined);
    assert.equal(findPassword("/tmp/elsewhere:5432:alice:alice:d", { host: "/tmp/elsewhere", user: "alice" }), "d");
  });

  test("a matching line with an empty password ends the search (libpq then has none)", () => {
    assert.equal(findPassword("db1:5433:app:alice:\ndb1:5433:app:alice:later", target), "");
  });
});

describe("which password source is read", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-passfile-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const file = (name: string, text: string, mode = 0o600): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    chmodSync(p, mode);
    return p;
  };
  const target = { host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres" };

  test("the DSN's passfile, else PGPASSFILE, else $HOME/.pgpass", () => {
    mkdirSync(join(dir, "home"), { recursive: true });
    assert.equal(passfilePath("/x/dsn", { PGPASSFILE: "/x/env", HOME: "/h" }), "/x/dsn");
    assert.equal(passfilePath(undefined, { PGPASSFILE: "/x/env", HOME: "/h" }), "/x/env");
    assert.equal(passfilePath(undefined, { PGPASSFILE: "", HOME: "/h" }), "/h/.pgpass");
    const a = file("a", "*:*:*:*:from-a\n");
    const b = file("b", "*:*:*:*:from-b\n");
    file("home/.pgpass", "*:*:*:*:from-home\n");
    assert.deepEqual(lookupPassword(target, a, { PGPASSFILE: b, HOME: join(dir, "home") }), { password: "from-a", source: "passfile", file: a });
    assert.deepEqual(lookupPassword(target, undefined, { PGPASSFILE: b, HOME: join(dir, "home") }), { password: "from-b", source: "passfile", file: b });
    assert.deepEqual(lookupPassword(target, undefined, { HOME: join(dir, "home") }), { password: "from-home", source: "passfile", file: join(dir, "home", ".pgpass") });
  });

  test("PGPASSWORD comes before any password file", () => {
    const a = file("a2", "*:*:*:*:from-a\n");
    assert.deepEqual(lookupPassword(target, a, { PGPASSWORD: "env-pw" }), { password: "env-pw", source: "PGPASSWORD" });
  });

  test("a file its group or others can read is ignored, and the error says why and how to fix it", () => {
    const open = file("open", "*:*:*:*:secret\n", 0o640);
    const l = lookupPassword(target, open, {});
    assert.equal(l.password, undefined);
    assert.equal(l.problem, "too-open");
    const msg = noPasswordMessage(target, l);
    assert.match(msg, /no password supplied for user "postgres" at 127\.0\.0\.1:5432, database "postgres"/);
    assert.match(msg, /has group or world access \(mode 0640\); permissions should be u=rw \(0600\) or less/);
    assert.ok(!msg.includes("secret"));
  });

  test("missing file, a directory, no matching line: each named", () => {
    const why = (l: PasswordLookup): string => noPasswordMessage(target, l as Extract<PasswordLookup, { password: undefined }>);
    assert.match(why(lookupPassword(target, join(dir, "nope"), {})), /the password file .*nope does not exist/);
    assert.match(why(lookupPassword(target, dir, {})), /is not a plain file/);
    assert.match(why(lookupPassword(target, file("other", "otherhost:*:*:*:x\n"), {})), /no line of the password file .*other matches 127\.0\.0\.1:5432:postgres:postgres/);
  });
});

test("dsnHasPassword: both DSN forms, user info and parameters", () => {
  assert.equal(dsnHasPassword("host=h user=u password=secret dbname=d"), true);
  assert.equal(dsnHasPassword("host=h user=u password='s e c' dbname=d"), true);
  assert.equal(dsnHasPassword("host=h user=u dbname=d passfile=/x"), false);
  assert.equal(dsnHasPassword("host=h application_name='password=x'"), false);
  assert.equal(dsnHasPassword("postgresql://u:secret@h/d"), true);
  assert.equal(dsnHasPassword("postgresql://u@h/d?password=secret"), true);
  assert.equal(dsnHasPassword("postgres://u@h/d?passfile=%2Fx"), false);
  assert.equal(dsnHasPassword("postgresql://u:@h/d"), false);
  // Whatever the case of the key (libpq refuses PASSWORD=, but the text would be stored), and a client key's passphrase.
  assert.equal(dsnHasPassword("host=h PASSWORD=secret"), true);
  assert.equal(dsnHasPassword("host=h sslpassword=secret"), true);
  assert.equal(dsnHasPassword("postgresql://u@h/d?PassWord=secret"), true);
});

test("unknownDsnKeys: the keys libpq would refuse, in either form", () => {
  assert.deepEqual(unknownDsnKeys("host=h port=5 dbname=d user=u passfile=/p sslmode=require application_name=x"), []);
  assert.deepEqual(unknownDsnKeys("host=h PASSWORD=x Host=y"), ["PASSWORD", "Host"]);
  assert.deepEqual(unknownDsnKeys("postgresql://u@h/d?sslmode=disable&bogus=1"), ["bogus"]);
});

test("dsnClientConfig: the DSN's parameters win as with connectionString; its password, or a resolver", () => {
  const c = dsnClientConfig("host=h port=6000 user=u dbname=d application_name=mine passfile=/p", { application_name: "default", connectionTimeoutMillis: 5 });
  assert.equal(c.host, "h");
  assert.equal(c.port, 6000);
  assert.equal(c.application_name, "mine");
  assert.equal(c.connectionTimeoutMillis, 5);
  assert.equal(typeof c.password, "function");
  assert.ok(!("passfile" in c), "passfile is ours, not a startup parameter");
  assert.equal(dsnClientConfig("postgresql://u:p%40ss@h/d").password, "p@ss");
});

describe("real connections find the password as libpq does", () => {
  let t: TestPostgres | undefined;
  let dir: string;
  const saved: Record<string, string | undefined> = {};
  const ENV = ["PGPASSWORD", "PGPASSFILE", "HOME"];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-passfile-pg-"));
    t = await startTestPostgres();
    for (const k of ENV) saved[k] = process.env[k];
    delete process.env["PGPASSWORD"];
    delete process.env["PGPASSFILE"];
  });
  after(async () => {
    for (const k of ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    await t?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const line = (): string => passfileLine({ host: "127.0.0.1", port: t!.server.port, database: "*", user: t!.server.superuser, password: t!.server.password }) + "\n";
  const dsn = (extra = ""): string => `${keyValueDsn({ host: "127.0.0.1", port: t!.server.port, user: t!.server.superuser, database: "postgres" })}${extra}`;
  async function connects(d: string): Promise<void> {
    const c = new pg.Client(dsnClientConfig(d, { connectionTimeoutMillis: 10_000 }));
    c.on("error", () => undefined);
    try {
      await c.connect();
      assert.equal((await c.query<{ one: number }>("SELECT 1 AS one")).rows[0]?.one, 1);
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  async function refused(d: string, why: RegExp): Promise<void> {
    const c = new pg.Client(dsnClientConfig(d, { connectionTimeoutMillis: 10_000 }));
    c.on("error", () => undefined);
    try {
      await assert.rejects(c.connect(), why);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  test("the DSN's passfile (both forms); a file others can read is refused with the reason", async () => {
    const pf = join(dir, "pgpass");
    writeFileSync(pf, line(), { mode: 0o600 });
    await connects(dsn(` passfile=${pf}`));
    await connects(toUriDsn(dsn(` passfile=${pf}`)));
    chmodSync(pf, 0o644);
    await refused(dsn(` passfile=${pf}`), /has group or world access \(mode 0644\)/);
    chmodSync(pf, 0o600);
    await refused(dsn(` passfile=${join(dir, "absent")}`), /password file .*absent does not exist/);
  });

  test("PGPASSFILE, then ~/.pgpass of the user we run as", async () => {
    const pf = join(dir, "env-pgpass");
    writeFileSync(pf, line(), { mode: 0o600 });
    process.env["PGPASSFILE"] = pf;
    try {
      await connects(dsn());
    } finally {
      delete process.env["PGPASSFILE"];
    }
    const home = join(dir, "home");
    mkdirSync(home, { recursive: true });
    writeFileSync(join(home, ".pgpass"), line(), { mode: 0o600 });
    process.env["HOME"] = home;
    try {
      await connects(dsn());
    } finally {
      if (saved["HOME"] === undefined) delete process.env["HOME"];
      else process.env["HOME"] = saved["HOME"];
    }
  });

  test("pg_dump given the DSN as the join gives it (toUriDsn) reads its passfile", async () => {
    const pf = join(dir, "dump-pgpass");
    writeFileSync(pf, line(), { mode: 0o600 });
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
    env["HOME"] = join(dir, "nowhere");
    const bin = (await import("../../src/postgres/binaries.js")).findPostgresBinaries;
    const pgDump = (await bin()).bin("pg_dump");
    const { stdout } = await execFileP(pgDump, ["--schema-only", "--dbname", toUriDsn(dsn(` passfile=${pf}`))], { env, timeout: 30_000 });
    assert.match(stdout, /PostgreSQL database dump/);
    await assert.rejects(execFileP(pgDump, ["--schema-only", "--no-password", "--dbname", toUriDsn(dsn())], { env, timeout: 30_000 }), /password/);
  });
});
