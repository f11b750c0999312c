// The two ways an operator command fails, and the one line each prints.
// A UsageError is the operator's mistake, found before anything is sent (exit
// 2); a RequestError wraps what a call to the sidecar failed with (exit 1),
// turned into the server's message plus a hint for the codes we recognise.
import * as grpc from "@grpc/grpc-js";
import { isServiceError } from "../../transport/grpc-service.js";
import { connectionFailure } from "../../transport/grpc-error-text.js";

export const EXIT_REQUEST_FAILED = 1;
export const EXIT_USAGE = 2;

/** A bad invocation: missing or malformed option, argument or environment variable. */
export class UsageError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("; "));
    this.name = "UsageError";
  }
}

/** A call to the sidecar that failed; `what` names it ("add node 4"). */
export class RequestError extends Error {
  constructor(
    readonly what: string,
    override readonly cause: unknown,
  ) {
    super(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "RequestError";
  }
}

/** Trailers the sidecar attaches to its errors (see proto/pgraft/v1/client.proto). */
export const ERROR_CODE_TRAILER = "pgraft-error-code";
export const LEADER_ID_TRAILER = "pgraft-leader-id";

/** What the hints need to know about the invocation. */
export interface HintContext {
  endpoint: string;
  clusterId: string;
  timeout: string;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, " ").trim();

function trailer(md: grpc.Metadata | undefined, key: string): string | undefined {
  const v = md?.get(key)[0];
  if (v === undefined) return undefined;
  const s = typeof v === "string" ? v : v.toString("utf8");
  return s === "" ? undefined : s;
}

/** The pieces of a failed call, from a grpc-js ServiceError or anything else thrown. */
export interface CallFailure {
  /** gRPC status name (UNAVAILABLE), undefined when the error was not a gRPC status. */
  status: string | undefined;
  /** The sidecar's RaftError/ClusterError code from the trailer. */
  pgraftCode: string | undefined;
  /** The leader named by the trailer (0 or undefined when none is known). */
  leaderId: number | undefined;
  message: string;
}

export function callFailure(e: unknown): CallFailure {
  if (!isServiceError(e)) return { status: undefined, pgraftCode: undefined, leaderId: undefined, message: oneLine(e instanceof Error ? e.message : String(e)) };
  const leaderText = trailer(e.metadata, LEADER_ID_TRAILER);
  const leader = leaderText !== undefined && /^\d+$/.test(leaderText) ? Number(leaderText) : undefined;
  return {
    status: grpc.status[e.code],
    pgraftCode: trailer(e.metadata, ERROR_CODE_TRAILER),
    leaderId: leader,
    message: oneLine(e.details || e.message),
  };
}

/** A hint for the failures an operator can act on; undefined for the rest. */
export function hintFor(f: CallFailure, ctx: HintContext): string | undefined {
  switch (f.pgraftCode) {
    case "NOT_LEADER":
      return f.leaderId
        ? `the leader is node ${f.leaderId}: send the request to its endpoint (pgraft members shows its address)`
        : "no leader is known: an election may be under way, retry shortly";
    case "NO_QUORUM":
      return "a majority of the voters is unreachable: check pgraft members on the leader";
    case "TIMEOUT":
      return "the cluster did not commit in time: retry, and check that a quorum of voters is up";
    case "REMOVED":
      return `the sidecar at ${ctx.endpoint} was removed from the cluster: ask another member`;
    case "STOPPED":
      return `the sidecar at ${ctx.endpoint} is shutting down: ask another member`;
    case "CLUSTER_ID_MISMATCH":
      return clusterIdHint(ctx);
  }
  switch (f.status) {
    case "UNAVAILABLE":
      if (f.pgraftCode !== undefined) return "no leader is known: an election may be under way, retry shortly";
      return `is the sidecar running at ${ctx.endpoint}?`;
    case "DEADLINE_EXCEEDED":
      return `no answer within ${ctx.timeout} (--timeout): the sidecar may be busy or the cluster without a quorum`;
    case "FAILED_PRECONDITION":
      return /cluster id mismatch/i.test(f.message) ? clusterIdHint(ctx) : undefined;
    case "UNIMPLEMENTED":
      return `the sidecar at ${ctx.endpoint} does not serve this request: is it an older version?`;
    case "UNAUTHENTICATED":
    case "PERMISSION_DENIED":
      return "check --tls-cert and --tls-key: the sidecar refused this client's certificate";
  }
  return undefined;
}

const clusterIdHint = (ctx: HintContext): string =>
  `the sidecar at ${ctx.endpoint} belongs to another cluster: check --cluster-id (or $PGRAFT_CLUSTER_ID), this command sent "${ctx.clusterId}"`;

/** grpc-js's text for a refused connection, shortened to its cause. */
function connectionMessage(f: CallFailure, ctx: HintContext): string {
  const c = connectionFailure(f.message);
  return c ? `cannot connect to ${ctx.endpoint}: ${c.reason}` : f.message;
}

/** `<what>: <server message> [code]; hint: ...` (without the "pgraft: " prefix). */
export function describeRequestError(e: RequestError, ctx: HintContext): string {
  const raw = callFailure(e.cause);
  const f = raw.status === "UNAVAILABLE" && raw.pgraftCode === undefined ? { ...raw, message: connectionMessage(raw, ctx) } : raw;
  const code = f.pgraftCode ?? f.status;
  const base = `${e.what}: ${f.message}${code !== undefined && !f.message.includes(code) ? ` [${code}]` : ""}`;
  const hint = hintFor(f, ctx);
  return hint === undefined ? base : `${base}; hint: ${hint}`;
}
