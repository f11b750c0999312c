// Options of the pure core. Times are in ticks; the driver decides how long a tick is.
import { RaftError } from "./errors.js";
import type { LogStorage } from "./storage.js";
import type { Random } from "./random.js";
import type { NodeId } from "./types.js";

export interface RaftLogger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

export type ReadOnlyOption = "safe" | "lease";

export interface RaftConfig {
  id: NodeId;
  clusterId: string;
  storage: LogStorage;
  /** Random source in [0,1); seed it in tests. */
  random: Random;
  /** Ticks without a leader before campaigning; randomized in [e, 2e). */
  electionTick?: number;
  heartbeatTick?: number;
  /** Index already applied to the state machine (on restart). */
  applied?: number;
  /** Max bytes of entries in one App message. */
  maxSizePerMsg?: number;
  /** Max App messages in flight to one follower in replicate state. */
  maxInflightMsgs?: number;
  /** Max bytes of entries in flight to one follower (0 = no byte bound). */
  maxInflightBytes?: number;
  /** Max bytes of uncommitted entries a leader accepts before dropping proposals (0 = none). */
  maxUncommittedEntriesSize?: number;
  /** Max bytes of committed entries handed out in one Ready. */
  maxCommittedSizePerReady?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** "lease" reads depend on bounded clock drift; see docs/ARCHITECTURE.md. */
  readOnlyOption?: ReadOnlyOption;
  logger?: RaftLogger;
}

export type ResolvedConfig = Required<Omit<RaftConfig, "logger">> & { logger: RaftLogger };

const silent: RaftLogger = { info: () => {}, warn: () => {}, debug: () => {} };

export function resolveConfig(c: RaftConfig): ResolvedConfig {
  const r: ResolvedConfig = {
    electionTick: 10,
    heartbeatTick: 1,
    applied: 0,
    maxSizePerMsg: 1024 * 1024,
    maxInflightMsgs: 256,
    maxInflightBytes: 32 * 1024 * 1024,
    maxUncommittedEntriesSize: 64 * 1024 * 1024,
    maxCommittedSizePerReady: 8 * 1024 * 1024,
    preVote: true,
    checkQuorum: true,
    readOnlyOption: "safe",
    ...stripUndefined(c),
    logger: c.logger ?? silent,
  } as ResolvedConfig;
  if (!Number.isInteger(r.id) || r.id <= 0) throw new RaftError("INVALID_ARGUMENT", `node id must be a positive integer, got ${r.id}`);
  if (typeof r.clusterId !== "string" || r.clusterId.length === 0) throw new RaftError("INVALID_ARGUMENT", "cluster id must be a non-empty string");
  if (!Number.isInteger(r.heartbeatTick) || r.heartbeatTick <= 0) throw new RaftError("INVALID_ARGUMENT", "heartbeatTick must be a positive integer");
  if (!Number.isInteger(r.electionTick) || r.electionTick <= r.heartbeatTick) {
    throw new RaftError("INVALID_ARGUMENT", `electionTick (${r.electionTick}) must be an integer greater than heartbeatTick (${r.heartbeatTick})`);
  }
  if (r.maxInflightMsgs <= 0) throw new RaftError("INVALID_ARGUMENT", "maxInflightMsgs must be positive");
  if (r.readOnlyOption === "lease" && !r.checkQuorum) throw new RaftError("INVALID_ARGUMENT", "lease reads require checkQuorum");
  return r;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
