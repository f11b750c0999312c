// The options every operator command takes — where the sidecar is, which
// cluster, how to authenticate, how long to wait, how to print — defined once
// here and added to each command by addCommonOptions. Precedence as for the
// daemon: flag > PGRAFT_* environment variable > default; TLS is all three
// files or an explicit --plaintext, never a silent fallback.
import { Option, type Command } from "commander";
import { parseDurationMs } from "../../cluster/config-registry.js";
import { formatHostPort, parseHostPort } from "../../config/address.js";
import type { TlsConfig } from "../../transport/tls.js";
import { UsageError } from "./errors.js";

/** The common options as commander parses them (camelCase of the flags). */
export interface CommonFlags {
  endpoint?: string;
  clusterId?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  plaintext?: boolean;
  timeout?: string;
  json?: boolean;
}

/** The common options resolved and checked. */
export interface CommonSettings {
  /** host:port of the sidecar's Cluster service. */
  endpoint: string;
  clusterId: string;
  tls: TlsConfig;
  timeoutMs: number;
  /** The --timeout as given ("5s"), for messages. */
  timeoutText: string;
  json: boolean;
}

interface CommonOptionSpec {
  key: keyof CommonFlags;
  flags: string;
  env?: string;
  help: string;
  default?: string;
}

export const DEFAULT_ENDPOINT = "127.0.0.1:7400";
export const DEFAULT_TIMEOUT = "5s";
export const COMMON_OPTIONS_HEADING = "Connection and output options:";

export const COMMON_OPTIONS: readonly CommonOptionSpec[] = [
  { key: "endpoint", flags: "--endpoint <host:port>", env: "PGRAFT_ENDPOINT", help: "gRPC address of the sidecar to ask", default: DEFAULT_ENDPOINT },
  { key: "clusterId", flags: "--cluster-id <id>", env: "PGRAFT_CLUSTER_ID", help: "the cluster's id, required: a sidecar refuses requests for another cluster" },
  { key: "tlsCa", flags: "--tls-ca <file>", env: "PGRAFT_TLS_CA", help: "CA that signs the sidecars' certificates (mTLS)" },
  { key: "tlsCert", flags: "--tls-cert <file>", env: "PGRAFT_TLS_CERT", help: "client certificate signed by that CA (mTLS)" },
  { key: "tlsKey", flags: "--tls-key <file>", env: "PGRAFT_TLS_KEY", help: "the client certificate's private key (mTLS)" },
  { key: "plaintext", flags: "--plaintext", env: "PGRAFT_PLAINTEXT", help: "talk to the sidecar without TLS, on loopback or test networks only" },
  { key: "timeout", flags: "--timeout <duration>", help: "deadline of each request, e.g. 500ms or 10s", default: DEFAULT_TIMEOUT },
  { key: "json", flags: "--json", help: "print the response as one JSON document with the proto field names" },
];

function helpText(o: CommonOptionSpec): string {
  const notes = [o.default !== undefined ? `default: ${o.default}` : undefined, o.env !== undefined ? `env: ${o.env}` : undefined].filter(Boolean);
  return notes.length ? `${o.help} (${notes.join(", ")})` : o.help;
}

/** Add the common options to `cmd`, listed under their own heading in --help. */
export function addCommonOptions(cmd: Command): Command {
  for (const o of COMMON_OPTIONS) cmd.addOption(new Option(o.flags, helpText(o)).helpGroup(COMMON_OPTIONS_HEADING));
  return cmd;
}

const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const FALSE_WORDS = ["false", "0", "no", "off"];
const MAX_TIMEOUT_MS = 24 * 3_600_000;

/** Resolve flags, environment and defaults; a UsageError lists every problem. */
export function resolveCommonOptions(flags: CommonFlags, env: NodeJS.ProcessEnv): CommonSettings {
  const problems: string[] = [];
  const get = (key: keyof CommonFlags): { value: string | undefined; from: string } => {
    const o = COMMON_OPTIONS.find((x) => x.key === key)!;
    const name = o.flags.split(" ")[0]!;
    const f = flags[key];
    if (f !== undefined && f !== false) return { value: String(f), from: name };
    const e = o.env !== undefined ? env[o.env] : undefined;
    if (e !== undefined && e !== "") return { value: e, from: `$${o.env}` };
    return { value: o.default, from: name };
  };

  const ep = get("endpoint");
  let endpoint = DEFAULT_ENDPOINT;
  const parsed = parseHostPort(ep.value ?? "");
  if (typeof parsed === "string") problems.push(`${ep.from}: ${parsed}`);
  else endpoint = formatHostPort(parsed);

  const cid = get("clusterId");
  if (cid.value === undefined) problems.push("--cluster-id is required (or set $PGRAFT_CLUSTER_ID)");
  else if (!CLUSTER_ID.test(cid.value)) {
    problems.push(`${cid.from}: a cluster id is 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit; got "${cid.value}"`);
  }

  const ca = get("tlsCa").value;
  const cert = get("tlsCert").value;
  const key = get("tlsKey").value;
  const plain = get("plaintext").value;
  const plaintext = plain !== undefined && !FALSE_WORDS.includes(plain.toLowerCase());
  let tls: TlsConfig = { insecure: true };
  const tlsGiven = [ca, cert, key].filter((v) => v !== undefined).length;
  if (tlsGiven > 0 && tlsGiven < 3) problems.push("mTLS needs all three of --tls-ca, --tls-cert and --tls-key");
  else if (tlsGiven === 3 && plaintext) problems.push("--plaintext contradicts --tls-ca/--tls-cert/--tls-key: choose one");
  else if (tlsGiven === 3) tls = { caFile: ca!, certFile: cert!, keyFile: key! };
  else if (!plaintext) problems.push("give --tls-ca, --tls-cert and --tls-key for mTLS, or --plaintext to talk to the sidecar without TLS");

  const to = get("timeout");
  const timeoutText = to.value ?? DEFAULT_TIMEOUT;
  const timeoutMs = parseDurationMs(timeoutText);
  if (timeoutMs === undefined) problems.push(`${to.from}: "${timeoutText}" is not a duration (e.g. 500ms, 5s)`);
  else if (timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) problems.push(`${to.from}: ${timeoutText} is outside 1ms..24h`);

  if (problems.length) throw new UsageError(problems);
  return { endpoint, clusterId: cid.value!, tls, timeoutMs: timeoutMs!, timeoutText, json: flags.json === true };
}
