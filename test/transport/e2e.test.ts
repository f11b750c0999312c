// Three RaftNodes with real WALs, connected only by GrpcPeerTransport over
// 127.0.0.1: they elect a leader and commit; when the leader's server stops a
// new leader is elected and commits; when it comes back the old leader catches
// up (by InstallSnapshot, the log having been compacted meanwhile).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RaftNode } from "../../src/consensus/driver.js";
import { Role, type NodeId } from "../../src/consensus/types.js";
import { GrpcPeerTransport } from "../../src/transport/peer-transport.js";
import { insecureClient, restartServer, startServer, stop, waitFor, type Running } from "./helpers.js";

import { ListSm } from "../consensus/list-state-machine.js";

interface Member {
  id: NodeId;
  transport: GrpcPeerTransport;
  server: Running | undefined;
  port: number;
  node: RaftNode | undefined;
  sm: ListSm;
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

describe("three RaftNodes over gRPC", () => {
  let dir = "";
  const members = new Map<NodeId, Member>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgraft-e2e-"));
    for (const id of [1, 2, 3]) {
      // The transport exists before its node (RaftNode.open takes it): the callbacks find the node later.
      const ref: { node?: RaftNode } = {};
      const transport = new GrpcPeerTransport({
        selfId: id,
        clusterId: "e2e",
        credentials: insecureClient(),
        onReceive: (msg) => ref.node?.receive(msg),
        onUnreachable: (p) => ref.node?.reportUnreachable(p),
        onSnapshotStatus: (p, ok) => ref.node?.reportSnapshot(p, ok),
      });
      const m: Member = {
        id,
        transport,
        server: undefined,
        port: 0,
        sm: new ListSm(),
        get node() {
          return ref.node;
        },
        set node(n) {
          ref.node = n;
        },
      };
      m.server = await startServer((s) => m.transport.register(s));
      m.port = m.server.port;
      members.set(id, m);
    }
    for (const m of members.values()) for (const p of members.values()) if (p.id !== m.id) m.transport.setPeer(p.id, p.server!.address);
    for (const m of members.values()) {
      m.node = await RaftNode.open({
        id: m.id,
        clusterId: "e2e",
        dataDir: join(dir, `n${m.id}`),
        transport: m.transport,
        stateMachine: m.sm,
        bootstrap: { voters: [1, 2, 3], learners: [] },
        tickMs: 20,
        requestTimeoutMs: 5_000,
        snapshotEntries: 20,
        keepEntriesAfterSnapshot: 2,
      });
      m.node.start();
    }
  });

  after(async () => {
    for (const m of members.values()) await m.node?.stop().catch(() => {});
    for (const m of members.values()) {
      m.transport.close();
      stop(m.server);
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const leader = (except?: NodeId): Promise<Member> =>
    waitFor(
      "a leader",
      () => [...members.values()].find((m) => m.id !== except && m.node?.status().role === Role.Leader),
      10_000,
    );

  test("elect a leader and commit proposals on every node", async () => {
    const l = await leader();
    for (let i = 0; i < 10; i++) await l.node!.propose(enc(`a${i}`));
    const want = Array.from({ length: 10 }, (_, i) => `a${i}`);
    await waitFor("every node applied", () => [...members.values()].every((m) => m.sm.values.length === 10));
    for (const m of members.values()) assert.deepStrictEqual(m.sm.values, want);
    const st = l.transport.stats;
    assert.ok(st.sent.App > 0 && st.sent.Heartbeat > 0, "the leader sent Apps and heartbeats over gRPC");
  });

  test("the leader's server stops: a new leader is elected and commits; the old one catches up by snapshot", async () => {
    const old = await leader();
    stop(old.server);
    old.server = undefined;
    const next = await leader(old.id);
    assert.notEqual(next.id, old.id);
    // Enough entries that the new leader compacts past what the old one has.
    for (let i = 0; i < 40; i++) await next.node!.propose(enc(`b${i}`));
    const others = [...members.values()].filter((m) => m.id !== old.id);
    await waitFor("both remaining nodes applied", () => others.every((m) => m.sm.values.length === 50));
    assert.equal(old.sm.values.length, 10, "the old leader heard nothing meanwhile");

    old.server = await restartServer((s) => old.transport.register(s), old.port);
    await waitFor("the old leader caught up", () => old.sm.values.length === 50, 15_000);
    assert.deepStrictEqual(old.sm.values, next.sm.values);
    assert.ok(next.transport.stats.snapshotsSent >= 1, "caught up by InstallSnapshot");
    assert.ok(old.transport.stats.snapshotsReceived >= 1);
    assert.equal((await leader()).id, next.id);
  });
});
