// bench/sidecar-resources: what a sidecar costs in memory and CPU, idle and
// under a write load, the figures the Helm chart's requests and limits are set
// from (docs/kubernetes.md, Sizing). A sizing measurement, not a comparison:
// the same load on etcd is bench/kv's etcd column.
//
// A 3-node `pgraft demo` (real PostgreSQL 15 + sidecars, loopback). Each
// sidecar's resident memory and CPU come from its own /metrics
// (process_resident_memory_bytes, process_cpu_seconds_total), sampled every
// second: first BENCH_IDLE_SECONDS (10) with nothing to do, then
// BENCH_SECONDS (20) of BENCH_CLIENTS (8) SQL sessions, spread over the three
// nodes, each writing pgraft_kv_put (a ~200-byte JSON value, 500 keys per
// session, written over and over) through the SQL shim. Prints, per sidecar,
// the peak resident memory and the CPU in millicores for each phase, and the
// write rate.
//
//   make build && node dist/bench/sidecar-resources.js   (BENCH_IDLE_SECONDS=10 BENCH_SECONDS=20 BENCH_CLIENTS=8)
import pg from "pg";
import { startDemo, type RunningDemo } from "../src/demo/local-cluster.js";
import { checkInterrupted, interrupt, printLogTails, sleep, stopDemo } from "./demo-group.js";
import { MAIN } from "./pgraft-cluster.js";
import { reachableTempDir, requirePgbench } from "./pgbench.js";
import { loadAverageChecked, machineNote } from "./report.js";

const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 10);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const CLIENTS = Math.max(1, Number(process.env.BENCH_CLIENTS ?? 8));

interface Sample {
  rss: number;
  cpu: number;
}

async function sample(metricsUrl: string): Promise<Sample> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
  return { rss: value("process_resident_memory_bytes"), cpu: value("process_cpu_seconds_total") };
}

/** Sample every sidecar once a second while `during` runs: each one's peak resident memory and CPU seconds used. */
async function measure(urls: string[], during: () => Promise<void>): Promise<{ peakRss: number[]; cpu: number[]; seconds: number }> {
  const first = await Promise.all(urls.map(sample));
  const peakRss = first.map((s) => s.rss);
  const t0 = Date.now();
  let done = false;
  const sampler = (async () => {
    while (!done) {
      await sleep(1000);
      const now = await Promise.all(urls.map((u) => sample(u).catch(() => undefined)));
      now.forEach((s, i) => s && (peakRss[i] = Math.max(peakRss[i]!, s.rss)));
    }
  })();
  try {
    await during();
  } finally {
    done = true;
    await sampler;
  }
  const last = await Promise.all(urls.map(sample));
  return { peakRss, cpu: last.map((s, i) => s.cpu - first[i]!.cpu), seconds: (Date.now() - t0) / 1000 };
}

function report(what: string, m: { peakRss: number[]; cpu: number[]; seconds: number }): void {
  const mib = (b: number): string => (b / 2 ** 20).toFixed(0);
  const mc = (cpu: number): string => ((cpu / m.seconds) * 1000).toFixed(0);
  console.log(`${what} (${m.seconds.toFixed(0)} s):`);
  m.peakRss.forEach((rss, i) => console.log(`  sidecar ${i + 1}: peak resident ${mib(rss)} MiB, CPU ${mc(m.cpu[i]!)} millicores`));
}

async function main(): Promise<void> {
  const { bins } = await requirePgbench();
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  const baseDir = await reachableTempDir("pgraft-bench-res-");
  let demo: RunningDemo | undefined;
  try {
    console.log(`bench/sidecar-resources: 3-node pgraft demo (PostgreSQL ${bins.version} + sidecars, loopback); idle ${IDLE_SECONDS} s, then ${CLIENTS} SQL sessions writing pgraft_kv_put for ${SECONDS} s`);
    console.log(`  load average before: ${loadAverageChecked()} (${machineNote()})`);
    demo = await startDemo({ nodes: 3, baseDir, mainJs: MAIN, progress: () => undefined });
    const urls = demo.nodes.map((n) => n.metrics);
    report("idle", await measure(urls, () => sleep(IDLE_SECONDS * 1000)));
    checkInterrupted();
    const nodes = demo.nodes;
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, k) => {
        const c = new pg.Client({ connectionString: nodes[k % nodes.length]!.dsn });
        await c.connect();
        return c;
      }),
    );
    let writes = 0;
    try {
      const m = await measure(urls, async () => {
        const end = Date.now() + SECONDS * 1000;
        await Promise.all(
          clients.map(async (c, k) => {
            for (let n = 0; Date.now() < end; n++) {
              await c.query("SELECT pgraft_kv_put($1, $2::jsonb)", [`load/${k}/${n % 500}`, JSON.stringify({ n, pad: "x".repeat(200) })]);
              writes++;
            }
          }),
        );
      });
      report(`under the write load: ${writes} KV writes, ${(writes / m.seconds).toFixed(0)}/s`, m);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    console.log(`  load average after: ${loadAverageChecked()}`);
  } catch (e) {
    await printLogTails(demo);
    throw e;
  } finally {
    await stopDemo(demo, baseDir);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
