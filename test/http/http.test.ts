import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { RaftNode } from "../../src/consensus/driver.js";
import { MemoryNetwork } from "../../src/consensus/memory-transport.js";
import { Role, type Entry } from "../../src/consensus/types.js";
import { startHttpServer, type HttpServer } from "../../src/http/server.js";
import { PgraftMetrics } from "../../src/metrics/registry.js";

const sm = { apply: (e: Entry) => e.index, snapshot: () => new Uint8Array(), restore: () => {} };

describe("HTTP: /metrics, /health, /ready, /primary, /leader, /replica", () => {
  let dir: string;
  const net = new MemoryNetwork();
  const nodes: RaftNode[] = [];
  const servers: HttpServer[] = [];
  const registries: PgraftMetrics[] = [];
  // Raft counters a memory network does not keep: the transport's, given here so their plumbing is tested.
  const transportCounters = { sent: { App: 0 }, received: { App: 0 }, dropped: { App: 0 }, refused: { cluster_id: 0 } };
  const get = async (s: HttpServer, path: string): Promise<{ code: number; text: string }> => {
    const r = await fetch(`http://127.0.0.1:${s.address.port}${path}`);
    return { code: r.status, text: await r.text() };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgraft-http-"));
    for (const id of [1, 2, 3]) {
      const ref: { m?: PgraftMetrics } = {};
      const n = await RaftNode.open({
        observer: {
          onPersist: (sec, entries) => ref.m?.events.onPersist(sec, entries),
          onLeaderChange: (leader, term, role) => ref.m?.events.onLeaderChange(leader, term, role),
          onProposal: (result, sec) => ref.m?.events.onProposal(result, sec),
        },
        id,
        clusterId: "h",
        dataDir: join(dir, `n${id}`),
        transport: net.transportFor(id),
        stateMachine: sm,
        bootstrap: { voters: [1, 2, 3], learners: [] },
        tickMs: 10,
      });
      net.attach(n);
      n.start();
      nodes.push(n);
      const metrics = new PgraftMetrics(
        { status: () => n.status(), storage: () => n.storageStats(), lastContactMs: () => n.lastContactMs(), transport: () => transportCounters },
        { nodeId: id, clusterId: "h", version: "9.9.9", nodeName: `n${id}` },
      );
      ref.m = metrics;
      registries.push(metrics);
      servers.push(await startHttpServer({ host: "127.0.0.1", port: 0 }, { status: () => n.status(), maxReplicaLagEntries: 1000 }, metrics));
    }
    for (let i = 0; i < 500 && !nodes.some((n) => n.status().role === Role.Leader); i++) await new Promise((r) => setTimeout(r, 10));
    const leader = nodes.find((n) => n.status().role === Role.Leader)!;
    await leader.propose(new Uint8Array([1]));
    for (const n of nodes) await n.read();
  });
  after(async () => {
    for (const s of servers) await s.close();
    for (const n of nodes) await n.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("exactly the leader answers 200 on /primary and /leader; the others answer 200 on /replica", async () => {
    const codes = await Promise.all(servers.map(async (s) => [(await get(s, "/primary")).code, (await get(s, "/leader")).code, (await get(s, "/replica")).code]));
    const leaderIdx = nodes.findIndex((n) => n.status().role === Role.Leader);
    codes.forEach(([primary, leader, replica], i) => {
      assert.deepEqual([primary, leader, replica], i === leaderIdx ? [200, 200, 503] : [503, 503, 200], `node ${i + 1}`);
    });
  });

  test("/health and /ready say who is who; unknown paths are 404, writes 405", async () => {
    const h = await get(servers[0]!, "/health");
    assert.equal(h.code, 200);
    assert.equal((JSON.parse(h.text) as { status: string }).status, "up");
    const r = await get(servers[1]!, "/ready");
    assert.equal(r.code, 200);
    assert.ok((JSON.parse(r.text) as { leader_id: number }).leader_id > 0);
    assert.equal((await get(servers[0]!, "/nope")).code, 404);
    const post = await fetch(`http://127.0.0.1:${servers[0]!.address.port}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
  });

  test("/metrics exposes Raft state with Prometheus names", async () => {
    const leaderIdx = nodes.findIndex((n) => n.status().role === Role.Leader);
    const m = await get(servers[leaderIdx]!, "/metrics");
    assert.equal(m.code, 200);
    const term = nodes[leaderIdx]!.status().term;
    assert.match(m.text, new RegExp(`^pgraft_raft_term ${term}$`, "m"));
    assert.match(m.text, /^pgraft_raft_is_leader 1$/m);
    // The role the Prometheus way: one series per role, 1 for the one held.
    assert.deepEqual(
      [...m.text.matchAll(/^pgraft_raft_role\{role="([a-z-]+)"\} (\d)$/gm)].map((x) => [x[1], x[2]]).sort(),
      [["candidate", "0"], ["follower", "0"], ["leader", "1"], ["pre-candidate", "0"]],
    );
    assert.match(m.text, new RegExp(`^pgraft_node_info\\{node_id="${leaderIdx + 1}",cluster_id="h",version="9.9.9",node_name="n${leaderIdx + 1}"\\} 1$`, "m"));
    const follower = await get(servers[(leaderIdx + 1) % 3]!, "/metrics");
    assert.match(follower.text, /^pgraft_raft_role\{role="follower"\} 1$/m);
    assert.match(follower.text, /^pgraft_raft_role\{role="leader"\} 0$/m);
    assert.match(m.text, /^pgraft_peer_match_index\{peer="\d"\} \d+$/m);
    assert.match(m.text, /^pgraft_wal_fsyncs_total \d+$/m);
    assert.match(m.text, /^pgraft_peer_last_contact_seconds\{peer="\d"\} [\d.]+$/m);
    assert.match(m.text, /^pgraft_raft_elections_total \d+$/m);
    assert.match(m.text, /^process_cpu_seconds_total /m);
    // Counters never go backwards between scrapes.
    const n1 = Number(/^pgraft_wal_fsyncs_total (\d+)$/m.exec(m.text)![1]);
    await nodes[leaderIdx]!.propose(new Uint8Array([2]));
    const m2 = await get(servers[leaderIdx]!, "/metrics");
    const n2 = Number(/^pgraft_wal_fsyncs_total (\d+)$/m.exec(m2.text)![1]);
    assert.ok(n2 > n1, `fsyncs counter advanced (${n1} → ${n2})`);
  });

  test("every declared pgraft_* metric is exported and every counter and histogram moves", async () => {
    const leaderIdx = nodes.findIndex((n) => n.status().role === Role.Leader);
    const leader = nodes[leaderIdx]!;
    const reg = registries[leaderIdx]!;
    const value = async (name: string): Promise<number> => {
      const all = await reg.registry.getMetricsAsJSON();
      const m = all.find((x) => x.name === name);
      assert.ok(m, `${name} is declared`);
      // A histogram moves by its _count; a labelled counter by the sum of its series.
      const vals = (m.values as { value: number; metricName?: string }[]).filter((v) => String(m.type) !== "histogram" || v.metricName === `${name}_count`);
      return vals.reduce((a, v) => a + v.value, 0);
    };
    const declared = (await reg.registry.getMetricsAsJSON()).filter((m) => m.name.startsWith("pgraft_"));
    const events = declared.filter((m) => ["counter", "histogram"].includes(String(m.type))).map((m) => m.name);
    // Activity since the registries were made (all at 0 then): the first election, commits (fsyncs),
    // proposals (applied on the leader; one refused by a follower), transport counts.
    await leader.propose(new Uint8Array([3]));
    const other = nodes[(leaderIdx + 1) % 3]!;
    await assert.rejects(other.propose(new Uint8Array([4])));
    for (const k of ["sent", "received", "dropped"] as const) transportCounters[k].App += 5;
    transportCounters.refused.cluster_id += 1;
    const still: string[] = [];
    for (const name of events) if (!((await value(name)) > 0)) still.push(name);
    // Rejected Raft messages need a fault (a stale term, a wrong cluster) that this healthy cluster does not make.
    assert.deepEqual(
      still.filter((n) => n !== "pgraft_raft_rejected_messages_total"),
      [],
      `of ${events.join(", ")}`,
    );
    assert.match(await registries[(leaderIdx + 1) % 3]!.metrics(), /^pgraft_proposals_total\{result="not_leader"\} 1$/m);
    assert.ok(events.includes("pgraft_proposals_total") && events.includes("pgraft_proposal_duration_seconds"));
    // Every declared metric has a sample in the text a scrape gets.
    const text = await reg.metrics();
    // (A labelled counter that never moved has no series yet.)
    const missing = declared.map((m) => m.name).filter((name) => !still.includes(name)).filter((name) => !new RegExp(`^${name}(_count)?(\\{[^}]*\\})? `, "m").test(text));
    assert.deepEqual(missing, [], "declared but not exported");
    assert.match(text, /^pgraft_proposals_total\{result="applied"\} [1-9]\d*$/m);
  });
});
