// Generic output: aligned tables and `key: value` blocks for people, one JSON
// document with stable keys for programs.
import { isFieldSet, toJson, type DescMessage, type JsonObject, type JsonValue, type MessageShape } from "@bufbuild/protobuf";

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    headers
      .map((_, i) => (cells[i] ?? "").padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** `key: value` lines with the values aligned. */
export function renderKeyValues(pairs: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`.trimEnd());
}

/**
 * A response as JSON: proto field names, every field present (zero values and
 * empty lists included, an absent message as null), so the keys do not depend
 * on the values. 64-bit integers are strings, enums their names (proto3 JSON).
 */
export function messageJson<D extends DescMessage>(schema: D, message: MessageShape<D>): JsonObject {
  const json = toJson(schema, message, { alwaysEmitImplicit: true, useProtoFieldName: true }) as JsonObject;
  for (const field of schema.fields) {
    if (field.fieldKind === "message" && !isFieldSet(message, field)) json[field.name] = null;
  }
  return json;
}

export const jsonDocument = (value: JsonValue): string => `${JSON.stringify(value, null, 2)}\n`;
