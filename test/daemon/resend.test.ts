// A write whose proposal was dropped (a new leader replaced it, a leadership
// transfer refused it) certainly had no effect: the node the client called
// sends it again instead of failing the caller for a leader change; any other
// failure, and a call forwarded to it by another node, are answered as they are.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ClusterState } from "../../src/cluster/state.js";
import { RaftError } from "../../src/consensus/errors.js";
import { Role } from "../../src/consensus/types.js";
import type { RaftNode } from "../../src/consensus/driver.js";
import { clusterServiceHandlers, FORWARDED_HEADER, type ClusterServiceDeps } from "../../src/daemon/cluster-service.js";

/** The kvPut handler over a node whose first `failures` proposals fail with `error`. */
async function put(failures: number, error: () => Error, metadata = new grpc.Metadata()): Promise<{ err: grpc.ServiceError | null; proposals: number }> {
  let proposals = 0;
  const node = {
    status: () => ({ role: Role.Leader, leader: 1, term: 1, applied: 1, commit: 1 }),
    propose: () => {
      proposals++;
      return proposals <= failures ? Promise.reject(error()) : Promise.resolve({ ok: true, revision: 2 });
    },
  } as unknown as RaftNode;
  const deps = {
    clusterId: "c",
    selfId: 1,
    selfName: "n1",
    version: "test",
    node,
    state: new ClusterState(),
    leaderClient: () => undefined,
    lastContactMs: () => new Map(),
    requestTimeoutMs: 5_000,
  } as unknown as ClusterServiceDeps;
  const h = clusterServiceHandlers(deps);
  const call = { request: { clusterId: "c", key: "k", value: '{"a":1}', lease: 0n, prevKv: false }, metadata } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
  const err = await new Promise<grpc.ServiceError | null>((resolve) => {
    (h.kvPut as unknown as (c: unknown, cb: (e: grpc.ServiceError | null) => void) => void)(call, (e) => resolve(e));
  });
  return { err, proposals };
}

const dropped = (): Error => new RaftError("PROPOSAL_DROPPED", "proposal at index 9 was replaced by a new leader's entry; it was not applied");

test("a dropped proposal is sent again and the put succeeds", async () => {
  const r = await put(2, dropped);
  assert.equal(r.err, null);
  assert.equal(r.proposals, 3);
});

test("it is sent a bounded number of times, then the caller gets the error", async () => {
  const r = await put(100, dropped);
  assert.equal(r.err?.metadata.get("pgraft-error-code")[0], "PROPOSAL_DROPPED");
  assert.equal(r.proposals, 4);
});

test("an outcome that is unknown (a timeout) is never sent again", async () => {
  const r = await put(1, () => new RaftError("TIMEOUT", "timed out"));
  assert.equal(r.err?.metadata.get("pgraft-error-code")[0], "TIMEOUT");
  assert.equal(r.proposals, 1);
});

test("a call another node forwarded here is answered as it is (that node sends it again)", async () => {
  const md = new grpc.Metadata();
  md.set(FORWARDED_HEADER, "2");
  const r = await put(1, dropped, md);
  assert.equal(r.err?.metadata.get("pgraft-error-code")[0], "PROPOSAL_DROPPED");
  assert.equal(r.proposals, 1);
});
