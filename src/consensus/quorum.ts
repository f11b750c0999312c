// Majority arithmetic over the voters of one configuration.
import type { NodeId } from "./types.js";

export const majority = (voters: number): number => Math.floor(voters / 2) + 1;

/** The largest index that a majority of voters has acknowledged. */
export function committedIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => number): number {
  if (voters.length === 0) return 0;
  const matches = voters.map(matchOf).sort((a, b) => b - a);
  return matches[majority(voters.length) - 1]!;
}

export type VoteResult = "won" | "lost" | "pending";

export function tallyVotes(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const v of voters) {
    const g = votes.get(v);
    if (g === true) granted++;
    else if (g === false) rejected++;
  }
  const q = majority(voters.length);
  if (granted >= q) return "won";
  if (rejected > voters.length - q) return "lost";
  return "pending";
}
