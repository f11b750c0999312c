// The sidecar's log lines: level names, a component on every line, and a
// level change reaching every logger of the tree.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createLogger, raftLogger, ROOT_COMPONENT, setTreeLevel } from "../../src/daemon/logger.js";

function capture(): { stream: Writable; lines: Record<string, unknown>[]; raw: string[] } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim()) {
          raw.push(l);
          lines.push(JSON.parse(l) as Record<string, unknown>);
        }
      cb();
    },
  });
  return { stream, lines, raw };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test("log lines name their level and their component, once", async () => {
  const { stream, lines, raw } = capture();
  const log = createLogger({ level: "info", nodeId: 3, clusterId: "c1", destination: stream });
  log.warn("root line");
  log.child({ component: "transport" }).info("child line");
  raftLogger(log, "raft").warn("node 3: became candidate at term 2");
  log.child({ peer: 2 }).info("child without a component");
  await flush();
  assert.deepEqual(
    lines.map((l) => [l["level"], l["component"], l["msg"], l["node_id"], l["cluster_id"]]),
    [
      ["warn", ROOT_COMPONENT, "root line", 3, "c1"],
      ["info", "transport", "child line", 3, "c1"],
      ["warn", "raft", "node 3: became candidate at term 2", 3, "c1"],
      ["info", ROOT_COMPONENT, "child without a component", 3, "c1"],
    ],
  );
  // No line carries the key twice (a child's component replaces the root's, it is not added to it).
  assert.deepEqual(raw.map((l) => l.split('"component":').length - 1), [1, 1, 1, 1]);
});

test("setTreeLevel changes the root and every child, created before or after", async () => {
  const { stream, lines } = capture();
  const log = createLogger({ level: "info", nodeId: 1, clusterId: "c1", destination: stream });
  const child = log.child({ component: "control-loop" });
  child.debug("hidden");
  setTreeLevel(log, "debug");
  child.debug("shown");
  log.child({ component: "later" }).debug("shown too");
  setTreeLevel(log, "warn");
  child.info("hidden again");
  await flush();
  assert.deepEqual(lines.map((l) => [l["level"], l["msg"]]), [
    ["debug", "shown"],
    ["debug", "shown too"],
  ]);
});
