// pgraft kv get|put|delete|list: the replicated KV store. Values are JSON text.
// A key that is not there (get) and a compare that did not hold (put/delete
// with --if-mod-revision) print the response but exit 1, so scripts can test.
import { create } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { KvDeleteResponseSchema, KvGetResponseSchema, KvListResponseSchema, KvPutResponseSchema, type KeyValue, type KvListResponse } from "../../../gen/pgraft/v1/client_pb.js";
import { operatorAction, type ActionContext } from "../action.js";
import { parseInt64, parseJsonValue, parseKey, parsePositiveInt } from "../arguments.js";
import { operatorCommand } from "../commander-setup.js";
import { KV_KEY_WIDTH, KV_VALUE_WIDTH, keyValueLines, kvTable } from "../format.js";
import { escapeControl, messageJson } from "../output.js";

const optString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const revisionOption = (v: unknown): bigint | undefined => {
  const s = optString(v);
  return s === undefined ? undefined : parseInt64(s, "--if-mod-revision");
};
const q = (key: string): string => JSON.stringify(key);
/** Key order is byte order (of the UTF-8), as on the server. */
const after = (a: string, b: string): boolean => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")) > 0;

function compareFailed(ifModRevision: bigint, current: KeyValue | undefined): string {
  if (ifModRevision === 0n) return current ? `the key exists (mod_revision ${current.modRevision})` : "the key exists";
  if (!current) return `the key's mod_revision is not ${ifModRevision}`;
  return `the key's mod_revision is ${current.modRevision}, not ${ifModRevision}`;
}

/**
 * Fetch pages (start_after = the last key of the previous one) until `limit`
 * pairs (0: all) or the server says there are no more.
 */
async function listAll(ctx: ActionContext, prefix: string, limit: number, keysOnly: boolean, serializable: boolean): Promise<KvListResponse> {
  const kvs: KeyValue[] = [];
  let startAfter = "";
  for (;;) {
    const want = limit ? limit - kvs.length : 0;
    const page = await ctx.request(`kv list ${q(prefix)}`, (c, o) =>
      c.kvList({ clusterId: ctx.clusterId, prefix, limit: BigInt(want), startAfter, keysOnly, serializable }, o),
    );
    kvs.push(...page.kvs);
    const last = page.kvs[page.kvs.length - 1];
    const done = !page.more || (limit !== 0 && kvs.length >= limit) || last === undefined || !after(last.key, startAfter);
    if (done) {
      const more = page.more || (limit !== 0 && kvs.length > limit);
      return create(KvListResponseSchema, { header: page.header, kvs: kvs.slice(0, limit || undefined), more, count: page.count });
    }
    startAfter = last.key;
  }
}

export function registerKv(program: Command): Command[] {
  const kv = operatorCommand(program, "kv", 'read and write the replicated KV store (values are JSON text; keys under "pgraft.internal/" are pgraft\'s own: refused, and left out of listings)');

  operatorCommand(kv, "get <key>", "print a key's value and revisions (exit 1 if it does not exist)")
    .option("--serializable", "answer from the sidecar's local state, without the ReadIndex round (may be stale)")
    .action(
      operatorAction(async (ctx, [rawKey], opts) => {
        const key = parseKey(rawKey ?? "");
        const serializable = opts["serializable"] === true;
        const res = await ctx.request(`kv get ${q(key)}`, (c, o) => c.kvGet({ clusterId: ctx.clusterId, key, serializable }, o));
        ctx.show(KvGetResponseSchema, res, () => (res.kv ? keyValueLines(res.kv) : []));
        if (!res.kv) return ctx.fail(`kv get ${q(key)}: key not found`);
      }),
    );

  operatorCommand(kv, "put <key> <json-value>", `store JSON text under a key (a string must be quoted: '"hello"')`)
    .option("--if-mod-revision <n>", "write only if the key's mod_revision is n (0: only if the key does not exist)")
    .option("--lease <id>", "attach the key to this lease (deleted when it expires)")
    .action(
      operatorAction(async (ctx, [rawKey, rawValue], opts) => {
        const key = parseKey(rawKey ?? "");
        const value = parseJsonValue(rawValue ?? "");
        const ifModRevision = revisionOption(opts["ifModRevision"]);
        const leaseText = optString(opts["lease"]);
        const lease = leaseText === undefined ? 0n : parseInt64(leaseText, "--lease");
        const res = await ctx.request(`kv put ${q(key)}`, (c, o) => c.kvPut({ clusterId: ctx.clusterId, key, value, ifModRevision, lease }, o));
        if (res.succeeded) {
          ctx.show(KvPutResponseSchema, res, () => [`stored ${q(key)}: mod_revision ${res.kv?.modRevision ?? "?"}, version ${res.kv?.version ?? "?"}`]);
          return;
        }
        ctx.show(KvPutResponseSchema, res, () => []);
        return ctx.fail(`kv put ${q(key)}: not written: ${compareFailed(ifModRevision ?? 0n, res.kv)}`);
      }),
    );

  operatorCommand(kv, "delete <key>", "delete a key (a key that does not exist is not an error)")
    .option("--if-mod-revision <n>", "delete only if the key's mod_revision is n")
    .action(
      operatorAction(async (ctx, [rawKey], opts) => {
        const key = parseKey(rawKey ?? "");
        const ifModRevision = revisionOption(opts["ifModRevision"]);
        const res = await ctx.request(`kv delete ${q(key)}`, (c, o) => c.kvDelete({ clusterId: ctx.clusterId, key, ifModRevision }, o));
        ctx.show(KvDeleteResponseSchema, res, () => (!res.succeeded ? [] : res.deleted > 0n ? [`deleted ${q(key)}`] : [`${q(key)} did not exist`]));
        if (!res.succeeded) return ctx.fail(`kv delete ${q(key)}: not deleted: the key's mod_revision is not ${ifModRevision ?? "?"}`);
      }),
    );

  operatorCommand(kv, "list [prefix]", "list the pairs whose key starts with prefix (default: all), in key order")
    .option("--limit <n>", "at most n pairs (default: all, fetched page by page)")
    .option("--keys-only", "print only the keys, one a line (JSON: revisions, values null)")
    .option("--serializable", "answer from the sidecar's local state, without the ReadIndex round (may be stale)")
    .action(
      operatorAction(async (ctx, [rawPrefix], opts) => {
        const prefix = rawPrefix ?? "";
        const limitText = optString(opts["limit"]);
        const limit = limitText === undefined ? 0 : parsePositiveInt(limitText, "--limit");
        const keysOnly = opts["keysOnly"] === true;
        const res = await listAll(ctx, prefix, limit, keysOnly, opts["serializable"] === true);
        ctx.showJson(messageJson(KvListResponseSchema, res), () => {
          if (keysOnly) return res.kvs.map((kv) => escapeControl(kv.key));
          if (!res.kvs.length) return [prefix ? `no keys start with ${q(prefix)}` : "the store is empty"];
          const table = kvTable(res.kvs);
          if (table.cut) process.stderr.write(`(long keys and values are cut at ${KV_KEY_WIDTH} and ${KV_VALUE_WIDTH} characters: kv get KEY or --json shows them whole)\n`);
          return table.lines;
        });
        if (res.more && !ctx.json) process.stderr.write(`(${res.kvs.length} of ${res.count} keys shown: raise --limit for more)\n`);
      }),
    );

  return [kv];
}
