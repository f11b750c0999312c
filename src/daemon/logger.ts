// Structured JSON logs (pino), one line per decision, tagged with the node.
// The consensus core and the transport take a tiny {info, warn, debug} logger;
// this adapts pino to it so every layer writes the same stream.
import { pino, type Logger, type LevelWithSilent } from "pino";
import type { RaftLogger } from "../consensus/config.js";

export function createLogger(opts: { level: LevelWithSilent; nodeId: number; clusterId: string; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    { level: opts.level, base: { node_id: opts.nodeId, cluster_id: opts.clusterId }, timestamp: pino.stdTimeFunctions.isoTime },
    opts.destination ?? process.stdout,
  );
}

/** The core's logger: its messages become `msg` with a `component` field. */
export function raftLogger(log: Logger, component: string): RaftLogger {
  const child = log.child({ component });
  return {
    info: (m) => child.info(m),
    warn: (m) => child.warn(m),
    debug: (m) => child.debug(m),
  };
}
