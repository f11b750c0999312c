// mTLS between sidecars with certificates made by the openssl CLI in a temp
// dir: peers with certificates of the cluster's CA talk; a peer whose
// certificate comes from another CA, or that speaks plaintext, is refused; and
// unreadable or malformed files fail with the path in the message.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GrpcPeerTransport } from "../../src/transport/peer-transport.js";
import { TlsConfigError, clientCredentials, serverCredentials, type MtlsFiles } from "../../src/transport/tls.js";
import { hasOpenssl, makeCa, makeCert } from "./certs.js";
import { MessageType, Recorder, msg, startServer, stop, waitFor, type Running } from "./helpers.js";

describe("mTLS between sidecars", { skip: hasOpenssl() ? false : "the openssl CLI is not installed" }, () => {
  let dir = "";
  let n1: MtlsFiles;
  let n2: MtlsFiles;
  let rogue: MtlsFiles;
  let named: MtlsFiles;
  const transports: GrpcPeerTransport[] = [];
  const servers: Running[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-tls-"));
    makeCa(dir, "ca");
    makeCa(dir, "other-ca");
    n1 = makeCert(dir, "ca", "node1", { node: 1 });
    n2 = makeCert(dir, "ca", "node2", { node: 2 });
    rogue = makeCert(dir, "other-ca", "rogue", { node: 3 });
    named = makeCert(dir, "ca", "named", { san: "DNS:pgraft-peer.test,URI:pgraft://c1/node/5" });
  });

  after(() => {
    for (const t of transports) t.close();
    for (const s of servers) stop(s);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A node on `files` (server and client credentials) that knows peers 1..9. */
  async function node(id: number, files: MtlsFiles | "insecure", rec: Recorder): Promise<{ t: GrpcPeerTransport; s: Running }> {
    const cfg = files === "insecure" ? ({ insecure: true } as const) : files;
    const t = new GrpcPeerTransport({
      selfId: id,
      clusterId: "c1",
      credentials: clientCredentials(cfg),
      isKnownPeer: (p) => p >= 1 && p <= 9,
      onReceive: (m) => rec.received.push(m),
      onUnreachable: (p) => rec.unreachable.push(p),
      onSnapshotStatus: (p, ok) => rec.snapshots.push([p, ok]),
    });
    transports.push(t);
    const s = await startServer((srv) => t.register(srv), serverCredentials(cfg));
    servers.push(s);
    return { t, s };
  }

  test("peers with certificates from the cluster's CA exchange messages both ways", async () => {
    const r1 = new Recorder();
    const r2 = new Recorder();
    const a = await node(1, n1, r1);
    const b = await node(2, n2, r2);
    a.t.setPeer(2, b.s.address);
    b.t.setPeer(1, a.s.address);
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 2, term: 3 })]);
    await waitFor("node 2 hears node 1", () => r2.received.length === 1);
    b.t.send([msg({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: 3 })]);
    await waitFor("node 1 hears node 2", () => r1.received.length === 1);
    // A snapshot goes over TLS too.
    const data = new Uint8Array(2 * 1024 * 1024).fill(7);
    a.t.send([msg({ type: MessageType.Snap, from: 1, to: 2, snapshot: { meta: { index: 9, term: 3, conf: { voters: [1, 2], learners: [] } }, data } })]);
    await waitFor("the snapshot outcome", () => r1.snapshots.length === 1);
    assert.deepStrictEqual(r1.snapshots, [[2, true]]);
  });

  test("a peer whose certificate comes from another CA is refused, both as client and as server", async () => {
    const r1 = new Recorder();
    const rr = new Recorder();
    const a = await node(1, n1, r1);
    const bad = await node(3, rogue, rr);
    // The rogue dials node 1: node 1 does not accept its client certificate.
    bad.t.setPeer(1, a.s.address);
    bad.t.send([msg({ type: MessageType.Vote, from: 3, to: 1, term: 50 })]);
    await waitFor("the rogue's stream failing", () => rr.unreachable.includes(1));
    // Node 1 dials the rogue: it does not trust the rogue's server certificate.
    a.t.setPeer(3, bad.s.address);
    a.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 3 })]);
    await waitFor("node 1's stream failing", () => r1.unreachable.includes(3));
    assert.equal(r1.received.length, 0);
    assert.equal(rr.received.length, 0);
    assert.ok(bad.t.stats.streamFailures >= 1 && a.t.stats.streamFailures >= 1);
  });

  test("a plaintext peer cannot talk to an mTLS one", async () => {
    const r1 = new Recorder();
    const rp = new Recorder();
    const a = await node(1, n1, r1);
    const plain = await node(4, "insecure", rp);
    plain.t.setPeer(1, a.s.address);
    plain.t.send([msg({ type: MessageType.Heartbeat, from: 4, to: 1 })]);
    await waitFor("the plaintext stream failing", () => rp.unreachable.includes(1));
    assert.equal(r1.received.length, 0);
  });

  test("a server certificate without the dialled address is refused unless serverName names it", async () => {
    const rn = new Recorder();
    const srv = await node(5, named, rn);
    const r1 = new Recorder();
    const strict = await node(1, n1, r1);
    strict.t.setPeer(5, srv.s.address);
    strict.t.send([msg({ type: MessageType.Heartbeat, from: 1, to: 5 })]);
    await waitFor("the name check failing", () => r1.unreachable.includes(5));
    assert.equal(rn.received.length, 0);

    // Node 2's certificate, for node 2 (its id is bound to it).
    const rn2 = new Recorder();
    const tn2 = new GrpcPeerTransport({
      selfId: 2,
      clusterId: "c1",
      credentials: clientCredentials({ ...n2, serverName: "pgraft-peer.test" }),
      peers: [[5, srv.s.address]],
      onReceive: () => {},
      onUnreachable: (p) => rn2.unreachable.push(p),
      onSnapshotStatus: () => {},
    });
    transports.push(tn2);
    tn2.send([msg({ type: MessageType.Heartbeat, from: 2, to: 5 })]);
    await waitFor("the heartbeat with serverName", () => rn.received.length === 1);
  });

  test("unreadable and malformed files fail with their path in the message", () => {
    const missing = join(dir, "nope.crt");
    assert.throws(() => serverCredentials({ ...n1, caFile: missing }), (e: unknown) => e instanceof TlsConfigError && e.message.includes(`cannot read CA file ${missing}`));
    const garbage = join(dir, "garbage.pem");
    writeFileSync(garbage, "hello\n");
    assert.throws(() => clientCredentials({ ...n1, certFile: garbage }), (e: unknown) => e instanceof TlsConfigError && e.message.includes(`certificate file ${garbage} holds no PEM certificate`));
    const broken = join(dir, "broken.pem");
    writeFileSync(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    assert.throws(() => clientCredentials({ ...n1, caFile: broken }), (e: unknown) => e instanceof TlsConfigError && e.message.includes(`CA file ${broken}: certificate #1 is malformed`));
    assert.throws(() => serverCredentials({ ...n1, keyFile: garbage }), (e: unknown) => e instanceof TlsConfigError && e.message.includes(`key file ${garbage} is not a valid`));
    assert.throws(() => serverCredentials({ ...n1, keyFile: n2.keyFile }), (e: unknown) => e instanceof TlsConfigError && e.message.includes("does not match the private key"));
    assert.throws(() => serverCredentials({ ...n1, caFile: n1.certFile }), (e: unknown) => e instanceof TlsConfigError && e.message.includes("is not a CA certificate"));
  });
});
