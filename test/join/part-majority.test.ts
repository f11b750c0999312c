// Parting needs a majority of the nodes that stay, and says so (issue 5):
// three data nodes; beta's sidecar is frozen (SIGSTOP), so of the two nodes
// that stay only alpha can report. The Raft cluster still has its majority
// (alpha and gamma), so part_node('gamma') starts, but it cannot finish: the
// waiting call ends with the coordinator's reason instead of hanging. Once
// beta thaws the part goes on by itself and gamma is PARTED.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { until } from "../sql/helpers.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";

describe("a part without a majority of the nodes that stay", { timeout: 180_000 }, () => {
  let c: PgCluster | undefined;
  const dsn = (n: PgNode): string => n.pg.server.passfileDsn();

  before(async () => {
    c = await startPgCluster({ nodes: 3, name: "part-majority" });
    const [n1, n2, n3] = c.nodes as [PgNode, PgNode, PgNode];
    await n1.query("CREATE TABLE t (id int PRIMARY KEY)");
    await n1.query("SELECT bdr.create_node('alpha', $1)", [dsn(n1)]);
    await n1.query("SELECT bdr.create_node_group('g1')");
    await n2.query("SELECT bdr.create_node('beta', $1)", [dsn(n2)]);
    await n2.query("SELECT bdr.join_node_group($1)", [dsn(n1)]);
    await n3.query("SELECT bdr.create_node('gamma', $1)", [dsn(n3)]);
    await n3.query("SELECT bdr.join_node_group($1)", [dsn(n1)]);
  });

  after(async () => {
    await c?.destroy();
  });

  test("part_node says the part lacks a majority; it finishes once the majority is back", async (t) => {
    const [n1] = c!.nodes as [PgNode, PgNode, PgNode];
    const state = async (): Promise<string | undefined> => (await n1.query<{ s: string }>("SELECT peer_state_name AS s FROM bdr.node_summary WHERE node_name = 'gamma'")).rows[0]?.s;
    let paused = false;
    try {
      c!.pauseSidecar(2);
      paused = true;
      // (If beta led Raft, alpha and gamma elect a new leader first: until then part_node says it sees no majority.)
      await until("part_node('gamma') to start", async () => /parting/.test(String((await n1.query("SELECT bdr.part_node('gamma', wait_for_completion := false) AS r")).rows[0]!["r"])), 30_000, 200);
      const s = await n1.connect();
      let error: unknown;
      try {
        await s.query("SET statement_timeout = '120s'");
        await s.query("SELECT bdr.part_node('gamma')");
      } catch (e) {
        error = e;
      } finally {
        await s.end();
      }
      const e = error as { code?: string; message?: string; hint?: string } | undefined;
      assert.equal(e?.code, "55000", `part_node ends with the reason, not a timeout: ${e?.message ?? "it returned"}`);
      assert.match(e.message ?? "", /the part of node "gamma" cannot finish: parting gamma needs a majority of the nodes that stay: 1 of 2 report \(beta do not\)/);
      assert.match(e.hint ?? "", /goes on by itself/);
      assert.equal(await state(), "PART_CATCHUP", "the part waits where it is");

      c!.resumeSidecar(2);
      paused = false;
      await until("gamma to be PARTED", async () => (await state()) === "PARTED", 90_000, 200);
      assert.match(String((await n1.query("SELECT bdr.part_node('gamma') AS r")).rows[0]!["r"]), /already parted/);
    } catch (err) {
      t.diagnostic(c!.tails(40));
      throw err;
    } finally {
      if (paused) c!.resumeSidecar(2);
    }
  });
});
