// Every pgraft_* SQL function in one table: its arguments, what it returns,
// who may call it and what it does. The shim's CREATE FUNCTION statements
// (src/shim/install-sql.ts) and the sidecar's answers on its PostgreSQL-wire
// endpoint (src/sqlapi/endpoint.ts) are both generated from here, so the
// column lists a dblink call declares always match the rows the sidecar sends.
// Names, arguments and columns follow the seed's SQL reference.

/** The SQL types the functions use, with the OIDs the wire endpoint reports. */
export const SQL_TYPES = {
  integer: 23,
  bigint: 20,
  boolean: 16,
  text: 25,
  jsonb: 3802,
  "double precision": 701,
  "text[]": 1009,
} as const;
export type SqlType = keyof typeof SQL_TYPES;

export interface SqlArg {
  name: string;
  type: SqlType;
  /** SQL default (an expression), making the argument optional. */
  default?: string;
}

export interface SqlColumn {
  name: string;
  type: SqlType;
}

/** `monitor`: read-only, granted to pgraft_monitor; `admin`: changes the cluster, granted to pgraft_admin. */
export type Privilege = "monitor" | "admin";

export interface SqlFunction {
  /** The endpoint's name for the call (unique). */
  name: string;
  /** Where the SQL function lives: `public` (the seed 000 pgraft_* calls) or `pgraft` (seed 004). Default public. */
  schema?: "public" | "pgraft";
  /** The name in that schema when it differs from `name` (e.g. pgraft.create_node for pgraft_create_node). */
  sqlName?: string;
  /** Also create bdr.<sqlName> calling it (scripts written for the seed's bdr.* names). */
  bdrAlias?: boolean;
  args: readonly SqlArg[];
  /** A scalar type, or the columns of a set-returning function. */
  returns: SqlType | readonly SqlColumn[];
  privilege: Privilege;
  /** COMMENT ON FUNCTION text (shown by \df+). */
  comment: string;
  /**
   * A scalar function whose answer may carry a warning: the endpoint sends a
   * second column, `warning` (text, NULL for none), and the shim raises it as a
   * WARNING in the caller's session (dblink does not pass on the endpoint's notices).
   */
  warns?: boolean;
}

const node = { name: "node_id", type: "integer" } as const;

