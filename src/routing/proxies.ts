// A sidecar's two client proxies (proxy.ts), pointed at what the replicated
// routing says (targets.ts): the read-write port at the write leader, the
// read-only port at the first read node. The routing changes by Raft
// commands applied here; a short poll notices and retargets at once, so
// connections to a node that lost the role are closed and new clients go to
// the new one (or wait, during a switchover).
import type { Logger } from "pino";
import { formatHostPort, type HostPort } from "../config/address.js";
import type { ClusterState } from "../cluster/state.js";
import { ClientProxy, type ClientProxyStats, type ProxyTarget } from "./proxy.js";
import { readTarget, writeTarget } from "./targets.js";

/** How often the routing is compared with what the proxies use. */
const WATCH_MS = 20;

const key = (t: ProxyTarget | undefined): string => (t ? `${t.nodeId}@${t.host}:${t.port}` : "");

export class SidecarProxies {
  private readonly proxies: { name: string; proxy: ClientProxy; target: () => ProxyTarget | undefined; last: string }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly d: { state: ClusterState; selfId: number; readWrite?: HostPort; readOnly?: HostPort; log: Logger },
  ) {}

  /** Listen on the configured ports; rejects (and closes what started) when one cannot be bound. */
  async start(): Promise<{ readWrite?: string; readOnly?: string }> {
    const out: { readWrite?: string; readOnly?: string } = {};
    const add = async (name: "read-write" | "read-only", listen: HostPort, target: () => ProxyTarget | undefined): Promise<string> => {
      const proxy = new ClientProxy({ name, listen, target, logger: this.d.log });
      this.proxies.push({ name, proxy, target, last: key(target()) });
      const a = await proxy.start();
      return formatHostPort(a);
    };
    try {
      if (this.d.readWrite) out.readWrite = await add("read-write", this.d.readWrite, () => writeTarget(this.d.state, this.d.selfId));
      if (this.d.readOnly) out.readOnly = await add("read-only", this.d.readOnly, () => readTarget(this.d.state, this.d.selfId));
    } catch (e) {
      await this.stop();
      throw e;
    }
    this.timer = setInterval(() => this.watch(), WATCH_MS);
    this.timer.unref();
    return out;
  }

  private watch(): void {
    for (const p of this.proxies) {
      const now = key(p.target());
      if (now === p.last) continue;
      this.d.log.info({ proxy: p.name, from: p.last || "none", to: now || "none" }, `${p.name} proxy: now to ${now || "no node (clients wait)"}`);
      p.last = now;
      p.proxy.retarget();
    }
  }

  stats(): { name: string; stats: ClientProxyStats }[] {
    return this.proxies.map((p) => ({ name: p.name, stats: p.proxy.stats() }));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(this.proxies.map((p) => p.proxy.close()));
  }
}
