// `pgraft demo` with real processes: a 2-node demo started with --detach.
// kill -9 of one sidecar or one postmaster leaves the others running, is
// logged in demo.log and the process is restarted; a second start in the same
// dir is refused; `--stop` after the supervisor was killed stops everything;
// `--json` carries the cluster id and the process ids; an exit's report quotes
// the error in the process's log; a saved port taken by another program is
// named and the start refused. Needs `make build`.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { alive, runningProcesses } from "../../src/demo/local-cluster.js";
import { MAIN_JS } from "../integration/harness.js";
import { makeTestDir, removeTestDir } from "../support/postgres.js";
import { runProcess } from "../support/run.js";
import { waitFor } from "../support/wait.js";

interface DemoDoc {
  cluster_id: string;
  base_dir: string;
  supervisor_pid: number;
  nodes: { id: number; postgres: string; grpc: string; sidecar_pid: number | null; postgres_pid: number | null }[];
}

const demo = (args: string[]) => runProcess(process.execPath, [MAIN_JS, "demo", ...args], { timeoutMs: 180_000 });

describe("pgraft demo (real processes)", { concurrency: false }, () => {
  let dir = "";
  let doc: DemoDoc;
  const log = (): string => (existsSync(join(dir, "demo.log")) ? readFileSync(join(dir, "demo.log"), "utf8") : "");
  const pidsFile = (): { supervisor: number; nodes: { id: number; sidecar: number | null; postgres: number | null }[] } =>
    JSON.parse(readFileSync(join(dir, "pids.json"), "utf8")) as never;

  before(async () => {
    dir = makeTestDir("pgd-");
    const r = await demo(["--detach", "--json", "--nodes", "2", "--base-dir", dir]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${log()}`);
    doc = JSON.parse(r.stdout) as DemoDoc;
  });

  after(async () => {
    // Teardown even when a test failed: stop, then kill whatever is left of the dir.
    if (dir) {
      await demo(["--stop", "--base-dir", dir]).catch(() => undefined);
      for (const p of await runningProcesses(dir).catch(() => [])) {
        try {
          process.kill(p.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      removeTestDir(dir);
    }
  });

  test("--json carries the cluster id, the supervisor's and every node's process ids and PostgreSQL address", () => {
    assert.equal(doc.cluster_id, "pgraft-demo");
    assert.equal(doc.base_dir, dir);
    assert.ok(alive(doc.supervisor_pid));
    assert.equal(doc.nodes.length, 2);
    for (const n of doc.nodes) {
      assert.match(n.postgres, /^127\.0\.0\.1:\d+$/);
      assert.ok(n.sidecar_pid && alive(n.sidecar_pid), `node ${n.id} sidecar`);
      assert.ok(n.postgres_pid && alive(n.postgres_pid), `node ${n.id} postgres`);
    }
  });

  test("a second start in the same dir is refused: a demo is running here, use --stop", async () => {
    const r = await demo(["--detach", "--nodes", "2", "--base-dir", dir]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /a demo is running here \(.*supervisor.*\): use --stop \(.* demo --stop --base-dir /);
  });

  test("kill -9 of a sidecar: the others keep running, demo.log says so, and it is restarted", async () => {
    const [n1, n2] = doc.nodes as [DemoDoc["nodes"][0], DemoDoc["nodes"][0]];
    const victim = n2.sidecar_pid!;
    process.kill(victim, "SIGKILL");
    await waitFor("the exit in demo.log", () => log().includes(`node 2: the sidecar (pid ${victim}) exited (signal SIGKILL)`), { context: log });
    for (const pid of [doc.supervisor_pid, n1.sidecar_pid!, n1.postgres_pid!, n2.postgres_pid!]) assert.ok(alive(pid), `pid ${pid} still running`);
    const back = await waitFor(
      "a new sidecar for node 2",
      () => {
        const p = pidsFile().nodes.find((n) => n.id === 2)?.sidecar;
        return p && p !== victim && alive(p) ? p : undefined;
      },
      { timeoutMs: 30_000, context: log },
    );
    // The supervisor records the new pid before it writes the line: wait for the line, not just the pid.
    await waitFor("demo.log to say node 2's sidecar was restarted", () => new RegExp(`node 2: sidecar restarted \\(pid ${back}\\)`).test(log()), { context: log });
  });

  test("a sidecar that exits because its port was taken: the report quotes the error from its log", async () => {
    const state = JSON.parse(readFileSync(join(dir, "demo.json"), "utf8")) as { nodes: { id: number; ports: { http: number } }[] };
    const httpPort = state.nodes.find((n) => n.id === 2)!.ports.http;
    const victim = pidsFile().nodes.find((n) => n.id === 2)!.sidecar!;
    process.kill(victim, "SIGKILL");
    await waitFor("the sidecar gone", () => !alive(victim));
    // Another program takes the sidecar's HTTP port while it is down.
    const squatter = createServer();
    await new Promise<void>((resolve, reject) => {
      squatter.once("error", reject);
      squatter.listen({ port: httpPort, host: "127.0.0.1" }, resolve);
    });
    try {
      const report = await waitFor(
        "the restarted sidecar's exit, with its cause",
        () => log().split("\n").find((l) => /node 2: the sidecar \(pid \d+\) exited \(code \d+; last error in its log: .*EADDRINUSE/.test(l)),
        { timeoutMs: 30_000, context: log },
      );
      assert.ok(report.includes(String(httpPort)), report);
      assert.match(report, /restarting it in \d+s/);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
    await waitFor(
      "node 2's sidecar running again",
      () => {
        const p = pidsFile().nodes.find((n) => n.id === 2)?.sidecar;
        return p && p !== victim && alive(p) && log().includes(`node 2: sidecar restarted (pid ${p})`) ? p : undefined;
      },
      { timeoutMs: 60_000, context: log },
    );
  });

  test("kill -9 of a postmaster: the others keep running, demo.log says so, and it is restarted", async () => {
    const [n1, n2] = doc.nodes as [DemoDoc["nodes"][0], DemoDoc["nodes"][0]];
    const victim = n1.postgres_pid!;
    process.kill(victim, "SIGKILL");
    await waitFor("the exit in demo.log", () => log().includes("node 1: PostgreSQL exited (signal SIGKILL)"), { context: log });
    assert.ok(alive(doc.supervisor_pid));
    assert.ok(alive(n2.postgres_pid!));
    await waitFor("PostgreSQL of node 1 restarted", () => /node 1: PostgreSQL restarted \(pid \d+\)/.test(log()), { timeoutMs: 60_000, context: log });
    const p = pidsFile().nodes.find((n) => n.id === 1)?.postgres;
    assert.ok(p && p !== victim && alive(p));
  });

  test("--stop after the supervisor was killed stops every process of the dir", async () => {
    const before = await runningProcesses(dir);
    assert.deepEqual(new Set(before.map((p) => p.kind)), new Set(["supervisor", "sidecar", "postgres"]));
    process.kill(doc.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor gone", () => !alive(doc.supervisor_pid));
    const left = await runningProcesses(dir);
    assert.equal(left.length, 4, JSON.stringify(left)); // 2 sidecars, 2 postmasters: orphans now
    const r = await demo(["--stop", "--base-dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^stopped the demo in /);
    for (const what of ["node 1's sidecar", "node 2's sidecar", "node 1's PostgreSQL", "node 2's PostgreSQL"]) assert.ok(r.stdout.includes(what), r.stdout);
    for (const p of left) assert.ok(!alive(p.pid), `${p.what} (pid ${p.pid}) stopped`);
    assert.deepEqual(await runningProcesses(dir), []);
    const again = await demo(["--stop", "--base-dir", dir]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /no process of the demo in .* is running/);
  });

  test("a start while another program holds a saved port is refused, naming node, role and port; nothing is started", async () => {
    const state = JSON.parse(readFileSync(join(dir, "demo.json"), "utf8")) as { nodes: { id: number; ports: { grpc: number } }[] };
    const port = state.nodes.find((n) => n.id === 2)!.ports.grpc;
    const squatter = createServer();
    await new Promise<void>((resolve, reject) => {
      squatter.once("error", reject);
      squatter.listen({ port, host: "127.0.0.1" }, resolve);
    });
    try {
      const r = await demo(["--detach", "--nodes", "2", "--base-dir", dir]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, new RegExp(`is in use by another program: node 2: sidecar gRPC \\(Raft\\) port ${port}\\b`));
      assert.deepEqual(await runningProcesses(dir), []);
      assert.equal(readFileSync(join(dir, "demo.json"), "utf8"), JSON.stringify(state, null, 2) + "\n", "the saved ports are kept");
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });
});
