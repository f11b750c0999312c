// A switchover: move a group's write leader on purpose, losing no write
// (PGD's routing_leadership_transfer). Run by the sidecar that was asked (SQL
// or `pgraft switchover`); every step is a Raft command or a query of the two
// nodes' PostgreSQL over their interface DSNs.
//
// strict (the default):
//  1. checks: the group and the target exist, the target is an ACTIVE data
//     node whose PostgreSQL answers, the old leader's answers too;
//  2. the target catches up with the old leader's WAL as it is now, within the
//     timeout, while clients still write (a node that cannot is refused:
//     nothing has changed yet);
//  3. routing.set switchingTo = target: every proxy closes its connections to
//     the old leader and holds new clients;
//  4. on the old leader, every client session is ended (and waited for), so
//     every commit a client was told of is in its WAL below the position read
//     next; the target catches up to it; repeated until no session is left;
//  5. routing.set leader = target: the proxies release the held clients to it.
// A failure after 3 puts the old leader back (switchingTo cleared) and says why.
// fast: the target takes over at once (no waiting; writes not yet on it are
// applied there later, resolved by last-update-wins).
import type pg from "pg";
import { ClusterError } from "../cluster/errors.js";
import type { DataNode } from "../cluster/node-groups.js";
import type { ClusterState } from "../cluster/state.js";
import { connectClient, destroyClient } from "../slots/connection.js";
import { formatLsn, parseLsn } from "../slots/lsn.js";
import { nodeSlotName } from "../slots/naming.js";

import { TRANSFER_METHODS, type TransferMethod } from "../cluster/routing.js";
export { TRANSFER_METHODS, type TransferMethod };

export interface SwitchoverRequest {
  group: string;
  target: string;
  method: TransferMethod;
  timeoutMs: number;
}

export interface SwitchoverDeps {
  state: ClusterState;
  /** Run a routing.* command through the Raft leader; resolves once applied here. */
  propose: (cmd: Record<string, unknown>) => Promise<unknown>;
  progress?: (line: string) => void;
  now?: () => number;
}

const POLL_MS = 50;
/** How long the old leader's client sessions get to end. */
const TERMINATE_WAIT_MS = 2_000;

export async function switchover(req: SwitchoverRequest, d: SwitchoverDeps): Promise<string> {
  const now = d.now ?? Date.now;
  const deadline = now() + req.timeoutMs;
  const say = (m: string): void => d.progress?.(m);
  if (!(TRANSFER_METHODS as readonly string[]).includes(req.method)) throw new ClusterError("INVALID_VALUE", `transfer_method must be one of ${TRANSFER_METHODS.join(", ")}, got ${JSON.stringify(req.method)}`);
  if (!d.state.nodeGroups().some((g) => g.name === req.group)) throw new ClusterError("NOT_FOUND", `node group ${JSON.stringify(req.group)} does not exist`);
  const nodes = d.state.dataNodes();
  const target = nodes.find((n) => n.name === req.target);
  if (!target) throw new ClusterError("NOT_FOUND", `node ${JSON.stringify(req.target)} does not exist`);
  if (target.group !== req.group) throw new ClusterError("INVALID", `node ${JSON.stringify(target.name)} is not in group ${JSON.stringify(req.group)}`);
  if (target.kind !== "data" || target.state !== "ACTIVE") throw new ClusterError("INVALID", `node ${JSON.stringify(target.name)} is ${target.kind === "data" ? target.state : `a ${target.kind} node`}; only an ACTIVE data node can lead writes`);
  const r = d.state.routing(req.group);
  if (r.switchingTo) throw new ClusterError("INVALID", `a switchover of group ${JSON.stringify(req.group)} to ${r.switchingTo} is already in progress`);
  if (r.leader === target.name) return `node ${target.name} is already the write leader of group ${req.group}`;
  const old = nodes.find((n) => n.name === r.leader && n.state === "ACTIVE");

  say(`checking ${target.name} and the write leader ${r.leader || "(none)"}`);
  const tc = (await connectOrExplain(target, "the target"))!;
  const oc = old ? await connectOrExplain(old, "the write leader", req.method === "strict").catch((e: unknown) => {
    destroyClient(tc);
    throw e;
  }) : undefined;
  try {
    if (!old || !oc || req.method === "fast") {
      await proposeFresh(d, req.group, (cur) => {
        if (cur.switchingTo) throw new ClusterError("INVALID", `a switchover of group ${JSON.stringify(req.group)} to ${cur.switchingTo} started meanwhile`);
        return { leader: target.name, switchingTo: "", reason: `switchover (${req.method}) requested${old ? ` from ${old.name}` : ""}` };
      }, now);
      return `node ${target.name} is the write leader of group ${req.group}${old ? ` (was ${old.name}; ${req.method}${!oc ? ", its PostgreSQL did not answer" : ""})` : ""}`;
    }
    // What the target has durably applied of the old leader's WAL: what its receiver confirmed on the target's
    // slot there (it confirms only durable positions, and answers the walsender's keepalives past records that
    // carry no transaction, which origin progress never reaches).
    const slot = nodeSlotName(old.dbname, old.group, target.name);
    // 2. catch up while clients still write: a target that cannot is refused before anything changes.
    const before = await walFlush(oc);
    say(`waiting for ${target.name} to reach ${old.name}'s WAL position ${formatLsn(before)}`);
    const lag = await waitConfirmed(oc, slot, before, deadline, now);
    if (lag !== undefined) {
      throw new ClusterError("INVALID", `node ${target.name} is ${lag} bytes behind the write leader ${old.name} and did not catch up within ${req.timeoutMs} ms; nothing changed (try again, or give a longer transfer_timeout)`);
    }
    // 3. hold new clients, close the proxies' connections to the old leader.
    say(`${target.name} has reached ${formatLsn(before)}; holding new clients`);
    await proposeFresh(d, req.group, (cur) => {
      if (cur.switchingTo) throw new ClusterError("INVALID", `a switchover of group ${JSON.stringify(req.group)} to ${cur.switchingTo} started meanwhile`);
      if (cur.leader !== old.name) throw new ClusterError("INVALID", `the write leader of group ${req.group} changed meanwhile (now ${cur.leader || "none"}); nothing changed`);
      return { switchingTo: target.name };
    }, now);
    say(`clients held; ending client sessions on ${old.name}`);
    try {
      // 4. no session left on the old leader, and the target holds everything it committed.
      for (;;) {
        const ended = await endClientSessions(oc);
        const at = await walFlush(oc);
        const behind = await waitConfirmed(oc, slot, at, deadline, now);
        if (behind !== undefined) throw new Error(`node ${target.name} did not catch up with ${old.name}'s last writes (${behind} bytes behind at the deadline)`);
        say(`ended ${ended} client session(s) on ${old.name}; ${target.name} has everything up to ${formatLsn(at)}`);
        if (ended === 0) break;
        if (now() >= deadline) throw new Error(`client sessions kept connecting to ${old.name} directly (not through the proxy) until the deadline`);
      }
      await proposeFresh(d, req.group, (cur) => {
        if (cur.switchingTo !== target.name) throw new Error(`the switchover was abandoned meanwhile (switchover target now ${cur.switchingTo || "none"})`);
        return { leader: target.name, switchingTo: "", reason: `switchover (strict) from ${old.name}` };
      }, now);
    } catch (e) {
      await proposeFresh(d, req.group, (cur) => (cur.switchingTo === target.name ? { switchingTo: "" } : undefined), now).catch(() => undefined);
      throw new ClusterError("INVALID", `switchover of group ${req.group} to ${target.name} failed, ${old.name} stays the write leader: ${e instanceof Error ? e.message : String(e)}`);
    }
    say("done: the proxies send clients to the new write leader");
    return `node ${target.name} is the write leader of group ${req.group} (was ${old.name}; strict: it had every write)`;
  } finally {
    destroyClient(tc);
    destroyClient(oc);
  }
}

