// The seed's two bash recipes ("Collect diagnostics" and "Automated health
// check") run through real bash and psql 15 against a PostgreSQL server with
// the pgraft shim, on a 3-node cluster. psql finds the server through the
// libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), as on a
// database host where the recipe runs as the postgres user; only the output
// paths are changed (to a temp dir of the test).
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";
import { until, withCluster } from "./helpers.js";

/** The seed's "Collect diagnostics" recipe, verbatim. */
const DIAGNOSTICS_RECIPE = `#!/usr/bin/env bash
psql -f - <<'SQL'
o /tmp/pgraft-diagnostics.txt
SELECT now() AS collected_at;
SELECT * FROM pgraft_get_cluster_status();
SELECT * FROM pgraft_get_nodes();
SELECT * FROM pgraft_log_get_replication_status();
SELECT * FROM pgraft_log_get_stats();
SQL

sudo tail -200 /var/log/postgresql/postgresql-17-main.log | grep pgraft >> /tmp/pgraft-diagnostics.txt
`;

/** The seed's "Automated health check" recipe, verbatim. */
const HEALTH_RECIPE = `#!/usr/bin/env bash
RESULT=$(psql -t -c "SELECT * FROM pgraft_health_check() WHERE severity IN ('warning', 'critical');")
if [[ -n "$RESULT" ]]; then
  echo "$(date --iso-8601=seconds) - ALERT: $RESULT" >> /var/log/pgraft-health.log
fi
`;

/**
 * The diagnostics recipe as it can run here: the output file in our temp dir,
 * and without its last line — `sudo tail -200 /var/log/postgresql/postgresql-17-main.log`
 * reads the log of a Debian-packaged PostgreSQL 17 cluster, which a test
 * server (PostgreSQL 15, logging to its own temp dir) does not have.
 * `fixMeta` restores the backslash the seed lost: its `o /tmp/...` line is
 * psql's `\o FILE` meta-command (send query results to FILE).
 */
function diagnostics(outFile: string, fixMeta: boolean): string {
  const lines = DIAGNOSTICS_RECIPE.split("\n").filter((l) => !l.startsWith("sudo tail "));
  return lines.map((l) => (l === "o /tmp/pgraft-diagnostics.txt" ? `${fixMeta ? "\\o" : "o"} ${outFile}` : l)).join("\n");
}

// The full column lists of the SELECT * calls (the catalogue's, which extend the seed's documented ones).
const CLUSTER_STATUS = ["node_id", "leader_id", "current_term", "state", "num_nodes", "messages_processed", "elections_triggered", "commit_index", "applied_index", "quorum_met", "version"];
const NODES = ["node_id", "state", "match_index", "commit_index", "address", "port", "last_heartbeat_ms", "replication_lag_bytes", "node_name", "role", "is_leader", "reachable", "lag_entries"];

const healthCheck = (logFile: string): string => HEALTH_RECIPE.replace("/var/log/pgraft-health.log", logFile);

