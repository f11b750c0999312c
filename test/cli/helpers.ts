// Shared pieces of the CLI tests: a fake Cluster gRPC server on 127.0.0.1
// that records every request and answers with scripted responses or errors
// (with the pgraft-error-code / pgraft-leader-id trailers), and a runner of
// the operator commands as a real child process.
import { createServer } from "node:net";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { create, type DescMethod, type Message } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Cluster } from "../../src/gen/pgraft/v1/client_pb.js";
import { addService, statusError, type HandlersOf } from "../../src/transport/grpc-service.js";
import { runProcess } from "../support/run.js";

/** An error the fake answers with: a gRPC status plus the sidecar's trailers. */
export interface FakeError {
  code: grpc.status;
  details: string;
  pgraftCode?: string;
  leaderId?: number;
}

/** A scripted answer: a response (fields as for create()), an error, or a function of the request. */
export type Reply =
  | { response: Record<string, unknown>; delayMs?: number }
  | { error: FakeError; delayMs?: number }
  | ((request: Record<string, unknown>) => Reply);

export interface Recorded {
  method: string;
  clusterId: string;
  request: Record<string, unknown>;
}

/**
 * The fake sidecar. Replies are scripted per cluster id and method (local
 * name, "kvPut"), so concurrent tests using different cluster ids do not
 * interfere; unscripted calls get an empty response.
 */
export class FakeCluster {
  readonly requests: Recorded[] = [];
  private readonly replies = new Map<string, Reply>();
  private readonly server = new grpc.Server();
  address = "";

  reply(clusterId: string, method: string, r: Reply): void {
    if (!Cluster.methods.some((m) => m.localName === method)) throw new Error(`no method ${method} in Cluster`);
    this.replies.set(`${clusterId}/${method}`, r);
  }

  requestsFor(clusterId: string, method?: string): Recorded[] {
    return this.requests.filter((r) => r.clusterId === clusterId && (method === undefined || r.method === method));
  }

  async start(): Promise<void> {
    const handlers: Record<string, grpc.handleUnaryCall<Message, Message>> = {};
    for (const m of Cluster.methods) handlers[m.localName] = (call, callback) => this.answer(m, call, callback);
    addService(this.server, Cluster, handlers as unknown as HandlersOf<typeof Cluster>);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  stop(): void {
    this.server.forceShutdown();
  }

  private answer(m: DescMethod, call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>): void {
    const request = call.request as unknown as Record<string, unknown>;
    const clusterId = typeof request["clusterId"] === "string" ? request["clusterId"] : "";
    this.requests.push({ method: m.localName, clusterId, request });
    let r: Reply = this.replies.get(`${clusterId}/${m.localName}`) ?? { response: {} };
    while (typeof r === "function") r = r(request);
    const reply = r;
    const send = (): void => {
      if ("error" in reply) {
        const md = new grpc.Metadata();
        if (reply.error.pgraftCode !== undefined) md.set("pgraft-error-code", reply.error.pgraftCode);
        if (reply.error.leaderId !== undefined) md.set("pgraft-leader-id", String(reply.error.leaderId));
        callback(statusError(reply.error.code, reply.error.details, md));
      } else {
        callback(null, create(m.output, reply.response as never));
      }
    };
    if (reply.delayMs) setTimeout(send, reply.delayMs);
    else send();
  }
}

export async function startFakeCluster(): Promise<FakeCluster> {
  const f = new FakeCluster();
  await f.start();
  return f;
}

/** A port nothing listens on: bound once, then closed. */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const addr = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return addr.port;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const ENTRY = fileURLToPath(new URL("../../src/cli/operator/test-entry.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

// Each child spends ~0.5 s of CPU starting tsx: more of them at once than
// there are cores only makes every one of them slower.
const MAX_CHILDREN = Math.max(2, availableParallelism());
let running = 0;
const waiting: (() => void)[] = [];

async function withChildSlot<T>(f: () => Promise<T>): Promise<T> {
  if (running >= MAX_CHILDREN) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/**
 * Run `pgraft <args>` (the operator commands only) in a child process. The
 * environment has no PGRAFT_* variables but those in `env`. A process still
 * running after `killAfterMs` (a client left open) is killed and reported.
 */
export function runCli(args: readonly string[], env: Record<string, string> = {}, killAfterMs = 10_000): Promise<CliResult> {
  return withChildSlot(() => runChild(args, env, killAfterMs));
}

async function runChild(args: readonly string[], env: Record<string, string>, killAfterMs: number): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PGRAFT_") && k !== "NODE_TEST_CONTEXT") childEnv[k] = v;
  Object.assign(childEnv, env);
  const { code, stdout, stderr } = await runProcess(process.execPath, ["--import", "tsx", ENTRY, ...args], { cwd: ROOT, env: childEnv, timeoutMs: killAfterMs });
  return { code, stdout, stderr };
}

/** The arguments every call against the fake needs. */
export const target = (fake: FakeCluster, clusterId: string): string[] => ["--endpoint", fake.address, "--cluster-id", clusterId, "--plaintext"];
