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

/** A transport failure's text, shortened to its cause; `target` names what was called ("the leader's sidecar"). Other texts are returned as they are. */
export function transportErrorText(text: string, target = "the sidecar"): string {
  const conn = /No connection established\. Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note:.*)?$/s.exec(text);
  if (conn) {
    const cause = conn[1]!.trim();
    const sys = /^(?:connect|getaddrinfo) (E[A-Z_]+)\s*(\S*)/.exec(cause);
    if (sys) return `${target}${sys[2] ? ` at ${sys[2]}` : ""} is unreachable: ${REASONS[sys[1]!] ?? sys[1]!}`;
    return `${target} is unreachable${cause && cause !== "null" ? `: ${cause}` : " (no connection yet)"}`;
  }
  const deadline = /^Deadline exceeded after ([\d.]+)s/.exec(text);
  if (deadline) return `${target} did not answer within ${Number(deadline[1]).toFixed(1)} s`;
  return text;
}

/** Any error of a call, as an operator should read it (gRPC statuses without their transport noise). */
export function callErrorText(e: unknown, target?: string): string {
  if (isServiceError(e)) return transportErrorText(e.details || e.message, target);
  return e instanceof Error ? e.message : String(e);
}
