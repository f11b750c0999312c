// The metric names the chart's Grafana dashboard and PrometheusRule query:
// every PromQL expression of dashboards/*.json (each "expr") and of
// templates/prometheusrule.yaml (each `expr:` line), and the pgraft_*,
// process_* and nodejs_* names in them.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const NAME = /\b((?:pgraft|process|nodejs)_[a-z0-9_]+)\b/g;

function exprsOf(v: unknown, out: string[]): void {
  if (Array.isArray(v)) for (const x of v) exprsOf(x, out);
  else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (k === "expr" && typeof x === "string") out.push(x);
      else exprsOf(x, out);
    }
  }
}

export function chartExpressions(chartDir: string): { dashboard: string[]; rules: string[] } {
  const dashboard: string[] = [];
  for (const f of readdirSync(join(chartDir, "dashboards"))) if (f.endsWith(".json")) exprsOf(JSON.parse(readFileSync(join(chartDir, "dashboards", f), "utf8")), dashboard);
  const rules = readFileSync(join(chartDir, "templates/prometheusrule.yaml"), "utf8")
    .split("\n")
    .filter((l) => /^\s*expr:/.test(l))
    .map((l) => l.replace(/^\s*expr:\s*/, ""));
  return { dashboard, rules };
}

export function chartMetricNames(chartDir: string): Set<string> {
  const { dashboard, rules } = chartExpressions(chartDir);
  const names = new Set<string>();
  for (const e of [...dashboard, ...rules]) for (const m of e.matchAll(NAME)) names.add(m[1]!);
  return names;
}
