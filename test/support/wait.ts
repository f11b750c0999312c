// Bounded waiting for tests, with the last error in the timeout message.
import * as grpc from "@grpc/grpc-js";
import { isServiceError } from "../../src/transport/grpc-service.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `f` until it returns a truthy value (errors count as "not yet"); on timeout throw with `what` and `context()`. */
export async function waitFor<T>(
  what: string,
  f: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  opts: { timeoutMs?: number; intervalMs?: number; context?: () => string } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const end = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
      last = "";
    } catch (e) {
      last = errorText(e);
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}${opts.context ? "\n" + opts.context() : ""}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

export function errorText(e: unknown): string {
  if (isServiceError(e)) return `${grpc.status[e.code] ?? e.code}: ${e.details}`;
  return e instanceof Error ? e.message : String(e);
}
