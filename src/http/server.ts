// The sidecar's HTTP listener: /metrics plus the routes of routes.ts.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { HostPort } from "../config/address.js";
import type { PgraftMetrics } from "../metrics/registry.js";
import { answerRoute, type HealthView } from "./routes.js";

export interface HttpServer {
  address: HostPort;
  close(): Promise<void>;
}

export async function startHttpServer(listen: HostPort, view: HealthView, metrics: PgraftMetrics): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      metrics
        .metrics()
        .then((text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text))
        .catch((e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${String(e)}\n`));
      return;
    }
    const a = answerRoute(path, view);
    if (!a) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: `no such endpoint: ${path}` }) + "\n");
      return;
    }
    res.writeHead(a.code, { "content-type": "application/json" }).end(JSON.stringify(a.body) + "\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host.replace(/^\[|\]$/g, ""), () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    address: { host: listen.host, port: addr.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
