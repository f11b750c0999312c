// Restart safety: while node a keeps writing, node b's data plane is torn
// down abruptly — in process (every socket dropped at once) and as a process
// killed with SIGKILL mid-stream — and started again. Afterwards b holds
// exactly a's rows: none lost, none applied twice (a table without a primary
// key would show a duplicate; a table with one, an insert_exists conflict).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { readConflicts } from "../../src/slots/index.js";
import { onAll, planeOptions, startNodes, startPlane, tableHash, teardown, waitConverged, type TestNode } from "./support.js";

const here = dirname(fileURLToPath(import.meta.url));
const CHILD = join(here, "fixtures", "dataplane-child.ts");
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("restart safety", () => {
  let nodes: TestNode[] = [];
  let a: TestNode;
  let b: TestNode;
  let child: ChildProcess | undefined;

  before(async () => {
    nodes = await startNodes(2);
    [a, b] = nodes as [TestNode, TestNode];
    await onAll(nodes, "CREATE TABLE events (id int PRIMARY KEY, batch int, payload text); CREATE TABLE audit (seq int, note text)");
    await Promise.all([startPlane(nodes, a), startPlane(nodes, b)]);
  });

  after(async () => {
    child?.kill("SIGKILL");
    await teardown(nodes);
  });

  async function startChild(): Promise<ChildProcess> {
    const p = spawn(process.execPath, ["--import", "tsx", CHILD, JSON.stringify({ ...planeOptions(nodes, b), log: undefined })], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    p.stdout.setEncoding("utf8");
    const ready = new Promise<void>((resolve, reject) => {
      p.stdout.on("data", (d: string) => {
        out += d;
        if (out.includes("ready")) resolve();
      });
      p.once("exit", (code, sig) => reject(new Error(`data plane child exited (${code}, ${sig}) before it was ready: ${out}`)));
    });
    await ready;
    return p;
  }

  async function kill9(p: ChildProcess): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, "exit");
    p.kill("SIGKILL");
    await exited;
  }

  test("abrupt stops mid-stream, in process and kill -9: no loss, no double apply", async () => {
    let stop = false;
    let written = 0;
    let rows = 0;
    // The writer: one- and many-row transactions, as fast as a can take them.
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const many = i % 10 === 0 ? 50 : 1;
        await a.client.query("BEGIN");
        await a.client.query("INSERT INTO events SELECT g, $1, md5(g::text) FROM generate_series($2::int, $2::int + $3::int - 1) g", [i, rows, many]);
        await a.client.query("INSERT INTO audit SELECT g, 'tx ' || $1 FROM generate_series($2::int, $2::int + $3::int - 1) g", [i, rows, many]);
        await a.client.query("COMMIT");
        rows += many;
        written++;
      }
    })();

    try {
      // Twice in process: every connection dropped at once, then a new data plane.
      for (let k = 0; k < 2; k++) {
        await pause(400);
        b.plane!.abort();
        b.plane = undefined;
        await pause(150);
        await startPlane(nodes, b);
      }
      // Twice as a separate process killed with SIGKILL.
      await b.plane!.stop();
      b.plane = undefined;
      for (let k = 0; k < 2; k++) {
        child = await startChild();
        await pause(500);
        await kill9(child);
      }
      child = await startChild();
      await pause(300);
    } finally {
      stop = true;
      await writer;
    }
    assert.ok(written > 50, `the writer committed ${written} transactions during the restarts`);
    await waitConverged(nodes, ["events", "audit"], 60_000);
    const ev = await tableHash(b.client, "events");
    const au = await tableHash(b.client, "audit");
    assert.equal(ev.rows, rows, "every row arrived");
    assert.equal(au.rows, rows, "no row of the table without a key arrived twice");
    const dup = await b.client.query<{ n: string }>("SELECT count(*) - count(DISTINCT seq) AS n FROM audit");
    assert.equal(dup.rows[0]!.n, "0");
    assert.deepEqual(await readConflicts(b.client), [], "no insert_exists: nothing was applied twice");

    // The last data plane (a child) stops gracefully.
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    await exited;
    child = undefined;
  });
});
