// The sidecar's probe of its PostgreSQL (src/postgres/monitor.ts) against a
// real server: up; stopped (immediate) → down with the error, started → up on
// a fresh connection, each change logged once however many probes ran; a hung
// server (its processes SIGSTOPped) → down within the probe's bound rather
// than a probe that never returns, and up again once it runs; stop() leaves no
// connection behind.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { PostgresMonitor, type PostgresHealth } from "../../src/postgres/monitor.js";
import { startTestPostgres, type TestPostgres } from "../support/postgres.js";
import { waitFor } from "../support/wait.js";

interface LogLine {
  level: number;
  msg: string;
}

function capturingLogger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString("utf8").split("\n")) if (l) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { log: pino({ level: "info" }, sink), lines };
}

const transitions = (lines: LogLine[]): string[] => lines.map((l) => `${l.level} ${l.msg.replace(/:.*|\(.*$/s, "").trim()}`);

describe("PostgresMonitor against a real server", () => {
  let tp: TestPostgres | undefined;
  const monitors: PostgresMonitor[] = [];
  const stopped: number[] = [];

  before(async () => {
    tp = await startTestPostgres();
  });
  after(async () => {
    for (const pid of stopped.splice(0)) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // gone
      }
    }
    for (const m of monitors) await m.stop();
    await tp?.destroy();
  });

  const start = (): { m: PostgresMonitor; lines: LogLine[] } => {
    const { log, lines } = capturingLogger();
    const m = new PostgresMonitor({ dsn: tp!.server.dsn(), intervalMs: () => 50, log });
    monitors.push(m);
    m.start();
    return { m, lines };
  };
  const until = (what: string, m: PostgresMonitor, f: (h: PostgresHealth) => boolean): Promise<PostgresHealth> =>
    waitFor(what, () => (f(m.health()) ? m.health() : undefined), { timeoutMs: 30_000, context: () => JSON.stringify(m.health()) });

  test("stopped → down with the error and since-when; started → up again by itself; one log line per change", async () => {
    const { m, lines } = start();
    assert.equal(m.health().state, "unknown", "not probed yet");
    const up = await until("up", m, (h) => h.state === "up");
    assert.ok(up.sinceMs && up.checkedMs && up.probeSeconds !== undefined);
    await tp!.server.stop({ mode: "immediate" });
    try {
      const down = await until("down", m, (h) => h.state === "down");
      assert.ok(down.sinceMs! >= up.sinceMs);
      // The connection's end (ECONNRESET, terminated) or the refused reconnect, whichever the probe met.
      assert.match(down.error ?? "", /\S/);
      // Many more probes while it is down: still the same since-when, and no more log lines.
      const since = down.sinceMs!;
      const later = await until("probes half a second later", m, (h) => h.state === "down" && h.checkedMs! > since + 500);
      assert.equal(later.sinceMs, since);
      assert.match(later.error ?? "", /ECONNREFUSED/);
    } finally {
      await tp!.server.start();
    }
    await until("up again", m, (h) => h.state === "up");
    assert.deepEqual(transitions(lines), ["30 local PostgreSQL is up", "40 local PostgreSQL is down", "30 local PostgreSQL is up again"]);
    await m.stop();
  });

  test("a hung server (postmaster and the probe's backend SIGSTOPped): down within the bound, connects bounded too, up once it runs", async (t) => {
    const { m, lines } = start();
    await until("up", m, (h) => h.state === "up");
    const backend = (await tp!.server.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgraft_probe'")).map((r) => r.pid);
    assert.equal(backend.length, 1, "one connection for the probe");
    const postmaster = Number(readFileSync(join(tp!.server.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    for (const pid of [postmaster, ...backend]) {
      process.kill(pid, "SIGSTOP");
      stopped.push(pid);
    }
    const down = await until("down (the query timed out)", m, (h) => h.state === "down");
    assert.match(down.error ?? "", /timeout/i);
    // The next probes open new connections, which the stopped postmaster never answers: bounded too.
    const later = await until("a connect that timed out", m, (h) => h.state === "down" && /timeout|terminated/i.test(h.error ?? "") && h.checkedMs! > down.checkedMs!);
    t.diagnostic(`query: ${down.error}; then: ${later.error}`);
    for (const pid of stopped.splice(0)) process.kill(pid, "SIGCONT");
    await until("up again", m, (h) => h.state === "up");
    assert.deepEqual(transitions(lines), ["30 local PostgreSQL is up", "40 local PostgreSQL is down", "30 local PostgreSQL is up again"]);
    await m.stop();
    await waitFor("no probe connection left", async () => (await tp!.server.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgraft_probe'")).length === 0, { timeoutMs: 10_000 });
  });
});
