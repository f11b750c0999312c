// The protoc-gen-es -> grpc-js adapter: paths and method kinds, typed unary
// calls (deadlines, status errors with trailers), and the wire conversion of
// consensus messages (enum numbers, overflow, unknown types).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Cluster, KeyValueSchema, KvGetResponseSchema, KvPutResponseSchema, ResponseHeaderSchema, type KeyValue } from "../../src/gen/pgraft/v1/client_pb.js";
import { EntryType as WireEntryType, MessageType as WireMessageType, RaftMessageSchema, RaftPeer } from "../../src/gen/pgraft/v1/raft_pb.js";
import { Faults } from "../../src/gen/pgraft/v1/testing_pb.js";
import { MessageType, EntryType } from "../../src/consensus/types.js";
import { WireFormatError, messageFromWire, messageToWire } from "../../src/transport/convert.js";
import { createClient, isServiceError, localClient, serviceDefinition, statusError, type ClientOf, type HandlersOf } from "../../src/transport/grpc-service.js";
import { insecureClient, msg, startServer, stop, type Running } from "./helpers.js";

const screaming = (name: string): string => name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();

describe("wire conversion", () => {
  test("the wire enums keep the core's names and numbers", () => {
    for (const [name, value] of Object.entries(MessageType)) {
      if (typeof value !== "number") continue;
      assert.equal(WireMessageType[screaming(name) as keyof typeof WireMessageType], value, name);
    }
    assert.equal(Object.keys(WireMessageType).length, Object.keys(MessageType).length);
    assert.equal<number>(WireEntryType.NORMAL, EntryType.Normal);
    assert.equal<number>(WireEntryType.CONF_CHANGE, EntryType.ConfChange);
  });

  test("absent optional fields stay absent; present empty ones stay present", () => {
    const bare = msg({ type: MessageType.Heartbeat, from: 1, to: 2 });
    assert.deepStrictEqual(messageFromWire(messageToWire(bare)), bare);
    const full = msg({ type: MessageType.AppResp, from: 1, to: 2, logTermHint: 0, context: new Uint8Array() });
    const back = messageFromWire(messageToWire(full));
    assert.deepStrictEqual(back, full);
    assert.ok("logTermHint" in back && "context" in back);
  });

  test("numbers that do not fit and unknown types are refused", () => {
    const w = create(RaftMessageSchema, { type: WireMessageType.APP, term: 2n ** 60n });
    assert.throws(() => messageFromWire(w), WireFormatError);
    assert.throws(() => messageFromWire(create(RaftMessageSchema, { type: 99 as WireMessageType })), /unknown message type 99/);
    assert.throws(() => messageFromWire(create(RaftMessageSchema, { type: WireMessageType.APP, entries: [{ type: 7 as WireEntryType }] })), /unknown entry type 7/);
  });
});