export const FUNCTIONS: readonly SqlFunction[] = [
  // ---------------------------------------------------------------- bootstrap and membership
  { name: "pgraft_init", args: [], returns: "boolean", privilege: "admin", comment: "Checks that this node's sidecar runs and belongs to an initialized cluster with a leader, and that the shim's catalog is in place; returns true." },
  {
    name: "pgraft_add_node",
    args: [node, { name: "address", type: "text" }, { name: "port", type: "integer" }],
    returns: "boolean",
    privilege: "admin",
    comment: "Adds node_id (its sidecar's Raft address:port) as a learner; it is promoted to voter once caught up. Warns when the address does not resolve.",
    warns: true,
  },
  { name: "pgraft_remove_node", args: [node], returns: "boolean", privilege: "admin", comment: "Removes node_id from the membership (the leader hands over first when it is the one removed)." },
  {
    name: "pgraft_get_nodes",
    args: [],
    returns: [
      node,
      { name: "state", type: "text" },
      { name: "match_index", type: "bigint" },
      { name: "commit_index", type: "bigint" },
      { name: "address", type: "text" },
      { name: "port", type: "integer" },
      { name: "last_heartbeat_ms", type: "bigint" },
      { name: "replication_lag_bytes", type: "bigint" },
      { name: "node_name", type: "text" },
      { name: "role", type: "text" },
      { name: "is_leader", type: "boolean" },
      { name: "reachable", type: "boolean" },
      { name: "lag_entries", type: "bigint" },
      { name: "postgres_address", type: "text" },
    ],
    privilege: "monitor",
    comment: "Every member as the leader sees it (with no leader, as this node sees it: state unknown, progress NULL): state (leader/follower/learner/unreachable), replication progress, its sidecar's Raft address and last contact, and its PostgreSQL's address (host:port; NULL for a sidecar without PostgreSQL).",
  },
  { name: "pgraft_quorum_met", args: [], returns: "boolean", privilege: "monitor", comment: "True when a leader with an active quorum exists, as this node sees it." },
  // ---------------------------------------------------------------- leadership
  { name: "pgraft_get_leader", args: [], returns: "integer", privilege: "monitor", comment: "The current leader's node id as this node knows it (NULL when there is none)." },
  { name: "pgraft_is_leader", args: [], returns: "boolean", privilege: "monitor", comment: "True when this node is the leader." },
  { name: "pgraft_transfer_leadership", args: [node], returns: "boolean", privilege: "admin", comment: "Hands leadership to node_id and returns once it leads." },
  {
    name: "pgraft_is_write_leader",
    args: [],
    returns: "boolean",
    privilege: "monitor",
    comment: "True when this database is its data group's write leader (the node the read-write proxy sends writes to); false otherwise, or outside a group. pgraft_is_leader() is the Raft leader.",
  },
  // ---------------------------------------------------------------- monitoring
  {
    name: "pgraft_get_cluster_status",
    args: [],
    returns: [
      node,
      { name: "leader_id", type: "integer" },
      { name: "current_term", type: "bigint" },
      { name: "state", type: "text" },
      { name: "num_nodes", type: "integer" },
      { name: "messages_processed", type: "bigint" },
      { name: "elections_triggered", type: "bigint" },
      { name: "commit_index", type: "bigint" },
      { name: "applied_index", type: "bigint" },
      { name: "quorum_met", type: "boolean" },
      { name: "version", type: "text" },
    ],
    privilege: "monitor",
    comment: "This node's Raft state: term, role, leader, member count and counters.",
  },
  {
    name: "pgraft_log_get_replication_status",
    args: [],
    returns: [node, { name: "match_index", type: "bigint" }, { name: "commit_index", type: "bigint" }, { name: "lag_entries", type: "bigint" }, { name: "state", type: "text" }],
    privilege: "monitor",
    comment: "Replication of the Raft log to each member, from the leader: state is leader, replicating, probing, snapshot or stalled.",
  },
  {
    name: "pgraft_log_get_stats",
    args: [],
    returns: [
      { name: "first_index", type: "bigint" },
      { name: "last_index", type: "bigint" },
      { name: "total_entries", type: "bigint" },
      { name: "disk_usage_mb", type: "double precision" },
      { name: "commit_index", type: "bigint" },
      { name: "applied_index", type: "bigint" },
    ],
    privilege: "monitor",
    comment: "This node's Raft log: index range, entries kept and the size of its WAL and snapshots on disk.",
  },
  // ---------------------------------------------------------------- configuration
  {
    name: "pgraft_set_config",
    args: [{ name: "name", type: "text" }, { name: "value", type: "text" }],
    returns: "boolean",
    privilege: "admin",
    comment: "Sets a runtime setting on every node through Raft ('75ms', '1s', 'false'). Warns when the election timeout ends up under 5 x the heartbeat interval (under 2 x is refused).",
    warns: true,
  },
  { name: "pgraft_reset_config", args: [{ name: "name", type: "text" }], returns: "boolean", privilege: "admin", comment: "Puts a runtime setting back to its default on every node through Raft (the override is removed)." },
  { name: "pgraft_save_config", args: [], returns: "boolean", privilege: "admin", comment: "Persists the current overrides: replicated as saved, and written to pgraft.saved_config on every node." },
  {
    name: "pgraft_get_config",
    args: [],
    returns: [
      { name: "name", type: "text" },
      { name: "value", type: "text" },
      { name: "default_value", type: "text" },
      { name: "overridden", type: "boolean" },
      { name: "saved", type: "boolean" },
      { name: "description", type: "text" },
    ],
    privilege: "monitor",
    comment: "Every runtime setting with its value, default and whether it is overridden and saved.",
  },
  // ---------------------------------------------------------------- KV
  { name: "pgraft_kv_put", args: [{ name: "key", type: "text" }, { name: "value", type: "jsonb" }], returns: "bigint", privilege: "admin", comment: "Stores a JSON value under key through Raft; returns the new revision." },
  { name: "pgraft_kv_get", args: [{ name: "key", type: "text" }], returns: "jsonb", privilege: "monitor", comment: "The value under key (linearizable read), NULL when absent." },
  { name: "pgraft_kv_delete", args: [{ name: "key", type: "text" }], returns: "boolean", privilege: "admin", comment: "Deletes key through Raft; true when it existed." },
  // ---------------------------------------------------------------- troubleshooting
  { name: "pgraft_log_sync_with_leader", args: [], returns: "boolean", privilege: "admin", comment: "Waits until this node has applied everything the leader had committed when called (catching up by snapshot if needed)." },
  { name: "pgraft_set_debug", args: [{ name: "enabled", type: "boolean" }], returns: "text", privilege: "admin", comment: "Turns debug logging on (true) or off (false) on every node: sets the replicated debug setting through Raft." },
  {
    name: "pgraft_health_check",
    args: [],
    returns: [
      { name: "check_name", type: "text" },
      { name: "severity", type: "text" },
      { name: "detail", type: "text" },
    ],
    privilege: "monitor",
    comment: "Checks quorum, leader presence, follower lag, elections per term, log disk usage, the local PostgreSQL connection, every member's PostgreSQL (down: critical; its sidecar not answering: warning) and, on a node in a group, its data plane (a lost replication slot: critical; its PostgreSQL out of reach: warning); severity is ok, warning or critical.",
  },
];

