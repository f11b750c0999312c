// Upgrading the SQL shim in place (src/shim/installer.ts) against a real
// server, where a function's result columns changed between versions
// (pgraft_get_nodes gained postgres_address in 0.3.0): CREATE OR REPLACE
// cannot change them, so the installer drops the old function first and
// creates it again with its grants; an unchanged function is left as it is
// (same oid); and a user's view over the old function makes the upgrade fail
// with PostgreSQL's dependency error and change nothing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { FUNCTION_BY_NAME, resultColumns } from "../../src/sqlapi/catalog.js";
import { installShim } from "../../src/shim/installer.js";
import { SHIM_VERSION } from "../../src/shim/install-sql.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";

const TARGET = { host: "127.0.0.1", port: 1, user: "pgraft", password: "not-used" };
/** pgraft_get_nodes as shim 0.2.0 declared it: the columns before postgres_address. */
const OLD_COLUMNS = resultColumns(FUNCTION_BY_NAME.get("pgraft_get_nodes")!).filter((c) => c.name !== "postgres_address");

async function columnsOf(c: pg.Client, fn: string): Promise<string[]> {
  const r = await c.query<{ names: string[] | null }>("SELECT proargnames AS names FROM pg_catalog.pg_proc WHERE oid = pg_catalog.to_regprocedure($1)", [fn]);
  return r.rows[0]?.names ?? [];
}

const oidOf = async (c: pg.Client, fn: string): Promise<string | null> =>
  (await c.query<{ oid: string | null }>("SELECT pg_catalog.to_regprocedure($1)::oid::text AS oid", [fn])).rows[0]!.oid;

/** Put back the 0.2.0 shape of pgraft_get_nodes and record 0.2.0 as installed. */
async function installOldGetNodes(c: pg.Client): Promise<void> {
  await c.query("DROP FUNCTION IF EXISTS public.pgraft_get_nodes()");
  await c.query(`CREATE FUNCTION public.pgraft_get_nodes() RETURNS TABLE(${OLD_COLUMNS.map((x) => `${x.name} ${x.type}`).join(", ")})
    LANGUAGE sql AS $$ SELECT ${OLD_COLUMNS.map((x) => `NULL::${x.type}`).join(", ")} WHERE false $$`);
  await c.query("DELETE FROM pgraft.shim_version");
  await c.query("INSERT INTO pgraft.shim_version(version) VALUES ('0.2.0')");
}

describe("shim upgrade when a function's result columns changed", () => {
  let tp: TestPostgres | undefined;
  let c: pg.Client | undefined;

  before(async () => {
    tp = await startTestPostgres();
    c = await tp.server.connect();
  });
  after(async () => {
    await c?.end();
    await tp?.destroy();
  });

  test("a fresh install has postgres_address; installing again keeps every function (same oid)", async () => {
    await installShim(c!, TARGET);
    assert.equal((await columnsOf(c!, "public.pgraft_get_nodes()")).at(-1), "postgres_address");
    const before = await oidOf(c!, "public.pgraft_get_nodes()");
    const r = await installShim(c!, TARGET);
    assert.equal(r.previousVersion, SHIM_VERSION);
    assert.equal(await oidOf(c!, "public.pgraft_get_nodes()"), before, "an unchanged function is not dropped");
  });

  test("from 0.2.0: the old function is replaced, with its grant to pgraft_monitor", async () => {
    await installOldGetNodes(c!);
    assert.deepEqual(await columnsOf(c!, "public.pgraft_get_nodes()"), OLD_COLUMNS.map((x) => x.name));
    const r = await installShim(c!, TARGET);
    assert.equal(r.previousVersion, "0.2.0");
    assert.equal(r.version, SHIM_VERSION);
    assert.deepEqual(await columnsOf(c!, "public.pgraft_get_nodes()"), resultColumns(FUNCTION_BY_NAME.get("pgraft_get_nodes")!).map((x) => x.name));
    const grants = await c!.query<{ monitor: boolean; everyone: boolean }>(
      "SELECT has_function_privilege('pgraft_monitor', 'public.pgraft_get_nodes()', 'EXECUTE') AS monitor, has_function_privilege('public', 'public.pgraft_get_nodes()', 'EXECUTE') AS everyone",
    );
    assert.deepEqual(grants.rows[0], { monitor: true, everyone: false });
  });

  test("a user's view over the old function: the upgrade fails with the dependency and changes nothing", async () => {
    await installOldGetNodes(c!);
    await c!.query("CREATE VIEW public.my_nodes AS SELECT node_id, state FROM public.pgraft_get_nodes()");
    try {
      await assert.rejects(installShim(c!, TARGET), (e: Error & { code?: string }) => {
        assert.equal(e.code, "2BP01", "dependent_objects_still_exist");
        assert.match(e.message, /cannot drop function pgraft_get_nodes\(\) because other objects depend on it/);
        return true;
      });
      assert.deepEqual(await columnsOf(c!, "public.pgraft_get_nodes()"), OLD_COLUMNS.map((x) => x.name), "the old function stays");
      const v = await c!.query<{ version: string }>("SELECT version FROM pgraft.shim_version");
      assert.deepEqual(v.rows, [{ version: "0.2.0" }]);
      // Once the user's view is gone, the upgrade goes through.
      await c!.query("DROP VIEW public.my_nodes");
      assert.equal((await installShim(c!, TARGET)).version, SHIM_VERSION);
      assert.equal((await columnsOf(c!, "public.pgraft_get_nodes()")).at(-1), "postgres_address");
    } finally {
      await c!.query("DROP VIEW IF EXISTS public.my_nodes");
    }
  });
});
