// The sidecar's own configuration: what it needs before it can talk to anyone.
// (Runtime settings replicated through Raft live in src/cluster/config-registry.)
// Precedence: command-line flag > PGRAFT_* environment variable > YAML file > default.
import { parseDurationMs } from "../cluster/config-registry.js";
import { dsnAddress, parseKeyValueDsn } from "../postgres/dsn.js";
import { ConfigError } from "./errors.js";
import { formatHostPort, parseHostPort, type HostPort } from "./address.js";
import { hostname } from "node:os";
import { derivePodIdentity, MAX_INITIAL_REPLICAS, type PodIdentity } from "./pod-identity.js";

export type TlsConfig = { mode: "mtls"; ca: string; cert: string; key: string } | { mode: "plaintext" };

export interface SidecarConfig {
  nodeId: number;
  nodeName: string;
  clusterId: string;
  dataDir: string;
  listen: HostPort;
  advertise: HostPort;
  httpListen: HostPort;
  /** The local PostgreSQL the sidecar drives (used by the SQL shim and data plane). */
  postgresDsn: string | undefined;
  /** The local PostgreSQL's address as others reach it (pgraft_get_nodes); undefined without --postgres-dsn. */
  postgresAdvertise: string | undefined;
  /** The PostgreSQL-wire endpoint the shim calls (undefined: not served). */
  sqlListen: HostPort | undefined;
  /** The client proxy's read-write port, to the group's write leader (undefined: off). */
  proxyListen: HostPort | undefined;
  /** The client proxy's read-only port, to a healthy read node (undefined: off). */
  proxyReadOnlyListen: HostPort | undefined;
  /** Founding members (bootstrap): node id → Raft address. */
  initialCluster: Map<number, HostPort> | undefined;
  /** Members to ask for admission (join). */
  join: HostPort[] | undefined;
  tls: TlsConfig;
  heartbeatMs: number;
  electionMs: number;
  logLevel: "trace" | "debug" | "info" | "warn" | "error";
  /** Set in pod mode (--peer-template): who this pod is; nodeId, initialCluster/join and advertise come from it. */
  pod?: PodIdentity;
  /** Pod mode: the node group this pod's PostgreSQL joins by itself. */
  nodeGroup?: string;
}

type Raw = string | number | boolean | undefined;

interface OptionSpec {
  key: keyof RawConfig;
  flag: string;
  env: string;
  yaml: string;
  help: string;
  default?: string;
}