describe("grpc-service adapter", () => {
  test("service definitions carry the full paths and the method kinds", () => {
    const cluster = serviceDefinition(Cluster);
    assert.equal(cluster.kvPut.path, "/pgraft.v1.Cluster/KvPut");
    assert.equal(cluster.transferLeader.path, "/pgraft.v1.Cluster/TransferLeader");
    assert.equal(Object.keys(cluster).length, Cluster.methods.length);
    assert.equal(cluster.nodeGroupCommand.path, "/pgraft.v1.Cluster/NodeGroupCommand");
    const peer = serviceDefinition(RaftPeer);
    assert.equal(peer.stream.path, "/pgraft.v1.RaftPeer/Stream");
    assert.equal(peer.stream.requestStream, true);
    assert.equal(peer.stream.responseStream, false);
    assert.equal(peer.installSnapshot.path, "/pgraft.v1.RaftPeer/InstallSnapshot");
    assert.equal(serviceDefinition(Faults).setFaults.requestStream, false);
  });

  describe("a Cluster server with a small KV", () => {
    let srv: Running | undefined;
    let local: ClientOf<typeof Cluster> | undefined;
    const kv = new Map<string, KeyValue>();
    let revision = 0n;
    const header = () => create(ResponseHeaderSchema, { clusterId: "c1", memberId: 1, revision });

    before(async () => {
      const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>): void => cb(statusError(grpc.status.UNIMPLEMENTED, "not here"));
      const handlers = Object.fromEntries(Cluster.methods.map((m) => [m.localName, unimplemented])) as unknown as HandlersOf<typeof Cluster>;
      handlers.kvPut = (call, cb) => {
        const { key, value, ifModRevision } = call.request;
        const prev = kv.get(key);
        if (ifModRevision !== undefined && ifModRevision !== (prev?.modRevision ?? 0n)) {
          return cb(null, create(KvPutResponseSchema, { header: header(), succeeded: false, ...(prev ? { kv: prev } : {}) }));
        }
        revision++;
        const next = create(KeyValueSchema, { key, value, createRevision: prev?.createRevision ?? revision, modRevision: revision, version: (prev?.version ?? 0n) + 1n });
        kv.set(key, next);
        cb(null, create(KvPutResponseSchema, { header: header(), succeeded: true, kv: next }));
      };
      handlers.kvGet = (call, cb) => {
        const found = kv.get(call.request.key);
        cb(null, create(KvGetResponseSchema, { header: header(), ...(found ? { kv: found } : {}) }));
      };
      handlers.status = (_call, cb) => {
        const md = new grpc.Metadata();
        md.set("pgraft-error-code", "NOT_LEADER");
        md.set("pgraft-leader-id", "3");
        cb(statusError(grpc.status.UNAVAILABLE, "not the leader", md));
      };
      handlers.members = () => {}; // never answers: for the deadline
      local = localClient(Cluster, handlers);
      srv = await startServer((s) => {
        s.addService(serviceDefinition(Cluster), handlers);
      });
    });


    after(() => stop(srv));

    test("typed unary calls with etcd-style revisions", async (t) => {
      const c = createClient(Cluster, srv!.address, insecureClient());
      t.after(() => c.close());
      const p1 = await c.methods.kvPut({ clusterId: "c1", key: "k", value: '{"a":1}' });
      assert.equal(p1.succeeded, true);
      assert.deepStrictEqual([p1.kv?.createRevision, p1.kv?.modRevision, p1.kv?.version], [1n, 1n, 1n]);
      const p2 = await c.methods.kvPut({ clusterId: "c1", key: "k", value: '{"a":2}', ifModRevision: 1n });
      assert.deepStrictEqual([p2.kv?.createRevision, p2.kv?.modRevision, p2.kv?.version], [1n, 2n, 2n]);
      const stale = await c.methods.kvPut({ clusterId: "c1", key: "k", value: "3", ifModRevision: 1n });
      assert.equal(stale.succeeded, false);
      assert.equal(stale.kv?.value, '{"a":2}');
      const create0 = await c.methods.kvPut({ clusterId: "c1", key: "k", value: "3", ifModRevision: 0n });
      assert.equal(create0.succeeded, false, "if_mod_revision 0: only when absent");
      const got = await c.methods.kvGet({ clusterId: "c1", key: "k" });
      assert.equal(got.kv?.value, '{"a":2}');
      assert.equal(got.header?.revision, 2n);
      const none = await c.methods.kvGet({ clusterId: "c1", key: "missing" });
      assert.equal(none.kv, undefined);
    });

    test("status errors carry their code, details and trailers; deadlines hold", async (t) => {
      const c = createClient(Cluster, srv!.address, insecureClient());
      t.after(() => c.close());
      const err = await c.methods.status({ clusterId: "c1" }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(isServiceError(err));
      assert.equal(err.code, grpc.status.UNAVAILABLE);
      assert.equal(err.details, "not the leader");
      assert.deepStrictEqual(err.metadata.get("pgraft-leader-id"), ["3"]);
      await assert.rejects(c.methods.members({ clusterId: "c1" }, { timeoutMs: 100 }), (e: unknown) => isServiceError(e) && e.code === grpc.status.DEADLINE_EXCEEDED);
      await assert.rejects(c.methods.kvDelete({ clusterId: "c1", key: "k" }), (e: unknown) => isServiceError(e) && e.code === grpc.status.UNIMPLEMENTED);
    });

    test("in-process calls (localClient) run the same handlers with the same answers and errors", async () => {
      const put = await local!.kvPut({ key: "local", value: '"v"' });
      assert.equal(put.succeeded, true);
      assert.equal((await local!.kvGet({ key: "local" })).kv?.value, '"v"');
      const e = await local!.status({}).then(() => undefined, (x: unknown) => x);
      assert.ok(isServiceError(e));
      assert.equal(e.code, grpc.status.UNAVAILABLE);
      assert.equal(e.metadata?.get("pgraft-error-code")[0], "NOT_LEADER");
    });
  });
});
