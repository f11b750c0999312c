// A sidecar in a Kubernetes StatefulSet learns who it is from its pod, so one
// manifest serves every pod:
//   - the pod name (`<statefulset>-<ordinal>`, from --pod-name, $POD_NAME or the
//     hostname, which a StatefulSet sets to the pod name) gives the ordinal, and
//     node id = ordinal + 1;
//   - --peer-template turns an ordinal into the Raft address of that pod, e.g.
//     `{name}-{i}.{service}.{namespace}.svc:7400` (the headless Service's DNS
//     names); `{i+N}` adds N to the ordinal, so tests on one host can give each
//     "pod" its own port (`127.0.0.1:{i+17400}`);
//   - pods 0..initial-replicas-1 found the cluster (--initial-cluster of those
//     addresses); a pod beyond them (a scale-up) joins through them (--join).
// A pod whose data dir already holds Raft state just restarts on it (the
// sidecar ignores bootstrap and join then). Pure: no I/O, so it is unit tested.
import { formatHostPort, parseHostPort, type HostPort } from "./address.js";

/** The most founding pods (a Raft group of more voters than this is no sensible design). */
export const MAX_INITIAL_REPLICAS = 15;
/** The highest ordinal accepted (node ids stay small and readable). */
export const MAX_ORDINAL = 9_999;

export interface PodIdentityInput {
  podName: { value: string; from: string };
  template: { value: string; from: string };
  initialReplicas: { value: string | undefined; from: string };
  service?: { value: string | undefined; from: string };
  namespace?: { value: string | undefined; from: string };
}

export interface PodIdentity {
  podName: string;
  /** The StatefulSet's name: the pod name without its ordinal. */
  setName: string;
  ordinal: number;
  nodeId: number;
  /** This pod's Raft address as its peers dial it. */
  self: HostPort;
  /** Founding members: node id → address (ordinals 0..initialReplicas-1). */
  founders: Map<number, HostPort>;
  /** This pod is one of the founders (bootstraps), else it joins through them. */
  founder: boolean;
  initialReplicas: number;
}

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Derive this pod's identity, or the list of problems (each naming the option and where its value came from). */
export function derivePodIdentity(input: PodIdentityInput): PodIdentity | string[] {
  const problems: string[] = [];
  const { podName, template, initialReplicas } = input;

  const m = /^(.+)-(\d+)$/.exec(podName.value.trim());
  let setName = "";
  let ordinal = -1;
  if (!m) {
    problems.push(`${podName.from}: pod name "${podName.value}" does not end in -<ordinal> (a StatefulSet names its pods <name>-0, <name>-1, ...)`);
  } else if (m[2]!.length > 1 && m[2]!.startsWith("0")) {
    problems.push(`${podName.from}: pod name "${podName.value}" has an ordinal with a leading zero`);
  } else if (Number(m[2]) > MAX_ORDINAL) {
    problems.push(`${podName.from}: pod ordinal ${m[2]} is above ${MAX_ORDINAL}`);
  } else {
    setName = m[1]!;
    ordinal = Number(m[2]);
  }

  let replicas = 0;
  const ir = initialReplicas;
  if (ir.value === undefined || !/^\d+$/.test(ir.value.trim())) {
    problems.push(`${ir.from}: initial replicas must be an integer in 1..${MAX_INITIAL_REPLICAS}, got "${ir.value ?? ""}"`);
  } else if (Number(ir.value) < 1 || Number(ir.value) > MAX_INITIAL_REPLICAS) {
    problems.push(`${ir.from}: initial replicas ${Number(ir.value)} is outside 1..${MAX_INITIAL_REPLICAS}`);
  } else replicas = Number(ir.value);

  // The template: known placeholders only, {i} (or {i+N}) at least once.
  const t = template.value.trim();
  const vars: Record<string, string | undefined> = { name: setName || "x", service: input.service?.value, namespace: input.namespace?.value };
  let hasOrdinal = false;
  for (const [, inner] of t.matchAll(PLACEHOLDER)) {
    const p = inner!.trim();
    if (p === "i" || /^i\s*\+\s*\d+$/.test(p)) hasOrdinal = true;
    else if (p === "service" || p === "namespace") {
      const src = p === "service" ? input.service : input.namespace;
      if (!src?.value) problems.push(`${template.from}: the template uses {${p}}, but no ${p} is given (${src?.from ?? `--${p}`})`);
    } else if (p !== "name") problems.push(`${template.from}: unknown placeholder {${p}} (known: {name}, {i}, {i+N}, {service}, {namespace})`);
  }
  if (!hasOrdinal) problems.push(`${template.from}: the template "${t}" has no {i}: every pod would get the same address`);
  if (/[{}]/.test(t.replace(PLACEHOLDER, ""))) problems.push(`${template.from}: unbalanced braces in "${t}"`);
  if (problems.length) return problems;

  const expand = (i: number): HostPort | string => {
    const s = t.replace(PLACEHOLDER, (_, inner: string) => {
      const p = inner.trim();
      if (p === "i") return String(i);
      const plus = /^i\s*\+\s*(\d+)$/.exec(p);
      if (plus) return String(i + Number(plus[1]));
      return vars[p] ?? "";
    });
    const a = parseHostPort(s);
    return typeof a === "string" ? `${template.from}: pod ${i}'s address ${a}` : a;
  };

  const founders = new Map<number, HostPort>();
  for (let i = 0; i < replicas; i++) {
    const a = expand(i);
    if (typeof a === "string") problems.push(a);
    else founders.set(i + 1, a);
  }
  const self = expand(ordinal);
  if (typeof self === "string") problems.push(self);
  if (problems.length) return problems;
  return {
    podName: podName.value.trim(),
    setName,
    ordinal,
    nodeId: ordinal + 1,
    self: self as HostPort,
    founders,
    founder: ordinal < replicas,
    initialReplicas: replicas,
  };
}

/** One line for the start-up log: who this pod is and what it does on a fresh data dir. */
export function describePodIdentity(p: PodIdentity): string {
  const list = [...p.founders].map(([id, a]) => `${id}=${formatHostPort(a)}`).join(",");
  return p.founder
    ? `pod ${p.podName}: node ${p.nodeId} at ${formatHostPort(p.self)}, a founder of ${list}`
    : `pod ${p.podName}: node ${p.nodeId} at ${formatHostPort(p.self)}, joins through ${[...p.founders.values()].map(formatHostPort).join(",")}`;
}
