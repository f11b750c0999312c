// GrpcPeerTransport and the RaftPeer service over real gRPC on 127.0.0.1:
// field fidelity of every message type, snapshots in chunks beside heartbeats,
// refusals (cluster id, unknown node, malformed), drops, and reconnecting.
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { RaftBatchSchema, RaftMessageSchema, RaftPeer, MessageType as WireMessageType, type StreamSummary } from "../../src/gen/pgraft/v1/raft_pb.js";
import { createClient, isServiceError } from "../../src/transport/grpc-service.js";
import { PEER_BACKOFF, type GrpcPeerTransport } from "../../src/transport/peer-transport.js";
import type { Message } from "../../src/consensus/types.js";
import { EntryType, MessageType, Recorder, bytes, insecureClient, msg, restartServer, sleep, startServer, stop, transport, waitFor, type Running } from "./helpers.js";

const BIG = 2 ** 52 + 3;

/** One message of every type that goes on the wire, fields all set (odd ones) or minimal (even ones). */
function everyWireMessage(from: number, to: number): Message[] {
  const wire = [
    MessageType.Prop,
    MessageType.App,
    MessageType.AppResp,
    MessageType.Vote,
    MessageType.VoteResp,
    MessageType.PreVote,
    MessageType.PreVoteResp,
    MessageType.Heartbeat,
    MessageType.HeartbeatResp,
    MessageType.TransferLeader,
    MessageType.TimeoutNow,
    MessageType.ReadIndex,
    MessageType.ReadIndexResp,
  ];
  return wire.map((type, i) =>
    i % 2 === 0
      ? msg({
          type,
          from,
          to,
          term: BIG + i,
          logTerm: 7 + i,
          index: BIG - i,
          entries: [
            { term: 3, index: 10 + i, type: EntryType.Normal, data: bytes(1, 2, 3, i) },
            { term: 4, index: 11 + i, type: EntryType.ConfChange, data: bytes(0, 0, 0, 0, 9) },
            { term: 4, index: 12 + i, type: EntryType.Normal, data: new Uint8Array() },
          ],
          commit: 99 + i,
          reject: true,
          rejectHint: 42 + i,
          logTermHint: 0,
          context: bytes(0xde, 0xad, i),
        })
      : msg({ type, from, to, term: i, context: new Uint8Array() }),
  );
}