/** A view over a set-returning function (seed 004's node_summary and friends), in schema pgraft and bdr. */
export interface SqlView {
  name: string;
  /** The catalogue function that yields its rows. */
  fn: string;
  comment: string;
}


// ---------------------------------------------------------------- node groups (seed 004), schema pgraft + bdr

const NODE_SUMMARY_COLUMNS: readonly SqlColumn[] = [
  { name: "node_name", type: "text" },
  { name: "node_group_name", type: "text" },
  { name: "interface_connstr", type: "text" },
  { name: "peer_state_name", type: "text" },
  { name: "peer_target_state_name", type: "text" },
  { name: "node_seq_id", type: "integer" },
  { name: "node_local_dbname", type: "text" },
  { name: "node_id", type: "bigint" },
  { name: "node_group_id", type: "bigint" },
  { name: "node_kind_name", type: "text" },
];

export const NODE_FUNCTIONS: readonly SqlFunction[] = [
  {
    name: "create_node",
    schema: "pgraft",
    bdrAlias: true,
    args: [{ name: "node_name", type: "text" }, { name: "local_dsn", type: "text" }, { name: "node_kind", type: "text", default: "'data'" }],
    returns: "bigint",
    privilege: "admin",
    comment: "Registers this database as a data node named node_name; local_dsn is how the other nodes reach it (key=value or URI). Returns the node id.",
  },
  {
    name: "create_node_group",
    schema: "pgraft",
    bdrAlias: true,
    args: [
      { name: "node_group_name", type: "text" },
      { name: "parent_group_name", type: "text", default: "NULL" },
      { name: "join_node_group", type: "boolean", default: "true" },
      { name: "node_group_type", type: "text", default: "NULL" },
    ],
    returns: "bigint",
    privilege: "admin",
    comment: "Creates a node group; with join_node_group the local node becomes its first active member. Returns the group id.",
  },
  {
    name: "alter_node_interface",
    schema: "pgraft",
    bdrAlias: true,
    args: [{ name: "node_name", type: "text" }, { name: "interface_dsn", type: "text" }],
    returns: "boolean",
    privilege: "admin",
    comment: "Changes how the other nodes reach node_name.",
  },
  {
    name: "drop_node",
    schema: "pgraft",
    bdrAlias: true,
    args: [{ name: "node_name", type: "text" }, { name: "cascade", type: "boolean", default: "false" }, { name: "force", type: "boolean", default: "false" }],
    returns: "boolean",
    privilege: "admin",
    comment: "Removes the metadata of a parted (or never joined) node; force drops it in any state (emergencies only).",
  },
  {
    name: "join_node_group",
    schema: "pgraft",
    bdrAlias: true,
    args: [
      { name: "join_target_dsn", type: "text" },
      { name: "node_group_name", type: "text", default: "NULL" },
      { name: "pause_in_standby", type: "boolean", default: "NULL" },
      { name: "wait_for_completion", type: "boolean", default: "true" },
      { name: "synchronize_structure", type: "text", default: "'all'" },
    ],
    returns: "text",
    privilege: "admin",
    comment: "Joins this (empty) database to the group of the node at join_target_dsn: schema and data copied from it under one snapshot, then streaming from every member.",
  },
  { name: "wait_for_join_completion", schema: "pgraft", bdrAlias: true, args: [{ name: "verbose_progress", type: "boolean", default: "false" }], returns: "text", privilege: "admin", comment: "Waits until this node's join has finished (ACTIVE)." },
  {
    name: "part_node",
    schema: "pgraft",
    bdrAlias: true,
    args: [{ name: "node_name", type: "text" }, { name: "wait_for_completion", type: "boolean", default: "true" }, { name: "force", type: "boolean", default: "false" }],
    returns: "text",
    privilege: "admin",
    comment: "Removes node_name from its group: the others catch up with its changes (from the node that has the most of them when it is down), then its slots and origins are dropped everywhere. Needs a majority: of the cluster to start, of the nodes that stay to finish (a wait that lacks it for 15 s ends with the reason; the part goes on once they are back).",
  },
  { name: "local_group_slot_name", schema: "pgraft", bdrAlias: true, args: [], returns: "text", privilege: "monitor", comment: "The name of this node's group slot (NULL outside a group)." },
  {
    name: "node_slots_rows",
    schema: "pgraft",
    args: [],
    returns: [
      { name: "origin_name", type: "text" },
      { name: "target_name", type: "text" },
      { name: "slot_name", type: "text" },
      { name: "is_group_slot", type: "boolean" },
      { name: "active", type: "boolean" },
      { name: "state", type: "text" },
      { name: "restart_lsn", type: "text" },
      { name: "confirmed_flush_lsn", type: "text" },
      { name: "lag_bytes", type: "bigint" },
    ],
    privilege: "monitor",
    comment: "The replication slots of this node (the group slot and one per peer) with their state: catchup, streaming or disconnected.",
  },
  {
    name: "node_catchup_info_rows",
    schema: "pgraft",
    args: [],
    returns: [
      { name: "node_name", type: "text" },
      { name: "origin_name", type: "text" },
      { name: "state", type: "text" },
      { name: "received_lsn", type: "text" },
      { name: "applied_lsn", type: "text" },
      { name: "upstream_lsn", type: "text" },
      { name: "lag_bytes", type: "bigint" },
    ],
    privilege: "monitor",
    comment: "How far this node has applied each peer's changes (the rows of pgraft.node_catchup_info).",
  },
  {
    name: "routing_leadership_transfer",
    schema: "pgraft",
    bdrAlias: true,
    args: [
      { name: "node_group_name", type: "text" },
      { name: "leader_name", type: "text" },
      { name: "transfer_method", type: "text", default: "'strict'" },
      { name: "transfer_timeout", type: "text", default: "'10s'" },
    ],
    returns: "text",
    privilege: "admin",
    comment:
      "Switchover: makes leader_name the group's write leader. strict (default) waits until it has every write of the old leader (clients of the proxies wait meanwhile; the old leader's client sessions are ended), within transfer_timeout; fast moves at once.",
  },
  {
    name: "alter_node_group_option",
    schema: "pgraft",
    bdrAlias: true,
    args: [
      { name: "node_group_name", type: "text" },
      { name: "config_key", type: "text" },
      { name: "config_value", type: "text" },
    ],
    returns: "boolean",
    privilege: "admin",
    comment: "Sets a group option. default_commit_scope: local (a COMMIT returns once durable on its node) or majority (once durable on a majority of the group's ACTIVE data nodes).",
  },
  {
    name: "node_group_routing_summary_rows",
    schema: "pgraft",
    args: [],
    returns: [
      { name: "node_group_name", type: "text" },
      { name: "write_lead", type: "text" },
      { name: "previous_write_lead", type: "text" },
      { name: "read_nodes", type: "text[]" },
      { name: "commit_scope", type: "text" },
      { name: "switchover_target", type: "text" },
      { name: "changed_at", type: "text" },
      { name: "change_reason", type: "text" },
    ],
    privilege: "monitor",
    comment: "Each data group's routing: write leader, the one before, read nodes (least lag first), commit scope, a switchover in progress (the rows of pgraft.node_group_routing_summary).",
  },
  { name: "drop_node_group", schema: "pgraft", bdrAlias: true, args: [{ name: "node_group_name", type: "text" }], returns: "boolean", privilege: "admin", comment: "Removes an empty node group." },
  { name: "node_summary_rows", schema: "pgraft", args: [], returns: NODE_SUMMARY_COLUMNS, privilege: "monitor", comment: "Every data node of the cluster (the rows of pgraft.node_summary)." },
  { name: "local_node_summary_rows", schema: "pgraft", args: [], returns: NODE_SUMMARY_COLUMNS, privilege: "monitor", comment: "This database's node (the rows of pgraft.local_node_summary)." },
  {
    name: "group_raft_details_rows",
    schema: "pgraft",
    args: [],
    returns: [
      { name: "node_id", type: "integer" },
      { name: "node_name", type: "text" },
      { name: "node_group_name", type: "text" },
      { name: "state", type: "text" },
      { name: "leader_id", type: "integer" },
      { name: "current_term", type: "bigint" },
      { name: "commit_index", type: "bigint" },
      { name: "nodes", type: "integer" },
      { name: "voting_nodes", type: "integer" },
    ],
    privilege: "monitor",
    comment: "The Raft member beside each data node: its role, the leader, term and commit index (the rows of pgraft.group_raft_details).",
  },
];

