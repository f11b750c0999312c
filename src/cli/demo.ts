// `pgraft demo`: until the sidecar exists, a guided run of the consensus engine —
// N in-process nodes with real write-ahead logs on disk: election, writes,
// linearizable reads from a follower, the leader crashing, a restart from disk
// and a leadership transfer.
import { mkdtemp, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RaftLogger } from "../consensus/config.js";
import { RaftNode } from "../consensus/driver.js";
import { MemoryNetwork } from "../consensus/memory-transport.js";
import { Role, type NodeId } from "../consensus/types.js";
import { DemoKv, encodePut } from "./demo-state-machine.js";

export interface DemoOptions {
  nodes: number;
  baseDir?: string;
  writes: number;
  verbose: boolean;
  out: (line: string) => void;
}

interface Member {
  id: NodeId;
  node: RaftNode;
  kv: DemoKv;
}

export async function runDemo(o: DemoOptions): Promise<void> {
  const base = o.baseDir ?? (await mkdtemp(join(tmpdir(), "pgraft-demo-")));
  await mkdir(base, { recursive: true });
  const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
  const net = new MemoryNetwork();
  const logger: RaftLogger = o.verbose
    ? { info: (m) => o.out(`  [raft] ${m}`), warn: (m) => o.out(`  [raft] WARN ${m}`), debug: () => {} }
    : { info: () => {}, warn: (m) => o.out(`  [raft] WARN ${m}`), debug: () => {} };
  const members = new Map<NodeId, Member>();

  const startNode = async (id: NodeId): Promise<Member> => {
    const kv = new DemoKv();
    const node = await RaftNode.open({
      id,
      clusterId: "pgraft-demo",
      dataDir: join(base, `node${id}`),
      transport: net.transportFor(id),
      stateMachine: kv,
      bootstrap: { voters: ids, learners: [] },
      tickMs: 20,
      logger,
      snapshotEntries: 500,
      keepEntriesAfterSnapshot: 100,
    });
    net.attach(node);
    node.start();
    const m = { id, node, kv };
    members.set(id, m);
    return m;
  };

  const waitLeader = async (except?: NodeId): Promise<Member> => {
    for (let i = 0; i < 500; i++) {
      for (const m of members.values()) {
        const st = m.node.status();
        if (st.role === Role.Leader && m.id !== except) return m;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error("no leader was elected within 5 s");
  };

  try {
    o.out(`pgraft consensus demo: ${o.nodes} nodes, data in ${base}`);
    for (const id of ids) await startNode(id);
    let leader = await waitLeader();
    o.out(`leader elected: node ${leader.id} (term ${leader.node.status().term})`);

    const t0 = performance.now();
    await Promise.all(Array.from({ length: o.writes }, (_, i) => leader.node.propose(encodePut(`key${i}`, `value${i}`))));
    const ms = performance.now() - t0;
    o.out(`${o.writes} writes committed through node ${leader.id} in ${ms.toFixed(0)} ms`);

    const follower = [...members.values()].find((m) => m.id !== leader.id)!;
    await follower.node.read();
    o.out(`linearizable read on follower node ${follower.id}: key${o.writes - 1} = ${follower.kv.data.get(`key${o.writes - 1}`)}`);

    const crashed = leader.id;
    net.detach(crashed);
    await leader.node.stop();
    members.delete(crashed);
    o.out(`node ${crashed} (the leader) stopped`);
    const tFail = performance.now();
    leader = await waitLeader(crashed);
    o.out(`new leader: node ${leader.id} (term ${leader.node.status().term}) after ${(performance.now() - tFail).toFixed(0)} ms`);
    await leader.node.propose(encodePut("after-failover", "yes"));
    o.out(`write on the new leader committed with ${o.nodes - 1} of ${o.nodes} nodes up`);

    const back = await startNode(crashed);
    for (let i = 0; i < 500 && back.kv.data.get("after-failover") !== "yes"; i++) await new Promise((r) => setTimeout(r, 10));
    o.out(`node ${crashed} restarted from its WAL and caught up: ${back.kv.data.size} keys, after-failover = ${back.kv.data.get("after-failover")}`);

    await leader.node.transferLeadership(crashed);
    o.out(`leadership transferred to node ${crashed} (term ${back.node.status().term})`);

    o.out("");
    o.out("node  role       term  commit  applied  keys");
    for (const m of [...members.values()].sort((a, b) => a.id - b.id)) {
      const st = m.node.status();
      o.out(
        `${String(m.id).padEnd(6)}${st.role.padEnd(11)}${String(st.term).padEnd(6)}${String(st.commit).padEnd(8)}${String(st.applied).padEnd(9)}${m.kv.data.size}`,
      );
    }
  } finally {
    for (const m of members.values()) await m.node.stop();
  }
}
