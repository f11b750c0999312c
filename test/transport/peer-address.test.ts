// A node answers a peer its address book does not know (issue 10 §7): every
// stream names its sender's address (`pgraft-from-address`), and the receiver
// sends its answers there until the address book has the peer — which, for a
// node that restored an old snapshot while joining, may be much later, and
// removing the peer from the address book (the daemon syncing it with that old
// catalog) must not cut the way back.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { RaftBatchSchema, RaftPeer } from "../../src/gen/pgraft/v1/raft_pb.js";
import { createClient } from "../../src/transport/grpc-service.js";
import { HEADER_CLUSTER_ID, HEADER_FROM, HEADER_FROM_ADDRESS, HEADER_TO } from "../../src/transport/peer-server.js";
import type { GrpcPeerTransport } from "../../src/transport/peer-transport.js";
import { freePorts } from "../support/ports.js";
import { MessageType, Recorder, insecureClient, msg, startServer, stop, transport, waitFor, type Running } from "./helpers.js";

describe("answering a peer at the address it gave", () => {
  /** Leader 4 (knows the joiner) and joiner 5 (knows nobody, accepts every peer of the cluster). */
  async function pair(t: { after(fn: () => void): void }): Promise<{ leader: GrpcPeerTransport; joiner: GrpcPeerTransport; rl: Recorder; rj: Recorder; sl: Running; sj: Running }> {
    const rl = new Recorder();
    const rj = new Recorder();
    const [port] = await freePorts(1);
    const leader = transport(rl, { selfId: 4, clusterId: "c1", advertise: `127.0.0.1:${port!}` });
    const joiner = transport(rj, { selfId: 5, clusterId: "c1", isKnownPeer: () => true });
    t.after(() => {
      leader.close();
      joiner.close();
    });
    const sl = await startServer((s) => leader.register(s), undefined, port);
    t.after(() => stop(sl));
    const sj = await startServer((s) => joiner.register(s));
    t.after(() => stop(sj));
    leader.setPeer(5, sj.address);
    return { leader, joiner, rl, rj, sl, sj };
  }

  test("the joiner answers a leader it has no address for", async (t) => {
    const { leader, joiner, rl, rj, sl } = await pair(t);
    leader.send([msg({ type: MessageType.App, from: 4, to: 5, term: 3, index: 1, logTerm: 1 })]);
    await waitFor("the joiner to hear the leader", () => rj.received.length === 1);
    assert.equal(joiner.peers().size, 0, "the address book stays the daemon's");
    joiner.send([msg({ type: MessageType.AppResp, from: 5, to: 4, term: 3, index: 1 })]);
    await waitFor("the leader to hear the answer", () => rl.received.length === 1);
    assert.equal(rl.received[0]?.type, MessageType.AppResp);
    assert.equal(joiner.stats.dropped.AppResp, 0);
    assert.deepEqual(rj.unreachable, []);

    // The daemon syncs the address book with an old catalog that lacks node 4: it
    // sets and then removes it. The address the leader gave still takes the answers.
    joiner.setPeer(4, sl.address);
    joiner.removePeer(4);
    joiner.send([msg({ type: MessageType.HeartbeatResp, from: 5, to: 4, term: 3 })]);
    await waitFor("the leader to hear the heartbeat answer", () => rl.received.length === 2);
    assert.equal(rl.received[1]?.type, MessageType.HeartbeatResp);
  });

  test("the address book wins over the address a peer gave", async (t) => {
    const { leader, joiner, rl, rj } = await pair(t);
    leader.send([msg({ type: MessageType.Heartbeat, from: 4, to: 5, term: 3 })]);
    await waitFor("the joiner to hear the leader", () => rj.received.length === 1);
    // A catalog address where nothing listens: the answer goes there, and is lost.
    const nowhere = await startServer(() => {});
    stop(nowhere);
    joiner.setPeer(4, nowhere.address);
    joiner.send([msg({ type: MessageType.HeartbeatResp, from: 5, to: 4, term: 3 })]);
    await waitFor("node 4 reported unreachable", () => rj.unreachable.includes(4));
    assert.equal(rl.received.length, 0);
  });

  test("a malformed address header or sender id is refused", async (t) => {
    const rj = new Recorder();
    const joiner = transport(rj, { selfId: 5, clusterId: "c1", isKnownPeer: () => true });
    t.after(() => joiner.close());
    const sj = await startServer((s) => joiner.register(s));
    t.after(() => stop(sj));
    const client = createClient(RaftPeer, sj.address, insecureClient());
    t.after(() => client.close());
    const md = new grpc.Metadata();
    md.set(HEADER_CLUSTER_ID, "c1");
    md.set(HEADER_FROM, "4");
    md.set(HEADER_TO, "5");
    md.set(HEADER_FROM_ADDRESS, "not an address");
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.methods.stream((e) => resolve(e), { metadata: md });
      call.write(create(RaftBatchSchema, { clusterId: "c1", from: 4, to: 5, messages: [] }));
    });
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err?.details ?? "", /pgraft-from-address is not a host:port/);
    assert.equal(joiner.stats.refused.malformed, 1);

    // Every peer of the cluster may talk to a joiner, but only under a node id.
    const attempt = (from: string, batchFrom: number): Promise<grpc.ServiceError | null> => {
      const m = new grpc.Metadata();
      m.set(HEADER_CLUSTER_ID, "c1");
      m.set(HEADER_FROM, from);
      m.set(HEADER_TO, "5");
      return new Promise((resolve) => {
        const call = client.methods.stream((e) => resolve(e), { metadata: m });
        call.write(create(RaftBatchSchema, { clusterId: "c1", from: batchFrom, to: 5, messages: [] }));
      });
    };
    const byHeader = await attempt("four", 4);
    assert.equal(byHeader?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(byHeader?.details ?? "", /header pgraft-from is not a node id: "four"/);
    const byBatch = await attempt("4", 0);
    assert.match(byBatch?.details ?? "", /sender 0 is not a node id/);
    assert.equal(joiner.stats.refused.malformed, 3);
    assert.equal(rj.received.length, 0);
  });
});
