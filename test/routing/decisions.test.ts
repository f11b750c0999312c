// The routing rules every node applies (src/cluster/routing.ts) and the
// write-leader controller's decisions (src/routing/write-leader.ts) against a
// real ClusterState fed through its log, fake probes and a fake clock.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import type { Command } from "../../src/cluster/commands.js";
import { ClusterState } from "../../src/cluster/state.js";
import { Role, type ProgressStatus, type RaftStatus } from "../../src/consensus/types.js";
import { desiredStandbyNames } from "../../src/routing/commit-scope.js";
import { readTarget, routeRole, writeTarget } from "../../src/routing/targets.js";
import { answerRoute } from "../../src/http/routes.js";
import { WriteLeaderController, type ProbeLike } from "../../src/routing/write-leader.js";
import { originName } from "../../src/slots/naming.js";
import { Log } from "../cluster/helpers.js";

const ACTIVE = ["JOIN_START", "JOINING", "CATCHUP", "PROMOTE", "PROMOTING", "ACTIVE"];

/** Nodes a (member 1, group creator), b (2), c (3), all ACTIVE in group g. */
function group(): Log {
  const l = new Log();
  for (const [i, name] of ["a", "b", "c"].entries()) {
    l.ok({ op: "pgd.node.create", name, dsn: `host=10.0.0.${i + 1} port=5432 dbname=app`, kind: "data", dbname: "app", raftMemberId: i + 1 });
  }
  l.ok({ op: "pgd.group.create", name: "g", creator: "a" });
  for (const name of ["b", "c"]) {
    l.ok({ op: "pgd.node.state", name, state: "JOIN_START", group: "g" });
    for (const s of ACTIVE.slice(1)) l.ok({ op: "pgd.node.state", name, state: s });
  }
  return l;
}

const set = (c: Partial<Extract<Command, { op: "routing.set" }>> & { epoch: number }): Command => ({
  op: "routing.set",
  group: "g",
  leader: "",
  switchingTo: "",
  readers: [],
  reason: "",
  nowMs: 1000,
  ...c,
});