export const VIEWS: readonly SqlView[] = [
  { name: "node_summary", fn: "node_summary_rows", comment: "Every data node: group, interface, join/part state, ids and kind." },
  { name: "local_node_summary", fn: "local_node_summary_rows", comment: "This database's node, as in node_summary." },
  { name: "group_raft_details", fn: "group_raft_details_rows", comment: "The Raft side of each data node." },
  { name: "node_slots", fn: "node_slots_rows", comment: "This node's replication slots: the group slot and one per peer, with catchup/streaming/disconnected state." },
  { name: "node_catchup_info", fn: "node_catchup_info_rows", comment: "How far this node has applied each peer's changes." },
  { name: "node_group_routing_summary", fn: "node_group_routing_summary_rows", comment: "Each data group's write leader, previous write leader, read nodes, commit scope and switchover in progress." },
];

/** Every function the endpoint answers (seed 000's pgraft_* and seed 004's node management). */
export const ALL_FUNCTIONS: readonly SqlFunction[] = [...FUNCTIONS, ...NODE_FUNCTIONS];

export const FUNCTION_BY_NAME: ReadonlyMap<string, SqlFunction> = new Map(ALL_FUNCTIONS.map((f) => [f.name, f]));

export const isSetReturning = (f: SqlFunction): f is SqlFunction & { returns: readonly SqlColumn[] } => typeof f.returns !== "string";

/** The columns of `f`'s SQL function (a scalar function has one, named after it, as PostgreSQL names it). */
export function resultColumns(f: SqlFunction): readonly SqlColumn[] {
  return isSetReturning(f) ? f.returns : [{ name: f.name, type: f.returns as SqlType }];
}

/** The columns the wire endpoint sends for `f`: its result, then `warning` for a function that warns. */
export function wireColumns(f: SqlFunction): readonly SqlColumn[] {
  return f.warns && !isSetReturning(f) ? [...resultColumns(f), { name: "warning", type: "text" }] : resultColumns(f);
}
