// Fault injection for tests only: drop or delay the Raft traffic this sidecar
// sends to chosen peers. It exists only in a process started with
// PGRAFT_TEST_FAULTS=1; anywhere else every way in (creating an injector, the
// Faults gRPC service) fails with FAULTS_DISABLED_MESSAGE.
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import type { NodeId } from "../consensus/types.js";
import { Faults, PeerFaultSchema, type PeerFault } from "../gen/pgraft/v1/testing_pb.js";
import { addService, statusError } from "./grpc-service.js";

export const FAULTS_ENV = "PGRAFT_TEST_FAULTS";
export const FAULTS_DISABLED_MESSAGE = "fault injection is disabled; start the sidecar with PGRAFT_TEST_FAULTS=1 (tests only)";

export class FaultsDisabledError extends Error {
  constructor() {
    super(FAULTS_DISABLED_MESSAGE);
    this.name = "FaultsDisabledError";
  }
}

/** True when this process was started with PGRAFT_TEST_FAULTS=1. */
export function faultsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[FAULTS_ENV] === "1";
}

/** Faults on the traffic to one peer. */
export interface PeerFaults {
  /** Probability 0..1 of dropping each message, or "all" (a one-way partition). */
  drop: number | "all";
  /** Added delay for each message, in milliseconds. */
  delayMs: number;
}

/** What to do with one outgoing message. */
export interface FaultDecision {
  drop: boolean;
  delayMs: number;
}

const PASS: FaultDecision = { drop: false, delayMs: 0 };

export class FaultInjector {
  private readonly faults = new Map<NodeId, PeerFaults>();

  private constructor(private readonly random: () => number) {}

  /** Throws FaultsDisabledError unless the process was started with PGRAFT_TEST_FAULTS=1. */
  static create(opts: { random?: () => number; env?: NodeJS.ProcessEnv } = {}): FaultInjector {
    if (!faultsEnabled(opts.env)) throw new FaultsDisabledError();
    return new FaultInjector(opts.random ?? Math.random);
  }

  /** Set (replace) the faults on traffic to `peer`. */
  set(peer: NodeId, f: Partial<PeerFaults>): void {
    const drop = f.drop ?? 0;
    if (drop !== "all" && !(drop >= 0 && drop <= 1)) throw new RangeError(`drop probability must be in 0..1 or "all", got ${String(drop)}`);
    const delayMs = f.delayMs ?? 0;
    if (!(Number.isFinite(delayMs) && delayMs >= 0)) throw new RangeError(`delay must be a non-negative number of milliseconds, got ${delayMs}`);
    if (drop === 0 && delayMs === 0) this.faults.delete(peer);
    else this.faults.set(peer, { drop, delayMs });
  }

  /** Clear the faults of `peer`, or of every peer. */
  clear(peer?: NodeId): void {
    if (peer === undefined) this.faults.clear();
    else this.faults.delete(peer);
  }

  /** The faults in force, by peer. */
  list(): Map<NodeId, PeerFaults> {
    return new Map([...this.faults].map(([id, f]) => [id, { ...f }]));
  }

  /** Decide the fate of one message to `peer`. */
  decide(peer: NodeId): FaultDecision {
    const f = this.faults.get(peer);
    if (!f) return PASS;
    const drop = f.drop === "all" || (f.drop > 0 && this.random() < f.drop);
    return { drop, delayMs: f.delayMs };
  }
}

function toWire(list: Map<NodeId, PeerFaults>): PeerFault[] {
  return [...list].map(([nodeId, f]) =>
    create(PeerFaultSchema, { nodeId, dropAll: f.drop === "all", dropProbability: f.drop === "all" ? 1 : f.drop, delayMs: f.delayMs }),
  );
}

/**
 * Register the Faults service. With an injector in a process started with
 * PGRAFT_TEST_FAULTS=1 it sets and clears faults; otherwise it is a stub whose
 * every call fails with FAILED_PRECONDITION and FAULTS_DISABLED_MESSAGE, so a
 * test that forgot the variable learns why instead of getting UNIMPLEMENTED.
 */
export function registerFaultsService(server: grpc.Server, opts: { clusterId: string; injector?: FaultInjector }): void {
  const { injector, clusterId } = opts;
  const check = (requestCluster: string): { error: grpc.ServerErrorResponse } | { injector: FaultInjector } => {
    if (!injector || !faultsEnabled()) return { error: statusError(grpc.status.FAILED_PRECONDITION, FAULTS_DISABLED_MESSAGE) };
    if (requestCluster !== clusterId) {
      return { error: statusError(grpc.status.FAILED_PRECONDITION, `cluster id mismatch: expected ${clusterId}, got ${requestCluster}`) };
    }
    return { injector };
  };
  addService(server, Faults, {
    setFaults: (call, callback) => {
      const c = check(call.request.clusterId);
      if ("error" in c) return callback(c.error);
      try {
        for (const f of call.request.faults) c.injector.set(f.nodeId, { drop: f.dropAll ? "all" : f.dropProbability, delayMs: f.delayMs });
      } catch (e) {
        return callback(statusError(grpc.status.INVALID_ARGUMENT, e instanceof Error ? e.message : String(e)));
      }
      callback(null, create(Faults.method.setFaults.output, { faults: toWire(c.injector.list()) }));
    },
    clearFaults: (call, callback) => {
      const c = check(call.request.clusterId);
      if ("error" in c) return callback(c.error);
      if (call.request.nodeIds.length === 0) c.injector.clear();
      for (const id of call.request.nodeIds) c.injector.clear(id);
      callback(null, create(Faults.method.clearFaults.output, { faults: toWire(c.injector.list()) }));
    },
  });
}
