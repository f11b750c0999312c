// Membership changes, one server at a time (see docs/ARCHITECTURE.md,
// "Membership changes"). A ConfChange travels in the log as an entry of type
// ConfChange and takes effect on each node when that node applies it.
import { RaftError } from "./errors.js";
import type { ConfState, NodeId } from "./types.js";

export type ConfChangeType = "addVoter" | "addLearner" | "removeNode";

export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque bytes for the application (e.g. the new member's address). */
  context?: Uint8Array;
}

const TYPES: readonly ConfChangeType[] = ["addVoter", "addLearner", "removeNode"];

export function encodeConfChange(cc: ConfChange): Uint8Array {
  // Validate before encoding: setUint32 would silently wrap -1 or 2.5 into another id.
  if (!TYPES.includes(cc.type)) {
    throw new RaftError("INVALID_ARGUMENT", `unknown conf change type ${JSON.stringify(cc.type)}; expected one of ${TYPES.join(", ")}`);
  }
  validateNodeId(cc.nodeId);
  const ctx = cc.context ?? new Uint8Array();
  const out = new Uint8Array(1 + 4 + ctx.byteLength);
  const view = new DataView(out.buffer);
  out[0] = TYPES.indexOf(cc.type);
  view.setUint32(1, cc.nodeId);
  out.set(ctx, 5);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < 5) throw new RaftError("CORRUPT", `conf change entry too short (${data.byteLength} bytes)`);
  const type = TYPES[data[0]!];
  if (!type) throw new RaftError("CORRUPT", `unknown conf change type ${data[0]}`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const nodeId = view.getUint32(1);
  const context = data.subarray(5);
  return context.byteLength ? { type, nodeId, context: context.slice() } : { type, nodeId };
}

export function validateNodeId(id: unknown): asserts id is NodeId {
  if (typeof id !== "number" || !Number.isInteger(id) || id <= 0 || id > 0xffffffff) {
    throw new RaftError("INVALID_ARGUMENT", `node id must be an integer in 1..4294967295, got ${String(id)}`);
  }
}

/**
 * The membership after applying `cc` to `cs`. Throws INVALID_ARGUMENT for a
 * change that would be a no-op or would leave no voter.
 */
export function applyToConfState(cs: ConfState, cc: ConfChange): ConfState {
  validateNodeId(cc.nodeId);
  const voters = cs.voters.filter((v) => v !== cc.nodeId);
  const learners = cs.learners.filter((l) => l !== cc.nodeId);
  switch (cc.type) {
    case "addVoter":
      if (cs.voters.includes(cc.nodeId)) throw new RaftError("INVALID_ARGUMENT", `node ${cc.nodeId} is already a voter`);
      voters.push(cc.nodeId);
      break;
    case "addLearner":
      if (cs.learners.includes(cc.nodeId)) throw new RaftError("INVALID_ARGUMENT", `node ${cc.nodeId} is already a learner`);
      learners.push(cc.nodeId);
      break;
    case "removeNode":
      if (!cs.voters.includes(cc.nodeId) && !cs.learners.includes(cc.nodeId)) {
        throw new RaftError("INVALID_ARGUMENT", `node ${cc.nodeId} is not a member`);
      }
      break;
  }
  if (voters.length === 0) throw new RaftError("INVALID_ARGUMENT", "the change would leave the cluster with no voter");
  voters.sort((a, b) => a - b);
  learners.sort((a, b) => a - b);
  return { voters, learners };
}