/** Every option in one table: flags, env vars, YAML keys and --help come from here. */
export const SIDECAR_OPTIONS: readonly OptionSpec[] = [
  { key: "config", flag: "--config <file>", env: "PGRAFT_CONFIG", yaml: "", help: "YAML file with any of these options (keys as in the YAML column)" },
  { key: "nodeId", flag: "--node-id <id>", env: "PGRAFT_NODE_ID", yaml: "node_id", help: "this node's id, 1..4294967295, unique in the cluster" },
  { key: "nodeName", flag: "--node-name <name>", env: "PGRAFT_NODE_NAME", yaml: "node_name", help: "human-readable name (default: node<id>)" },
  { key: "clusterId", flag: "--cluster-id <id>", env: "PGRAFT_CLUSTER_ID", yaml: "cluster_id", help: "cluster identity; peers with another id are refused" },
  { key: "dataDir", flag: "--data-dir <dir>", env: "PGRAFT_DATA_DIR", yaml: "data_dir", help: "where the Raft log and snapshots live" },
  { key: "listen", flag: "--listen <host:port>", env: "PGRAFT_LISTEN", yaml: "listen", help: "gRPC listen address", default: "127.0.0.1:7400" },
  { key: "advertise", flag: "--advertise <host:port>", env: "PGRAFT_ADVERTISE", yaml: "advertise", help: "gRPC address peers use to reach this node (default: --listen)" },
  { key: "httpListen", flag: "--http-listen <host:port>", env: "PGRAFT_HTTP_LISTEN", yaml: "http_listen", help: "HTTP address for /metrics, /health, /live, /ready, /primary, /leader and /replica", default: "127.0.0.1:8008" },
  { key: "postgresDsn", flag: "--postgres-dsn <dsn>", env: "PGRAFT_POSTGRES_DSN", yaml: "postgres_dsn", help: "DSN of the local PostgreSQL, a superuser (URI or key=value); the SQL shim is installed there, and it is probed every heartbeat (/ready, /primary, /replica answer 503 while it is down). Keep a password off the command line (ps shows it): give the DSN in $PGRAFT_POSTGRES_DSN or the config file, or leave the password out for the sidecar to find as libpq does (PGPASSWORD, passfile= in the DSN, PGPASSFILE, ~/.pgpass)" },
  { key: "postgresAdvertise", flag: "--postgres-advertise <host:port>", env: "PGRAFT_POSTGRES_ADVERTISE", yaml: "postgres_advertise", help: "the address clients and other nodes use to reach the local PostgreSQL, shown in pgraft_get_nodes() (default: the host and port of --postgres-dsn)" },
  { key: "sqlListen", flag: "--sql-listen <host:port>", env: "PGRAFT_SQL_LISTEN", yaml: "sql_listen", help: "PostgreSQL-wire endpoint the shim calls through dblink (default 127.0.0.1:7432 when --postgres-dsn is set; off otherwise)" },
  {
    key: "proxyListen",
    flag: "--proxy-listen <host:port|off>",
    env: "PGRAFT_PROXY_LISTEN",
    yaml: "proxy_listen",
    help: "read-write proxy: forwards each PostgreSQL client to the write leader of this node's group (default 127.0.0.1:6432 when --postgres-dsn is set; off otherwise, or with off)",
  },
  {
    key: "proxyReadOnlyListen",
    flag: "--proxy-read-only-listen <host:port|off>",
    env: "PGRAFT_PROXY_READ_ONLY_LISTEN",
    yaml: "proxy_read_only_listen",
    help: "read-only proxy: forwards each client to the healthy read node with the least lag, else the write leader (default 127.0.0.1:6433 when --postgres-dsn is set; off otherwise, or with off)",
  },
  { key: "initialCluster", flag: "--initial-cluster <list>", env: "PGRAFT_INITIAL_CLUSTER", yaml: "initial_cluster", help: "bootstrap a new cluster: 1=host:port,2=host:port,..." },
  { key: "join", flag: "--join <list>", env: "PGRAFT_JOIN", yaml: "join", help: "join an existing cluster through any of these members: host:port,..." },
  { key: "peerTemplate", flag: "--peer-template <template>", env: "PGRAFT_PEER_TEMPLATE", yaml: "peer_template", help: "pod mode (a StatefulSet): every pod's Raft address from its ordinal, e.g. '{name}-{i}.{service}.{namespace}.svc:7400' ({name}: the pod name without its ordinal; {i+N}: the ordinal plus N). The node id is the ordinal + 1, pods 0..--initial-replicas-1 found the cluster, later pods join through them, and --listen defaults to 0.0.0.0 on this pod's port; replaces --node-id, --initial-cluster, --join and --advertise" },
  { key: "podName", flag: "--pod-name <name>", env: "PGRAFT_POD_NAME", yaml: "pod_name", help: "this pod's name, <statefulset>-<ordinal>, with --peer-template (default: $POD_NAME, else the hostname)" },
  { key: "initialReplicas", flag: "--initial-replicas <n>", env: "PGRAFT_INITIAL_REPLICAS", yaml: "initial_replicas", help: `with --peer-template: how many pods (ordinals 0..n-1) found the cluster, 1..${MAX_INITIAL_REPLICAS}; keep it unchanged when scaling`, default: "3" },
  { key: "service", flag: "--service <name>", env: "PGRAFT_SERVICE", yaml: "service", help: "the headless Service, for {service} in --peer-template" },
  { key: "namespace", flag: "--namespace <name>", env: "PGRAFT_NAMESPACE", yaml: "namespace", help: "the pod's namespace, for {namespace} in --peer-template (default: $POD_NAMESPACE)" },
  { key: "nodeGroup", flag: "--node-group <name>", env: "PGRAFT_NODE_GROUP", yaml: "node_group", help: "with --peer-template and --postgres-dsn: make this pod's PostgreSQL a data node of this node group, named after the pod (pod 0 creates the group, the other pods join it, scaled-up pods too)" },
  { key: "tlsCa", flag: "--tls-ca <file>", env: "PGRAFT_TLS_CA", yaml: "tls_ca", help: "CA that signs every peer's certificate (mTLS)" },
  { key: "tlsCert", flag: "--tls-cert <file>", env: "PGRAFT_TLS_CERT", yaml: "tls_cert", help: "this node's certificate (mTLS); it must name the node: URI SAN pgraft://<cluster-id>/node/<id>, or CN node-<id>" },
  { key: "tlsKey", flag: "--tls-key <file>", env: "PGRAFT_TLS_KEY", yaml: "tls_key", help: "this node's private key (mTLS)" },
  { key: "plaintext", flag: "--plaintext", env: "PGRAFT_PLAINTEXT", yaml: "plaintext", help: "talk to peers without TLS (loopback or test networks only)" },
  { key: "heartbeat", flag: "--heartbeat-interval <duration>", env: "PGRAFT_HEARTBEAT_INTERVAL", yaml: "heartbeat_interval", help: "Raft heartbeat (e.g. 100ms)", default: "100ms" },
  { key: "election", flag: "--election-timeout <duration>", env: "PGRAFT_ELECTION_TIMEOUT", yaml: "election_timeout", help: "Raft election timeout (e.g. 1000ms, 1s)", default: "1000ms" },
  { key: "logLevel", flag: "--log-level <level>", env: "PGRAFT_LOG_LEVEL", yaml: "log_level", help: "trace|debug|info|warn|error", default: "info" },
];