describe("routing rules (on apply, every node alike)", () => {
  test("a leader must be an ACTIVE data node of the group; the epoch is a compare-and-set; previous and reason follow changes", () => {
    const l = group();
    assert.match(l.fail(set({ epoch: 0, leader: "zz" })).message, /write leader "zz" does not exist/);
    l.ok({ op: "pgd.node.create", name: "w", dsn: "host=x", kind: "witness", dbname: "app", raftMemberId: 4 });
    assert.match(l.fail(set({ epoch: 0, leader: "w" })).message, /is not in group "g"/);
    assert.equal(l.state.routing("g").epoch, 0, "refusals change nothing");
    l.ok(set({ epoch: 0, leader: "a", readers: ["b", "c", "a"], reason: "first" }));
    const r = l.state.routing("g");
    assert.deepEqual([r.leader, r.previous, r.epoch, r.readers, r.reason], ["a", "", 1, ["b", "c"], "first"]);
    const stale = l.fail(set({ epoch: 0, leader: "b" }));
    assert.equal(stale.code, "CAS_FAILED");
    assert.match(stale.message, /changed meanwhile \(epoch 1, this change was decided at 0\)/);
    l.ok(set({ epoch: 1, leader: "b", reason: "failover", nowMs: 5000 }));
    const r2 = l.state.routing("g");
    assert.deepEqual([r2.leader, r2.previous, r2.reason, r2.changedAtMs, r2.leaderChanges], ["b", "a", "failover", 5000, 2]);
    l.ok(set({ epoch: 2, leader: "b", readers: ["c"] }));
    assert.equal(l.state.routing("g").leaderChanges, 2, "a change of the read nodes is not a leader change");
    assert.match(l.fail(set({ epoch: 3, leader: "b", switchingTo: "b" })).message, /already the write leader/);
  });

  test("commit scope: local or majority only; a dropped group takes its routing with it; snapshots keep it", () => {
    const l = group();
    assert.match(l.fail({ op: "routing.scope", group: "g", scope: "all" }).message, /commit scope "all" does not exist \(known: local, majority\)/);
    assert.match(l.fail({ op: "routing.scope", group: "nope", scope: "local" }).message, /node group "nope" does not exist/);
    l.ok({ op: "routing.scope", group: "g", scope: "majority" });
    l.ok(set({ epoch: 0, leader: "a" }));
    const copy = new ClusterState();
    copy.restore(l.state.snapshot());
    assert.deepEqual(copy.routing("g"), l.state.routing("g"));
    assert.equal(copy.routing("g").commitScope, "majority");
  });

  test("majority: ANY floor(N/2) of the other ACTIVE data nodes' receivers; none for local or a node outside", () => {
    const l = group();
    const me = (name: string) => l.state.dataNodes().find((n) => n.name === name);
    assert.equal(desiredStandbyNames(l.state, me("a")), "");
    l.ok({ op: "routing.scope", group: "g", scope: "majority" });
    assert.equal(desiredStandbyNames(l.state, me("a")), 'ANY 1 ("pgraft_b", "pgraft_c")');
    assert.equal(desiredStandbyNames(l.state, me("c")), 'ANY 1 ("pgraft_a", "pgraft_b")');
    l.ok({ op: "pgd.node.state", name: "c", state: "PART_START" });
    assert.equal(desiredStandbyNames(l.state, me("a")), 'ANY 1 ("pgraft_b")', "two nodes: both must have it");
    assert.equal(desiredStandbyNames(l.state, me("c")), "", "a parting node waits for nobody");
  });

  test("proxy targets: the write leader's recorded PostgreSQL address; none while a switchover holds clients; reads to the first reader", () => {
    const l = group();
    assert.equal(writeTarget(l.state, 2), undefined, "no leader yet");
    l.put("pgraft.internal/postgres/1", "127.0.0.1:5501");
    l.ok(set({ epoch: 0, leader: "a", readers: ["c", "b"] }));
    assert.deepEqual(writeTarget(l.state, 2), { host: "127.0.0.1", port: 5501, nodeId: l.state.dataNodes()[0]!.nodeId, name: "a" });
    assert.deepEqual(readTarget(l.state, 1), { host: "10.0.0.3", port: 5432, nodeId: l.state.dataNodes()[2]!.nodeId, name: "c" }, "no recorded address: the interface DSN's");
    l.ok(set({ epoch: 1, leader: "a", switchingTo: "b", readers: ["c", "b"] }));
    assert.equal(writeTarget(l.state, 3), undefined);
  });
});

describe("HTTP routes on the routing", () => {
  test("/primary on the write leader only, /replica on ACTIVE read nodes only; a parted node is neither; no routed group: Raft's meaning", () => {
    const l = group();
    l.ok({ op: "pgd.node.create", name: "x", dsn: "host=10.0.0.9", kind: "data", dbname: "app", raftMemberId: 9 });
    const status = (id: number, leader: boolean) =>
      ({ id, role: leader ? Role.Leader : Role.Follower, leader: 1, term: 2, commit: 5, applied: 5, conf: { voters: [1, 2, 3, 9], learners: [] }, progress: new Map() }) as unknown as RaftStatus;
    const code = (path: string, id: number): number =>
      answerRoute(path, { status: () => status(id, id === 1), maxReplicaLagEntries: 10, routeRole: () => routeRole(l.state, id), postgres: () => ({ state: "up", sinceMs: 0, checkedMs: 0 }) as never })!.code;
    // No write leader anywhere yet: x, in no group, keeps the Raft meaning; a group without a write leader has no primary.
    assert.equal(routeRole(l.state, 9), undefined);
    assert.deepEqual([code("/primary", 1), code("/replica", 9)], [503, 200]);
    l.ok(set({ epoch: 0, leader: "b", readers: ["a", "c"] }));
    assert.deepEqual([1, 2, 3, 9].map((id) => routeRole(l.state, id)), ["read-node", "write-leader", "read-node", "outside"]);
    assert.deepEqual([1, 2, 3, 9].map((id) => code("/primary", id)), [503, 200, 503, 503]);
    assert.deepEqual([1, 2, 3, 9].map((id) => code("/replica", id)), [200, 503, 200, 503]);
    for (const st of ["PART_START", "PARTING", "PART_CATCHUP", "PARTED"]) l.ok({ op: "pgd.node.state", name: "c", state: st });
    assert.equal(routeRole(l.state, 3), "outside", "a parted node takes no traffic");
    assert.equal(code("/replica", 3), 503);
  });
});

