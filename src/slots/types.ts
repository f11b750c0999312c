// The data plane's vocabulary: peers, decoded remote transactions, and a tiny
// logger interface (the daemon adapts pino to it; tests pass nothing).

/** A member of the group as the data plane needs it. */
export interface PeerSpec {
  /** The node name (names the slots and origins). */
  name: string;
  /** The node id: the higher id wins a tie of commit timestamps. */
  id: number;
  /** How this node's sidecar reaches the peer's PostgreSQL (key=value or postgresql:// URI); replication connections use it too. */
  dsn: string;
}

/**
 * One column value as pgoutput sent it: the type's text output (nothing is
 * parsed, so nothing is rounded), `null` for SQL NULL, `undefined` for an
 * unchanged TOASTed value that was not sent (leave the column as it is).
 */
export type Value = string | null | undefined;

/** A table as the upstream described it (a pgoutput Relation message). A new message (ALTER TABLE) is a new object. */
export interface RelationDesc {
  /** The upstream's OID (only meaningful there). */
  oid: number;
  schema: string;
  name: string;
  columns: { name: string; typeOid: number }[];
  replicaIdentity: "default" | "nothing" | "full" | "index";
}

export type Change =
  | { kind: "insert"; rel: RelationDesc; new: Value[] }
  /** `old` is the key (identity default/index, when the key changed) or the whole old row (identity full); null otherwise. */
  | { kind: "update"; rel: RelationDesc; old: Value[] | null; new: Value[] }
  | { kind: "delete"; rel: RelationDesc; old: Value[] }
  | { kind: "truncate"; rels: RelationDesc[]; cascade: boolean; restartIdentity: boolean };

/** A committed transaction from the upstream, to apply in one local transaction. */
export interface RemoteTransaction {
  /** The upstream's xid (for messages). */
  xid: number;
  /** Where its commit record starts on the upstream. */
  commitLsn: bigint;
  /** Where its commit record ends: the position to confirm once it is durable here, and the origin's progress. */
  endLsn: bigint;
  /** Upstream commit time, microseconds since the Unix epoch: becomes the local commit timestamp (last update wins). */
  commitTime: bigint;
  /** The same as a timestamptz literal, when the stream sent it as text (test_decoding): not formatted again. */
  commitTimeText?: string;
  changes: Change[];
}

export interface SlotsLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: SlotsLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * `p`, but given up on after `ms` (a goodbye to a server that no longer
 * answers must not hold a shutdown). The timer does not keep the process alive.
 */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      p.catch(() => undefined),
      new Promise<void>((r) => {
        timer = setTimeout(r, ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
