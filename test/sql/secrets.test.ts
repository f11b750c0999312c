// Secrets (issue 10 §5) through the real SQL path, on a 3-node cluster of
// PostgreSQL + sidecars whose sidecars have PGPASSFILE set:
// - an interface DSN with a password is refused by create_node and
//   alter_node_interface (22023, the hint says how to pass it), on the leader
//   and a follower, and nothing is written; DSNs that name a passfile, or rely
//   on the sidecar's PGPASSFILE, work;
// - keys under pgraft.internal/ are refused to pgraft_kv_put/get/delete (42501)
//   and to the CLI, and left out of listings, while pgraft's own writes work;
// - the leader deletes them once their subject is gone: a removed Raft member's
//   promotion key (the pgraft.internal/promote/9), a dropped node's
//   join and part keys, and stale keys left behind by anyone.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { autoPromoteKey, internalCall, joinKeyOf, partPrefixOf } from "../../src/daemon/internal-keys.js";
import { keyValueDsn } from "../../src/postgres/dsn.js";
import { passfileLine } from "../../src/postgres/passfile.js";
import { createClient, type TypedClient } from "../../src/transport/grpc-service.js";
import { pb, runCli } from "../integration/harness.js";
import { startPgCluster, type PgCluster, type PgNode } from "../support/pg-cluster.js";
import { scalar, sqlFails, until, withCluster } from "./helpers.js";

