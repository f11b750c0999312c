// The face of the Raft core the simulator drives. It is the public API of
// src/consensus/raw-node.ts; the simulator only depends on this interface so
// the invariant checker and its self-tests can also run against fakes or a
// deliberately broken wrapper.
import type { ConfChange } from "../../src/consensus/confchange.js";
import type { RaftConfig } from "../../src/consensus/config.js";
import { RawNode } from "../../src/consensus/raw-node.js";
import type { Message, NodeId, RaftStatus, Ready } from "../../src/consensus/types.js";

export interface SimRaft {
  tick(): void;
  campaign(): void;
  propose(data: Uint8Array): { index: number; term: number };
  proposeConfChange(cc: ConfChange): { index: number; term: number };
  step(m: Message): void;
  transferLeader(to: NodeId): void;
  readIndex(context: Uint8Array): void;
  reportUnreachable(id: NodeId): void;
  reportSnapshot(id: NodeId, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(rd: Ready): void;
  status(): RaftStatus;
}

export type RaftFactory = (config: RaftConfig) => SimRaft;

export const rawNodeFactory: RaftFactory = (config) => new RawNode(config);

/** Deliberate bugs in the core (patched into one RawNode), to prove the checker notices them. */
export type CoreBug = "old-term-commit";

/**
 * The real core with one rule broken, for the simulator's own tests:
 * "old-term-commit" lets a leader commit any index a quorum holds, also an
 * entry of an older term (the mistake of the Raft paper's Figure 8).
 */
export function buggyRawNodeFactory(bug: CoreBug): RaftFactory {
  return (config) => {
    const rn = new RawNode(config);
    const log = rn.raft.log;
    switch (bug) {
      case "old-term-commit":
        log.maybeCommit = (maxIndex: number, term: number): boolean => {
          if (maxIndex > log.committed && term > 0) {
            log.commitTo(maxIndex);
            return true;
          }
          return false;
        };
        break;
    }
    return rn;
  };
}