export interface RawConfig {
  config?: Raw;
  nodeId?: Raw;
  nodeName?: Raw;
  clusterId?: Raw;
  dataDir?: Raw;
  listen?: Raw;
  advertise?: Raw;
  httpListen?: Raw;
  postgresDsn?: Raw;
  postgresAdvertise?: Raw;
  sqlListen?: Raw;
  proxyListen?: Raw;
  proxyReadOnlyListen?: Raw;
  initialCluster?: Raw;
  join?: Raw;
  peerTemplate?: Raw;
  podName?: Raw;
  initialReplicas?: Raw;
  service?: Raw;
  namespace?: Raw;
  nodeGroup?: Raw;
  tlsCa?: Raw;
  tlsCert?: Raw;
  tlsKey?: Raw;
  plaintext?: Raw;
  heartbeat?: Raw;
  election?: Raw;
  logLevel?: Raw;
}

/** A YAML scalar as text; anything structured is shown as JSON so the error names it. */
const scalar = (v: unknown): string =>
  typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? String(v) : JSON.stringify(v);

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;

/**
 * Merge the sources and validate everything. `yamlValues` are the keys of the
 * YAML file already parsed (see loadYamlConfig). Throws ConfigError listing every problem.
 */
export function resolveSidecarConfig(flags: RawConfig, env: NodeJS.ProcessEnv, yamlValues: Record<string, unknown> = {}): SidecarConfig {
  const problems: string[] = [];
  const yamlKeys = new Set(SIDECAR_OPTIONS.map((o) => o.yaml).filter(Boolean));
  for (const k of Object.keys(yamlValues)) {
    if (!yamlKeys.has(k)) problems.push(`unknown key "${k}" in the config file (known: ${[...yamlKeys].join(", ")})`);
  }
  const get = (key: keyof RawConfig): { value: string | undefined; from: string } => {
    const o = SIDECAR_OPTIONS.find((x) => x.key === key)!;
    const name = o.flag.split(" ")[0]!;
    const f = flags[key];
    if (f !== undefined && f !== false) return { value: String(f), from: name };
    const e = env[o.env];
    if (e !== undefined && e !== "") return { value: e, from: `$${o.env}` };
    const y = o.yaml ? yamlValues[o.yaml] : undefined;
    if (y !== undefined && y !== null) {
      const from = `${o.yaml} (config file)`;
      if (Array.isArray(y)) return { value: y.map(scalar).join(","), from };
      if (typeof y === "object") return { value: Object.entries(y).map(([k, v]) => `${k}=${scalar(v)}`).join(","), from };
      return { value: scalar(y), from };
    }
    return { value: o.default, from: `${name} (default)` };
  };

  // Pod mode: the identity, the peers and bootstrap-or-join come from the pod (pod-identity.ts).
  let pod: PodIdentity | undefined;
  const tpl = get("peerTemplate");
  if (tpl.value !== undefined) {
    for (const k of ["nodeId", "initialCluster", "join", "advertise"] as const) {
      const r = get(k);
      if (r.value !== undefined) problems.push(`${r.from}: not with --peer-template (pod mode derives it from the pod name and the template)`);
    }
    const pn = get("podName");
    const podName = pn.value !== undefined ? { value: pn.value, from: pn.from } : env.POD_NAME ? { value: env.POD_NAME, from: "$POD_NAME" } : { value: hostname(), from: "the hostname (no --pod-name or $POD_NAME)" };
    const ns = get("namespace");
    const namespace = ns.value === undefined && env.POD_NAMESPACE ? { value: env.POD_NAMESPACE, from: "$POD_NAMESPACE" } : ns;
    const r = derivePodIdentity({ podName, template: { value: tpl.value, from: tpl.from }, initialReplicas: get("initialReplicas"), service: get("service"), namespace });
    if (Array.isArray(r)) problems.push(...r);
    else pod = r;
  } else {
    for (const k of ["podName", "service", "namespace"] as const) {
      const r = get(k);
      if (r.value !== undefined) problems.push(`${r.from}: only means something with --peer-template (pod mode)`);
    }
  }

  const idRaw = get("nodeId");
  let nodeId = 0;
  if (tpl.value !== undefined) nodeId = pod?.nodeId ?? 0;
  else if (idRaw.value === undefined) problems.push("--node-id is required (or $PGRAFT_NODE_ID)");
  else if (!/^\d+$/.test(idRaw.value.trim()) || Number(idRaw.value) < 1 || Number(idRaw.value) > 0xffffffff) {
    problems.push(`${idRaw.from}: node id must be an integer in 1..4294967295, got "${idRaw.value}"`);
  } else nodeId = Number(idRaw.value);

  const cid = get("clusterId");
  if (cid.value === undefined) problems.push("--cluster-id is required (or $PGRAFT_CLUSTER_ID)");
  else if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(cid.value)) {
    problems.push(`${cid.from}: cluster id must be 1-63 characters of letters, digits, ".", "_" or "-", starting with a letter or digit; got "${cid.value}"`);
  }

  const dd = get("dataDir");
  if (dd.value === undefined || dd.value.trim() === "") problems.push("--data-dir is required (or $PGRAFT_DATA_DIR)");

  const addr = (key: keyof RawConfig): HostPort | undefined => {
    const r = get(key);
    if (r.value === undefined) return undefined;
    const p = parseHostPort(r.value);
    if (typeof p === "string") {
      problems.push(`${r.from}: ${p}`);
      return undefined;
    }
    return p;
  };
  const listenFrom = get("listen").from;
  // In a pod, listen on every interface at this pod's port from the template, unless told otherwise.
  const listen = pod && listenFrom.endsWith("(default)") ? { host: "0.0.0.0", port: pod.self.port } : addr("listen");
  const advertise = pod ? pod.self : (addr("advertise") ?? listen);
  const httpListen = addr("httpListen");
  const sqlListenRaw = addr("sqlListen");
  // host:port, or off; the default (on with a local PostgreSQL) is decided below.
  const proxyAddr = (key: "proxyListen" | "proxyReadOnlyListen"): HostPort | "off" | undefined => {
    const r = get(key);
    if (r.value !== undefined && r.value.trim().toLowerCase() === "off") return "off";
    return addr(key);
  };
  const proxyRaw = proxyAddr("proxyListen");
  const proxyRoRaw = proxyAddr("proxyReadOnlyListen");
  if (advertise && ["0.0.0.0", "[::]"].includes(advertise.host)) {
    problems.push(`--advertise: "${formatHostPort(advertise)}" is a wildcard; peers need an address they can dial (set --advertise)`);
  }

  let initialCluster: Map<number, HostPort> | undefined = pod?.founder ? pod.founders : undefined;
  const ic = get("initialCluster");
  if (ic.value !== undefined && !pod) {
    initialCluster = new Map();
    const seen = new Set<string>();
    for (const part of ic.value.split(",").map((s) => s.trim()).filter(Boolean)) {
      const m = /^(\d+)=(.+)$/.exec(part);
      if (!m) {
        problems.push(`${ic.from}: "${part}" is not id=host:port`);
        continue;
      }
      const id = Number(m[1]);
      const a = parseHostPort(m[2]!);
      if (id < 1 || id > 0xffffffff) problems.push(`${ic.from}: node id ${m[1]} is outside 1..4294967295`);
      else if (typeof a === "string") problems.push(`${ic.from}: node ${id}: ${a}`);
      else if (initialCluster.has(id)) problems.push(`${ic.from}: node id ${id} appears twice`);
      else if (seen.has(formatHostPort(a))) problems.push(`${ic.from}: address ${formatHostPort(a)} appears twice`);
      else {
        initialCluster.set(id, a);
        seen.add(formatHostPort(a));
      }
    }
    if (nodeId && initialCluster.size && !initialCluster.has(nodeId)) {
      problems.push(`${ic.from}: this node (id ${nodeId}) is not in the initial cluster`);
    }
    const self = nodeId ? initialCluster.get(nodeId) : undefined;
    if (self && advertise && formatHostPort(self) !== formatHostPort(advertise)) {
      problems.push(`${ic.from}: node ${nodeId} is listed at ${formatHostPort(self)} but advertises ${formatHostPort(advertise)}`);
    }
  }

  let join: HostPort[] | undefined = pod && !pod.founder ? [...pod.founders.values()] : undefined;
  const j = get("join");
  if (j.value !== undefined && !pod) {
    join = [];
    for (const part of j.value.split(",").map((s) => s.trim()).filter(Boolean)) {
      const a = parseHostPort(part);
      if (typeof a === "string") problems.push(`${j.from}: ${a}`);
      else join.push(a);
    }
    if (join.length === 0) problems.push(`${j.from}: give at least one host:port to join through`);
  }
  if (initialCluster && join && !pod) problems.push("--initial-cluster (bootstrap) and --join cannot be used together");

  const ca = get("tlsCa").value;
  const cert = get("tlsCert").value;
  const key = get("tlsKey").value;
  const plain = get("plaintext").value;
  const plaintext = plain !== undefined && !["false", "0", "no", "off"].includes(plain.toLowerCase());
  let tls: TlsConfig = { mode: "plaintext" };
  const tlsGiven = [ca, cert, key].filter((v) => v !== undefined).length;
  if (tlsGiven > 0 && tlsGiven < 3) problems.push("mTLS needs all three of --tls-ca, --tls-cert and --tls-key");
  else if (tlsGiven === 3 && plaintext) problems.push("--plaintext contradicts --tls-ca/--tls-cert/--tls-key: choose one");
  else if (tlsGiven === 3) tls = { mode: "mtls", ca: ca!, cert: cert!, key: key! };
  else if (!plaintext) problems.push("give --tls-ca, --tls-cert and --tls-key for mTLS between sidecars, or --plaintext to run without TLS");

  const dur = (key: keyof RawConfig, min: number, max: number): number => {
    const r = get(key);
    const ms = r.value === undefined ? undefined : parseDurationMs(r.value);
    if (ms === undefined) {
      problems.push(`${r.from}: "${r.value}" is not a duration (e.g. 100ms, 1s)`);
      return 0;
    }
    if (ms < min || ms > max) problems.push(`${r.from}: ${ms}ms is outside ${min}ms..${max}ms`);
    return ms;
  };
  const heartbeatMs = dur("heartbeat", 10, 10_000);
  const electionMs = dur("election", 50, 60_000);
  if (heartbeatMs && electionMs && electionMs < 2 * heartbeatMs) {
    problems.push(`election timeout (${electionMs}ms) must be at least twice the heartbeat interval (${heartbeatMs}ms)`);
  }

  const ll = get("logLevel");
  const logLevel = (ll.value ?? "info") as SidecarConfig["logLevel"];
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`${ll.from}: log level must be one of ${LOG_LEVELS.join(", ")}, got "${ll.value}"`);

  const dsn = get("postgresDsn").value;
  if (dsn !== undefined) {
    const why = dsnProblem(dsn);
    if (why) problems.push(`${get("postgresDsn").from}: ${why}`);
  }
  let postgresAdvertise: string | undefined;
  const pa = get("postgresAdvertise");
  if (pa.value !== undefined) {
    const a = parseHostPort(pa.value.trim());
    if (typeof a === "string") problems.push(`${pa.from}: ${a}`);
    else if (dsn === undefined) problems.push(`${pa.from}: needs --postgres-dsn (it is the address of the local PostgreSQL)`);
    else postgresAdvertise = formatHostPort(a);
  } else if (dsn !== undefined && !dsnProblem(dsn)) {
    postgresAdvertise = dsnAddress(dsn);
  }
  const sqlListen = sqlListenRaw ?? (dsn !== undefined ? { host: "127.0.0.1", port: 7432 } : undefined);
  const proxyDefault = (raw: HostPort | "off" | undefined, port: number): HostPort | undefined =>
    raw === "off" ? undefined : (raw ?? (dsn !== undefined ? { host: "127.0.0.1", port } : undefined));
  const proxyListen = proxyDefault(proxyRaw, 6432);
  const proxyReadOnlyListen = proxyDefault(proxyRoRaw, 6433);
  if (proxyListen && proxyReadOnlyListen && formatHostPort(proxyListen) === formatHostPort(proxyReadOnlyListen)) {
    problems.push(`--proxy-listen and --proxy-read-only-listen are both ${formatHostPort(proxyListen)}; give them different ports`);
  }

  const ng = get("nodeGroup");
  if (ng.value !== undefined) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(ng.value)) problems.push(`${ng.from}: a node group name is 1-63 lower-case letters, digits or "_", not starting with a digit; got "${ng.value}"`);
    if (tpl.value === undefined) problems.push(`${ng.from}: only with --peer-template (pod mode)`);
    if (dsn === undefined) problems.push(`${ng.from}: needs --postgres-dsn (the PostgreSQL that becomes a data node)`);
  }

  if (problems.length) throw new ConfigError(problems);
  return {
    nodeId,
    nodeName: get("nodeName").value ?? pod?.podName ?? `node${nodeId}`,
    clusterId: cid.value!,
    dataDir: dd.value!,
    listen: listen!,
    advertise: advertise!,
    httpListen: httpListen!,
    postgresDsn: dsn,
    postgresAdvertise,
    sqlListen,
    proxyListen,
    proxyReadOnlyListen,
    initialCluster,
    join,
    tls,
    heartbeatMs,
    electionMs,
    logLevel,
    ...(pod ? { pod } : {}),
    ...(ng.value !== undefined ? { nodeGroup: ng.value } : {}),
  };
}

