// grpc-js's words for a failed call, shortened to what an operator needs
// (src/transport/grpc-error-text.ts): who could not be reached and why.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { callErrorText, transportErrorText } from "../../src/transport/grpc-error-text.js";

test("a refused or unresolvable connection: the target, its address and the cause", () => {
  assert.equal(
    transportErrorText("No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:44943. Resolution note: ", "the leader's sidecar"),
    "the leader's sidecar at 127.0.0.1:44943 is unreachable: connection refused (ECONNREFUSED)",
  );
  assert.equal(transportErrorText("No connection established. Last error: connect EHOSTUNREACH 10.0.0.9:7400"), "the sidecar at 10.0.0.9:7400 is unreachable: host unreachable (EHOSTUNREACH)");
  assert.equal(transportErrorText("No connection established. Last error: getaddrinfo ENOTFOUND nohost.invalid"), "the sidecar at nohost.invalid is unreachable: name does not resolve (ENOTFOUND)");
  assert.equal(transportErrorText("No connection established. Last error: null. Resolution note: ;"), "the sidecar is unreachable: no connection yet");
});

test("a deadline: how long was waited, without the load balancer's timings", () => {
  assert.equal(transportErrorText("Deadline exceeded after 2.001s,LB pick: 0.005s,remote_addr=127.0.0.1:38871", "its sidecar"), "its sidecar did not answer within 2.0 s");
});

test("any other text is left as it is; a plain Error gives its message", () => {
  assert.equal(transportErrorText("not the leader; no leader is known"), "not the leader; no leader is known");
  assert.equal(callErrorText(new Error("boom")), "boom");
  const e = Object.assign(new Error("14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1"), {
    code: grpc.status.UNAVAILABLE,
    details: "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1",
    metadata: new grpc.Metadata(),
  });
  assert.equal(callErrorText(e, "its sidecar"), "its sidecar at 127.0.0.1:1 is unreachable: connection refused (ECONNREFUSED)");
});
