// What the demo's exit report quotes from a process's log (exitCause): the
// last error, not whatever line came last; nothing when the log shows none.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CAUSE_MAX_CHARS, exitCause } from "../../src/demo/local-cluster.js";

test("a sidecar's fatal line, after its JSON log lines", () => {
  const log = [
    '{"level":"info","time":1,"msg":"starting"}',
    '{"level":"error","time":2,"msg":"peer 2 unreachable","err":{"message":"connect ECONNREFUSED"}}',
    "pgraft: listen EADDRINUSE: address already in use 127.0.0.1:37227",
    "",
  ].join("\n");
  assert.equal(exitCause(log, "sidecar"), "pgraft: listen EADDRINUSE: address already in use 127.0.0.1:37227");
});

test("a sidecar's JSON error line as msg: err.message; an exception's message, not its stack frames", () => {
  assert.equal(exitCause('{"level":"info","msg":"a"}\n{"level":"fatal","msg":"cannot open the WAL","err":{"message":"EACCES: permission denied"}}\n', "sidecar"), "cannot open the WAL: EACCES: permission denied");
  assert.equal(exitCause("TypeError: x is not a function\n    at f (a.js:1:1)\n    at g (b.js:2:2)\n", "sidecar"), "TypeError: x is not a function");
  assert.equal(exitCause('{"level":"info","msg":"all fine"}\n', "sidecar"), undefined);
  assert.equal(exitCause("", "sidecar"), undefined);
});

test("PostgreSQL: the last FATAL/PANIC or address-in-use lines; the demo's markers and ordinary ERRORs do not count", () => {
  const log = [
    "2024-06-01 LOG:  starting PostgreSQL 15",
    '2024-06-01 LOG:  could not bind IPv4 address "127.0.0.1": Address already in use',
    "2024-06-01 HINT:  Is another postmaster already running on port 5433?",
    '2024-06-01 WARNING:  could not create listen socket for "127.0.0.1"',
    "2024-06-01 FATAL:  could not create any TCP/IP sockets",
    "2024-06-01 LOG:  database system is shut down",
    "=== pgraft: postgres exited (code 1) at 2024-06-01T00:00:00Z",
  ].join("\n");
  assert.equal(exitCause(log, "postgres"), '2024-06-01 LOG:  could not bind IPv4 address "127.0.0.1": Address already in use / 2024-06-01 FATAL:  could not create any TCP/IP sockets');
  assert.equal(exitCause("2024-06-01 ERROR:  syntax error at or near \"SELEC\"\n2024-06-01 LOG:  checkpoint complete\n", "postgres"), undefined);
});

test("bounded, one line, no control characters", () => {
  const cause = exitCause(`pgraft: ${"x".repeat(500)}\u001b[31m`, "sidecar")!;
  assert.equal(cause.length, CAUSE_MAX_CHARS);
  assert.ok(cause.endsWith("…"));
  assert.ok(!exitCause("pgraft: bad\u001b[31m thing", "sidecar")!.includes("\u001b"));
});