/**
 * Why `dsn` is not a libpq connection string (URI or key=value form), or
 * undefined when it is one. The password never appears in the answer.
 */
export function dsnProblem(dsn: string): string | undefined {
  const s = dsn.trim();
  if (s === "") return "the PostgreSQL DSN is empty";
  if (/^postgres(ql)?:\/\//i.test(s)) {
    try {
      const u = new URL(s);
      if (u.port && (!/^\d+$/.test(u.port) || Number(u.port) > 65_535)) return `the PostgreSQL URI has an invalid port "${u.port}"`;
      return undefined;
    } catch {
      return "the PostgreSQL URI does not parse (expected postgresql://user@host:port/dbname?param=value)";
    }
  }
  if (/^[a-z]+:\/\//i.test(s)) return `the PostgreSQL DSN must start with postgresql:// or postgres://, or be key=value pairs`;
  const pairs = parseKeyValueDsn(s);
  if (!pairs) return "the PostgreSQL DSN is not key=value pairs (key=value separated by spaces, values with spaces in single quotes) or a postgresql:// URI";
  const port = pairs.get("port");
  // libpq takes a port, or one per host (comma-separated), each 1-65535.
  if (port !== undefined && port !== "" && !port.split(",").every((p) => /^\d+$/.test(p) && Number(p) >= 1 && Number(p) <= 65_535)) return `the PostgreSQL DSN has an invalid port "${port}" (1-65535)`;
  return undefined;
}
