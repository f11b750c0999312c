// grpc-js describes a failed connection in its own words ("No connection
// established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7401.
// Resolution note: ", "Deadline exceeded after 2.001s,LB pick: …"). Shown to
// an operator (SQL errors, the health check), that is noise around one fact:
// this sidecar could not reach that one, and why.
import { isServiceError } from "./grpc-service.js";

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
  ENOTFOUND: "name does not resolve",
  EAI_AGAIN: "name does not resolve (yet)",
};

/** A failed connection in grpc-js's text: the address it tried (when named) and the cause, in words; undefined for any other text. */
export function connectionFailure(text: string): { address?: string; reason: string } | undefined {
  const conn = /No connection established\. Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note:.*)?$/s.exec(text);
  if (!conn) return undefined;
  const cause = conn[1]!.trim();
  const sys = /^(?:connect|getaddrinfo) (E[A-Z_]+)\s*(\S*)/.exec(cause);
  if (sys) return { ...(sys[2] ? { address: sys[2] } : {}), reason: REASONS[sys[1]!] ? `${REASONS[sys[1]!]} (${sys[1]})` : sys[1]! };
  return { reason: cause && cause !== "null" ? cause : "no connection yet" };
}

/** A transport failure's text, shortened to its cause; `target` names what was called ("the leader's sidecar"). Other texts are returned as they are. */
export function transportErrorText(text: string, target = "the sidecar"): string {
  const f = connectionFailure(text);
  if (f) return `${target}${f.address ? ` at ${f.address}` : ""} is unreachable: ${f.reason}`;
  const deadline = /^Deadline exceeded after ([\d.]+)s/.exec(text);
  if (deadline) return `${target} did not answer within ${Number(deadline[1]).toFixed(1)} s`;
  return text;
}

/** Any error of a call, as an operator should read it (gRPC statuses without their transport noise). */
export function callErrorText(e: unknown, target?: string): string {
  if (isServiceError(e)) return transportErrorText(e.details || e.message, target);
  return e instanceof Error ? e.message : String(e);
}
