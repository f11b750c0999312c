// REPLICA IDENTITY FULL for a table without a primary key, recorded in
// pgraft.replica_identity_set so it goes back to DEFAULT once the table has
// one (provider.ts). Two callers: the maintenance sweep, and the applier when
// a peer's change reaches such a table before this node's sweep did (with the
// default identity PostgreSQL refuses UPDATE and DELETE on a table in a FOR
// ALL TABLES publication, the applier's included).
import type pg from "pg";
import { REPLICA_IDENTITY_TABLE } from "./local-objects.js";

/** `name`: the table as format('%I.%I') gives it; `oid`: its pg_class oid. Throws (rolled back) on failure. */
export async function setReplicaIdentityFull(client: pg.Client, oid: string, name: string): Promise<void> {
  try {
    await client.query(`BEGIN; ALTER TABLE ${name} REPLICA IDENTITY FULL; INSERT INTO ${REPLICA_IDENTITY_TABLE} (relid) VALUES (${Number(oid)}) ON CONFLICT DO NOTHING; COMMIT`);
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}
