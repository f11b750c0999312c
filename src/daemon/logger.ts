// Structured JSON logs (pino), one line per decision, tagged with the node.
// The consensus core and the transport take a tiny {info, warn, debug} logger;
// this adapts pino to it so every layer writes the same stream. Every line
// names its level ("level":"warn", not pino's 40) and its component: the
// child's ("raft", "transport", "control-loop", ...) or "sidecar" for the root.
import { pino, type Logger, type LevelWithSilent } from "pino";
import type { ClusterState } from "../cluster/state.js";
import type { RaftLogger } from "../consensus/config.js";

// Children copy their parent's level when created; to change the level at run
// time (pgraft_set_debug) every logger of the tree is remembered and changed.
const trees = new WeakMap<Logger, Set<WeakRef<Logger>>>();

export function createLogger(opts: { level: LevelWithSilent; nodeId: number; clusterId: string; destination?: NodeJS.WritableStream }): Logger {
  const members = new Set<WeakRef<Logger>>();
  const root = pino(
    {
      level: opts.level,
      base: { node_id: opts.nodeId, cluster_id: opts.clusterId },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // A line of a logger without a component of its own is the sidecar's.
      mixin: (_obj, _level, logger) => (hasComponent(logger) ? {} : { component: ROOT_COMPONENT }),
      onChild: (child) => {
        members.add(new WeakRef(child));
      },
    },
    opts.destination ?? process.stdout,
  );
  members.add(new WeakRef(root));
  trees.set(root, members);
  return root;
}

export const ROOT_COMPONENT = "sidecar";

const withComponent = new WeakMap<Logger, boolean>();
function hasComponent(logger: Logger): boolean {
  let v = withComponent.get(logger);
  if (v === undefined) {
    v = typeof logger.bindings()["component"] === "string";
    withComponent.set(logger, v);
  }
  return v;
}

/** Set the level of `root` and of every logger derived from it. */
export function setTreeLevel(root: Logger, level: LevelWithSilent): void {
  const members = trees.get(root);
  if (!members) {
    root.level = level;
    return;
  }
  for (const ref of members) {
    const l = ref.deref();
    if (l) l.level = level;
    else members.delete(ref);
  }
}

/**
 * The level a sidecar logs at: debug while the replicated `debug` setting is
 * on, else the replicated `log_level` once it has been set at run time, else
 * the sidecar's own --log-level.
 */
export function effectiveLogLevel(state: ClusterState, flagLevel: LevelWithSilent): LevelWithSilent {
  const s = state.settings();
  if (s.debug) return s.logLevel === "trace" ? "trace" : "debug";
  return state.config().some((r) => r.name === "log_level" && r.overridden) ? s.logLevel : flagLevel;
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
