// The routes and the health check's postgres_nodes row as functions of the
// local PostgreSQL's state (the real thing, with PostgreSQL killed under
// running sidecars, is test/sql/postgres-down.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Role, type RaftStatus } from "../../src/consensus/types.js";
import { answerRoute } from "../../src/http/routes.js";
import type { PostgresHealth } from "../../src/postgres/monitor.js";
import { postgresHealthFrom, postgresHealthMessage, postgresNodesCheck } from "../../src/daemon/postgres-status.js";
import { create } from "@bufbuild/protobuf";
import * as pb from "../../src/gen/pgraft/v1/client_pb.js";

const status = (role: Role): RaftStatus =>
  ({
    id: 1,
    role,
    term: 3,
    leader: role === Role.Leader ? 1 : 2,
    commit: 10,
    applied: 10,
    conf: { voters: [1, 2, 3], learners: [] },
  }) as unknown as RaftStatus;

const UP: PostgresHealth = { state: "up", sinceMs: 1_700_000_000_000, checkedMs: 1_700_000_001_000, probeSeconds: 0.001 };
const DOWN: PostgresHealth = { state: "down", sinceMs: 1_700_000_000_000, error: "connect ECONNREFUSED 127.0.0.1:5432", checkedMs: 1_700_000_001_000 };

function codes(role: Role, pg: PostgresHealth | undefined): Record<string, number> {
  const view = { status: () => status(role), maxReplicaLagEntries: 100, ...(pg ? { postgres: () => pg } : {}) };
  const out: Record<string, number> = {};
  for (const p of ["/health", "/ready", "/primary", "/leader", "/replica"]) out[p] = answerRoute(p, view)!.code;
  return out;
}

describe("routes with the local PostgreSQL up, down, not probed yet, or not configured", () => {
  test("leader: /primary and /ready follow PostgreSQL; /leader and /health do not", () => {
    assert.deepEqual(codes(Role.Leader, UP), { "/health": 200, "/ready": 200, "/primary": 200, "/leader": 200, "/replica": 503 });
    assert.deepEqual(codes(Role.Leader, DOWN), { "/health": 200, "/ready": 503, "/primary": 503, "/leader": 200, "/replica": 503 });
    assert.deepEqual(codes(Role.Leader, { state: "unknown" }), { "/health": 200, "/ready": 503, "/primary": 503, "/leader": 200, "/replica": 503 });
    assert.deepEqual(codes(Role.Leader, undefined), { "/health": 200, "/ready": 200, "/primary": 200, "/leader": 200, "/replica": 503 });
  });

  test("follower: /replica and /ready follow PostgreSQL", () => {
    assert.deepEqual(codes(Role.Follower, UP), { "/health": 200, "/ready": 200, "/primary": 503, "/leader": 503, "/replica": 200 });
    assert.deepEqual(codes(Role.Follower, DOWN), { "/health": 200, "/ready": 503, "/primary": 503, "/leader": 503, "/replica": 503 });
    assert.deepEqual(codes(Role.Follower, undefined), { "/health": 200, "/ready": 200, "/primary": 503, "/leader": 503, "/replica": 200 });
  });

  test("/health's body says how PostgreSQL is: down with since and error, or not configured", () => {
    const down = answerRoute("/health", { status: () => status(Role.Leader), maxReplicaLagEntries: 100, postgres: () => DOWN })!;
    assert.deepEqual(down.body.postgres, { status: "down", since: "2023-11-14T22:13:20.000Z", error: "connect ECONNREFUSED 127.0.0.1:5432", checked_at: "2023-11-14T22:13:21.000Z" });
    const none = answerRoute("/health", { status: () => status(Role.Leader), maxReplicaLagEntries: 100 })!;
    assert.deepEqual(none.body.postgres, { status: "not_configured", detail: "no local PostgreSQL configured" });
  });
});

describe("postgres_nodes: every member's PostgreSQL", () => {
  test("down is critical and names the node with since and error; unknown is a warning; all up is ok", () => {
    assert.deepEqual(postgresNodesCheck([{ id: 1, health: UP }, { id: 2, health: UP }]), { severity: "ok", detail: "up on node 1, node 2" });
    assert.deepEqual(postgresNodesCheck([{ id: 1, health: DOWN }, { id: 2, health: UP }, { id: 3, unknown: "its sidecar did not answer: Deadline exceeded" }]), {
      severity: "critical",
      detail: "PostgreSQL down on node 1 since 2023-11-14T22:13:20.000Z: connect ECONNREFUSED 127.0.0.1:5432; PostgreSQL state unknown on node 3: its sidecar did not answer: Deadline exceeded; up on node 2",
    });
    assert.equal(postgresNodesCheck([{ id: 1, health: UP }, { id: 2, health: { state: "unknown" } }]).severity, "warning");
    assert.deepEqual(postgresNodesCheck([{ id: 1, health: UP }, { id: 4, health: { state: "not_configured" } }]), {
      severity: "ok",
      detail: "up on node 1; no local PostgreSQL configured on node 4",
    });
  });

  test("the Status message carries the state both ways; an older sidecar's empty field is no report", () => {
    for (const h of [UP, DOWN, { state: "unknown" } as PostgresHealth, { state: "not_configured" } as PostgresHealth]) {
      const back = postgresHealthFrom(create(pb.PostgresHealthSchema, postgresHealthMessage(h)));
      assert.deepEqual(back, { state: h.state, ...(h.sinceMs ? { sinceMs: h.sinceMs } : {}), ...(h.error ? { error: h.error } : {}), ...(h.checkedMs ? { checkedMs: h.checkedMs } : {}) });
    }
    assert.equal(postgresHealthFrom(undefined), undefined);
    assert.equal(postgresHealthFrom(create(pb.PostgresHealthSchema, {})), undefined);
  });
});

describe("Kubernetes probes: /live and /ready", () => {
  const view = (over: Partial<RaftStatus>, pg?: PostgresHealth) => ({
    status: () => ({ ...status(Role.Follower), ...over }),
    maxReplicaLagEntries: 100,
    ...(pg ? { postgres: () => pg } : {}),
  });

  test("/live is 200 whatever Raft and PostgreSQL say (liveness is the process alone)", () => {
    for (const v of [view({ leader: 0 }, DOWN), view({ conf: { voters: [2, 3], learners: [] } }, { state: "unknown" }), view({})]) {
      const a = answerRoute("/live", v)!;
      assert.equal(a.code, 200);
      assert.deepEqual(a.body, { live: true, node_id: 1 });
    }
  });

  test("/ready names what it waits for: membership, a leader, applying, PostgreSQL", () => {
    assert.equal(answerRoute("/ready", view({}, UP))!.code, 200);
    assert.equal(answerRoute("/ready", view({}, UP))!.body.waiting_for, undefined);
    const none = answerRoute("/ready", view({ leader: 0, commit: 500, applied: 10, conf: { voters: [2, 3], learners: [] } }, DOWN))!;
    assert.equal(none.code, 503);
    assert.deepEqual(none.body.waiting_for, ["membership", "a leader", "applying 490 entries", "PostgreSQL"]);
    // A learner (a pod added by a scale-up) is a member: ready once caught up.
    assert.equal(answerRoute("/ready", view({ conf: { voters: [2, 3], learners: [1] } }, UP))!.code, 200);
    // Within the lag bound it is ready; one entry past it, not.
    assert.equal(answerRoute("/ready", view({ commit: 110, applied: 10 }, UP))!.code, 200);
    assert.deepEqual(answerRoute("/ready", view({ commit: 111, applied: 10 }, UP))!.body.waiting_for, ["applying 101 entries"]);
  });
});
