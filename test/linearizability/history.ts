// Client histories of the replicated KV store, as a linearizability checker
// sees them.
//
// An operation is one client request: its kind and key, its input, its output
// and the interval [call, ret] during which it was in flight, measured by the
// client on one clock shared by all clients (performance.now() by default).
//
// Outcomes:
//  - ok:      the client got an answer; `ret` and (for get / cas) `output` are set.
//  - unknown: a timeout or a crashed client; `ret` and `output` are undefined.
//             The operation may have taken effect at any moment after its call,
//             or never, and its output is unknown.
//  - failed:  a definite failure (the request was rejected and did not take
//             effect). The recorder drops such operations from the history.
import { readFile, writeFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";

export type OpKind = "put" | "get" | "delete" | "cas";
export type ClientId = string | number;

export interface PutInput {
  value: string;
}
export interface CasInput {
  /** The value the key must hold for the swap to happen; null = "absent". */
  expected: string | null;
  value: string;
}
export interface GetOutput {
  /** null = the key was absent. */
  value: string | null;
}
export interface CasOutput {
  ok: boolean;
}

export interface InputOf {
  put: PutInput;
  get: undefined;
  delete: undefined;
  cas: CasInput;
}
export interface OutputOf {
  put: undefined;
  get: GetOutput;
  delete: undefined;
  cas: CasOutput;
}

interface OpBase {
  /** Unique within a history; the recorder numbers operations from 0. */
  id?: number;
  clientId: ClientId;
  key: string;
  call: number;
  /** undefined = outcome unknown (the operation may or may not have taken effect). */
  ret?: number;
}
export interface PutOp extends OpBase {
  kind: "put";
  input: PutInput;
  output?: undefined;
}
export interface GetOp extends OpBase {
  kind: "get";
  input?: undefined;
  /** Present exactly when `ret` is. */
  output?: GetOutput;
}
export interface DeleteOp extends OpBase {
  kind: "delete";
  input?: undefined;
  output?: undefined;
}
export interface CasOp extends OpBase {
  kind: "cas";
  input: CasInput;
  /** Present exactly when `ret` is. */
  output?: CasOutput;
}
export type Operation = PutOp | GetOp | DeleteOp | CasOp;

/** Arguments after `key` of HistoryRecorder.invoke for an operation kind. */
export type InputArgs<K extends OpKind> = InputOf[K] extends undefined ? [input?: undefined] : [input: InputOf[K]];
/** Arguments after the id of HistoryRecorder.ok for an operation kind. */
export type OutputArgs<K extends OpKind> = OutputOf[K] extends undefined ? [output?: undefined] : [output: OutputOf[K]];

/** An operation id handed out by HistoryRecorder.invoke; the phantom kind types `ok`'s output. */
export type OpId<K extends OpKind = OpKind> = number & { readonly __opKind?: K };

export const HISTORY_FORMAT = "pgraft-kv-history";
export const HISTORY_VERSION = 1;

export interface HistoryFile {
  format: typeof HISTORY_FORMAT;
  version: typeof HISTORY_VERSION;
  operations: Operation[];
}

const KINDS: ReadonlySet<string> = new Set<OpKind>(["put", "get", "delete", "cas"]);

function isStringOrNull(v: unknown): v is string | null {
  return v === null || typeof v === "string";
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks that `raw` is a well-formed operation and returns it normalised (a
 * fresh object; `ret: null` read from JSON becomes undefined). Throws a
 * TypeError naming the problem otherwise.
 */
export function validateOperation(raw: unknown, where = "operation"): Operation {
  const bad = (what: string): never => {
    throw new TypeError(`${where}: ${what}`);
  };
  if (!isRecord(raw)) return bad("not an object");
  const { id, clientId, kind, key, input, output, call } = raw;
  const ret = raw.ret === null ? undefined : raw.ret;
  if (id !== undefined && (typeof id !== "number" || !Number.isInteger(id))) bad("id must be an integer");
  if (typeof clientId !== "string" && typeof clientId !== "number") bad("clientId must be a string or a number");
  if (typeof kind !== "string" || !KINDS.has(kind)) bad(`unknown kind ${JSON.stringify(kind)}`);
  if (typeof key !== "string") bad("key must be a string");
  if (typeof call !== "number" || !Number.isFinite(call)) bad("call must be a finite number");
  if (ret !== undefined) {
    if (typeof ret !== "number" || Number.isNaN(ret)) bad("ret must be a number or absent");
    if ((ret as number) < (call as number)) bad(`ret (${ret as number}) is before call (${call as number})`);
    if (ret === Infinity) bad("ret must be finite (leave it out for an unknown outcome)");
  }
  const base: OpBase = { clientId: clientId as ClientId, key: key as string, call: call as number };
  if (id !== undefined) base.id = id as number;
  if (ret !== undefined) base.ret = ret as number;
  switch (kind as OpKind) {
    case "put": {
      if (!isRecord(input) || typeof input.value !== "string") return bad("put needs input { value: string }");
      if (output !== undefined) bad("put has no output");
      return { ...base, kind: "put", input: { value: input.value } };
    }
    case "delete": {
      if (input !== undefined) bad("delete has no input");
      if (output !== undefined) bad("delete has no output");
      return { ...base, kind: "delete" };
    }
    case "get": {
      if (input !== undefined) bad("get has no input");
      if (ret === undefined) {
        if (output !== undefined) bad("a get with an unknown outcome has no output");
        return { ...base, kind: "get" };
      }
      if (!isRecord(output) || !isStringOrNull(output.value)) return bad("a completed get needs output { value: string | null }");
      return { ...base, kind: "get", output: { value: output.value } };
    }
    case "cas": {
      if (!isRecord(input) || !isStringOrNull(input.expected) || typeof input.value !== "string") {
        return bad("cas needs input { expected: string | null, value: string }");
      }
      const casInput: CasInput = { expected: input.expected, value: input.value };
      if (ret === undefined) {
        if (output !== undefined) bad("a cas with an unknown outcome has no output");
        return { ...base, kind: "cas", input: casInput };
      }
      if (!isRecord(output) || typeof output.ok !== "boolean") return bad("a completed cas needs output { ok: boolean }");
      return { ...base, kind: "cas", input: casInput, output: { ok: output.ok } };
    }
  }
}

/** Parses a saved history (a HistoryFile, or a bare array of operations). */
export function parseHistory(json: unknown): Operation[] {
  let list: unknown = json;
  if (isRecord(json)) {
    if (json.format !== HISTORY_FORMAT) throw new TypeError(`not a ${HISTORY_FORMAT} file`);
    if (json.version !== HISTORY_VERSION) throw new TypeError(`unsupported history version ${String(json.version)}`);
    list = json.operations;
  }
  if (!Array.isArray(list)) throw new TypeError("a history is an array of operations");
  return list.map((raw, i) => validateOperation(raw, `operation ${i}`));
}

/** Reads a history written by HistoryRecorder.save (or saveHistory). */
export async function loadHistory(path: string): Promise<Operation[]> {
  return parseHistory(JSON.parse(await readFile(path, "utf8")));
}

export function historyToJSON(ops: readonly Operation[]): HistoryFile {
  return { format: HISTORY_FORMAT, version: HISTORY_VERSION, operations: ops.map((o) => ({ ...o })) };
}

/** Writes a history as JSON (one operation a line, for diffing and grepping). */
export async function saveHistory(path: string, ops: readonly Operation[]): Promise<void> {
  const file = historyToJSON(ops);
  const lines = file.operations.map((o) => "    " + JSON.stringify(o));
  const text =
    `{\n  "format": ${JSON.stringify(file.format)},\n  "version": ${file.version},\n  "operations": [\n` +
    lines.join(",\n") +
    (lines.length > 0 ? "\n" : "") +
    "  ]\n}\n";
  await writeFile(path, text, "utf8");
}

type Status = "pending" | "ok" | "unknown" | "failed";

interface Slot {
  op: Operation;
  status: Status;
}

export interface HistoryRecorderOptions {
  /** The clock for call / ret timestamps; performance.now by default. Must be shared by all clients. */
  now?: () => number;
}

/**
 * Records a history while clients run. Wrap every request:
 *
 *     const id = rec.invoke(client, "cas", key, { expected: "a", value: "b" });
 *     try { rec.ok(id, { ok: await kv.cas(...) }); }
 *     catch (e) { if (definitelyRejected(e)) rec.fail(id); else rec.unknown(id); }
 *
 * Operations still pending when the history is read count as unknown.
 */
export class HistoryRecorder {
  private readonly now: () => number;
  private readonly slots: Slot[] = [];

  constructor(options: HistoryRecorderOptions = {}) {
    this.now = options.now ?? (() => performance.now());
  }

  /** Records the call of an operation and returns its id. */
  invoke<K extends OpKind>(clientId: ClientId, kind: K, key: string, ...input: InputArgs<K>): OpId<K> {
    const id = this.slots.length;
    const raw = { id, clientId, kind, key, input: input[0], call: this.now() };
    const op = validateOperation(raw, `invoke #${id}`);
    this.slots.push({ op, status: "pending" });
    return id;
  }

  /** The operation returned normally with this output (get: { value }, cas: { ok }, none otherwise). */
  ok<K extends OpKind>(id: OpId<K>, ...output: OutputArgs<K>): void {
    const slot = this.pending(id, "ok");
    const ret = this.now();
    const done = validateOperation({ ...slot.op, ret, output: output[0] }, `ok #${id}`);
    slot.op = done;
    slot.status = "ok";
  }

  /** The outcome is unknown (timeout, lost connection, crashed client): it may or may not have taken effect. */
  unknown(id: OpId): void {
    this.pending(id, "unknown").status = "unknown";
  }

  /** The operation definitely did not take effect; it is left out of the history. */
  fail(id: OpId): void {
    this.pending(id, "fail").status = "failed";
  }

  /** The history so far: completed and unknown-outcome operations (pending ones count as unknown), failed ones dropped. */
  operations(): Operation[] {
    return this.slots.filter((s) => s.status !== "failed").map((s) => ({ ...s.op }));
  }

  toJSON(): HistoryFile {
    return historyToJSON(this.operations());
  }

  /** Writes the history to `path` (see loadHistory). */
  async save(path: string): Promise<void> {
    await saveHistory(path, this.operations());
  }

  private pending(id: number, what: string): Slot {
    const slot = this.slots[id];
    if (slot === undefined) throw new RangeError(`${what}: no operation #${id}`);
    if (slot.status !== "pending") throw new Error(`${what}: operation #${id} already completed (${slot.status})`);
    return slot;
  }
}
