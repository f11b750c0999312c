// How a user runs pgraft from a checkout: the ./pgraft wrapper (what the
// demo prints), and `make run`, which builds only when a source changed.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { describe as describeDemo, pgraftCommand } from "../../src/cli/demo.js";
import { runProcess } from "../support/run.js";

const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "..", "..");
const MAIN = join(ROOT, "dist", "src", "cli", "main.js");

test("./pgraft runs the built CLI from any directory (needs make build)", async () => {
  const elsewhere = mkdtempSync(join(tmpdir(), "pgw-"));
  try {
    const r = await runProcess(join(ROOT, "pgraft"), ["--version"], { cwd: elsewhere });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "0.1.0");
  } finally {
    rmSync(elsewhere, { recursive: true, force: true });
  }
});

test("the command the demo prints: ./pgraft at the root, the wrapper's absolute path elsewhere", () => {
  assert.equal(pgraftCommand(MAIN, ROOT), "./pgraft");
  assert.equal(pgraftCommand(MAIN, "/"), join(ROOT, "pgraft"));
  assert.equal(pgraftCommand("/nowhere/dist/src/cli/main.js", "/"), "node /nowhere/dist/src/cli/main.js");
});

test("the demo's text names every HTTP route, the cluster id, the pids, and no bare `pgraft` command", () => {
  const node = (id: number) => ({
    id,
    dsn: "postgresql://x",
    interface_dsn: `host=127.0.0.1 port=540${id} dbname=postgres user=postgres passfile=/d/node${id}/pg/pgpass`,
    passfile: `/d/node${id}/pg/pgpass`,
    psql: `psql 'host=127.0.0.1 port=540${id}'`,
    postgres: `127.0.0.1:540${id}`,
    grpc: `127.0.0.1:740${id}`,
    http: `http://127.0.0.1:800${id}`,
    metrics: `http://127.0.0.1:800${id}/metrics`,
    sql: `127.0.0.1:743${id}`,
    proxy: `127.0.0.1:643${id}`,
    proxy_read_only: `127.0.0.1:644${id}`,
    postgres_log: `/d/node${id}/pg/postgres.log`,
    sidecar_log: `/d/node${id}/sidecar.log`,
    sidecar_pid: 100 + id,
    postgres_pid: 200 + id,
  });
  const text = describeDemo({ cluster_id: "pgraft-demo", base_dir: "/d", supervisor_pid: 99, nodes: [node(1), node(2)] }, "./pgraft");
  for (const route of ["/health", "/ready", "/leader", "/primary", "/replica", "/metrics"]) assert.ok(text.includes(`http://127.0.0.1:8001${route}`), route);
  assert.match(text, /cluster pgraft-demo/);
  assert.match(text, /sidecar 101, PostgreSQL 201/);
  assert.match(text, /proxy: {4}read-write 127\.0\.0\.1:6431, read-only 127\.0\.0\.1:6441 {2}\(psql there: psql 'host=127\.0\.0\.1 port=6431'\)/);
  assert.match(text, /\(\.\/pgraft status --endpoint 127\.0\.0\.1:7401 --cluster-id pgraft-demo --plaintext\)/);
  assert.doesNotMatch(text, /(^|[\s(])pgraft (status|demo|members|kv)\b(?!:)/m);
});

test("make run builds only when a source changed (a stamp that depends on the sources)", async () => {
  // -n: print, do not run. -o: the stamp counts as up to date; -W: this source counts as just changed.
  const upToDate = await runProcess("make", ["-n", "-o", "dist/.run-build-stamp", "-o", "postgres", "run"], { cwd: ROOT });
  assert.equal(upToDate.code, 0, upToDate.stderr);
  assert.doesNotMatch(upToDate.stdout, /tsc|npm run gen/);
  assert.match(upToDate.stdout, /\.\/pgraft demo/);
  const changed = await runProcess("make", ["-n", "-W", "src/cli/demo.ts", "-o", "postgres", "run"], { cwd: ROOT });
  assert.equal(changed.code, 0, changed.stderr);
  assert.match(changed.stdout, /npx tsc -p tsconfig\.json/);
});
