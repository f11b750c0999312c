// Pod mode over mTLS with the certificates laid out as the chart mounts them:
// one directory holding ca.crt and <pod>.crt / <pod>.key for every pod (the
// tls.existingSecret layout, and what the cert-manager projected volume
// builds), each certificate naming its node id as the chart's Certificates do
// (CN node-<ordinal+1>, URI SAN pgraft://<cluster id>/node/<ordinal+1>), and
// the sidecar's TLS variables as the chart sets them ($(POD_NAME) expanded).
// 3 pods form the cluster and a 4th joins; a pod given another pod's
// certificate is refused at start. No PostgreSQL: Raft alone.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freePorts } from "../support/ports.js";
import { waitFor } from "../support/wait.js";
import { hasOpenssl, makeCa, makeCert } from "../transport/certs.js";
import { consecutivePorts, http, PodProcess } from "./pods.js";

const CLUSTER_ID = "k8s-tls";

describe("pods over mTLS with per-pod certificates", { timeout: 120_000, skip: hasOpenssl() ? false : "the openssl CLI is not installed" }, () => {
  let dir = "";
  let base = 0;
  const httpPorts: number[] = [];
  const pods: PodProcess[] = [];
  const tails = (): string => pods.map((p) => `----- pod pgraft-${p.id - 1} (${p.state})\n${p.tail(25)}`).join("\n");

  const makePod = (i: number, certOf = `pgraft-${i}`): PodProcess => {
    const env: Record<string, string> = {
      POD_NAME: `pgraft-${i}`,
      POD_NAMESPACE: "default",
      PGRAFT_CLUSTER_ID: CLUSTER_ID,
      PGRAFT_PEER_TEMPLATE: `127.0.0.1:{i+${base}}`,
      PGRAFT_INITIAL_REPLICAS: "3",
      PGRAFT_DATA_DIR: join(dir, `pod${i}-${certOf}`),
      PGRAFT_LISTEN: `127.0.0.1:${base + i}`,
      PGRAFT_HTTP_LISTEN: `127.0.0.1:${httpPorts[i]}`,
      PGRAFT_TLS_CA: join(dir, "tls", "ca.crt"),
      PGRAFT_TLS_CERT: join(dir, "tls", `${certOf}.crt`),
      PGRAFT_TLS_KEY: join(dir, "tls", `${certOf}.key`),
    };
    const p = new PodProcess(i + 1, base + i, httpPorts[i]!, env.PGRAFT_DATA_DIR!, join(dir, `pod${i}-${certOf}.log`), [], { clusterId: CLUSTER_ID, heartbeat: "", election: "", env });
    pods[i] = p;
    return p;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-k8s-tls-"));
    const tls = join(dir, "tls");
    await import("node:fs").then((fs) => fs.mkdirSync(tls));
    makeCa(tls, "ca");
    for (const i of [0, 1, 2, 3]) {
      makeCert(tls, "ca", `pgraft-${i}`, { cn: `node-${i + 1}`, san: `IP:127.0.0.1,DNS:pgraft-${i}.pgraft-headless.default.svc,URI:pgraft://${CLUSTER_ID}/node/${i + 1}` });
    }
    base = await consecutivePorts(4);
    httpPorts.push(...(await freePorts(4)));
  });

  after(async () => {
    await Promise.all(
      pods.map(async (p) => {
        if (!p || p.state === "stopped") return;
        p.signal("SIGKILL");
        await p.waitExit(10_000).catch(() => undefined);
      }),
    );
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a pod given another pod's certificate is refused at start", async () => {
    const p = makePod(1, "pgraft-2");
    p.spawn();
    const exit = await p.waitExit(20_000);
    assert.equal(exit.code, 1, p.tail(10));
    assert.match(p.tail(10), /certificate file .*pgraft-2\.crt names .*node\/3.*, not this node 2/);
  });

  test("3 pods form the cluster over mTLS and become ready; a 4th joins", async () => {
    for (const i of [0, 1, 2]) makePod(i).spawn();
    const ready = (i: number): Promise<unknown> =>
      waitFor(`pod pgraft-${i} ready`, async () => (await http(httpPorts[i]!, "/ready")).code === 200, { timeoutMs: 40_000, intervalMs: 200, context: tails });
    await Promise.all([0, 1, 2].map(ready));
    makePod(3).spawn();
    await ready(3);
    await waitFor("4 voters", async () => /^pgraft_raft_voters 4$/m.test((await http(httpPorts[0]!, "/metrics")).text), { timeoutMs: 30_000, intervalMs: 250, context: tails });
    assert.equal(/^pgraft_transport_refused_total\{[^}]*\} [1-9]/m.test((await http(httpPorts[0]!, "/metrics")).text), false, "no peer refused");
  });
});