/** Tries of a routing change whose epoch moved meanwhile (the controller updating the read nodes). */
const CAS_TRIES = 5;

/**
 * Propose a change decided on the group's routing as it is now (`decide` sees it; undefined: nothing to do),
 * again on a fresh read when the epoch moved meanwhile (the controller reorders the read nodes at any time).
 */
async function proposeFresh(
  d: SwitchoverDeps,
  group: string,
  decide: (cur: ReturnType<ClusterState["routing"]>) => { leader?: string; switchingTo?: string; reason?: string } | undefined,
  now: () => number,
): Promise<void> {
  for (let i = 1; ; i++) {
    const cur = d.state.routing(group);
    const change = decide(cur);
    if (!change) return;
    try {
      await d.propose(routingSet(cur, change, now()));
      return;
    } catch (e) {
      const cas = e instanceof Error && /changed meanwhile \(epoch/.test(e.message);
      if (!cas || i >= CAS_TRIES) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function routingSet(
  r: { group: string; epoch: number; leader: string; switchingTo: string; readers: string[]; reason: string },
  c: { leader?: string; switchingTo?: string; reason?: string },
  nowMs: number,
): Record<string, unknown> {
  const leader = c.leader ?? r.leader;
  return {
    op: "routing.set",
    group: r.group,
    epoch: r.epoch,
    leader,
    switchingTo: c.switchingTo ?? r.switchingTo,
    readers: r.readers.filter((x) => x !== leader),
    reason: c.reason ?? r.reason,
    nowMs,
  };
}

async function connectOrExplain(n: DataNode, what: string, required = true): Promise<pg.Client | undefined> {
  try {
    return await connectClient(n.dsn, "pgraft_switchover", () => undefined, { connectionTimeoutMillis: 3_000, query_timeout: 10_000 });
  } catch (e) {
    if (!required) return undefined;
    const why = e instanceof Error ? e.message : String(e);
    throw new ClusterError("INVALID", `${what} ${n.name}'s PostgreSQL does not answer (${why}); nothing changed${what === "the write leader" ? " — use transfer_method 'fast', or let failover move it" : ""}`);
  }
}

async function walFlush(c: pg.Client): Promise<bigint> {
  return parseLsn((await c.query<{ l: string }>("SELECT pg_current_wal_flush_lsn()::text AS l")).rows[0]!.l);
}

/** Wait until `slot` on the old leader is confirmed up to `lsn`; returns undefined when it is, else the bytes still missing at the deadline. */
async function waitConfirmed(c: pg.Client, slot: string, lsn: bigint, deadline: number, now: () => number): Promise<bigint | undefined> {
  for (;;) {
    const raw = (await c.query<{ p: string | null }>("SELECT confirmed_flush_lsn::text AS p FROM pg_replication_slots WHERE slot_name = $1", [slot])).rows[0]?.p;
    const p = raw ? parseLsn(raw) : 0n;
    if (p >= lsn) return undefined;
    if (now() >= deadline) return lsn - p;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * End every client session but pgraft's own, this one, and the one waiting for
 * this switchover (a caller of routing_leadership_transfer on the old leader),
 * waiting for each to be gone; returns how many there were.
 */
async function endClientSessions(c: pg.Client): Promise<number> {
  const r = await c.query<{ n: string }>(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, $1)) AS n FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'pgraft%'
        AND coalesce(query, '') !~* 'routing_leadership_transfer'`,
    [TERMINATE_WAIT_MS],
  );
  return Number(r.rows[0]!.n);
}
