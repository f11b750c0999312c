// A peer's node id is bound to its TLS certificate (issue 10 §5): a valid
// certificate of the cluster's CA lets a sidecar speak only for the node ids it
// names (URI SAN pgraft://<cluster>/node/<id>, or CN node-<id> when it has no
// pgraft URI). Claiming another id is refused with PERMISSION_DENIED and
// counted, on Raft streams and on InstallSnapshot alike.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { RaftBatchSchema, RaftMessageSchema, RaftPeer, SnapshotChunkSchema, MessageType as WireMessageType } from "../../src/gen/pgraft/v1/raft_pb.js";
import { createClient } from "../../src/transport/grpc-service.js";
import { checkOwnCertificate } from "../../src/transport/peer-identity.js";
import { HEADER_CLUSTER_ID, HEADER_FROM, HEADER_TO } from "../../src/transport/peer-server.js";
import { GrpcPeerTransport } from "../../src/transport/peer-transport.js";
import { TlsConfigError, clientCredentials, serverCredentials, type MtlsFiles } from "../../src/transport/tls.js";
import { hasOpenssl, makeCa, makeCert } from "./certs.js";
import { MessageType, Recorder, insecureClient, insecureServer, msg, startServer, stop, waitFor, type Running } from "./helpers.js";

describe("a peer's node id is bound to its certificate", { skip: hasOpenssl() ? false : "the openssl CLI is not installed" }, () => {
  let dir = "";
  const certs: Record<string, MtlsFiles> = {};
  const transports: GrpcPeerTransport[] = [];
  const servers: Running[] = [];
  const clients: { close(): void }[] = [];
  let receiver: { t: GrpcPeerTransport; s: Running; rec: Recorder } | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-tls-id-"));
    makeCa(dir, "ca");
    certs.n1 = makeCert(dir, "ca", "node1", { node: 1 });
    certs.n2 = makeCert(dir, "ca", "node2", { node: 2 });
    // Only a CN: node-7 names node 7.
    certs.cn7 = makeCert(dir, "ca", "cn7", { cn: "node-7" });
    // A pgraft URI of another cluster; the CN then names nothing.
    certs.otherCluster = makeCert(dir, "ca", "other", { san: "IP:127.0.0.1,URI:pgraft://c2/node/2", cn: "node-2" });
    // A certificate of the CA that names no node at all (the old convention of these tests).
    certs.anonymous = makeCert(dir, "ca", "anonymous", { cn: "node2" });
    const rec = new Recorder();
    const t = sidecar(1, certs.n1, rec);
    const s = await startServer((srv) => t.register(srv), serverCredentials(certs.n1));
    servers.push(s);
    receiver = { t, s, rec };
  });

  after(() => {
    for (const c of clients) c.close();
    for (const t of transports) t.close();
    for (const s of servers) stop(s);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A transport for node `id` with the certificate `files`; it accepts any peer the checks pass. */
  function sidecar(id: number, files: MtlsFiles, rec: Recorder, peers: [number, string][] = []): GrpcPeerTransport {
    const t = new GrpcPeerTransport({
      selfId: id,
      clusterId: "c1",
      credentials: clientCredentials(files),
      peers,
      isKnownPeer: () => true,
      requirePeerCertificate: true,
      onReceive: (m) => rec.received.push(m),
      onUnreachable: (p) => rec.unreachable.push(p),
      onSnapshotStatus: (p, ok) => rec.snapshots.push([p, ok]),
    });
    transports.push(t);
    return t;
  }

  /** Node `claim` on `files` sends a heartbeat to node 1; resolves once it was delivered or refused. */
  async function heartbeat(files: MtlsFiles, claim: number): Promise<{ delivered: boolean; sender: GrpcPeerTransport }> {
    const r = receiver!;
    const rec = new Recorder();
    const sender = sidecar(claim, files, rec, [[1, r.s.address]]);
    const before = r.rec.received.length;
    sender.send([msg({ type: MessageType.Heartbeat, from: claim, to: 1, term: 2 })]);
    await waitFor("delivery or refusal", () => r.rec.received.length > before || rec.unreachable.includes(1));
    return { delivered: r.rec.received.length > before, sender };
  }

  /** A raw Stream call from a client on `files`, with headers claiming `claim` (or none), writing one batch from `claim`. */
  function rawStream(files: MtlsFiles, claim: number, headers = true): Promise<grpc.ServiceError | null> {
    const client = createClient(RaftPeer, receiver!.s.address, clientCredentials(files));
    clients.push(client);
    const md = new grpc.Metadata();
    if (headers) {
      md.set(HEADER_CLUSTER_ID, "c1");
      md.set(HEADER_FROM, String(claim));
      md.set(HEADER_TO, "1");
    }
    return new Promise((resolve) => {
      const call = client.methods.stream((e) => resolve(e), { metadata: md });
      call.write(
        create(RaftBatchSchema, {
          clusterId: "c1",
          from: claim,
          to: 1,
          messages: [create(RaftMessageSchema, { type: WireMessageType.HEARTBEAT, clusterId: "c1", from: claim, to: 1 })],
        }),
      );
      call.end();
    });
  }

  test("node 2's certificate speaks for node 2, and claiming node 3 with it is refused and counted on both sides", async () => {
    const r = receiver!;
    assert.equal((await heartbeat(certs.n2!, 2)).delivered, true, "node 2 as itself");
    const refusedBefore = r.t.stats.refused.identity_mismatch;
    const { delivered, sender } = await heartbeat(certs.n2!, 3);
    assert.equal(delivered, false, "node 2 claiming node 3");
    await waitFor("the sender to count the refusal", () => sender.stats.refusedByPeer.identity_mismatch >= 1);
    assert.ok(r.t.stats.refused.identity_mismatch > refusedBefore);

    // The status, by the stream's headers and, without headers, by its first batch.
    for (const headers of [true, false]) {
      const err = await rawStream(certs.n2!, 3, headers);
      assert.equal(err?.code, grpc.status.PERMISSION_DENIED, `headers: ${headers}`);
      assert.match(err?.details ?? "", /the peer claims to be node 3, but its certificate names node 2 \(URI pgraft:\/\/c1\/node\/2, CN node2\)/);
      assert.equal(String(err?.metadata.get("pgraft-refusal")[0]), "identity_mismatch");
    }
    assert.equal(await rawStream(certs.n2!, 2), null, "the same raw stream as node 2 is accepted");
  });

  test("a snapshot sent under another node's id is refused; under its own it is installed", async () => {
    const r = receiver!;
    const data = new Uint8Array(3 * 1024 * 1024).fill(5);
    const snap = (from: number) => msg({ type: MessageType.Snap, from, to: 1, term: 2, snapshot: { meta: { index: 40, term: 2, conf: { voters: [1, 2], learners: [] } }, data } });

    const refusedBefore = r.t.stats.refused.identity_mismatch;
    const bad = new Recorder();
    const spoof = sidecar(3, certs.n2!, bad, [[1, r.s.address]]);
    spoof.send([snap(3)]);
    await waitFor("the spoofed snapshot's outcome", () => bad.snapshots.length === 1);
    assert.deepEqual(bad.snapshots, [[1, false]]);
    assert.ok(r.t.stats.refused.identity_mismatch > refusedBefore);
    assert.ok(!r.rec.received.some((m) => m.type === MessageType.Snap && m.from === 3));

    // The status of a raw InstallSnapshot claiming node 3 with node 2's certificate.
    const client = createClient(RaftPeer, r.s.address, clientCredentials(certs.n2!));
    clients.push(client);
    const md = new grpc.Metadata();
    md.set(HEADER_CLUSTER_ID, "c1");
    md.set(HEADER_FROM, "3");
    md.set(HEADER_TO, "1");
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.methods.installSnapshot((e) => resolve(e), { metadata: md });
      call.write(create(SnapshotChunkSchema, { clusterId: "c1", from: 3, to: 1, last: true }));
      call.end();
    });
    assert.equal(err?.code, grpc.status.PERMISSION_DENIED);
    assert.match(err?.details ?? "", /claims to be node 3, but its certificate names node 2/);

    const good = new Recorder();
    const honest = sidecar(2, certs.n2!, good, [[1, r.s.address]]);
    honest.send([snap(2)]);
    await waitFor("the honest snapshot's outcome", () => good.snapshots.length === 1);
    assert.deepEqual(good.snapshots, [[1, true]]);
    assert.ok(r.rec.received.some((m) => m.type === MessageType.Snap && m.from === 2));
  });

  test("without a pgraft URI the CN node-<id> names the node", async () => {
    assert.equal((await heartbeat(certs.cn7!, 7)).delivered, true);
    assert.equal((await heartbeat(certs.cn7!, 8)).delivered, false);
  });

  test("a URI of another cluster names no node here (and then the CN does not count)", async () => {
    assert.equal((await heartbeat(certs.otherCluster!, 2)).delivered, false);
    const err = await rawStream(certs.otherCluster!, 2);
    assert.equal(err?.code, grpc.status.PERMISSION_DENIED);
    assert.match(err?.details ?? "", /names no node of cluster c1 \(URI pgraft:\/\/c2\/node\/2, CN node-2\)/);
  });

  test("a certificate of the CA that names no node is refused whatever id it claims", async () => {
    for (const id of [2, 9]) assert.equal((await heartbeat(certs.anonymous!, id)).delivered, false, `as node ${id}`);
    const err = await rawStream(certs.anonymous!, 2);
    assert.match(err?.details ?? "", /a certificate for node 2 must carry the URI SAN pgraft:\/\/c1\/node\/2 \(or, without pgraft:\/\/ URIs, the CN node-2\)/);
  });

  test("with requirePeerCertificate, a connection without a certificate is refused (UNAUTHENTICATED)", async (t) => {
    const rec = new Recorder();
    const strict = new GrpcPeerTransport({
      selfId: 1,
      clusterId: "c1",
      credentials: insecureClient(),
      isKnownPeer: () => true,
      requirePeerCertificate: true,
      onReceive: (m) => rec.received.push(m),
      onUnreachable: () => {},
      onSnapshotStatus: () => {},
    });
    t.after(() => strict.close());
    const s = await startServer((srv) => strict.register(srv), insecureServer());
    t.after(() => stop(s));
    const client = createClient(RaftPeer, s.address, insecureClient());
    t.after(() => client.close());
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.methods.stream((e) => resolve(e));
      call.write(create(RaftBatchSchema, { clusterId: "c1", from: 2, to: 1, messages: [] }));
      call.end();
    });
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED);
    assert.equal(strict.stats.refused.identity_mismatch, 1);
    assert.equal(rec.received.length, 0);
  });

  test("a sidecar refuses to start with a certificate that does not name it", () => {
    checkOwnCertificate(certs.n2!.certFile, "c1", 2);
    checkOwnCertificate(certs.cn7!.certFile, "c1", 7);
    assert.throws(
      () => checkOwnCertificate(certs.n2!.certFile, "c1", 3),
      (e: unknown) =>
        e instanceof TlsConfigError &&
        e.message === `certificate file ${certs.n2!.certFile} names node 2 (URI pgraft://c1/node/2, CN node2), not this node 3: peers would refuse it; it must carry the URI SAN pgraft://c1/node/3 (or, without pgraft:// URIs, the CN node-3)`,
    );
    assert.throws(() => checkOwnCertificate(certs.n2!.certFile, "c2", 2), /names no node of cluster c2/);
    assert.throws(() => checkOwnCertificate(certs.anonymous!.certFile, "c1", 2), /names no node of cluster c1 \(CN node2\)/);
  });
});
