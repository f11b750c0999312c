// The test-only fault hook: dropping and delaying a peer's traffic, the Faults
// gRPC service, and the refusal everywhere when PGRAFT_TEST_FAULTS=1 is not set.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { Faults } from "../../src/gen/pgraft/v1/testing_pb.js";
import { createClient, isServiceError } from "../../src/transport/grpc-service.js";
import { FAULTS_DISABLED_MESSAGE, FAULTS_ENV, FaultInjector, FaultsDisabledError, faultsEnabled, registerFaultsService } from "../../src/transport/faults.js";
import type { GrpcPeerTransport } from "../../src/transport/peer-transport.js";
import { seededRandom } from "../../src/consensus/random.js";
import { MessageType, Recorder, insecureClient, msg, sleep, startServer, stop, transport, waitFor, type Running } from "./helpers.js";

const saved = process.env[FAULTS_ENV];
function setEnv(on: boolean): void {
  if (on) process.env[FAULTS_ENV] = "1";
  else delete process.env[FAULTS_ENV];
}
function restoreEnv(): void {
  if (saved === undefined) delete process.env[FAULTS_ENV];
  else process.env[FAULTS_ENV] = saved;
}

describe("fault hook, disabled", () => {
  let srv: Running | undefined;
  before(() => setEnv(false));
  after(() => {
    stop(srv);
    restoreEnv();
  });

  test("cannot be created without PGRAFT_TEST_FAULTS=1", () => {
    assert.equal(faultsEnabled(), false);
    assert.equal(faultsEnabled({ [FAULTS_ENV]: "1" }), true);
    assert.equal(faultsEnabled({ [FAULTS_ENV]: "true" }), false);
    assert.throws(() => FaultInjector.create(), (e: unknown) => e instanceof FaultsDisabledError && e.message === FAULTS_DISABLED_MESSAGE);
    assert.match(FAULTS_DISABLED_MESSAGE, /fault injection is disabled; start the sidecar with PGRAFT_TEST_FAULTS=1 \(tests only\)/);
  });

  test("the Faults service answers FAILED_PRECONDITION with the reason", async (t) => {
    srv = await startServer((s) => registerFaultsService(s, { clusterId: "c1" }));
    const client = createClient(Faults, srv.address, insecureClient());
    t.after(() => client.close());
    await assert.rejects(client.methods.setFaults({ clusterId: "c1", faults: [{ nodeId: 2, dropAll: true }] }), (e: unknown) => {
      assert.ok(isServiceError(e));
      assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(e.details, FAULTS_DISABLED_MESSAGE);
      return true;
    });
  });
});

describe("fault hook, enabled", () => {
  const a = new Recorder();
  const b = new Recorder();
  let faults: FaultInjector;
  let ta: GrpcPeerTransport | undefined;
  let tb: GrpcPeerTransport | undefined;
  let sb: Running | undefined;
  let sf: Running | undefined;

  before(async () => {
    setEnv(true);
    faults = FaultInjector.create({ random: seededRandom(7) });
    tb = transport(b, { selfId: 2, clusterId: "c1", peers: [[1, "127.0.0.1:1"]] });
    sb = await startServer((s) => tb!.register(s));
    ta = transport(a, { selfId: 1, clusterId: "c1", peers: [[2, sb.address]], faults });
  });
  afterEach(() => faults.clear());
  after(() => {
    ta?.close();
    tb?.close();
    stop(sb);
    stop(sf);
    restoreEnv();
  });

  const beat = (commit: number): void => ta!.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, commit })]);

  test("drop all: nothing arrives, nothing is reported unreachable", async () => {
    beat(0);
    await waitFor("a first heartbeat", () => b.received.length === 1);
    b.received = [];
    a.unreachable = [];
    faults.set(2, { drop: "all" });
    for (let i = 1; i <= 20; i++) beat(i);
    ta!.send([msg({ type: MessageType.Snap, from: 1, to: 2, snapshot: { meta: { index: 5, term: 1, conf: { voters: [1, 2], learners: [] } }, data: new Uint8Array(10) } })]);
    await sleep(100);
    assert.equal(b.received.length, 0);
    assert.equal(ta!.stats.faultDropped, 21);
    assert.deepStrictEqual(a.unreachable, []);
    assert.deepStrictEqual(a.snapshots, [[2, false]]);
    faults.clear(2);
    beat(99);
    await waitFor("traffic after clearing", () => b.received.length === 1);
  });

  test("drop with a probability drops about that share", async () => {
    b.received = [];
    const before = ta!.stats.faultDropped;
    faults.set(2, { drop: 0.5 });
    for (let i = 0; i < 400; i++) beat(i);
    await waitFor("the survivors", () => b.received.length === 400 - (ta!.stats.faultDropped - before));
    const dropped = ta!.stats.faultDropped - before;
    assert.ok(dropped > 120 && dropped < 280, `dropped ${dropped} of 400`);
  });

  test("delay holds messages back by the given time", async () => {
    b.received = [];
    faults.set(2, { delayMs: 150 });
    const t0 = Date.now();
    beat(1);
    beat(2);
    await waitFor("delayed heartbeats", () => b.received.length === 2);
    assert.ok(Date.now() - t0 >= 140, `arrived after ${Date.now() - t0} ms`);
    assert.deepStrictEqual(
      b.received.map((m) => m.commit),
      [1, 2],
    );
  });

  test("bad settings are refused", () => {
    assert.throws(() => faults.set(2, { drop: 1.5 }), RangeError);
    assert.throws(() => faults.set(2, { delayMs: -1 }), RangeError);
  });

  test("the Faults service sets and clears the injector's faults", async (t) => {
    sf = await startServer((s) => registerFaultsService(s, { clusterId: "c1", injector: faults }));
    const client = createClient(Faults, sf.address, insecureClient());
    t.after(() => client.close());
    const set = await client.methods.setFaults({
      clusterId: "c1",
      faults: [
        { nodeId: 2, dropProbability: 0.25, delayMs: 10 },
        { nodeId: 3, dropAll: true },
      ],
    });
    assert.deepStrictEqual(
      set.faults.map((f) => [f.nodeId, f.dropAll, f.dropProbability, f.delayMs]),
      [
        [2, false, 0.25, 10],
        [3, true, 1, 0],
      ],
    );
    assert.deepStrictEqual(faults.list().get(3), { drop: "all", delayMs: 0 });
    const cleared = await client.methods.clearFaults({ clusterId: "c1", nodeIds: [3] });
    assert.deepStrictEqual(
      cleared.faults.map((f) => f.nodeId),
      [2],
    );
    await client.methods.clearFaults({ clusterId: "c1" });
    assert.equal(faults.list().size, 0);
    await assert.rejects(client.methods.setFaults({ clusterId: "c2" }), /cluster id mismatch: expected c1, got c2/);
    await assert.rejects(client.methods.setFaults({ clusterId: "c1", faults: [{ nodeId: 2, dropProbability: 2 }] }), /drop probability/);
  });
});
