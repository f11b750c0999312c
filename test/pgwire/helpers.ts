// Shared by the pgwire tests: a handler that answers a tiny query language, and
// server/client starters that register their own teardown on the test.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestContext } from "node:test";
import pg from "pg";
import { runProcess } from "../support/run.js";
import {
  PgType,
  PgWireError,
  makeScramVerifier,
  startPgWireServer,
  type PgWireHandler,
  type PgWireServer,
  type PgWireServerOptions,
  type QueryResult,
} from "../../src/pgwire/index.js";

export const USER = "alice";
// Quotes, a backslash and a space: nothing in the path may mangle them.
export const PASSWORD = "pa ss'wo\\rd";

/** Verifiers are computed once: 4096 PBKDF2 rounds per test would add up. */
const verifiers = new Map<string, string>([
  [USER, makeScramVerifier(PASSWORD)],
  ["bob", makeScramVerifier("bobpw", 1000)],
]);
export const users = (name: string): string | undefined => verifiers.get(name);

export interface HandlerLog {
  /** Every sql string the handler received. */
  queries: string[];
  /** Queries whose AbortSignal fired, with the reason's message. */
  aborted: { sql: string; reason: string }[];
  /** Resolves on the next abort (set anew after each). */
  nextAbort: Promise<void>;
}

const text = (name: string) => ({ name, typeOid: PgType.text });

/**
 * Statements (split on ';'):
 *   select 1 | select 42       one int4 column "?column?"
 *   select 'it''s'             one text column (how bound parameters arrive)
 *   select NULL                one NULL
 *   rows N                     N rows: n int4, label text (NULL every third row)
 *   fail                       PgWireError 22023 with detail and hint
 *   crash                      a plain Error → XX000
 *   sleep MS                   waits, honouring the AbortSignal
 *   stubborn MS                waits, ignoring the AbortSignal
 *   notice                     a NoticeResponse, then "DO"
 *   whoami                     user, database, application_name
 *   set ...                    "SET"
 *   empty                      zero results
 */
export function testHandler(): { handler: PgWireHandler; log: HandlerLog } {
  let wakeAbort: () => void = () => {};
  const log: HandlerLog = { queries: [], aborted: [], nextAbort: Promise.resolve() };
  const armAbort = (): void => {
    log.nextAbort = new Promise((r) => (wakeAbort = r));
  };
  armAbort();

  const one = async (stmt: string, ctx: Parameters<PgWireHandler["query"]>[1]): Promise<QueryResult[]> => {
    let m: RegExpExecArray | null;
    if ((m = /^select (-?\d+)$/i.exec(stmt))) return [{ columns: [{ name: "?column?", typeOid: PgType.int4 }], rows: [[m[1]!]], command: "SELECT 1" }];
    if ((m = /^select '((?:[^']|'')*)'$/is.exec(stmt))) return [{ columns: [text("?column?")], rows: [[m[1]!.replaceAll("''", "'")]], command: "SELECT 1" }];
    if (/^select null$/i.test(stmt)) return [{ columns: [text("?column?")], rows: [[null]], command: "SELECT 1" }];
    if ((m = /^rows (\d+)$/.exec(stmt))) {
      const n = Number(m[1]);
      const rows = Array.from({ length: n }, (_, i) => [String(i + 1), (i + 1) % 3 === 0 ? null : `row ${i + 1}`]);
      return [{ columns: [{ name: "n", typeOid: PgType.int4 }, text("label")], rows, command: `SELECT ${n}` }];
    }
    if (stmt === "fail") {
      throw new PgWireError({ code: "22023", message: "the frobnicator is out of range", detail: "It was 11; the limit is 10.", hint: "Try a smaller frobnicator." });
    }
    if (stmt === "crash") throw new Error("kaboom");
    if ((m = /^(sleep|stubborn) (\d+)$/.exec(stmt))) {
      const ms = Number(m[2]);
      if (m[1] === "stubborn") {
        await sleep(ms, undefined, { ref: false }); // must not keep the test process alive
        return [{ command: "SLEPT" }];
      }
      await sleep(ms, undefined, { signal: ctx.signal });
      return [{ command: "SLEPT" }];
    }
    if (stmt === "notice") {
      ctx.notice("first notice");
      ctx.notice({ message: "careful", detail: "a detail", severity: "WARNING", code: "01000" });
      return [{ command: "DO" }];
    }
    if (stmt === "whoami") {
      return [{ columns: [text("user"), text("database"), text("application_name")], rows: [[ctx.user, ctx.database, ctx.applicationName]], command: "SELECT 1" }];
    }
    if (/^set /i.test(stmt)) return [{ command: "SET" }];
    if (stmt === "empty") return [];
    throw new PgWireError({ code: "42601", message: `syntax error at or near "${stmt.split(/\s/)[0]}"` });
  };

  const handler: PgWireHandler = {
    async query(sql, ctx) {
      log.queries.push(sql);
      ctx.signal.addEventListener("abort", () => {
        const r: unknown = ctx.signal.reason;
        log.aborted.push({ sql, reason: r instanceof Error ? r.message : String(r) });
        wakeAbort();
        armAbort();
      });
      const out: QueryResult[] = [];
      for (const stmt of sql.split(";").map((s) => s.trim()).filter((s) => s !== "")) out.push(...(await one(stmt, ctx)));
      return out;
    },
  };
  return { handler, log };
}

export async function startTestServer(t: TestContext, options: Partial<PgWireServerOptions> = {}): Promise<{ server: PgWireServer; log: HandlerLog }> {
  const { handler, log } = testHandler();
  const server = await startPgWireServer({ host: "127.0.0.1", port: 0, users, handler, ...options });
  t.after(() => server.close());
  return { server, log };
}

export async function connect(t: TestContext, server: PgWireServer, config: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port: server.address.port, user: USER, password: PASSWORD, database: "db", ...config });
  client.on("error", () => {}); // a server-side close is what some tests are about
  t.after(() => client.end().catch(() => {}));
  await client.connect();
  return client;
}

/** Rejection of a promise as a PostgreSQL-style error (fails the test if it resolved). */
export async function pgError(p: Promise<unknown>): Promise<{ code?: string; message: string; detail?: string; hint?: string; severity?: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error("expected an error");
}

export const PSQL = process.env.PSQL ?? "psql";

/** Runs psql against the server; resolves with its exit code and output. */
export async function psql(
  server: PgWireServer,
  args: string[],
  opts: { password?: string; user?: string; conn?: string; timeoutMs?: number; onSpawn?: (pid: number) => void } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const conn = `host=127.0.0.1 port=${server.address.port} user=${opts.user ?? USER} dbname=db ${opts.conn ?? ""}`;
  const { code, stdout, stderr } = await runProcess(PSQL, ["-X", "-w", "-v", "ON_ERROR_STOP=1", "-d", conn, ...args], {
    env: { ...process.env, PGPASSWORD: opts.password ?? PASSWORD, PGCONNECT_TIMEOUT: "5", LC_ALL: "C.UTF-8" },
    timeoutMs: opts.timeoutMs ?? 10_000,
    onSpawn: (child) => {
      if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    },
  });
  return { code, stdout, stderr };
}

/** Polls until cond() holds (or fails after timeoutMs). */
export async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A throwaway self-signed certificate (P-256: quick to make) from the openssl CLI. */
export async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), "pgwire-tls-"));
  try {
    await promisify(execFile)("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
    ]);
    return { cert: await readFile(join(dir, "cert.pem"), "utf8"), key: await readFile(join(dir, "key.pem"), "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
