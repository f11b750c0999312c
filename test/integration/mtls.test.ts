// Real sidecar processes over mTLS, with certificates that name their node
// (URI SAN pgraft://<cluster>/node/<id>): three founders elect a leader and
// commit a write, a fourth joins and is promoted, none refuses Raft traffic —
// and a sidecar given another node's certificate refuses to start, saying why.
// (Spoofed ids on the wire are covered by test/transport/tls-identity.test.ts:
// a real sidecar cannot be made to claim an id its certificate lacks.)
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createClient, type TypedClient } from "../../src/transport/grpc-service.js";
import { clientCredentials, type MtlsFiles } from "../../src/transport/tls.js";
import { hasOpenssl, makeCa, makeCert } from "../transport/certs.js";
import { SidecarProcess, freePorts, pb, waitFor, type PB } from "./harness.js";

const CLUSTER = "it-mtls";

/** A sidecar started with --tls-ca/--tls-cert/--tls-key instead of --plaintext. */
class TlsSidecar extends SidecarProcess {
  constructor(id: number, ports: [number, number], dir: string, mode: string[], private readonly files: MtlsFiles) {
    super(id, ports[0], ports[1], join(dir, `node${id}`), join(dir, `node${id}.log`), mode, { clusterId: CLUSTER, heartbeat: "50ms", election: "500ms", env: {} });
  }
  override args(): string[] {
    return super.args().flatMap((a) => (a === "--plaintext" ? ["--tls-ca", this.files.caFile, "--tls-cert", this.files.certFile, "--tls-key", this.files.keyFile] : [a]));
  }
}

describe("sidecars over mTLS with node ids in their certificates", { skip: hasOpenssl() ? false : "the openssl CLI is not installed" }, () => {
  let dir = "";
  const certs = new Map<number, MtlsFiles>();
  const nodes = new Map<number, TlsSidecar>();
  const clients: TypedClient<(typeof PB.Cluster)["method"]>[] = [];

  const tails = (): string => [...nodes.values()].map((n) => `----- node ${n.id}\n${n.tail(30)}`).join("\n");

  function client(id: number): TypedClient<(typeof PB.Cluster)["method"]>["methods"] {
    // Any certificate of the CA may call the Cluster service.
    const c = createClient(pb.Cluster, nodes.get(id)!.address, clientCredentials(certs.get(1)!));
    clients.push(c);
    return c.methods;
  }

  async function leader(among: number[]): Promise<number> {
    return waitFor(
      "a leader all nodes follow",
      async () => {
        const ids = await Promise.all(among.map(async (id) => (await client(id).status({ clusterId: CLUSTER }, { timeoutMs: 1_000 })).leaderId));
        return ids.every((l) => l !== 0 && l === ids[0]) ? ids[0] : undefined;
      },
      { timeoutMs: 20_000, context: tails },
    );
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-it-mtls-"));
    makeCa(dir, "ca");
    for (const id of [1, 2, 3, 4]) certs.set(id, makeCert(dir, "ca", `node${id}`, { san: `IP:127.0.0.1,URI:pgraft://${CLUSTER}/node/${id}` }));
    const ports = await freePorts(6);
    const initial = [1, 2, 3].map((id) => `${id}=127.0.0.1:${ports[2 * (id - 1)]!}`).join(",");
    for (const id of [1, 2, 3]) {
      nodes.set(id, new TlsSidecar(id, [ports[2 * (id - 1)]!, ports[2 * (id - 1) + 1]!], dir, ["--initial-cluster", initial], certs.get(id)!));
    }
    for (const n of nodes.values()) n.spawn();
    await Promise.all([...nodes.values()].map((n) => n.waitReady(20_000)));
  });

  after(async () => {
    for (const c of clients) c.close();
    for (const n of nodes.values()) {
      if (n.state === "stopped") continue;
      n.signal("SIGKILL");
      await n.waitExit(10_000).catch(() => undefined);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("three founders elect a leader and commit; a fourth joins and is promoted; nothing is refused", async () => {
    const l = await leader([1, 2, 3]);
    assert.equal((await client(l).kvPut({ clusterId: CLUSTER, key: "k", value: JSON.stringify("over mTLS") }, { timeoutMs: 10_000 })).succeeded, true);
    for (const id of [1, 2, 3]) assert.equal((await client(id).kvGet({ clusterId: CLUSTER, key: "k" }, { timeoutMs: 10_000 })).kv?.value, JSON.stringify("over mTLS"));

    const [g, h] = await freePorts(2);
    const joiner = new TlsSidecar(4, [g!, h!], dir, ["--join", nodes.get(1)!.address], certs.get(4)!);
    nodes.set(4, joiner);
    joiner.spawn();
    await joiner.waitReady(20_000);
    await waitFor(
      "node 4 to be a voter",
      async () => {
        const r = await client(await leader([1, 2, 3, 4])).members({ clusterId: CLUSTER, fromLeader: true }, { timeoutMs: 5_000 });
        return r.members.some((m) => m.id === 4 && m.role === pb.MemberRole.VOTER);
      },
      { timeoutMs: 30_000, context: tails },
    );
    assert.equal((await client(4).kvGet({ clusterId: CLUSTER, key: "k" }, { timeoutMs: 10_000 })).kv?.value, JSON.stringify("over mTLS"));

    for (const n of nodes.values()) {
      const refused = n
        .logRecords()
        .map((r) => String(r.msg))
        .filter((m) => /refused Raft traffic|failed: (PERMISSION_DENIED|UNAUTHENTICATED)/.test(m));
      assert.deepEqual(refused, [], `node ${n.id} logged no refusal`);
    }
  });

  test("a sidecar started with another node's certificate exits and names the mismatch", async () => {
    const [g, h] = await freePorts(2);
    const wrong = new TlsSidecar(5, [g!, h!], dir, ["--join", nodes.get(1)!.address], certs.get(2)!);
    nodes.set(5, wrong);
    wrong.spawn();
    const exit = await wrong.waitExit(20_000);
    assert.notEqual(exit.code, 0);
    assert.match(wrong.tail(20), /names node 2 \(URI pgraft:\/\/it-mtls\/node\/2, CN node2\), not this node 5: peers would refuse it/);
  });
});
