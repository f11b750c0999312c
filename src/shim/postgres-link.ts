// The sidecar's connection to its local PostgreSQL: install the shim as soon as
// the server answers (retrying with backoff while it does not, e.g. while it is
// still starting), mirror the saved configuration into pgraft.saved_config, and
// answer pgraft_health_check's "is my PostgreSQL there" question. A server
// that restarts is an outage: logged once when it begins (warn) and once when
// it ends (info), retried with capped exponential backoff (src/slots/reconnect.ts).
import pg from "pg";
import type { Logger } from "pino";
import type { ClusterState } from "../cluster/state.js";
import { dsnClientConfig } from "../postgres/dsn.js";
import { Outage } from "../slots/reconnect.js";
import { installShim, writeSavedConfig, type EndpointTarget } from "./installer.js";

const RETRY_MAX_MS = 5_000;
const SYNC_EVERY_MS = 1_000;

export class PostgresLink {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private attempt = 0;
  private savedSignature = "";
  private busy = false;
  private readonly outage: Outage;
  /** The shim is installed and current in this server. */
  installed = false;
  lastError = "";

  constructor(
    private readonly dsn: string,
    private readonly target: EndpointTarget,
    private readonly state: ClusterState,
    private readonly log: Logger,
    /**
     * Resolves once this node's state is current (a ReadIndex round): after a
     * restart the local state can lag behind what was committed, and mirroring
     * it would briefly undo a saved configuration.
     */
    private readonly caughtUp: () => Promise<void> = () => Promise.resolve(),
  ) {
    this.outage = new Outage(
      {
        debug: (m, f) => log.debug(f ?? {}, m),
        info: (m, f) => log.info(f ?? {}, m),
        warn: (m, f) => log.warn(f ?? {}, m),
        error: (m, f) => log.error(f ?? {}, m),
      },
      "local PostgreSQL (the shim's installer)",
    );
  }

  start(): void {
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tick();
    }, ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.busy) return;
    this.busy = true;
    try {
      if (!this.client) await this.connectAndInstall();
      await this.syncSavedConfig();
      this.attempt = 0;
      this.schedule(SYNC_EVERY_MS);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.lastError = msg;
      await this.dropClient();
      this.attempt++;
      const delay = Math.min(RETRY_MAX_MS, 200 * 2 ** Math.min(this.attempt, 5));
      this.outage.failed(msg, delay);
      this.schedule(delay);
    } finally {
      this.busy = false;
    }
  }

  private async connectAndInstall(): Promise<void> {
    const c = new pg.Client(dsnClientConfig(this.dsn, { connectionTimeoutMillis: 5_000, application_name: "pgraft_sidecar" }));
    // A connection that dies later is noticed by the next query; this keeps the error from being unhandled.
    c.on("error", (e) => {
      if (this.client === c) {
        this.outage.failed(e);
        this.client = undefined;
      }
      this.installed = false;
    });
    try {
      await c.connect();
      const r = await installShim(c, this.target);
      this.client = c;
      this.installed = true;
      this.lastError = "";
      this.outage.recovered();
      this.savedSignature = "";
      const how = r.viaExtension ? `the pgraft extension ${r.version} is installed; its server settings were updated` : r.previousVersion === r.version ? `shim ${r.version} verified` : r.previousVersion ? `shim upgraded from ${r.previousVersion} to ${r.version}` : `shim ${r.version} installed`;
      this.log.info({ endpoint: `${this.target.host}:${this.target.port}` }, `local PostgreSQL: ${how}`);
      if (r.dblinkElsewhere) {
        this.log.warn(
          `dblink is installed in schema ${r.dblinkElsewhere}: any role that may execute its functions can reuse a session's shim connection and bypass pgraft_admin; REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ${r.dblinkElsewhere} FROM PUBLIC, or install dblink in schema pgraft`,
        );
      }
    } catch (e) {
      await c.end().catch(() => undefined);
      throw e;
    }
  }

  private async syncSavedConfig(): Promise<void> {
    const c = this.client;
    if (!c) return;
    try {
      await this.caughtUp();
    } catch {
      return; // no leader or quorum now: keep what is there, try again next round
    }
    const rows = this.state
      .config()
      .filter((r) => r.saved && r.overridden)
      .map((r) => ({ name: r.name, value: r.value }));
    const sig = JSON.stringify(rows);
    if (sig === this.savedSignature) return;
    await writeSavedConfig(c, rows);
    this.savedSignature = sig;
  }

  /** For pgraft_health_check: does the local PostgreSQL answer, and is the shim in place? */
  async check(): Promise<{ ok: boolean; detail: string }> {
    const c = this.client;
    if (!c) return { ok: false, detail: this.lastError ? `not connected: ${this.lastError}` : "not connected yet" };
    try {
      const r = await c.query<{ v: string }>("SELECT current_setting('server_version') AS v");
      return { ok: true, detail: `PostgreSQL ${r.rows[0]?.v ?? "?"} answers; shim installed` };
    } catch (e) {
      return { ok: false, detail: e instanceof Error ? e.message : String(e) };
    }
  }

  private async dropClient(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.installed = false;
    if (c) await c.end().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // Let a tick in progress finish before closing its client.
    while (this.busy) await new Promise((r) => setTimeout(r, 10));
    await this.dropClient();
  }
}
