// Generic output: aligned tables and `key: value` blocks for people, one JSON
// document with stable keys for programs.
import { isFieldSet, ScalarType, toJson, type DescEnum, type DescMessage, type JsonObject, type JsonValue, type MessageShape } from "@bufbuild/protobuf";

const NAMED: Record<number, string> = { 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t" };
const isControl = (code: number): boolean => code < 0x20 || (code >= 0x7f && code <= 0x9f);

/**
 * Text safe to print in a table or a line: control characters (C0, DEL, C1)
 * escaped as \n, \r, \t or \xHH / \u00HH, so a key or value cannot break
 * the layout or drive the terminal. A backslash is doubled only in text that
 * had something escaped, so plain text reads as it is.
 */
export function escapeControl(text: string): string {
  let has = false;
  for (let i = 0; i < text.length && !has; i++) has = isControl(text.charCodeAt(i));
  if (!has) return text;
  let out = "";
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    if (ch === "\\") out += "\\\\";
    else if (!isControl(code)) out += ch;
    else out += NAMED[code] ?? (code < 0x80 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`);
  }
  return out;
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks; control characters escaped. */
export function renderTable(headers: readonly string[], rawRows: readonly (readonly string[])[]): string[] {
  const rows = rawRows.map((r) => r.map(escapeControl));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    headers
      .map((_, i) => (cells[i] ?? "").padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** `key: value` lines with the values aligned; control characters escaped. */
export function renderKeyValues(pairs: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${escapeControl(v)}`.trimEnd());
}

/**
 * A response as JSON for scripts (schema: docs/cli-json.md): proto field
 * names, every field present (an absent message as null), so the keys do not
 * depend on the values. Unlike proto3 JSON: 64-bit integers are numbers (a
 * string only beyond 2^53), enums their lower-case names ("leader",
 * "follower", "pre-candidate"; the unspecified value null), a leader id of 0
 * (no leader known) null, and a KV value the JSON it holds (null in a
 * keys-only listing).
 */
export function messageJson<D extends DescMessage>(schema: D, message: MessageShape<D>): JsonObject {
  const json = toJson(schema, message, { alwaysEmitImplicit: true, useProtoFieldName: true }) as JsonObject;
  for (const field of schema.fields) {
    if (field.fieldKind === "message" && !isFieldSet(message, field)) json[field.name] = null;
  }
  return plainMessage(schema, json);
}

const INT64 = new Set<ScalarType>([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);

function plainScalar(type: ScalarType, v: JsonValue): JsonValue {
  if (INT64.has(type) && typeof v === "string") {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  }
  return v;
}

/**
 * An enum value by the name pgraft uses elsewhere: lower case, without the
 * type's prefix (POSTGRES_STATE_NOT_CONFIGURED → "not_configured", as /health
 * says); Raft states as the metrics labels and logs name them
 * (RAFT_STATE_PRE_CANDIDATE → "pre-candidate"). The zero value (unspecified) → null.
 */
function plainEnum(e: DescEnum, v: JsonValue): JsonValue {
  const value = typeof v === "string" ? e.values.find((x) => x.name === v) : typeof v === "number" ? e.value[v] : undefined;
  if (!value) return v;
  if (value.number === 0) return null;
  const name = value.localName.toLowerCase();
  return e.typeName === "pgraft.v1.RaftState" ? name.replace(/_/g, "-") : name;
}

function plainMessage(schema: DescMessage, json: JsonObject): JsonObject {
  for (const field of schema.fields) {
    const v = json[field.name];
    if (v === undefined || v === null) continue;
    switch (field.fieldKind) {
      case "scalar":
        json[field.name] = plainScalar(field.scalar, v);
        if (field.name.endsWith("leader_id") && v === 0) json[field.name] = null;
        break;
      case "enum":
        json[field.name] = plainEnum(field.enum, v);
        break;
      case "message":
        json[field.name] = plainMessage(field.message, v as JsonObject);
        break;
      case "list":
        if (Array.isArray(v)) {
          json[field.name] = v.map((x) =>
            field.listKind === "scalar" ? plainScalar(field.scalar, x) : field.listKind === "enum" ? plainEnum(field.enum, x) : plainMessage(field.message, x as JsonObject),
          );
        }
        break;
      case "map":
        break;
    }
  }
  if (schema.typeName === "pgraft.v1.KeyValue") json["value"] = jsonValue(json["value"]);
  return json;
}

/** JSON text as the JSON it holds ("" → null; text that is not JSON stays a string). */
function jsonValue(v: JsonValue | undefined): JsonValue {
  if (typeof v !== "string") return v ?? null;
  if (v === "") return null;
  try {
    return JSON.parse(v) as JsonValue;
  } catch {
    return v;
  }
}

export const jsonDocument = (value: JsonValue): string => `${JSON.stringify(value, null, 2)}\n`;
