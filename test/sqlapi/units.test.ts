// The SQL API's pure parts: the call parser, the catalogue against its
// implementations and the generated shim, DSN validation and SQLSTATE mapping.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ClusterError } from "../../src/cluster/errors.js";
import { dsnProblem } from "../../src/config/sidecar-config.js";
import { parseKeyValueDsn, toUriDsn } from "../../src/postgres/dsn.js";
import { NotLeaderError, RaftError } from "../../src/consensus/errors.js";
import { PgWireError } from "../../src/pgwire/index.js";
import { extensionScript, extensionUpdateScript, PREVIOUS_SHIM_VERSIONS, SHIM_VERSION, shimBodySql } from "../../src/shim/install-sql.js";
import { CallSyntaxError, parseCall } from "../../src/sqlapi/call-parser.js";
import { ALL_FUNCTIONS, FUNCTIONS, resultColumns, VIEWS } from "../../src/sqlapi/catalog.js";
import { toSqlError } from "../../src/sqlapi/errors.js";
import { implementedFunctions } from "../../src/sqlapi/functions.js";
import { statusError } from "../../src/transport/grpc-service.js";

describe("call parser", () => {
  test("the forms the shim sends and people type", () => {
    assert.deepEqual(parseCall("SELECT * FROM pgraft_get_nodes()"), { name: "pgraft_get_nodes", args: [], star: true });
    assert.deepEqual(parseCall("select pgraft_kv_get('k');"), { name: "pgraft_kv_get", args: ["k"], star: false });
    assert.deepEqual(parseCall("pgraft_add_node(2, '10.0.0.12', 7002)"), { name: "pgraft_add_node", args: ["2", "10.0.0.12", "7002"], star: false });
    assert.deepEqual(parseCall("SELECT public.PGRAFT_SET_DEBUG(true) AS x"), { name: "pgraft_set_debug", args: ["true"], star: false });
    assert.deepEqual(parseCall("SELECT pgraft_kv_put('it''s', '{\"a\": 1}'::jsonb)").args, ["it's", '{"a": 1}']);
    assert.deepEqual(parseCall("SELECT pgraft_kv_put(E'a\\\\b\\n\\'c', NULL)").args, ["a\\b\n'c", null]);
    assert.deepEqual(parseCall("/* c */ SELECT pgraft_get_leader() -- trailing").args, []);
    assert.deepEqual(parseCall("SELECT pgraft_kv_get('k'::text)").args, ["k"]);
  });

  test("anything else is a syntax error that says what is accepted", () => {
    for (const bad of ["", "DROP TABLE x", "SELECT 1", "SELECT pgraft_kv_get(k)", "SELECT pgraft_kv_get('k'", "SELECT pgraft_kv_get('k') ; SELECT 1", "SELECT pgraft_kv_get('unterminated)", "SELECT * pgraft_get_nodes()"]) {
      assert.throws(() => parseCall(bad), CallSyntaxError, bad);
    }
  });
});

