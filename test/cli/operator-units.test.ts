// The operator commands' pure parts, in-process: common options (flags,
// environment, defaults, TLS choice), argument checks, error hints, tables and
// JSON rendering, and the commands' shape as registered on a program.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Command } from "commander";
import { KvGetResponseSchema, PostgresState, RaftState, StatusResponseSchema } from "../../src/gen/pgraft/v1/client_pb.js";
import { statusError } from "../../src/transport/grpc-service.js";
import { parseInt64, parseJsonValue, parseNodeId, parsePositiveInt, parseRaftAddress } from "../../src/cli/operator/arguments.js";
import { resolveCommonOptions } from "../../src/cli/operator/common-options.js";
import { RequestError, UsageError, describeRequestError } from "../../src/cli/operator/errors.js";
import { escapeControl, messageJson, renderKeyValues, renderTable } from "../../src/cli/operator/output.js";
import { statusJson, truncate } from "../../src/cli/operator/format.js";
import { registerOperatorCommands } from "../../src/cli/operator/index.js";
import { runProcess } from "../support/run.js";

const usage = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e.message;
  }
  assert.fail("no UsageError");
};

describe("common options", () => {
  test("defaults, flags over environment", () => {
    const s = resolveCommonOptions({ clusterId: "c1", plaintext: true }, {});
    assert.deepEqual(s, { endpoint: "127.0.0.1:7400", clusterId: "c1", tls: { insecure: true }, timeoutMs: 5000, timeoutText: "5s", json: false });
    const env = { PGRAFT_ENDPOINT: "10.0.0.1:7000", PGRAFT_CLUSTER_ID: "from-env", PGRAFT_PLAINTEXT: "true" };
    assert.equal(resolveCommonOptions({}, env).endpoint, "10.0.0.1:7000");
    assert.equal(resolveCommonOptions({ endpoint: "h:1", clusterId: "flag" }, env).clusterId, "flag");
    assert.equal(resolveCommonOptions({ endpoint: "h:1" }, env).endpoint, "h:1");
    assert.equal(resolveCommonOptions({ timeout: "250ms" }, env).timeoutMs, 250);
    assert.equal(resolveCommonOptions({ json: true }, env).json, true);
  });

  test("TLS: all three files, or explicit plaintext (PGRAFT_PLAINTEXT=false is not)", () => {
    const tls = { tlsCa: "ca.pem", tlsCert: "c.pem", tlsKey: "k.pem", clusterId: "c" };
    assert.deepEqual(resolveCommonOptions(tls, {}).tls, { caFile: "ca.pem", certFile: "c.pem", keyFile: "k.pem" });
    assert.deepEqual(resolveCommonOptions({ clusterId: "c" }, { PGRAFT_TLS_CA: "a", PGRAFT_TLS_CERT: "b", PGRAFT_TLS_KEY: "k" }).tls, { caFile: "a", certFile: "b", keyFile: "k" });
    assert.match(usage(() => resolveCommonOptions({ clusterId: "c" }, {})), /give --tls-ca, --tls-cert and --tls-key for mTLS, or --plaintext/);
    assert.match(usage(() => resolveCommonOptions({ clusterId: "c" }, { PGRAFT_PLAINTEXT: "false" })), /or --plaintext/);
    assert.match(usage(() => resolveCommonOptions({ clusterId: "c", tlsCa: "ca.pem" }, {})), /^mTLS needs all three/);
    assert.match(usage(() => resolveCommonOptions({ ...tls, plaintext: true }, {})), /--plaintext contradicts/);
  });

  test("every problem at once, each naming its source", () => {
    const m = usage(() => resolveCommonOptions({ timeout: "soon", plaintext: true }, { PGRAFT_ENDPOINT: "nope:99999" }));
    assert.match(m, /\$PGRAFT_ENDPOINT: "nope:99999": port 99999 is outside 1\.\.65535/);
    assert.match(m, /--cluster-id is required/);
    assert.match(m, /--timeout: "soon" is not a duration/);
    assert.match(usage(() => resolveCommonOptions({ clusterId: "bad id", plaintext: true }, {})), /--cluster-id: a cluster id is 1-63/);
    assert.match(usage(() => resolveCommonOptions({ clusterId: "c", plaintext: true, timeout: "0ms" }, {})), /outside 1ms\.\.24h/);
  });
});

