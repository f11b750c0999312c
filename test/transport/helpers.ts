// Shared pieces of the transport tests: real gRPC servers on 127.0.0.1, polling
// waits, message builders, and a recorder of what a transport reports.
import * as grpc from "@grpc/grpc-js";
import { GrpcPeerTransport, PEER_SERVER_OPTIONS, type GrpcPeerTransportOptions } from "../../src/transport/peer-transport.js";
import { EntryType, MessageType, type Message, type NodeId } from "../../src/consensus/types.js";

export const insecureServer = (): grpc.ServerCredentials => grpc.ServerCredentials.createInsecure();
export const insecureClient = (): grpc.ChannelCredentials => grpc.credentials.createInsecure();

export interface Running {
  server: grpc.Server;
  port: number;
  address: string;
}

/** Start a server on 127.0.0.1 (`port` 0 = a free one) after `register` added its services. */
export function startServer(register: (s: grpc.Server) => void, creds: grpc.ServerCredentials = insecureServer(), port = 0): Promise<Running> {
  const server = new grpc.Server(PEER_SERVER_OPTIONS);
  register(server);
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, creds, (err, bound) => {
      if (err) {
        server.forceShutdown();
        reject(err);
      } else resolve({ server, port: bound, address: `127.0.0.1:${bound}` });
    });
  });
}

/** Start on a port that was just in use (a restart): retry briefly while the OS frees it. */
export async function restartServer(register: (s: grpc.Server) => void, port: number, creds?: grpc.ServerCredentials): Promise<Running> {
  for (let i = 0; ; i++) {
    try {
      return await startServer(register, creds, port);
    } catch (e) {
      if (i >= 50) throw e;
      await sleep(20);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(what: string, f: () => T | undefined | false | null, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

export function msg(p: Partial<Message> & { type: MessageType; from: NodeId; to: NodeId }, clusterId = "c1"): Message {
  return { clusterId, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...p };
}

export const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

/** Everything a transport reported, for assertions. */
export class Recorder {
  received: Message[] = [];
  unreachable: NodeId[] = [];
  snapshots: [NodeId, boolean][] = [];
}

/** A transport whose callbacks go to `rec`. */
export function transport(
  rec: Recorder,
  o: Omit<GrpcPeerTransportOptions, "onReceive" | "onUnreachable" | "onSnapshotStatus" | "credentials"> & { credentials?: grpc.ChannelCredentials },
): GrpcPeerTransport {
  return new GrpcPeerTransport({
    credentials: insecureClient(),
    onReceive: (m) => rec.received.push(m),
    onUnreachable: (id) => rec.unreachable.push(id),
    onSnapshotStatus: (id, ok) => rec.snapshots.push([id, ok]),
    ...o,
  });
}

export { EntryType, MessageType };

/** Shut a server down now (ends its calls). */
export function stop(r: Running | undefined): void {
  r?.server.forceShutdown();
}