describe("secrets: interface DSNs without passwords, pgraft's own keys", () => {
  let cluster: PgCluster | undefined;
  let dir: string;
  const clients: TypedClient<(typeof pb.Cluster)["method"]>[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pgraft-secrets-"));
    const envPassfile = join(dir, "sidecar-pgpass");
    cluster = await startPgCluster({ nodes: 3, name: "secrets", sidecarEnv: { PGPASSFILE: envPassfile } });
    // Read when a sidecar connects, so it may be written now that the ports are known.
    const lines = cluster.nodes.map((n) => passfileLine({ host: "127.0.0.1", port: n.pg.server.port, database: "*", user: n.pg.server.superuser, password: n.pg.server.password }));
    writeFileSync(envPassfile, lines.join("\n") + "\n", { mode: 0o600 });
  });
  after(async () => {
    for (const c of clients) c.close();
    await cluster?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const it = (name: string, fn: (t: TestContext, c: PgCluster) => Promise<void>): void => {
    test(name, withCluster(() => cluster, fn));
  };

  /** A gRPC client that marks its calls as pgraft's own (to read what users may not). */
  const internalKv = (n: PgNode) => {
    const c = createClient(pb.Cluster, `127.0.0.1:${n.raftPort}`, grpc.credentials.createInsecure());
    clients.push(c);
    return {
      get: async (key: string): Promise<string | undefined> => (await c.methods.kvGet({ clusterId: cluster!.clusterId, key }, internalCall())).kv?.value,
      put: async (key: string, value: string): Promise<void> => {
        await c.methods.kvPut({ clusterId: cluster!.clusterId, key, value }, internalCall());
      },
    };
  };
  const plainDsn = (n: PgNode): string => keyValueDsn({ host: "127.0.0.1", port: n.pg.server.port, user: n.pg.server.superuser, database: "postgres" });
  const summary = async (n: PgNode): Promise<unknown[]> => (await n.query("SELECT node_name, interface_connstr, peer_state_name, node_seq_id FROM pgraft.node_summary ORDER BY node_name")).rows;
  const revision = async (n: PgNode): Promise<number> => Number(await scalar(n, "SELECT pgraft_kv_put('secrets/probe', '0')"));
  const cli = async (n: PgNode, args: string[]): Promise<{ code: number | null; output: string }> => {
    const r = await runCli([...args, "--endpoint", `127.0.0.1:${n.raftPort}`, "--cluster-id", cluster!.clusterId, "--plaintext"]);
    return { code: r.code, output: r.stdout + r.stderr };
  };

  it("create_node refuses a DSN with a password (22023 and how to pass it), on the leader and a follower; nothing is written", async (_t, c) => {
    const leader = await c.leader();
    const follower = await c.follower();
    const before = await summary(leader);
    const rev = await revision(leader);
    for (const n of [leader, follower]) {
      const s = n.pg.server;
      const passfile = s.passfileDsn();
      for (const dsn of [s.keyValueDsn(), s.dsn(), `postgresql://${s.superuser}@127.0.0.1:${s.port}/postgres?password=${s.password}`, `${passfile} PASSWORD=${s.password}`, `${passfile} sslpassword=${s.password}`]) {
        const e = await sqlFails(() => n.query("SELECT pgraft.create_node('withpw', $1)", [dsn]));
        assert.equal(e.code, "22023", `${dsn}: ${e.message}`);
        assert.match(e.message, /create_node: interface DSN must not contain a password: it would be stored in the replicated catalog in plaintext/);
        assert.match(e.hint ?? "", /passfile=.*PGPASSFILE.*~\/\.pgpass/);
        assert.ok(!e.message.includes(s.password) && !(e.hint ?? "").includes(s.password), "the password is not echoed");
      }
      const e = await sqlFails(() => n.query("SELECT bdr.create_node('withpw', $1)", [s.keyValueDsn()]));
      assert.equal(e.code, "22023");
      // An option libpq does not know (pg_dump and the sidecars would refuse the DSN later): refused now, by name.
      const bad = await sqlFails(() => n.query("SELECT pgraft.create_node('badopt', $1)", [`${passfile} Host=x`]));
      assert.equal(bad.code, "22023");
      assert.match(bad.message, /invalid connection option "Host"/);
    }
    for (const n of c.nodes) assert.deepEqual(await summary(n), before, `node ${n.id}: the catalog is unchanged`);
    assert.equal(await revision(leader), rev + 1, "no KV write went through");
  });

  it("a passfile in the DSN, or the sidecar's PGPASSFILE, reaches the database; alter_node_interface refuses a password and changes nothing", async (_t, c) => {
    const n1 = c.node(1);
    const viaFile = n1.pg.server.passfileDsn();
    await n1.query("SELECT pgraft.create_node('alpha', $1)", [viaFile]);
    const created = await summary(n1);
    assert.deepEqual(created, [{ node_name: "alpha", interface_connstr: viaFile, peer_state_name: "CREATED", node_seq_id: (created[0] as { node_seq_id: number }).node_seq_id }]);

    const rev = await revision(n1);
    for (const n of [n1, c.node(2)]) {
      const e = await sqlFails(() => n.query("SELECT pgraft.alter_node_interface('alpha', $1)", [n1.pg.server.keyValueDsn()]));
      assert.equal(e.code, "22023");
      assert.match(e.message, /alter_node_interface: interface DSN must not contain a password/);
      assert.match(e.hint ?? "", /PGPASSFILE/);
    }
    // A password file that is not there: the probe says so (and changes nothing).
    const e = await sqlFails(() => n1.query("SELECT pgraft.alter_node_interface('alpha', $1)", [`${plainDsn(n1)} passfile=${join(dir, "absent")}`]));
    assert.equal(e.code, "08001");
    assert.match(e.message, /no password supplied .*the password file .*absent does not exist/);
    for (const n of c.nodes) assert.deepEqual(await summary(n), created, `node ${n.id}: the catalog is unchanged`);
    assert.equal(await revision(n1), rev + 1, "no KV write went through");

    // No passfile in the DSN: the sidecar's PGPASSFILE has the line.
    await c.node(2).query("SELECT pgraft.alter_node_interface('alpha', $1)", [plainDsn(n1)]);
    assert.equal(((await summary(n1))[0] as { interface_connstr: string }).interface_connstr, plainDsn(n1));
  });

  it("pgraft.internal/ keys: pgraft_kv_put/get/delete refuse them (42501) and write nothing", async (_t, c) => {
    const nodes = [await c.leader(), await c.follower()];
    const rev = await revision(nodes[0]!);
    for (const n of nodes) {
      for (const [sql, params] of [
        ["SELECT pgraft_kv_put($1, '1')", ["pgraft.internal/promote/9"]],
        ["SELECT pgraft_kv_put($1, '1')", ["pgraft.internal/"]],
        ["SELECT pgraft_kv_get($1)", ["pgraft.internal/join/alpha"]],
        ["SELECT pgraft_kv_delete($1)", ["pgraft.internal/promote/1"]],
      ] as const) {
        const e = await sqlFails(() => n.query(sql, [...params]));
        assert.equal(e.code, "42501", `${sql} ${params[0]}: ${e.message}`);
        assert.match(e.message, /key "pgraft\.internal\/[^"]*" is reserved: keys under "pgraft\.internal\/" are pgraft's own bookkeeping .*use another prefix/);
      }
    }
    assert.equal(await revision(nodes[0]!), rev + 1, "no KV write went through");
    // Keys that merely look alike are ordinary.
    await nodes[1]!.query("SELECT pgraft_kv_put('pgraft.internals', '1')");
    assert.equal(await scalar(nodes[1]!, "SELECT pgraft_kv_get('pgraft.internals')"), 1);
  });

  it("a removed member's promotion key is deleted (pgraft.internal/promote/9); the CLI can neither see nor touch it", async (_t, c) => {
    const leader = await c.leader();
    const kv = internalKv(leader);
    // A learner that never catches up (nothing listens there) keeps its promotion intent.
    await leader.query("SELECT pgraft_add_node(9, '127.0.0.1', 9)");
    assert.equal(await kv.get(autoPromoteKey(9)), "true");

    const list = await cli(c.node(2), ["kv", "list", "--keys-only"]);
    assert.equal(list.code, 0, list.output);
    assert.ok(!list.output.includes("pgraft.internal/"), `kv list shows no internal key:\n${list.output}`);
    const inside = await cli(c.node(2), ["kv", "list", "pgraft.internal/"]);
    assert.equal(inside.code, 1, inside.output);
    assert.match(inside.output, /prefix "pgraft\.internal\/" is reserved/);
    for (const args of [["kv", "get", "pgraft.internal/promote/9"], ["kv", "put", "pgraft.internal/promote/9", "false"], ["kv", "delete", "pgraft.internal/promote/9"]]) {
      const r = await cli(c.node(3), args);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.output}`);
      assert.match(r.output, /key "pgraft\.internal\/promote\/9" is reserved/);
    }
    assert.equal(await kv.get(autoPromoteKey(9)), "true", "the refused calls changed nothing");

    await c.node(2).query("SELECT pgraft_remove_node(9)");
    await until("the promotion key of removed node 9 is deleted", async () => (await kv.get(autoPromoteKey(9))) === undefined);
  });

  it("drop_node deletes the dropped node's join and part keys, and only those", async (_t, c) => {
    const n2 = c.node(2);
    await n2.query("SELECT bdr.create_node('beta', $1)", [n2.pg.server.passfileDsn()]);
    const nodes = (await summary(n2)) as { node_name: string; node_seq_id: number }[];
    const beta = { name: "beta", seqId: nodes.find((x) => x.node_name === "beta")!.node_seq_id };
    const alpha = { name: "alpha", seqId: nodes.find((x) => x.node_name === "alpha")!.node_seq_id };
    const kv = internalKv(c.node(3));
    const keys = { betaJoin: joinKeyOf("beta"), betaPart: `${partPrefixOf(beta)}status`, alphaJoin: joinKeyOf("alpha"), alphaPart: `${partPrefixOf(alpha)}status` };
    for (const k of Object.values(keys)) await kv.put(k, '{"by":"test"}');

    await n2.query("SELECT bdr.drop_node('beta')");
    await until("beta's join and part keys are deleted", async () => (await kv.get(keys.betaJoin)) === undefined && (await kv.get(keys.betaPart)) === undefined);
    assert.equal(await kv.get(keys.alphaJoin), '{"by":"test"}');
    assert.equal(await kv.get(keys.alphaPart), '{"by":"test"}');
  });

  it("the leader's control loop sweeps stale internal keys left behind (a promote key of a node that never was)", async (_t, c) => {
    const kv = internalKv(await c.follower());
    await kv.put(autoPromoteKey(77), "true");
    await kv.put(joinKeyOf("never-created"), "{}");
    await kv.put(joinKeyOf("alpha"), '{"live":true}');
    // Swept once stale for the grace period (2 x the request timeout: 10 s here).
    await until("the stale keys are swept", async () => (await kv.get(autoPromoteKey(77))) === undefined && (await kv.get(joinKeyOf("never-created"))) === undefined, 60_000, 500);
    assert.equal(await kv.get(joinKeyOf("alpha")), '{"live":true}', "a live node's key stays");
  });
});