describe("GrpcPeerTransport between two sidecars", () => {
  const a = new Recorder();
  const b = new Recorder();
  let ta: GrpcPeerTransport | undefined;
  let tb: GrpcPeerTransport | undefined;
  let sa: Running | undefined;
  let sb: Running | undefined;

  before(async () => {
    ta = transport(a, { selfId: 1, clusterId: "c1" });
    tb = transport(b, { selfId: 2, clusterId: "c1" });
    sa = await startServer((s) => ta!.register(s));
    sb = await startServer((s) => tb!.register(s));
    ta.setPeer(2, sb.address);
    tb.setPeer(1, sa.address);
  });

  after(() => {
    ta?.close();
    tb?.close();
    stop(sa);
    stop(sb);
  });

  test("every Raft message type arrives with every field intact", async () => {
    const sent = everyWireMessage(1, 2);
    b.received = [];
    ta!.send(sent);
    await waitFor("all messages at node 2", () => b.received.length >= sent.length);
    assert.deepStrictEqual(b.received, sent);
    for (const m of sent) assert.ok(ta!.stats.sent[MessageType[m.type] as keyof typeof MessageType] >= 1);
    assert.equal(tb!.stats.received.App, 1);
    // And back the other way, on the other stream.
    const back = everyWireMessage(2, 1);
    tb!.send(back);
    await waitFor("all messages at node 1", () => a.received.length >= back.length);
    assert.deepStrictEqual(a.received, back);
  });

  test("a Snap with its snapshot arrives intact and is reported", async () => {
    b.received = [];
    a.snapshots = [];
    const data = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff);
    const snap = msg({ type: MessageType.Snap, from: 1, to: 2, term: 5, snapshot: { meta: { index: 77, term: 4, conf: { voters: [1, 2, 3], learners: [4] } }, data } });
    ta!.send([snap]);
    await waitFor("the snapshot at node 2", () => b.received.length === 1);
    assert.deepStrictEqual(b.received[0], snap);
    await waitFor("the snapshot status", () => a.snapshots.length === 1);
    assert.deepStrictEqual(a.snapshots, [[2, true]]);
  });

  test("a 5 MiB snapshot goes in chunks while heartbeats keep flowing", async () => {
    b.received = [];
    a.snapshots = [];
    const before = { ...tb!.stats };
    const size = 5 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) data[i] = (i >> 12) & 0xff;
    const snap = msg({ type: MessageType.Snap, from: 1, to: 2, term: 6, snapshot: { meta: { index: 1000, term: 6, conf: { voters: [1, 2], learners: [] } }, data } });
    ta!.send([snap]);
    let beats = 0;
    const beat = (): void => ta!.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, term: 6, commit: ++beats })]);
    beat();
    const timer = setInterval(beat, 2);
    try {
      await waitFor("the big snapshot at node 2", () => b.received.some((m) => m.type === MessageType.Snap), 10_000);
    } finally {
      clearInterval(timer);
    }
    const snapAt = b.received.findIndex((m) => m.type === MessageType.Snap);
    assert.ok(snapAt >= 1, `heartbeats arrived before the snapshot finished (${snapAt} did)`);
    assert.equal(b.received[snapAt]!.snapshot!.data.byteLength, size);
    assert.deepStrictEqual(b.received[snapAt]!.snapshot!.data, data);
    assert.equal(tb!.stats.snapshotBytesReceived - before.snapshotBytesReceived, size);
    await waitFor("the snapshot status", () => a.snapshots.length === 1);
    assert.deepStrictEqual(a.snapshots, [[2, true]]);
    assert.equal(ta!.stats.snapshotsSent, 2);
  });

  test("a second snapshot to the same peer while one is in flight is refused", async () => {
    a.snapshots = [];
    const data = new Uint8Array(3 * 1024 * 1024);
    const snap = (i: number): Message => msg({ type: MessageType.Snap, from: 1, to: 2, snapshot: { meta: { index: i, term: 1, conf: { voters: [1, 2], learners: [] } }, data } });
    ta!.send([snap(1)]);
    ta!.send([snap(2)]);
    await waitFor("both outcomes", () => a.snapshots.length === 2);
    assert.deepStrictEqual(a.snapshots, [
      [2, false],
      [2, true],
    ]);
  });

  test("local-only message types are never sent", async () => {
    b.received = [];
    const dropped = ta!.stats.dropped.Hup;
    ta!.send([msg({ type: MessageType.Hup, from: 1, to: 2 }), msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor("the heartbeat", () => b.received.length === 1);
    assert.equal(b.received[0]!.type, MessageType.Heartbeat);
    assert.equal(ta!.stats.dropped.Hup, dropped + 1);
  });

  test("a sender with another cluster id is refused with FAILED_PRECONDITION and counted", async (t) => {
    const x = new Recorder();
    const tx = transport(x, { selfId: 1, clusterId: "other-cluster", peers: [[2, sb!.address]] });
    t.after(() => tx.close());
    const refusedBefore = tb!.stats.refused.cluster_id_mismatch;
    b.received = [];
    tx.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 }, "other-cluster")]);
    await waitFor("the refusal", () => tx.stats.refusedByPeer.cluster_id_mismatch >= 1);
    assert.ok(tb!.stats.refused.cluster_id_mismatch > refusedBefore);
    await waitFor("unreachable reported", () => x.unreachable.includes(2));
    assert.equal(b.received.length, 0);

    // A client that sends no headers is refused on its first batch, with the message.
    const client = createClient(RaftPeer, sb!.address, insecureClient());
    t.after(() => client.close());
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.methods.stream((e) => resolve(e));
      call.write(create(RaftBatchSchema, { clusterId: "other-cluster", from: 1, to: 2, messages: [] }));
    });
    assert.ok(err && isServiceError(err));
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err.details, "cluster id mismatch: expected c1, got other-cluster");
    assert.equal(b.received.length, 0);
  });

  test("an unknown node is refused with PERMISSION_DENIED and counted", async (t) => {
    const x = new Recorder();
    const tx = transport(x, { selfId: 9, clusterId: "c1", peers: [[2, sb!.address]] });
    t.after(() => tx.close());
    const refusedBefore = tb!.stats.refused.unknown_peer;
    b.received = [];
    tx.send([msg({ type: MessageType.Vote, from: 9, to: 2, term: 100 })]);
    await waitFor("the refusal", () => tx.stats.refusedByPeer.unknown_peer >= 1);
    assert.ok(tb!.stats.refused.unknown_peer > refusedBefore);
    assert.equal(b.received.length, 0);

    const client = createClient(RaftPeer, sb!.address, insecureClient());
    t.after(() => client.close());
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.methods.stream((e) => resolve(e));
      call.write(create(RaftBatchSchema, { clusterId: "c1", from: 9, to: 2, messages: [] }));
    });
    assert.equal(err?.code, grpc.status.PERMISSION_DENIED);
    assert.match(err?.details ?? "", /node 9 is not a known member of cluster c1/);
  });

  test("a follower relays a ReadIndex or TransferLeader with its requester in from; nothing else may name another sender", async (t) => {
    // Node 3 took node 1 for the leader; node 1 passes the requests on to node 2 as the core does.
    b.received = [];
    const relayed = [
      msg({ type: MessageType.ReadIndex, from: 3, to: 2, context: bytes(7, 7) }),
      msg({ type: MessageType.TransferLeader, from: 3, to: 2 }),
    ];
    ta!.send(relayed);
    await waitFor("the relayed requests at node 2", () => b.received.length === 2);
    assert.deepStrictEqual(b.received, relayed);

    // With a term (not a relay), or of another type, the mismatch is refused.
    const x = new Recorder();
    const tx = transport(x, { selfId: 1, clusterId: "c1", peers: [[2, sb!.address]] });
    t.after(() => tx.close());
    const refusedBefore = tb!.stats.refused.malformed;
    tx.send([msg({ type: MessageType.ReadIndex, from: 3, to: 2, term: 4 })]);
    await waitFor("the refusal", () => tb!.stats.refused.malformed > refusedBefore);
    const tx2 = transport(x, { selfId: 1, clusterId: "c1", peers: [[2, sb!.address]] });
    t.after(() => tx2.close());
    tx2.send([msg({ type: MessageType.HeartbeatResp, from: 3, to: 2 })]);
    await waitFor("the second refusal", () => tb!.stats.refused.malformed > refusedBefore + 1);
    assert.equal(b.received.length, 2);
  });

  test("malformed batches are refused: local types, Snap on Stream, mismatched envelope", async (t) => {
    const client = createClient(RaftPeer, sb!.address, insecureClient());
    t.after(() => client.close());
    const refusedBefore = tb!.stats.refused.malformed;
    b.received = [];
    const attempt = (messages: Parameters<typeof create<typeof RaftMessageSchema>>[1][]): Promise<grpc.ServiceError | null> =>
      new Promise((resolve) => {
        const call = client.methods.stream((e) => resolve(e));
        call.write(create(RaftBatchSchema, { clusterId: "c1", from: 1, to: 2, messages: messages.map((m) => create(RaftMessageSchema, m)) }));
        call.end();
      });
    const hup = await attempt([{ type: WireMessageType.HUP, clusterId: "c1", from: 1, to: 2 }]);
    assert.equal(hup?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(hup?.details ?? "", /Hup is local/);
    const snap = await attempt([{ type: WireMessageType.SNAP, clusterId: "c1", from: 1, to: 2 }]);
    assert.match(snap?.details ?? "", /InstallSnapshot/);
    const spoof = await attempt([{ type: WireMessageType.VOTE, clusterId: "c1", from: 3, to: 2 }]);
    assert.match(spoof?.details ?? "", /does not match its batch/);
    assert.equal(tb!.stats.refused.malformed - refusedBefore, 3);
    assert.equal(b.received.length, 0);
    // A good batch, half-closed, is answered with a summary.
    const summary = await new Promise<StreamSummary | undefined>((resolve, reject) => {
      const call = client.methods.stream((e, s) => (e ? reject(e) : resolve(s)));
      call.write(create(RaftBatchSchema, { clusterId: "c1", from: 1, to: 2, messages: [create(RaftMessageSchema, { type: WireMessageType.HEARTBEAT, clusterId: "c1", from: 1, to: 2 })] }));
      call.end();
    });
    assert.equal(summary?.messages, 1n);
    assert.equal(b.received.length, 1);
  });
});