describe("catalogue", () => {
  test("every function has an implementation, columns, a comment and a privilege", () => {
    const impl = new Set(implementedFunctions());
    for (const f of ALL_FUNCTIONS) {
      assert.ok(impl.has(f.name), `${f.name} is implemented`);
      assert.ok(resultColumns(f).length > 0);
      assert.ok(f.comment.length > 10);
      assert.ok(f.privilege === "admin" || f.privilege === "monitor");
    }
    assert.equal(impl.size, ALL_FUNCTIONS.length, "no implementation without a catalogue entry");
  });

  test("the seed's functions and documented columns are all there", () => {
    const cols = (n: string) => resultColumns(FUNCTIONS.find((f) => f.name === n)!).map((c) => c.name);
    for (const c of ["node_id", "state", "match_index", "commit_index", "address", "port", "last_heartbeat_ms", "replication_lag_bytes"]) assert.ok(cols("pgraft_get_nodes").includes(c), c);
    assert.deepEqual(cols("pgraft_get_cluster_status").slice(0, 7), ["node_id", "leader_id", "current_term", "state", "num_nodes", "messages_processed", "elections_triggered"]);
    assert.deepEqual(cols("pgraft_log_get_replication_status"), ["node_id", "match_index", "commit_index", "lag_entries", "state"]);
    assert.deepEqual(cols("pgraft_log_get_stats").slice(0, 4), ["first_index", "last_index", "total_entries", "disk_usage_mb"]);
  });

  test("the generated shim creates, comments and grants every function once", () => {
    const sql = shimBodySql();
    for (const f of FUNCTIONS) {
      assert.equal(sql.split(`CREATE OR REPLACE FUNCTION public.${f.name}(`).length, 2, f.name);
      assert.match(sql, new RegExp(`GRANT EXECUTE ON FUNCTION public\\.${f.name}\\([^)]*\\) TO pgraft_${f.privilege}`));
      assert.match(sql, new RegExp(`REVOKE ALL ON FUNCTION public\\.${f.name}\\(`));
    }
    assert.match(sql, /SECURITY DEFINER SET search_path = pg_catalog, pgraft, public/);
    assert.match(sql, /CREATE OR REPLACE FUNCTION pgraft\.create_node\(node_name text, local_dsn text, node_kind text DEFAULT 'data'\)/);
    assert.match(sql, /CREATE OR REPLACE FUNCTION bdr\.create_node\(/);
    for (const v of VIEWS) for (const schema of ["pgraft", "bdr"]) assert.match(sql, new RegExp(`CREATE OR REPLACE VIEW ${schema}\\.${v.name} AS`));
    assert.match(extensionScript(), /^-- pgraft /);
    assert.match(extensionScript(), /\\echo Use "CREATE EXTENSION pgraft"/);
    // An extension installed at an earlier version updates in place: the body again, and the version recorded.
    for (const v of PREVIOUS_SHIM_VERSIONS) {
      const up = extensionUpdateScript(v);
      assert.match(up, /\\echo Use "ALTER EXTENSION pgraft UPDATE"/);
      assert.ok(up.includes(shimBodySql()));
      assert.match(up, new RegExp(`INSERT INTO pgraft\\.shim_version\\(version\\) VALUES \\('${SHIM_VERSION.replace(/\./g, "\\.")}'\\)`));
    }
    assert.ok(!PREVIOUS_SHIM_VERSIONS.includes(SHIM_VERSION));
  });
});

describe("DSN validation", () => {
  test("URI and key=value forms with any libpq parameter are accepted", () => {
    for (const ok of [
      "postgresql://postgres:pw@127.0.0.1:5432/postgres",
      "postgres://u@host/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
      "host=127.0.0.1 port=5432 user=postgres password='a b\\'c' dbname=postgres sslmode=require",
      "dbname=postgres",
    ]) assert.equal(dsnProblem(ok), undefined, ok);
  });

  test("key=value DSNs become URIs the pg client reads, SSL parameters and socket dirs included", () => {
    assert.deepEqual([...parseKeyValueDsn("host=h port=5 password='a b\\'c' dbname=d")!], [["host", "h"], ["port", "5"], ["password", "a b'c"], ["dbname", "d"]]);
    assert.equal(toUriDsn("host=10.0.0.1 port=5433 user=u password='p w' dbname=app sslmode=verify-full sslrootcert=/etc/ca.pem"), "postgresql://u:p%20w@10.0.0.1:5433/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
    assert.equal(toUriDsn("host=/var/run/postgresql dbname=app"), "postgresql:///app?host=%2Fvar%2Frun%2Fpostgresql");
    assert.equal(toUriDsn("postgresql://u@h/db"), "postgresql://u@h/db");
    assert.throws(() => toUriDsn("not a dsn"), /not a PostgreSQL connection string/);
  });

  test("malformed DSNs are named without echoing the password", () => {
    assert.match(dsnProblem("")!, /empty/);
    assert.match(dsnProblem("postgresql://u:pw@host:99999/db")!, /port/);
    assert.match(dsnProblem("mysql://u@h/db")!, /postgresql:\/\//);
    assert.match(dsnProblem("host=127.0.0.1 port=abc dbname=x")!, /invalid port "abc"/);
    assert.match(dsnProblem("host=127.0.0.1 port=99999")!, /invalid port "99999"/);
    assert.equal(dsnProblem("host=a,b port=5432,5433"), undefined, "a port per host");
    assert.doesNotMatch(dsnProblem("postgresql://[::1")!, /password/, "the expected form does not invite a password");
    const p = dsnProblem("host=x password=secret oops")!;
    assert.match(p, /key=value/);
    assert.doesNotMatch(p, /secret/);
  });
});

describe("SQLSTATE mapping", () => {
  const code = (e: unknown) => toSqlError(e).code;
  test("typed errors, gRPC statuses and their error-code trailer", () => {
    assert.equal(code(new NotLeaderError(0)), "55000");
    assert.equal(code(new RaftError("TIMEOUT", "t")), "40003");
    assert.match(toSqlError(new RaftError("TIMEOUT", "t")).hint ?? "", /may or may not/);
    assert.equal(code(new ClusterError("UNKNOWN_SETTING", "x")), "22023");
    assert.equal(code(new ClusterError("TOO_LARGE", "x")), "54000");
    assert.equal(code(statusError(grpc.status.INVALID_ARGUMENT, "bad")), "22023");
    const md = new grpc.Metadata();
    md.set("pgraft-error-code", "TOO_LARGE");
    assert.equal(code(statusError(grpc.status.INVALID_ARGUMENT, "big", md)), "54000");
    assert.equal(code(new Error("boom")), "XX000");
    const pw = new PgWireError({ code: "42501", message: "no" });
    assert.equal(toSqlError(pw), pw);
  });
});
