// Shared bits of the test/sql tests: result columns, bounded polling, and a
// test wrapper that prints every sidecar's and server's log tail on failure.
import assert from "node:assert/strict";
import type pg from "pg";
import { sleep, waitFor, withLogs } from "../integration/harness.js";
import type { PgCluster, PgNode } from "../support/pg-cluster.js";

export { sleep };

export { pgError, sqlFails } from "../support/pg-cluster.js";


/** The result's column names, in order (pg's `fields`). */
export const columns = (r: pg.QueryResult): string[] => r.fields.map((f) => f.name);

/** The results of a multi-statement simple query (pg returns an array then, a single result otherwise). */
export function results(r: pg.QueryResult | pg.QueryResult[]): pg.QueryResult[] {
  return Array.isArray(r) ? r : [r];
}

/** Run several `;`-separated statements in one simple query; one result per statement. */
export async function multi(node: PgNode, sql: string): Promise<pg.QueryResult[]> {
  // node.query is typed for one result; for several statements pg resolves with an array.
  const r: pg.QueryResult | pg.QueryResult[] = await node.query(sql);
  return results(r);
}

/** Poll `f` until it returns a truthy value (errors count as not yet); bounded (the harness's waitFor). */
export function until<T>(what: string, f: () => Promise<T | undefined | null | false>, timeoutMs = 15_000, intervalMs = 100): Promise<T> {
  return waitFor(what, f, { timeoutMs, intervalMs });
}

/** A test body that gets the file's cluster, and on failure reports every node's log tail (the harness's withLogs). */
export function withCluster<T extends { diagnostic(message: string): void }>(cluster: () => PgCluster | undefined, fn: (t: T, c: PgCluster) => Promise<void>): (t: T) => Promise<void> {
  return withLogs<T, PgCluster>(cluster, fn);
}

/** A scalar result's single value. */
export async function scalar<T>(node: PgNode, sql: string, params?: unknown[]): Promise<T> {
  const r = await node.query(sql, params);
  assert.equal(r.rows.length, 1, `${sql}: one row`);
  assert.equal(r.fields.length, 1, `${sql}: one column`);
  return Object.values(r.rows[0]!)[0] as T;
}

/** Membership, configuration and the given KV keys as `node` reports them: what bad input must leave alone. */
export async function clusterSnapshot(node: PgNode, keys: readonly string[] = []): Promise<unknown> {
  const members = (await node.query("SELECT node_id, role, address, port FROM pgraft_get_nodes() ORDER BY node_id")).rows;
  const config = (await node.query("SELECT name, value, overridden, saved FROM pgraft_get_config() ORDER BY name")).rows;
  const kv: Record<string, unknown> = {};
  for (const k of keys) kv[k] = await scalar(node, "SELECT pgraft_kv_get($1)", [k]);
  const leader = await scalar<number | null>(node, "SELECT pgraft_get_leader()");
  return { members, config, kv, leader };
}