describe("GrpcPeerTransport when a peer is away", () => {
  test("messages to an unknown or unreachable peer are dropped and reported", async (t) => {
    const r = new Recorder();
    // A port that was free a moment ago: nothing listens there.
    const gone = await startServer(() => {});
    stop(gone);
    const tx = transport(r, { selfId: 1, clusterId: "c1", peers: [[2, gone.address]] });
    t.after(() => tx.close());
    tx.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor("unreachable reported", () => r.unreachable.includes(2));
    await waitFor("the heartbeat dropped", () => tx.stats.dropped.Heartbeat === 1);
    assert.ok(tx.stats.streamFailures >= 1);
    // During the backoff messages are dropped at once.
    tx.send([msg({ type: MessageType.App, from: 1, to: 2 })]);
    assert.equal(tx.stats.dropped.App, 1);
    // A node without an address: dropped, unreachable, and a Snap fails.
    r.unreachable = [];
    tx.send([msg({ type: MessageType.Vote, from: 1, to: 5 }), msg({ type: MessageType.Snap, from: 1, to: 5 })]);
    await waitFor("reports", () => r.unreachable.includes(5) && r.snapshots.length === 1);
    assert.deepStrictEqual(r.snapshots, [[5, false]]);
  });

  test("a peer that accepts the connection but never answers is abandoned after the accept timeout", async (t) => {
    const sockets = new Set<Socket>();
    const mute = createServer((sock) => {
      sockets.add(sock);
      sock.on("error", () => {});
    });
    await new Promise<void>((resolve) => mute.listen(0, "127.0.0.1", resolve));
    t.after(() => {
      for (const s of sockets) s.destroy();
      mute.close();
    });
    const addr = mute.address();
    assert.ok(addr && typeof addr === "object");
    const r = new Recorder();
    const tx = transport(r, { selfId: 1, clusterId: "c1", peers: [[2, `127.0.0.1:${addr.port}`]], acceptTimeoutMs: 200 });
    t.after(() => tx.close());
    const t0 = Date.now();
    tx.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]);
    await waitFor("unreachable reported", () => r.unreachable.includes(2), 3_000);
    assert.ok(Date.now() - t0 >= 150, `gave up after ${Date.now() - t0} ms`);
    assert.equal(tx.stats.dropped.Heartbeat, 1);
    assert.equal(tx.stats.sent.Heartbeat, 0);
  });

  test("a full queue drops the newest messages and reports the peer unreachable", async (t) => {
    const r = new Recorder();
    const rb = new Recorder();
    const tb = transport(rb, { selfId: 2, clusterId: "c1", peers: [[1, "127.0.0.1:1"]] });
    const sb = await startServer((s) => tb.register(s));
    const tx = transport(r, { selfId: 1, clusterId: "c1", peers: [[2, sb.address]], maxQueue: 2 });
    t.after(() => {
      tx.close();
      tb.close();
      stop(sb);
    });
    tx.send([1, 2, 3, 4, 5].map((i) => msg({ type: MessageType.App, from: 1, to: 2, index: i })));
    assert.equal(tx.stats.dropped.App, 3);
    await waitFor("unreachable reported", () => r.unreachable.includes(2));
    await waitFor("the first two delivered", () => rb.received.length === 2);
    assert.deepStrictEqual(
      rb.received.map((m) => m.index),
      [1, 2],
    );
  });

  test("the stream comes back after the receiving server restarts", async (t) => {
    const r = new Recorder();
    const rb = new Recorder();
    const tb = transport(rb, { selfId: 2, clusterId: "c1", peers: [[1, "127.0.0.1:1"]] });
    let sb: Running | undefined = await startServer((s) => tb.register(s));
    const port = sb.port;
    const tx = transport(r, { selfId: 1, clusterId: "c1", peers: [[2, sb.address]] });
    t.after(() => {
      tx.close();
      tb.close();
      stop(sb);
    });
    let n = 0;
    const beat = (): void => tx.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, commit: ++n })]);
    beat();
    await waitFor("first heartbeat", () => rb.received.length === 1);

    stop(sb);
    sb = undefined;
    const timer = setInterval(beat, 10);
    t.after(() => clearInterval(timer));
    await waitFor("the loss noticed", () => r.unreachable.includes(2));
    await sleep(100);
    const before = rb.received.length;
    sb = await restartServer((s) => tb.register(s), port);
    await waitFor("heartbeats again", () => rb.received.length > before + 3, 10_000);
    clearInterval(timer);
    assert.ok(tx.stats.reconnects >= 1, `reconnects: ${tx.stats.reconnects}`);
    // Heartbeats keep their order on the new stream.
    const commits = rb.received.slice(before).map((m) => m.commit);
    assert.deepStrictEqual(
      commits,
      [...commits].sort((x, y) => x - y),
    );
  });

  test("a peer away long enough for the backoff to reach its cap is reached again within about one cap of its return", async (t) => {
    const r = new Recorder();
    const rb = new Recorder();
    const tb = transport(rb, { selfId: 2, clusterId: "c1", peers: [[1, "127.0.0.1:1"]] });
    let sb: Running | undefined = await startServer((s) => tb.register(s));
    const port = sb.port;
    // The longest jitter every time: the worst case of the default backoff.
    const tx = transport(r, { selfId: 1, clusterId: "c1", peers: [[2, sb.address]], random: () => 1 });
    const timer = setInterval(() => tx.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2 })]), 10);
    t.after(() => {
      clearInterval(timer);
      tx.close();
      tb.close();
      stop(sb);
    });
    await waitFor("first heartbeat", () => rb.received.length >= 1);
    stop(sb);
    sb = undefined;
    // 50, 100, ... ms: after seven failed attempts the backoff is at its cap (it was 5 s; PEER_BACKOFF.maxMs now).
    await waitFor("seven failed attempts", () => tx.stats.streamFailures >= 7, 20_000);
    const before = rb.received.length;
    sb = await restartServer((s) => tb.register(s), port);
    // One cap (1 s) plus a new connection; a 5 s cap, or gRPC's own reconnect backoff stacked on ours, misses this.
    await waitFor("heartbeats again", () => rb.received.length > before, 2.5 * PEER_BACKOFF.maxMs);
  });
});
