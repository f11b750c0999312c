// The sidecar's Dockerfile: linted with dockerfile-utils (the Dockerfile
// validator of the VS Code Docker language server, offline), and the recipe's
// promises checked: multi-stage, runtime dependencies only (npm ci --omit=dev),
// a non-root user, `pgraft` as entrypoint, OCI labels, the ports of the chart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { validate } from "dockerfile-utils";
import { REPO_ROOT } from "../integration/harness.js";

const text = readFileSync(join(REPO_ROOT, "Dockerfile"), "utf8");
/** Instructions with their arguments, continuation lines joined, comments dropped. */
const instructions = text
  .replace(/\\\n/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"))
  .map((l) => ({ op: l.split(/\s+/)[0]!.toUpperCase(), args: l.slice(l.split(/\s+/)[0]!.length).trim() }));

describe("Dockerfile", () => {
  test("the linter finds nothing (and does find a broken file)", () => {
    const message = (d: { message: string | { value: string } }): string => (typeof d.message === "string" ? d.message : d.message.value);
    const problems = validate(text).map((d) => `line ${d.range.start.line + 1}: ${message(d)}`);
    assert.deepEqual(problems, []);
    const broken = validate("FROM node:20\nRUNN npm ci\nUSER\n").map(message);
    assert.ok(broken.some((m) => /Unknown instruction: RUNN/.test(m)), broken.join("; "));
    assert.ok(broken.some((m) => /no arguments/.test(m)), broken.join("; "));
  });

  test("multi-stage; the final stage takes only runtime dependencies and the built code", () => {
    const froms = instructions.filter((i) => i.op === "FROM");
    assert.ok(froms.length >= 3, "build, runtime-deps and final stages");
    const lastFrom = instructions.lastIndexOf(froms.at(-1)!);
    const final = instructions.slice(lastFrom);
    assert.ok(instructions.some((i) => i.op === "RUN" && /npm ci --omit=dev/.test(i.args)), "npm ci --omit=dev");
    const copies = final.filter((i) => i.op === "COPY");
    for (const c of copies) assert.match(c.args, /^--from=(runtime-deps|build) |^package\.json /, `final stage copies only built output: COPY ${c.args}`);
    assert.ok(!final.some((i) => i.op === "COPY" && /\bsrc\b(?!\/)/.test(i.args) && !/dist\/src/.test(i.args)), "no sources in the final stage");
  });

  test("non-root user, pgraft as entrypoint, labels, the chart's ports", () => {
    const user = instructions.filter((i) => i.op === "USER").at(-1);
    assert.ok(user, "a USER instruction");
    assert.match(user.args, /^[1-9]\d*(:\d+)?$/, "a numeric non-root uid (runAsNonRoot can check it)");
    assert.equal(user.args.split(":")[0], "10001", "the uid the chart's securityContext runs as");
    assert.deepEqual(JSON.parse(instructions.filter((i) => i.op === "ENTRYPOINT").at(-1)!.args), ["pgraft"]);
    assert.deepEqual(JSON.parse(instructions.filter((i) => i.op === "CMD").at(-1)!.args), ["sidecar"]);
    const labels = instructions.filter((i) => i.op === "LABEL").map((i) => i.args).join(" ");
    for (const l of ["title", "version", "source", "licenses"]) assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${l}=`));
    const exposed = instructions.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/));
    assert.deepEqual(exposed.sort(), ["6432", "6433", "7400", "8008"]);
  });
});