describe("arguments", () => {
  test("node ids, revisions, limits, addresses", () => {
    assert.equal(parseNodeId("4294967295"), 4294967295);
    for (const bad of ["0", "-1", "1.5", "4294967296", "x", ""]) assert.match(usage(() => parseNodeId(bad)), /node id must be an integer in 1\.\.4294967295/);
    assert.equal(parseInt64("0", "r"), 0n);
    assert.equal(parseInt64("9223372036854775807", "r"), 9223372036854775807n);
    for (const bad of ["-1", "9223372036854775808", "7x"]) assert.match(usage(() => parseInt64(bad, "--if-mod-revision")), /^--if-mod-revision must be an integer/);
    assert.equal(parsePositiveInt("10", "--limit"), 10);
    assert.match(usage(() => parsePositiveInt("0", "--limit")), /--limit must be a positive integer/);
    assert.equal(parseRaftAddress(" [::1]:7400 "), "[::1]:7400");
    assert.match(usage(() => parseRaftAddress("db4")), /raft address "db4" is not host:port/);
  });

  test("JSON values: sent as typed; a bare word gets the quoting hint", () => {
    for (const ok of ['"hello"', "42", "true", "null", ' {"a": [1, 2]} ']) assert.equal(parseJsonValue(ok), ok);
    assert.match(usage(() => parseJsonValue("hello")), /to store it as a string, pass the JSON string: '"hello"'$/);
    assert.match(usage(() => parseJsonValue("{a:1}")), /^the value must be JSON text: /);
  });

  test("the hint's suggestion, pasted into a shell, stores the text that was meant as a JSON string", async () => {
    // input (one argument, as the shell passed it) -> the string the user meant to store
    const cases: [string, string][] = [
      ["hello", "hello"],
      ["it's", "it's"],
      ['"line1\nline2"', "line1\nline2"], // "$(printf '"line1\nline2"')": quoted, but with a raw newline
      ['"tab\there"', "tab\there"],
      ["a\nb", "a\nb"],
      ["{a:1}", "{a:1}"],
    ];
    for (const [input, meant] of cases) {
      const message = usage(() => parseJsonValue(input));
      assert.doesNotMatch(message, /[\n\t]/, "no raw control character in the message");
      const suggestion = /pass the JSON string: (.*)$/.exec(message)?.[1];
      assert.ok(suggestion, message);
      // What bash makes of the pasted suggestion is the argument pgraft would get.
      const r = await runProcess("bash", ["-c", `printf %s ${suggestion}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(parseJsonValue(r.stdout), r.stdout, `accepted: ${r.stdout}`);
      assert.equal(JSON.parse(r.stdout), meant, `${JSON.stringify(input)} -> ${suggestion}`);
    }
  });
});

describe("request errors", () => {
  const ctx = { endpoint: "127.0.0.1:7400", clusterId: "c1", timeout: "5s" };
  const fail = (code: grpc.status, details: string, trailers: Record<string, string> = {}): RequestError => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(trailers)) md.set(k, v);
    return new RequestError("add node 4", statusError(code, details, md));
  };

  test("hints by pgraft code, then by gRPC status", () => {
    assert.equal(
      describeRequestError(fail(grpc.status.FAILED_PRECONDITION, "not the leader", { "pgraft-error-code": "NOT_LEADER", "pgraft-leader-id": "3" }), ctx),
      "add node 4: not the leader [NOT_LEADER]; hint: the leader is node 3: send the request to its endpoint (pgraft members shows its address)",
    );
    assert.match(describeRequestError(fail(grpc.status.UNAVAILABLE, "no quorum", { "pgraft-error-code": "NO_QUORUM" }), ctx), /hint: a majority of the voters is unreachable/);
    assert.match(describeRequestError(fail(grpc.status.UNAVAILABLE, "no leader", { "pgraft-error-code": "UNAVAILABLE" }), ctx), /hint: no leader is known/);
    assert.match(describeRequestError(fail(grpc.status.UNAVAILABLE, "connect ECONNREFUSED"), ctx), /hint: is the sidecar running at 127\.0\.0\.1:7400\?$/);
    assert.match(describeRequestError(fail(grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"), ctx), /hint: no answer within 5s \(--timeout\)/);
    assert.match(describeRequestError(fail(grpc.status.FAILED_PRECONDITION, "cluster id mismatch: expected a, got c1"), ctx), /check --cluster-id .* sent "c1"$/);
    assert.equal(describeRequestError(fail(grpc.status.INVALID_ARGUMENT, "bad\nthing", { "pgraft-error-code": "INVALID" }), ctx), "add node 4: bad thing [INVALID]");
    assert.equal(describeRequestError(new RequestError("status", new Error("boom")), ctx), "status: boom");
  });
});

describe("rendering", () => {
  test("tables align columns and drop trailing blanks; key: value lines align values", () => {
    assert.deepEqual(
      renderTable(
        ["ID", "NAME", "X"],
        [
          ["1", "alpha", ""],
          ["10", "b", "y"],
        ],
      ),
      ["ID  NAME   X", "1   alpha", "10  b      y"],
    );
    assert.deepEqual(
      renderKeyValues([
        ["a", "1"],
        ["long_key", "2"],
      ]),
      ["a:        1", "long_key: 2"],
    );
  });

  test("JSON: proto names, zero values, absent messages as null, int64 as numbers, KV values as the JSON they hold", () => {
    assert.deepEqual(messageJson(KvGetResponseSchema, create(KvGetResponseSchema)), { header: null, kv: null });
    const doc = messageJson(KvGetResponseSchema, create(KvGetResponseSchema, { kv: { key: "k", value: '{"a":[1,2]}', modRevision: 3n } }));
    assert.deepEqual(doc["kv"], { key: "k", value: { a: [1, 2] }, create_revision: 0, mod_revision: 3, version: 0, lease: 0 });
    const big = messageJson(KvGetResponseSchema, create(KvGetResponseSchema, { kv: { key: "k", value: "", modRevision: 2n ** 60n } }));
    assert.deepEqual(big["kv"], { key: "k", value: null, create_revision: 0, mod_revision: "1152921504606846976", version: 0, lease: 0 });
  });

  test("JSON: enums by their lower-case names, unspecified and no leader as null", () => {
    const st = messageJson(StatusResponseSchema, create(StatusResponseSchema, { state: RaftState.PRE_CANDIDATE, leaderId: 0, header: { leaderId: 0, memberId: 2 } }));
    assert.equal(st["state"], "pre-candidate");
    assert.equal(st["leader_id"], null);
    assert.equal((st["header"] as Record<string, unknown>)["leader_id"], null);
    assert.equal(messageJson(StatusResponseSchema, create(StatusResponseSchema))["state"], null);
    assert.equal(messageJson(StatusResponseSchema, create(StatusResponseSchema, { state: RaftState.FOLLOWER }))["state"], "follower");
    const pgDown = messageJson(StatusResponseSchema, create(StatusResponseSchema, { postgres: { state: PostgresState.NOT_CONFIGURED } }));
    assert.equal((pgDown["postgres"] as Record<string, unknown>)["state"], "not_configured"); // as /health says it
  });

  test("status JSON: the postgres object's unknowns are null (no error while up, no times before the first probe)", () => {
    const pg = (postgres: Record<string, unknown>): unknown => statusJson(messageJson(StatusResponseSchema, create(StatusResponseSchema, { postgres })))["postgres"];
    assert.deepEqual(pg({ state: PostgresState.UP, sinceUnixMs: 5n, error: "", checkedUnixMs: 9n }), { state: "up", since_unix_ms: 5, error: null, checked_unix_ms: 9 });
    assert.deepEqual(pg({ state: PostgresState.DOWN, sinceUnixMs: 5n, error: "connection refused", checkedUnixMs: 9n }), {
      state: "down",
      since_unix_ms: 5,
      error: "connection refused",
      checked_unix_ms: 9,
    });
    assert.deepEqual(pg({ state: PostgresState.UNKNOWN }), { state: "unknown", since_unix_ms: null, error: null, checked_unix_ms: null });
    assert.equal(statusJson(messageJson(StatusResponseSchema, create(StatusResponseSchema)))["postgres"], null);
  });

  test("escapeControl: control characters escaped, plain text as it is", () => {
    assert.equal(escapeControl("plain \\ text ü"), "plain \\ text ü");
    assert.equal(escapeControl("a\nb\tc\u001b[0m\u009b\\"), "a\\nb\\tc\\x1b[0m\\u009b\\\\");
    assert.equal(truncate("abcdef", 4), "abc…");
    assert.equal(truncate("abcd", 4), "abcd");
  });
});

describe("registration", () => {
  test("the commands, their arguments, and the common options on every leaf", () => {
    const program = new Command().name("pgraft");
    registerOperatorCommands(program);
    const leaves: string[] = [];
    const visit = (c: Command, path: string[]): void => {
      if (c.commands.length === 0) {
        leaves.push([...path, c.name(), ...c.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`))].join(" "));
        const flags = c.options.map((o) => o.long);
        for (const f of ["--endpoint", "--cluster-id", "--tls-ca", "--tls-cert", "--tls-key", "--plaintext", "--timeout", "--json"]) {
          assert.ok(flags.includes(f), `${c.name()} lacks ${f}`);
        }
      }
      c.commands.forEach((s) => visit(s, c === program ? [] : [...path, c.name()]));
    };
    visit(program, []);
    assert.deepEqual(leaves.sort(), [
      "add-node <id> <raft-address>",
      "config get [name]",
      "config reset <name>",
      "config save",
      "config set <name> <value>",
      "kv delete <key>",
      "kv get <key>",
      "kv list [prefix]",
      "kv put <key> <json-value>",
      "members",
      "promote-node <id>",
      "remove-node <id>",
      "status",
      "switchover",
      "transfer-leader [target-id]",
    ]);
  });
});