describe("the seed's bash recipes through real psql", () => {
  let cluster: PgCluster | undefined;
  let dir = "";
  const it = (name: string, fn: (t: TestContext, c: PgCluster) => Promise<void>): void => {
    test(name, withCluster(() => cluster, fn));
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-recipes-"));
    cluster = await startPgCluster({ nodes: 3, name: "recipes" });
  });
  after(async () => {
    await cluster?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the recipes are the seed's text (only the output paths and the sudo tail line are adapted)", () => {
    assert.ok(DIAGNOSTICS_RECIPE.includes("\no /tmp/pgraft-diagnostics.txt\n"), "the seed's line lacks the backslash of \\o");
    const adapted = diagnostics("/x/out.txt", true);
    assert.ok(adapted.includes("\n\\o /x/out.txt\nSELECT now() AS collected_at;\n"));
    assert.ok(!adapted.includes("sudo"));
    assert.equal(healthCheck("/x/h.log"), HEALTH_RECIPE.replace("/var/log/pgraft-health.log", "/x/h.log"));
    return Promise.resolve();
  });

  it("Collect diagnostics, with \\o restored: every result set lands in the file, in order, on the leader and on a follower", async (_t, c) => {
    for (const n of [await c.leader(), await c.follower()]) {
      const out = join(dir, `diagnostics-${n.id}.txt`);
      const r = await n.bash(diagnostics(out, true));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      assert.equal(r.stdout, "", "\\o sends every result to the file");
      const text = readFileSync(out, "utf8");
      // psql's aligned headers: the column names, centred, between "|".
      const header = (...cols: string[]): RegExp => new RegExp(cols.join(" *\\| *"));
      const headers = [
        header("collected_at"),
        header(...CLUSTER_STATUS),
        header(...NODES),
        header("node_id", "match_index", "commit_index", "lag_entries", "state"),
        header("first_index", "last_index", "total_entries", "disk_usage_mb", "commit_index", "applied_index"),
      ];
      let at = 0;
      for (const h of headers) {
        const m = h.exec(text.slice(at));
        assert.ok(m, `${h} after offset ${at} in:\n${text}`);
        at += m.index + m[0].length;
      }
      assert.equal((text.match(/\(1 row\)/g) ?? []).length, 3, "now(), the cluster status and the log stats: one row each");
      assert.equal((text.match(/\(3 rows\)/g) ?? []).length, 2, "nodes and replication status: one row per node");
      assert.match(text, new RegExp(`^ +${n.id} \\| +${(await c.leader()).id} \\| `, "m"), "the calling node's status row");
    }
  });

  it("Collect diagnostics as written: psql reads `o /tmp/...` as SQL, so the first statement fails and nothing goes to a file", async (_t, c) => {
    const n = await c.follower();
    const out = join(dir, "never-written.txt");
    const r = await n.bash(diagnostics(out, false));
    // Without ON_ERROR_STOP psql goes on after the error: exit status 0, the other four results on stdout.
    assert.equal(r.code, 0);
    assert.match(r.stderr, /ERROR: {2}syntax error at or near "o"/);
    assert.ok(!existsSync(out));
    assert.doesNotMatch(r.stdout, /collected_at/, "the now() query was swallowed by the broken statement");
    assert.match(r.stdout, /node_id \| leader_id \| current_term/);
    assert.match(r.stdout, /first_index \| last_index/);
  });

  it("Automated health check: no ALERT on a healthy cluster; an ALERT line once a follower's sidecar is stopped", async (_t, c) => {
    const leader = await c.leader();
    const healthy = async (n: PgNode): Promise<boolean> =>
      (await n.query("SELECT 1 FROM pgraft_health_check() WHERE severity IN ('warning', 'critical')")).rows.length === 0;
    // elections_per_term counts this node's own campaigns (pre-votes included) since it started: a node that campaigned
    // a few times while the others were still starting can be "warning" for a while, so pick nodes that report all ok.
    const calm = await until("a node whose health check is all ok", async () => {
      for (const n of c.nodes) if (await healthy(n)) return n;
      return undefined;
    });
    // A healthy cluster: the recipe writes no ALERT (each run, so a follower briefly reported as not answering would show).
    for (let run = 0; run < 3; run++) {
      const quietLog = join(dir, `health-healthy-${run}.log`);
      const ok = await calm.bash(healthCheck(quietLog));
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stderr, "");
      assert.equal(existsSync(quietLog) ? readFileSync(quietLog, "utf8") : "", "", `run ${run}: a healthy cluster raised an ALERT`);
    }

    // Stop a follower's sidecar: the leader reports it as not answering (follower_lag critical).
    const down = await c.follower();
    await c.stopSidecar(down.id);
    await until(
      `the leader to see node ${down.id} as stalled`,
      async () => (await leader.query("SELECT 1 FROM pgraft_health_check() WHERE check_name = 'follower_lag' AND severity = 'critical'")).rows.length === 1,
      10_000,
    );
    for (const n of c.nodes.filter((x) => x.id !== down.id)) {
      const log = join(dir, `health-node${n.id}.log`);
      const r = await n.bash(healthCheck(log));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      const lines = readFileSync(log, "utf8").split("\n").filter(Boolean);
      assert.ok(lines.length >= 1);
      assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d - ALERT: +follower_lag +\| critical +\| not answering: node \d+/);
      assert.match(lines.join("\n"), new RegExp(`follower_lag +\\| critical +\\| not answering: [^;]*\\bnode ${down.id}\\b`), `ALERT from node ${n.id}`);
    }
    // On the node whose own sidecar is down, the call fails at once with a clear error on stderr; the recipe as the seed
    // writes it ignores psql's exit status, so RESULT is empty and it writes no ALERT there (check $? to catch that case).
    const own = join(dir, `health-node${down.id}.log`);
    const r = await down.bash(healthCheck(own));
    const direct = await down.psql(["-t", "-c", "SELECT * FROM pgraft_health_check() WHERE severity IN ('warning', 'critical');"]);
    assert.equal(direct.code, 1);
    assert.match(direct.stderr, /ERROR: {2}the pgraft sidecar at 127\.0\.0\.1:\d+ is unreachable\nDETAIL: {2}connection to server at "127\.0\.0\.1", port \d+ failed: Connection refused/);
    assert.match(r.stderr, /the pgraft sidecar at 127\.0\.0\.1:\d+ is unreachable/);
    assert.ok(!existsSync(own));
    await c.restartSidecar(down.id);
    const back = join(dir, "health-back.log");
    await until("every check ok again on the leader", () => healthy(leader), 10_000);
    await until("a health-check run without an ALERT once the follower is back", async () => {
      rmSync(back, { force: true });
      const after = await leader.bash(healthCheck(back));
      assert.equal(after.code, 0, after.stderr);
      return !existsSync(back);
    }, 10_000);
  });
});