describe("the write-leader controller", () => {
  function harness() {
    const l = group();
    let now = 100_000;
    const probes = new Map<string, { dsn: string; last: ProbeLike["last"]; downSince: number | undefined; timedOutOnly?: boolean; start(): void; stop(): void }>();
    const proposed: Command[] = [];
    const silent = new Map<number, number>();
    const status = (): RaftStatus => {
      const progress = new Map<number, ProgressStatus>();
      for (const id of [2, 3]) {
        progress.set(id, { match: 1, next: 2, state: "replicate", learner: false, recentActive: true, ticksSinceActive: silent.get(id) ?? 0, inflightMsgs: 0, inflightBytes: 0, pendingSnapshot: 0 });
      }
      return { id: 1, role: Role.Leader, leader: 1, progress } as unknown as RaftStatus;
    };
    const ctl = new WriteLeaderController({
      selfId: 1,
      state: l.state,
      status,
      tickMs: () => 100,
      propose: (cmd) => {
        proposed.push(cmd as unknown as Command);
        const r = l.run(cmd as unknown as Command);
        return r.ok ? Promise.resolve(r) : Promise.reject(new Error(r.message));
      },
      log: pino({ level: "silent" }),
      now: () => now,
      probe: (n) => {
        const p = { dsn: n.dsn, last: undefined as ProbeLike["last"], downSince: undefined as number | undefined, start: () => undefined, stop: () => undefined };
        probes.set(n.name, p);
        return p;
      },
    });
    const origin = (of: string): string => originName("app", "g", of);
    const up = (name: string, progress: Record<string, bigint> = {}, wal = 1000n): void => {
      probes.get(name)!.last = { ok: true, at: now, walLsn: wal, progress: new Map(Object.entries(progress).map(([k, v]) => [origin(k), v])) };
      probes.get(name)!.downSince = undefined;
    };
    const down = (name: string): void => {
      probes.get(name)!.last = { ok: false, at: now, error: "connection refused" };
      probes.get(name)!.downSince ??= now;
      probes.get(name)!.timedOutOnly = false;
    };
    /** The server takes connections but answers nothing in time (frozen, or overloaded). */
    const slow = (name: string): void => {
      probes.get(name)!.last = { ok: false, at: now, error: "no answer within 500 ms" };
      probes.get(name)!.downSince ??= now;
      probes.get(name)!.timedOutOnly = true;
    };
    return { l, ctl, up, down, slow, proposed, silent, tick: (ms: number) => (now += ms) };
  }

  test("no leader: the first created healthy node; then a leader that stays healthy stays", async () => {
    const h = harness();
    await h.ctl.tick(); // probes created
    for (const n of ["a", "b", "c"]) h.up(n);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "a");
    const epoch = h.l.state.routing("g").epoch;
    for (let i = 0; i < 5; i++) {
      h.tick(500);
      await h.ctl.tick();
    }
    assert.equal(h.l.state.routing("g").epoch, epoch, "no Raft write while nothing changes");
  });

  test("failover only after failover_timeout, to the node holding the most of the old leader's changes", async () => {
    const h = harness();
    await h.ctl.tick();
    for (const n of ["a", "b", "c"]) h.up(n);
    await h.ctl.tick();
    h.down("a");
    h.up("b", { a: 500n });
    h.up("c", { a: 700n });
    await h.ctl.tick();
    h.tick(900);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "a", "not before the timeout (1 s)");
    h.tick(200);
    await h.ctl.tick();
    const r = h.l.state.routing("g");
    assert.equal(r.leader, "c", "c holds more of a's changes than b");
    assert.equal(r.previous, "a");
    assert.match(r.reason, /failover: a unhealthy for 1100 ms \(its PostgreSQL does not answer: connection refused\); c holds the most of its changes/);
    assert.deepEqual(r.readers, ["b"]);
  });

  test("a leader whose PostgreSQL only times out (its sidecar in contact) is failed over after 3 x failover_timeout; with its sidecar silent too, after 1 x", async () => {
    const h = harness();
    await h.ctl.tick();
    for (const n of ["a", "b", "c"]) h.up(n);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "a");
    h.slow("a");
    h.up("b", { a: 500n });
    h.up("c", { a: 700n });
    await h.ctl.tick();
    h.tick(2_900);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "a", "an overloaded server is not failed over at 1 x failover_timeout, nor at 2.9 x");
    h.tick(200);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "c");
    assert.match(h.l.state.routing("g").reason, /failover: a unhealthy for 3100 ms \(its PostgreSQL does not answer: no answer within 500 ms\)/);

    // c (member 3) times out and its sidecar is silent as well: a frozen node, failed over after 1 x.
    h.slow("c");
    h.up("a", { c: 10n });
    h.up("b", { c: 20n });
    h.silent.set(3, 5);
    await h.ctl.tick();
    h.tick(1_100);
    h.silent.set(3, 16);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "b");
    assert.match(h.l.state.routing("g").reason, /sidecar \(member 3\) has not answered Raft/);
  });

  test("a leader whose sidecar stops answering Raft is failed over too; none with failover_enabled off", async () => {
    const h = harness();
    h.l.ok(set({ epoch: 0, leader: "b" }));
    await h.ctl.tick();
    for (const n of ["a", "b", "c"]) h.up(n, { b: 10n });
    h.l.ok({ op: "config.set", name: "failover_enabled", value: "false" });
    h.silent.set(2, 5);
    await h.ctl.tick();
    h.tick(2_000);
    h.silent.set(2, 25);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "b", "failover_enabled off");
    h.l.ok({ op: "config.set", name: "failover_enabled", value: "true" });
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "a");
    assert.match(h.l.state.routing("g").reason, /sidecar \(member 2\) has not answered Raft/);
  });

  test("a switchover in progress is left alone, however long ago the leader last changed; abandoned only once stale", async () => {
    const h = harness();
    await h.ctl.tick();
    for (const n of ["a", "b", "c"]) h.up(n);
    await h.ctl.tick();
    h.tick(60 * 60_000); // the leader was chosen an hour ago
    const r = h.l.state.routing("g");
    h.l.ok(set({ epoch: r.epoch, leader: "a", switchingTo: "b", readers: r.readers }));
    await h.ctl.tick();
    h.tick(60_000);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").switchingTo, "b", "still in progress after a minute");
    h.tick(5 * 60_000);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").switchingTo, "", "abandoned after five minutes");
    assert.equal(h.l.state.routing("g").leader, "a");
  });

  test("no healthy candidate: the leader stays, and nothing is proposed", async () => {
    const h = harness();
    await h.ctl.tick();
    for (const n of ["a", "b", "c"]) h.up(n);
    await h.ctl.tick();
    const n = h.proposed.length;
    for (const x of ["a", "b", "c"]) h.down(x);
    h.tick(5_000);
    await h.ctl.tick();
    assert.equal(h.l.state.routing("g").leader, "a");
    assert.equal(h.proposed.length, n);
  });
});
