// The baseline a user would pick instead for a replicated, fsync'd log: a
// 3-member etcd cluster on loopback, written through its gRPC client. Returns
// undefined (and says why) when no etcd binary is installed. Each member's
// stdout and stderr go to <name>.log in the cluster's temp dir, which is
// deleted on stop unless BENCH_KEEP=1 (then its path is printed).
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { tailFile } from "./pgraft-cluster.js";
import { killAndWait } from "./processes.js";
import { closedLoop, type RunResult } from "./stats.js";

export interface EtcdCluster {
  endpoints: string[];
  /** kill -9 one member (0-based) and start it again later with restart(). */
  kill9(i: number): void;
  /** Start a killed member again, once its killed process has exited. */
  restart(i: number): Promise<void>;
  /** Every member's last `lines` log lines. */
  logTails(lines?: number): string;
  stop(): Promise<void>;
}

const ETCD = process.env.ETCD_BIN ?? "/usr/bin/etcd";

export async function startEtcd(basePort: number, timing: { heartbeat: number; election: number } = { heartbeat: 100, election: 1000 }): Promise<EtcdCluster> {
  const dir = await mkdtemp(join(tmpdir(), "pgraft-bench-etcd-"));
  const names = ["e1", "e2", "e3"];
  const peer = (i: number) => `http://127.0.0.1:${basePort + 2 * i + 1}`;
  const client = (i: number) => `http://127.0.0.1:${basePort + 2 * i}`;
  const initial = names.map((n, i) => `${n}=${peer(i)}`).join(",");
  const logOf = (n: string): string => join(dir, `${n}.log`);
  const launch = (n: string, i: number, state: "new" | "existing"): ChildProcess => {
    const fd = openSync(logOf(n), "a");
    const p = spawn(
      ETCD,
      [
        `--name=${n}`,
        `--data-dir=${join(dir, n)}`,
        `--listen-client-urls=${client(i)}`,
        `--advertise-client-urls=${client(i)}`,
        `--listen-peer-urls=${peer(i)}`,
        `--initial-advertise-peer-urls=${peer(i)}`,
        `--initial-cluster=${initial}`,
        `--initial-cluster-state=${state}`,
        "--initial-cluster-token=pgraft-bench",
        `--heartbeat-interval=${timing.heartbeat}`,
        `--election-timeout=${timing.election}`,
        "--log-level=error",
      ],
      { stdio: ["ignore", fd, fd] },
    );
    closeSync(fd); // the child has its own copy
    return p;
  };
  const logTails = (lines = 20): string => names.map((n) => `  ${n}, last ${lines} lines of ${logOf(n)}:\n${tailFile(logOf(n), lines)}`).join("\n");
  const procs: ChildProcess[] = names.map((n, i) => launch(n, i, "new"));
  const stop = async (): Promise<void> => {
    await killAndWait(procs);
    if (process.env.BENCH_KEEP) console.log(`kept ${dir} (etcd stopped; logs in e*.log)`);
    else await rm(dir, { recursive: true, force: true });
  };
  const endpoints = names.map((_, i) => client(i));
  const c = new Etcd3({ hosts: endpoints });
  try {
    for (let i = 0; ; i++) {
      try {
        await c.put("bench/ready").value("1");
        break;
      } catch (e) {
        if (i > 100) throw new Error(`etcd did not accept a put after ${i} attempts: ${(e as Error).message}\n${logTails()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    c.close();
    await stop();
    throw e;
  }
  c.close();
  return {
    endpoints,
    stop,
    logTails,
    kill9: (i) => {
      procs[i]!.kill("SIGKILL");
    },
    restart: async (i) => {
      await killAndWait([procs[i]!]);
      procs[i] = launch(names[i]!, i, "existing");
    },
  };
}

/** A put through `client` to every member it may pick: the etcd3 client picks a member at random per call, so 10 per member reach each one with near certainty (a member missed by all 30 has odds (2/3)^30, about 5e-6). */
export const WARM_PUTS = 30;

/**
 * An etcd3 client over every member (the library spreads calls over them),
 * with its connections open: WARM_PUTS puts are acknowledged before it is
 * returned, as bench/kv's pgraft channels each answer one put before the clock
 * starts.
 */
export async function etcdKvClient(cluster: EtcdCluster): Promise<Etcd3> {
  const client = new Etcd3({ hosts: cluster.endpoints });
  try {
    await Promise.all(Array.from({ length: WARM_PUTS }, (_, i) => client.put(`bench/warm/${i}`).value("1").exec()));
  } catch (e) {
    client.close();
    throw e;
  }
  return client;
}

/** Closed-loop puts of `value` under keys from `keyOf(n)`, through `client` (from etcdKvClient: already connected; the caller closes it). */
export async function runEtcd(
  client: Etcd3,
  concurrency: number,
  seconds: number,
  value: Buffer | string,
  keyOf: (n: number) => string = (n) => `bench/${n % 10000}`,
): Promise<RunResult> {
  let n = 0;
  return closedLoop(concurrency, seconds, () => client.put(keyOf(n++)).value(value).exec());
}
