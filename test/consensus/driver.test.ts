// RaftNode with real WALs on disk and an in-process network: the driver's
// ordering, restart from disk, and the typed errors callers switch on.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { RaftNode } from "../../src/consensus/driver.js";
import { isRaftError, NotLeaderError, RaftError } from "../../src/consensus/errors.js";
import { MemoryNetwork } from "../../src/consensus/memory-transport.js";
import { SnapshotStore } from "../../src/consensus/wal/snapshot-store.js";
import { Role, type NodeId } from "../../src/consensus/types.js";

import { ListSm } from "./list-state-machine.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

async function until<T>(what: string, f: () => T | undefined | false, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

class Cluster {
  readonly net = new MemoryNetwork();
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly sms = new Map<NodeId, ListSm>();
  constructor(
    readonly dir: string,
    readonly voters: NodeId[],
  ) {}

  async start(id: NodeId, opts: { bootstrap?: boolean; snapshotEntries?: number } = {}): Promise<RaftNode> {
    const sm = new ListSm();
    const node = await RaftNode.open({
      id,
      clusterId: "test",
      dataDir: join(this.dir, `n${id}`),
      transport: this.net.transportFor(id),
      stateMachine: sm,
      ...(opts.bootstrap === false ? {} : { bootstrap: { voters: this.voters, learners: [] } }),
      tickMs: 10,
      requestTimeoutMs: 3000,
      snapshotEntries: opts.snapshotEntries ?? 50,
      keepEntriesAfterSnapshot: 5,
    });
    this.net.attach(node);
    node.start();
    this.nodes.set(id, node);
    this.sms.set(id, sm);
    return node;
  }

  async kill(id: NodeId): Promise<void> {
    this.net.detach(id);
    await this.nodes.get(id)?.stop();
    this.nodes.delete(id);
  }

  leader(except?: NodeId): Promise<RaftNode> {
    return until("a leader", () => [...this.nodes.values()].find((n) => n.status().role === Role.Leader && n.id !== except));
  }

  async stopAll(): Promise<void> {
    for (const id of [...this.nodes.keys()]) await this.kill(id);
  }
}

describe("RaftNode (real WAL, in-process network)", () => {
  let dir: string;
  let c: Cluster;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgraft-driver-"));
    c = new Cluster(dir, [1, 2, 3]);
  });
  afterEach(async () => {
    await c.stopAll();
    await rm(dir, { recursive: true, force: true });
  });

  test("commits, reads linearizably on a follower, survives the leader's loss and restarts from disk", async () => {
    for (const id of [1, 2, 3]) await c.start(id);
    const leader = await c.leader();
    const results = await Promise.all(Array.from({ length: 120 }, (_, i) => leader.propose(enc(`v${i}`))));
    assert.deepEqual(results.slice().sort((a, b) => Number(a) - Number(b)), Array.from({ length: 120 }, (_, i) => i + 1));
    const follower = [...c.nodes.values()].find((n) => n !== leader)!;
    await follower.read();
    assert.equal(c.sms.get(follower.id)!.values.length, 120, "a read barrier on a follower sees every acknowledged write");

    const old = leader.id;
    await c.kill(old);
    const next = await c.leader(old);
    await next.propose(enc("after"));

    // The old leader restarts from its snapshot + WAL and catches up.
    await c.start(old);
    const sm = c.sms.get(old)!;
    await until("restarted node to catch up", () => sm.values.at(-1) === "after");
    assert.equal(sm.values.length, 121);
    assert.deepEqual(sm.values.slice(0, 3), ["v0", "v1", "v2"].filter((v) => sm.values.includes(v)));
  });

  test("a full-cluster restart keeps term, membership and every acknowledged entry", async () => {
    for (const id of [1, 2, 3]) await c.start(id);
    const leader = await c.leader();
    for (let i = 0; i < 30; i++) await leader.propose(enc(`x${i}`));
    const term = leader.status().term;
    await c.stopAll();
    for (const id of [1, 2, 3]) await c.start(id);
    const l2 = await c.leader();
    assert.ok(l2.status().term > term, "the term never goes backwards across restarts");
    await l2.propose(enc("y"));
    for (const id of [1, 2, 3]) {
      const sm = c.sms.get(id)!;
      await until(`node ${id} to apply`, () => sm.values.at(-1) === "y");
      assert.deepEqual(sm.values, [...Array.from({ length: 30 }, (_, i) => `x${i}`), "y"]);
    }
  });

  test("typed errors: not leader (with the leader id), invalid changes, learner transfer, stopped", async () => {
    for (const id of [1, 2, 3]) await c.start(id);
    const leader = await c.leader();
    const follower = [...c.nodes.values()].find((n) => n !== leader)!;
    await until("follower to know the leader", () => follower.status().leader === leader.id);
    await assert.rejects(follower.propose(enc("x")), (e: unknown) => e instanceof NotLeaderError && e.leader === leader.id);
    await assert.rejects(leader.proposeConfChange({ type: "addVoter", nodeId: 2 }), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
    await assert.rejects(leader.proposeConfChange({ type: "removeNode", nodeId: 9 }), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
    await assert.rejects(leader.proposeConfChange({ type: "addLearner", nodeId: 0 }), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
    await assert.rejects(leader.transferLeadership(7), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
    await leader.proposeConfChange({ type: "addLearner", nodeId: 4 });
    await assert.rejects(leader.transferLeadership(4), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT") && /learner/.test(e.message));
    const id = follower.id;
    await c.kill(id);
    await assert.rejects(follower.propose(enc("x")), (e: unknown) => isRaftError(e, "STOPPED"));
    await assert.rejects(follower.read(), (e: unknown) => isRaftError(e, "STOPPED"));
  });

  test("without a quorum a proposal fails with NO_QUORUM, not success", async () => {
    for (const id of [1, 2, 3]) await c.start(id);
    const leader = await c.leader();
    await leader.propose(enc("ok"));
    for (const id of [1, 2, 3]) if (id !== leader.id) await c.kill(id);
    await assert.rejects(leader.propose(enc("lost"), { timeoutMs: 500 }), (e: unknown) => {
      assert.ok(e instanceof RaftError);
      // Either it is still leader without a quorum, or check-quorum already deposed it.
      return e.code === "NO_QUORUM" || e.code === "NOT_LEADER";
    });
  });

  test("a learner joins empty, catches up by snapshot, is promoted, and then counts for the quorum", async () => {
    for (const id of [1, 2, 3]) await c.start(id, { snapshotEntries: 20 });
    const leader = await c.leader();
    for (let i = 0; i < 60; i++) await leader.propose(enc(`s${i}`));
    await c.start(4, { bootstrap: false });
    await leader.proposeConfChange({ type: "addLearner", nodeId: 4 });
    await until("learner to catch up", () => c.sms.get(4)!.values.length === 60);
    const conf = await leader.proposeConfChange({ type: "addVoter", nodeId: 4 });
    assert.deepEqual(conf.voters, [1, 2, 3, 4]);
    // With 2 of 4 voters down nothing commits; node 4's vote is what a quorum of 3 needs.
    const others = [1, 2, 3].filter((id) => id !== leader.id);
    await c.kill(others[0]!);
    await leader.propose(enc("with-4"));
    await until("node 4 to apply", () => c.sms.get(4)!.values.at(-1) === "with-4");
  });

  test("a crash after a received snapshot was written but before the WAL marked it: the log continues after it", async () => {
    const single = new Cluster(dir, [1]);
    c = single;
    const n = await single.start(1);
    await single.leader();
    await n.propose(enc("a"));
    await single.kill(1);
    // As if a leader's snapshot at index 50 had been made durable just before the crash.
    const values = JSON.stringify([...Array.from({ length: 49 }, (_, i) => `snap${i}`)]);
    await new SnapshotStore(join(dir, "n1", "snap")).save({
      meta: { index: 50, term: 3, conf: { voters: [1], learners: [] } },
      data: enc(values),
    });
    const again = await single.start(1);
    assert.equal(again.status().firstIndex, 51);
    await single.leader();
    await again.propose(enc("after-snap"));
    await single.kill(1);
    const third = await single.start(1);
    await single.leader();
    await third.read();
    assert.equal(single.sms.get(1)!.values.at(-1), "after-snap");
    assert.equal(single.sms.get(1)!.values.length, 50);
  });

  test("timing can change at runtime: a slower election timeout delays the next election", async () => {
    for (const id of [1, 2, 3]) await c.start(id);
    const leader = await c.leader();
    for (const n of c.nodes.values()) n.setTiming(10, 2000);
    assert.throws(() => leader.setTiming(10, 15), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
    assert.throws(() => leader.setTiming(0, 1000), (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"));
    const old = leader.id;
    await c.kill(old);
    // With a 2 s timeout nobody may be elected within 500 ms (before it was 100-200 ms).
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(![...c.nodes.values()].some((n) => n.status().role === Role.Leader), "no election before the new timeout");
    const next = await c.leader(old);
    await next.propose(enc("slow"));
  });

  test("refuses a bootstrap that does not include the node, and a bad node id", async () => {
    await assert.rejects(
      RaftNode.open({
        id: 9,
        clusterId: "t",
        dataDir: join(dir, "bad"),
        transport: { send: () => {} },
        stateMachine: new ListSm(),
        bootstrap: { voters: [1, 2, 3], learners: [] },
      }),
      (e: unknown) => isRaftError(e, "INVALID_ARGUMENT") && /not in the bootstrap/.test(e.message),
    );
    await assert.rejects(
      RaftNode.open({ id: -1, clusterId: "t", dataDir: join(dir, "bad2"), transport: { send: () => {} }, stateMachine: new ListSm() }),
      (e: unknown) => isRaftError(e, "INVALID_ARGUMENT"),
    );
  });
});
