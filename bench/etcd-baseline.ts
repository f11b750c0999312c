// The baseline a user would pick instead for a replicated, fsync'd log: a
// 3-member etcd cluster on loopback, written through its gRPC client. Returns
// undefined (and says why) when no etcd binary is installed.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { killAndWait } from "./processes.js";
import { closedLoop, type RunResult } from "./stats.js";

export interface EtcdCluster {
  endpoints: string[];
  /** kill -9 one member (0-based) and start it again later with restart(). */
  kill9(i: number): void;
  restart(i: number): void;
  stop(): Promise<void>;
}

const ETCD = process.env.ETCD_BIN ?? "/usr/bin/etcd";

export async function startEtcd(basePort: number, timing: { heartbeat: number; election: number } = { heartbeat: 100, election: 1000 }): Promise<EtcdCluster> {
  const dir = await mkdtemp(join(tmpdir(), "pgraft-bench-etcd-"));
  const names = ["e1", "e2", "e3"];
  const peer = (i: number) => `http://127.0.0.1:${basePort + 2 * i + 1}`;
  const client = (i: number) => `http://127.0.0.1:${basePort + 2 * i}`;
  const initial = names.map((n, i) => `${n}=${peer(i)}`).join(",");
  const launch = (n: string, i: number, state: "new" | "existing"): ChildProcess =>
    spawn(
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
      { stdio: "ignore" },
    );
  const procs: ChildProcess[] = names.map((n, i) => launch(n, i, "new"));
  const stop = async (): Promise<void> => {
    await killAndWait(procs);
    await rm(dir, { recursive: true, force: true });
  };
  const endpoints = names.map((_, i) => client(i));
  const c = new Etcd3({ hosts: endpoints });
  try {
    for (let i = 0; ; i++) {
      try {
        await c.put("bench/ready").value("1");
        break;
      } catch (e) {
        if (i > 100) throw e;
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
    kill9: (i) => {
      procs[i]!.kill("SIGKILL");
    },
    restart: (i) => {
      procs[i] = launch(names[i]!, i, "existing");
    },
  };
}

/** Closed-loop puts of `value` under keys from `keyOf(n)`, spread over every member. */
export async function runEtcd(
  cluster: EtcdCluster,
  concurrency: number,
  seconds: number,
  value: Buffer | string,
  keyOf: (n: number) => string = (n) => `bench/${n % 10000}`,
): Promise<RunResult> {
  const client = new Etcd3({ hosts: cluster.endpoints });
  let n = 0;
  try {
    return await closedLoop(concurrency, seconds, () => client.put(keyOf(n++)).value(value).exec());
  } finally {
    client.close();
  }
}
