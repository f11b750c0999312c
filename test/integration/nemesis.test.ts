// Linearizability of the replicated KV store under faults, with real sidecar
// processes: concurrent clients run a randomized put / get / delete / cas
// workload through every node while a nemesis kills (-9), pauses (SIGSTOP),
// partitions and moves leadership, and swaps members; the recorded history,
// with a final read of every key through every node, must be linearizable.
// See nemesis.ts for the workload, the nemesis and how outcomes are recorded.
//
//   PGRAFT_NEMESIS_SECONDS=N       workload seconds per cluster (default 20; soak: more)
//   PGRAFT_NEMESIS_SEED=K          replay the random choices of seed K (printed by every run)
//   PGRAFT_NEMESIS_HISTORY_DIR=D   where a failing run saves its history, events and node logs (default: the OS temp dir)
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import { TestCluster, withLogs } from "./harness.js";
import { KvNemesis, NEMESIS_KINDS, checkLinearizable, deriveSeed, describeCounts, describeEvents, nemesisSeconds, nemesisSeed, saveFailure } from "./nemesis.js";

const SEED = nemesisSeed();
const SECONDS = nemesisSeconds(20);

for (const nodes of [3, 5]) {
  describe(`${nodes}-node cluster: KV linearizability under a nemesis`, () => {
    const name = `nemesis${nodes}`;
    let cluster: TestCluster | undefined;

    before(async () => {
      cluster = await TestCluster.start({ nodes, name });
    });
    after(async () => {
      await cluster?.destroy();
    });

    test(
      `a ${SECONDS}s randomized workload with kill, pause, partition, leader transfer and membership changes is linearizable`,
      { timeout: SECONDS * 1_000 + 150_000 },
      withLogs(
        () => cluster,
        async (t, c) => {
          const seed = deriveSeed(SEED, name);
          t.diagnostic(`seed ${SEED} (this run: ${seed}); replay the choices with PGRAFT_NEMESIS_SEED=${SEED}`);
          const nemesis = new KvNemesis(c, { seed, seconds: SECONDS, log: (l) => t.diagnostic(l) });

          const fail = async (why: string, result?: Parameters<typeof saveFailure>[3]): Promise<never> => {
            const history = nemesis.rec.operations();
            const path = await saveFailure(c, { name, baseSeed: SEED, seed, origin: nemesis.origin }, { history, events: nemesis.events, counts: nemesis.counts }, result);
            throw new Error(`${why}\n(seed ${SEED}: PGRAFT_NEMESIS_SEED=${SEED}; ${history.length} operations saved to ${path}, with the events and node logs beside it)\n${c.tails()}`);
          };

          let rep;
          try {
            rep = await nemesis.run();
          } catch (e) {
            return fail(`the run did not complete: ${e instanceof Error ? e.message : String(e)}`);
          }
          // One diagnostic per line (TAP escapes newlines inside one).
          for (const line of [describeCounts(rep), ...describeEvents(rep).split("\n")]) t.diagnostic(line);

          const t0 = performance.now();
          const result = checkLinearizable(rep.history, { timeoutMs: 60_000 });
          t.diagnostic(`checked ${rep.history.length} operations in ${(performance.now() - t0).toFixed(0)} ms: ${result.result}`);
          if (result.result === "illegal") {
            await fail(`the history is not linearizable (key ${JSON.stringify(result.key)}):\n${result.explanation}`, result);
          }
          if (result.result === "unknown") await fail(`the checker gave no verdict: ${result.reason}`, result);
          if (rep.anomalies.length > 0) await fail(`replies that break the API's contract:\n  ${rep.anomalies.slice(0, 20).join("\n  ")}`);

          // The run did something: operations of every kind completed, every fault kind
          // happened, and operations completed after faults.
          const total = Object.values(rep.counts).reduce((a, n) => a + n.ok, 0);
          const minOps = Math.round(SECONDS * 10);
          assert.ok(total >= minOps, `only ${total} operations completed (at least ${minOps} expected): ${describeCounts(rep)}`);
          for (const [kind, n] of Object.entries(rep.counts)) assert.ok(n.ok >= 5, `only ${n.ok} ${kind} operations completed`);
          for (const kind of NEMESIS_KINDS) {
            assert.ok(
              rep.events.some((e) => e.kind === kind && e.ok),
              `no ${kind} fault succeeded\n${describeEvents(rep)}`,
            );
            const after = rep.events.reduce((a, e, i) => a + (e.kind === kind ? (rep.okAfterEvent[i] ?? 0) : 0), 0);
            assert.ok(after > 0, `no operation completed after any ${kind} fault healed\n${describeEvents(rep)}`);
          }
          const last = rep.okAfterEvent[rep.okAfterEvent.length - 1] ?? 0;
          assert.ok(last > 0, `no operation completed after the last fault\n${describeEvents(rep)}`);
          // Every node read every key in the end, and they agree (the checker already requires it).
          for (const [key, byNode] of rep.finalReads) {
            assert.deepEqual([...byNode.keys()].sort((a, b) => a - b), c.live().sort((a, b) => a - b), `final reads of ${key}`);
            assert.equal(new Set(byNode.values()).size, 1, `the final reads of ${key} agree: ${JSON.stringify([...byNode])}`);
          }
          c.assertOneLeaderPerTerm();
        },
      ),
    );
  });
}
