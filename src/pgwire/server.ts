// The listening side: accepts connections, runs a Session for each, keeps the
// pid → session map that CancelRequest needs, enforces maxConnections, and on
// close() ends every session the way a PostgreSQL shutdown would (FATAL 57P01).
import { randomInt } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { createSecureContext } from "node:tls";
import { Session, type SessionRegistry } from "./session.js";
import type { PgWireLogger, PgWireServer, PgWireServerOptions } from "./types.js";

export const DEFAULT_SERVER_VERSION = "15.0 (pgraft 0.1.0)";

const silent: PgWireLogger = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

export async function startPgWireServer(options: PgWireServerOptions): Promise<PgWireServer> {
  const logger = options.logger ?? silent;
  const maxConnections = options.maxConnections ?? 100;
  const serverVersion = options.serverVersion ?? DEFAULT_SERVER_VERSION;
  // libpq reads the leading "major.minor" of server_version into PQserverVersion().
  if (!/^\d+(\.\d+)?/.test(serverVersion)) throw new Error(`pgwire: serverVersion must start with a version number, got "${serverVersion}"`);
  const settings = {
    users: options.users,
    handler: options.handler,
    logger,
    secureContext: options.tls ? createSecureContext(options.tls) : undefined,
    maxMessageBytes: options.maxMessageBytes ?? 1024 * 1024,
    authTimeoutMs: options.authTimeoutMs ?? 10_000,
    serverVersion,
  };

  const connections = new Map<Session, Promise<void>>();
  const byPid = new Map<number, Session>();
  let closing = false;

  const registry: SessionRegistry = {
    admit(session) {
      if (closing || byPid.size >= maxConnections) return undefined;
      let pid: number;
      // Positive 31-bit ids, like real backend pids; unique among live sessions.
      do pid = randomInt(1, 2 ** 31 - 1);
      while (byPid.has(pid));
      byPid.set(pid, session);
      return { pid, secret: randomInt(-(2 ** 31), 2 ** 31 - 1) };
    },
    release(session) {
      if (byPid.get(session.pid) === session) byPid.delete(session.pid);
    },
    cancel(pid, secret) {
      const ok = byPid.get(pid)?.cancelQuery(secret) ?? false;
      logger.debug({ pid, ok }, "pgwire cancel request");
    },
  };

  const server: Server = createServer((socket: Socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const session = new Session(socket, settings, registry);
    const done = session.run().finally(() => connections.delete(session));
    connections.set(session, done);
  });

  const host = options.host.replace(/^\[|\]$/g, "");
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      const why = e.code === "EADDRINUSE" ? "address already in use" : e.code === "EADDRNOTAVAIL" ? "address not available" : e.message;
      reject(new Error(`pgwire: cannot listen on ${options.host}:${options.port}: ${why}`, { cause: e }));
    };
    server.once("error", onError);
    server.listen(options.port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (e) => logger.error({ err: e }, "pgwire listener error"));
  const addr = server.address() as AddressInfo;
  logger.info({ host: options.host, port: addr.port, tls: settings.secureContext !== undefined }, "pgwire endpoint listening");

  let closed: Promise<void> | undefined;
  return {
    address: { host: options.host, port: addr.port },
    sessions: () => byPid.size,
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of connections.keys()) s.terminate();
        await Promise.all(connections.values());
        await stopped;
        logger.info({ port: addr.port }, "pgwire endpoint closed");
      })();
      return closed;
    },
  };
}
