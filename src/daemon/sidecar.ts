// One pgraft sidecar: the Raft node with the replicated cluster state, its gRPC
// server (peers + client API), the HTTP endpoints, the control loop, and an
// orderly start and stop. `pgraft sidecar` is a thin shell around this.
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { LevelWithSilent, Logger } from "pino";
import { formatHostPort, type HostPort } from "../config/address.js";
import type { SidecarConfig } from "../config/sidecar-config.js";
import { describePodIdentity } from "../config/pod-identity.js";
import { founderStart } from "./pod-start.js";
import { PodNodeGroup } from "./pod-node-group.js";
import { RaftNode } from "../consensus/driver.js";
import { Role } from "../consensus/types.js";
import { ClusterState } from "../cluster/state.js";
import * as pb from "../gen/pgraft/v1/client_pb.js";
import { startHttpServer, type HttpServer } from "../http/server.js";
import { PgraftMetrics } from "../metrics/registry.js";
import { addService, createClient, type ClientOf, type TypedClient } from "../transport/grpc-service.js";
import { FaultInjector, faultsEnabled, registerFaultsService } from "../transport/faults.js";
import { GrpcPeerTransport, PEER_SERVER_OPTIONS } from "../transport/peer-transport.js";
import { checkOwnCertificate } from "../transport/peer-identity.js";
import { clientCredentials, serverCredentials, type TlsConfig } from "../transport/tls.js";
import type { PgWireServer } from "../pgwire/index.js";
import { GroupController } from "../join/group-controller.js";
import { PostgresLink } from "../shim/postgres-link.js";
import { loadOrCreateShimPassword } from "../shim/secret.js";
import { SHIM_USER, startSqlEndpoint } from "../sqlapi/endpoint.js";
import { localClient } from "../transport/grpc-service.js";
import { clusterServiceHandlers } from "./cluster-service.js";
import { ControlLoop, effectiveTiming } from "./control-loop.js";
import { NOT_CONFIGURED, PostgresMonitor } from "../postgres/monitor.js";
import { ClusterPostgres, postgresNodesCheck } from "./postgres-status.js";
import { PostgresAddressPublisher } from "./postgres-address.js";
import { registerDataPlaneMetrics } from "../metrics/data-plane.js";
import { handOverTarget } from "./hand-over.js";
import { internalCall } from "./internal-keys.js";
import { exposedKeyFile, secureDataDir } from "./data-dir.js";
import { effectiveLogLevel, raftLogger, setTreeLevel } from "./logger.js";
import { WriteLeaderController } from "../routing/write-leader.js";
import { CommitScopeKeeper } from "../routing/commit-scope.js";
import { isWriteLeader, routeRole } from "../routing/targets.js";
import { switchover } from "../routing/switchover.js";
import { SidecarProxies } from "../routing/proxies.js";
import { registerRoutingMetrics } from "../metrics/routing.js";

export const VERSION = "0.1.0";
/** How long a stopping sidecar lets client calls in flight finish before cutting them off. */
const SHUTDOWN_GRACE_MS = 2_000;

function tlsOf(cfg: SidecarConfig): TlsConfig {
  return cfg.tls.mode === "mtls" ? { caFile: cfg.tls.ca, certFile: cfg.tls.cert, keyFile: cfg.tls.key } : { insecure: true };
}

/** A switchover's steps in this sidecar's log, each with the time since it started. */
function switchoverLog(log: Logger, req: { group: string; target: string }): (line: string) => void {
  const t0 = Date.now();
  const l = log.child({ component: "switchover" });
  return (line) => l.info({ group: req.group, target: req.target, elapsed_ms: Date.now() - t0 }, `switchover of ${req.group} to ${req.target}: ${line}`);
}

/** The parts a sidecar runs besides Raft, each optional (they depend on its configuration). */
interface SidecarParts {
  endpoint?: PgWireServer;
  link?: PostgresLink;
  groups?: GroupController;
  monitor?: PostgresMonitor;
  peersPg?: ClusterPostgres;
  writeLeader?: WriteLeaderController;
  proxies?: SidecarProxies;
  commitScope?: CommitScopeKeeper;
  podGroup?: PodNodeGroup;
}

export class Sidecar {
  private stopping: Promise<void> | undefined;
  private readonly leaderClients = new Map<string, TypedClient<(typeof pb.Cluster)["method"]>>();

  private constructor(
    readonly cfg: SidecarConfig,
    readonly log: Logger,
    readonly node: RaftNode,
    readonly state: ClusterState,
    private readonly transport: GrpcPeerTransport,
    private readonly server: grpc.Server,
    private readonly http: HttpServer,
    private readonly loop: ControlLoop,
    private readonly creds: grpc.ChannelCredentials,
    readonly grpcPort: number,
    /** The SQL endpoint and the local PostgreSQL link (when configured). */
    private readonly sql: SidecarParts = {},
  ) {}

  /** The SQL endpoint's bound port (undefined when it is not served). */
  get sqlPort(): number | undefined {
    return this.sql.endpoint?.address.port;
  }

  static async start(cfg: SidecarConfig, log: Logger): Promise<Sidecar> {
    // grpc-js prints its own errors on stderr ("E No address added out of total 1 resolved"); what matters of
    // them reaches our errors and logs in our words, so its lines go to the debug log, with a component.
    const grpcLog = log.child({ component: "grpc" });
    const line = (args: unknown[]): string => args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
    grpc.setLogger({ error: (...a: unknown[]) => grpcLog.debug(line(a)), info: (...a: unknown[]) => grpcLog.debug(line(a)), debug: (...a: unknown[]) => grpcLog.debug(line(a)) });
    const tls = tlsOf(cfg);
    const creds = clientCredentials(tls);
    // Raft WAL, snapshots, shim password: 0600 files in a 0700 dir (data-dir.ts).
    for (const change of await secureDataDir(cfg.dataDir)) log.warn(`data dir: tightened ${change}`);
    if (cfg.tls.mode === "mtls") {
      const exposed = await exposedKeyFile(cfg.tls.key);
      if (exposed) log.warn(exposed);
    }
    if (tls.insecure !== true) checkOwnCertificate(tls.certFile, cfg.clusterId, cfg.nodeId);
    const fresh = !existsSync(join(cfg.dataDir, "wal"));
    if (cfg.pod) log.info(`${describePodIdentity(cfg.pod)}${fresh ? "" : " (its data dir holds Raft state: restarting on it)"}`);
    if (cfg.pod?.founder && fresh) {
      // A founder with an empty data dir bootstraps only if the cluster was not founded already (pod-start.ts).
      const start = await founderStart(cfg, creds);
      log.info(`pod ${cfg.pod.podName}: ${start.action === "join" ? "joining the running cluster" : "founding the cluster"}: ${start.why}`);
      if (start.action === "join") cfg = { ...cfg, initialCluster: undefined, join: start.through };
    }
    // In pod mode every founder's name is known (its pod name), so all of them start from the same catalog.
    const founderName = (id: number): string | undefined => (id === cfg.nodeId ? cfg.nodeName : cfg.pod ? `${cfg.pod.setName}-${id - 1}` : undefined);
    const founders = cfg.initialCluster
      ? [...cfg.initialCluster].map(([id, a]) => {
          const name = founderName(id);
          return { id, raftAddress: formatHostPort(a), ...(name ? { name } : {}) };
        })
      : [];
    if (fresh && !cfg.initialCluster && !cfg.join) {
      throw new Error(`the data dir ${cfg.dataDir} holds no cluster yet: give --initial-cluster to bootstrap one or --join to join one`);
    }
    const state = new ClusterState({ members: founders });
    const faults = faultsEnabled() ? FaultInjector.create() : undefined;

    // The transport needs the node and the node the transport: late-bind the callbacks.
    const ref: { node?: RaftNode } = {};
    const transport = new GrpcPeerTransport({
      selfId: cfg.nodeId,
      clusterId: cfg.clusterId,
      peers: founders.filter((f) => f.id !== cfg.nodeId).map((f) => [f.id, f.raftAddress] as const),
      credentials: creds,
      onReceive: (m) => ref.node?.receive(m),
      onUnreachable: (id) => ref.node?.reportUnreachable(id),
      onSnapshotStatus: (id, ok) => ref.node?.reportSnapshot(id, ok),
      // Every peer that passed the transport's checks (our cluster id; with mTLS, a
      // certificate of our CA naming the id it claims) may talk: Raft's own rules
      // (terms, membership of answers and votes) decide what its messages do. Our
      // catalog is no test: a node catching up may not know yet the leader feeding it.
      isKnownPeer: () => true,
      requirePeerCertificate: cfg.tls.mode === "mtls",
      advertise: formatHostPort(cfg.advertise),
      logger: raftLogger(log, "transport"),
      ...(faults ? { faults } : {}),
    });

    const metricsRef: { m?: PgraftMetrics } = {};
    const n = await RaftNode.open({
      id: cfg.nodeId,
      clusterId: cfg.clusterId,
      dataDir: cfg.dataDir,
      transport,
      stateMachine: state,
      ...(cfg.initialCluster ? { bootstrap: { voters: [...cfg.initialCluster.keys()], learners: [] } } : {}),
      tickMs: cfg.heartbeatMs,
      heartbeatTicks: 1,
      electionTicks: Math.max(2, Math.round(cfg.electionMs / cfg.heartbeatMs)),
      logger: raftLogger(log, "raft"),
      requestTimeoutMs: Math.max(5000, 5 * cfg.electionMs),
      observer: {
        onPersist: (s, entries) => metricsRef.m?.events.onPersist(s, entries),
        onProposal: (result, seconds) => metricsRef.m?.events.onProposal(result, seconds),
        onLeaderChange: (leader, term, role) => {
          metricsRef.m?.events.onLeaderChange(leader, term, role);
          // Losing the leader is what an operator must see: at warn, like every election (raft.ts).
          if (leader) log.info({ leader, term }, leader === cfg.nodeId ? `became leader term ${term}` : `following leader ${leader} term ${term}`);
          else log.warn({ leader, term }, `lost the leader: no leader at term ${term}`);
        },
      },
    });
    ref.node = n;
    // With a local PostgreSQL, a bounded probe of it every heartbeat (src/postgres/monitor.ts).
    const pgMonitor = cfg.postgresDsn
      ? new PostgresMonitor({ dsn: cfg.postgresDsn, intervalMs: () => effectiveTiming(state, cfg).heartbeatMs, log: log.child({ component: "postgres-probe" }) })
      : undefined;
    const pgHealth = pgMonitor ? { postgres: () => pgMonitor.health() } : {};
    const metrics = new PgraftMetrics({
      status: () => n.status(),
      storage: () => n.storageStats(),
      transport: () => transport.stats,
      lastContactMs: () => n.lastContactMs(),
      ...pgHealth,
    }, { nodeId: cfg.nodeId, clusterId: cfg.clusterId, version: VERSION, nodeName: cfg.nodeName });
    metricsRef.m = metrics;

    const server = new grpc.Server(PEER_SERVER_OPTIONS);
    transport.register(server);
    registerFaultsService(server, { clusterId: cfg.clusterId, ...(faults ? { injector: faults } : {}) });
    const sidecarRef: { s?: Sidecar } = {};
    const proposeRouting: { run?: (cmd: Record<string, unknown>) => Promise<unknown> } = {};
    const clusterHandlers = clusterServiceHandlers({
        clusterId: cfg.clusterId,
        selfId: cfg.nodeId,
        selfName: cfg.nodeName,
        version: VERSION,
        node: n,
        state,
        leaderClient: () => sidecarRef.s?.leaderClient(),
        lastContactMs: () => n.lastContactMs(),
        requestTimeoutMs: Math.max(5000, 5 * cfg.electionMs),
        messagesProcessed: () => {
          const t = transport.stats;
          let n = 0;
          for (const v of Object.values(t.sent)) n += v;
          for (const v of Object.values(t.received)) n += v;
          return n;
        },
        flagTiming: { heartbeatMs: cfg.heartbeatMs, electionMs: cfg.electionMs },
        // Through this node's own service (late-bound: it exists once the handlers do), so a follower forwards to the leader.
        switchover: (req) => switchover(req, { state, propose: async (cmd) => proposeRouting.run?.(cmd), progress: switchoverLog(log, req) }),
        ...pgHealth,
    });
    addService(server, pb.Cluster, clusterHandlers);
    let http: HttpServer | undefined;
    const sql: SidecarParts = {};
    if (pgMonitor) {
      sql.monitor = pgMonitor;
      pgMonitor.start();
    }
    try {
      const port = await new Promise<number>((resolve, reject) =>
        // grpc-js words a busy port as "No address added out of total 1 resolved errors: [listen EADDRINUSE ...]".
        server.bindAsync(formatHostPort(cfg.listen), serverCredentials(tls), (err, p) =>
          err ? reject(new Error(`cannot listen on ${formatHostPort(cfg.listen)} (--listen): ${/\[(.*)\]/.exec(err.message)?.[1] ?? err.message}`)) : resolve(p),
        ),
      );
      http = await startHttpServer(
        cfg.httpListen,
        { status: () => n.status(), maxReplicaLagEntries: 10_000, routeRole: () => routeRole(state, cfg.nodeId), ...pgHealth },
        metrics,
      );
      const local = localClient(pb.Cluster, clusterHandlers);
      // A routing change through the leader; resolves once this node has applied it (a switchover reads it back).
      const routingCommand = async (cmd: Record<string, unknown>): Promise<unknown> => {
        const r = await local.nodeGroupCommand({ clusterId: cfg.clusterId, command: JSON.stringify(cmd) });
        await n.waitApplied(Number(r.header?.appliedIndex ?? 0n), Math.max(5000, 5 * cfg.electionMs)).catch(() => undefined);
        return r;
      };
      proposeRouting.run = routingCommand;
      // The write leader of each data group: decided on the Raft leader's node only (src/routing/write-leader.ts).
      sql.writeLeader = new WriteLeaderController({
        selfId: cfg.nodeId,
        state,
        status: () => n.status(),
        tickMs: () => effectiveTiming(state, cfg).heartbeatMs,
        propose: routingCommand,
        log: log.child({ component: "routing" }),
      });
      sql.writeLeader.start(Math.max(50, Math.min(200, cfg.heartbeatMs)));
      // The client proxies: read-write to the write leader, read-only to a read node (src/routing/proxies.ts).
      let proxyAddrs: { readWrite?: string; readOnly?: string } = {};
      if (cfg.proxyListen || cfg.proxyReadOnlyListen) {
        sql.proxies = new SidecarProxies({
          state,
          selfId: cfg.nodeId,
          ...(cfg.proxyListen ? { readWrite: cfg.proxyListen } : {}),
          ...(cfg.proxyReadOnlyListen ? { readOnly: cfg.proxyReadOnlyListen } : {}),
          log: log.child({ component: "proxy" }),
        });
        proxyAddrs = await sql.proxies.start();
      }
      const proxies = sql.proxies;
      registerRoutingMetrics(metrics.registry, { routings: () => state.routings(), isWriteLeader: () => isWriteLeader(state, cfg.nodeId), proxies: () => proxies?.stats() ?? [] });
      if (cfg.postgresDsn) {
        sql.groups = new GroupController({
          selfId: cfg.nodeId,
          state,
          pgd: async (cmd) => local.nodeGroupCommand({ clusterId: cfg.clusterId, command: JSON.stringify(cmd) }),
          // The join and part records are pgraft's own keys (internal-keys.ts).
          kvPut: async (key, value) => {
            await local.kvPut({ clusterId: cfg.clusterId, key, value }, internalCall());
          },
          kvGet: async (key) => (await local.kvGet({ clusterId: cfg.clusterId, key }, internalCall())).kv?.value,
          log: log.child({ component: "node-groups" }),
          leaderId: () => n.status().leader,
        });
        sql.groups.start();
        const groups = sql.groups;
        sql.commitScope = new CommitScopeKeeper({ postgresDsn: cfg.postgresDsn, state, me: () => groups.localNode(), log: log.child({ component: "commit-scope" }) });
        sql.commitScope.start();
        registerDataPlaneMetrics(metrics.registry, { status: () => groups.status(), dataNodes: () => state.dataNodes() });
      }
      if (cfg.sqlListen) {
        const password = await loadOrCreateShimPassword(cfg.dataDir);
        const pgLog = log.child({ component: "postgres" });
        const peersPg = (sql.peersPg = new ClusterPostgres({ clusterId: cfg.clusterId, selfId: cfg.nodeId, state, local: () => pgMonitor?.health() ?? NOT_CONFIGURED, credentials: creds }));
        sql.endpoint = await startSqlEndpoint({
          listen: cfg.sqlListen,
          password,
          log,
          deps: {
            clusterId: cfg.clusterId,
            selfId: cfg.nodeId,
            state,
            cluster: local,
            ...(sql.groups ? { groups: sql.groups } : {}),
            node: n,
            dataDir: cfg.dataDir,
            electionMs: cfg.electionMs,
            switchoverProgress: (req) => switchoverLog(log, req),
            requestTimeoutMs: Math.max(5000, 5 * cfg.electionMs),
            // After the debug setting committed: this node applies it now, the others within a control-loop cycle.
            setDebug: (on) => {
              const level = on ? "debug" : effectiveLogLevel(state, cfg.logLevel);
              setTreeLevel(log, level);
              const msg = on ? "debug logging on for every node" : `debug logging off for every node (level ${level})`;
              log.warn(msg);
              return msg;
            },
            postgresCheck: () => (sql.link ? sql.link.check() : Promise.resolve({ ok: false, detail: "no --postgres-dsn configured" })),
            postgresNodes: async () => postgresNodesCheck(await peersPg.members()),
          },
        });
        if (cfg.postgresDsn) {
          const host = ["0.0.0.0", "::", "[::]"].includes(cfg.sqlListen.host) ? "127.0.0.1" : cfg.sqlListen.host.replace(/^\[|\]$/g, "");
          sql.link = new PostgresLink(cfg.postgresDsn, { host, port: sql.endpoint.address.port, user: SHIM_USER, password }, state, pgLog, () => n.read({ timeoutMs: 2_000 }));
          sql.link.start();
        }
      }
      const postgresAddress = cfg.postgresAdvertise
        ? new PostgresAddressPublisher(cfg.nodeId, cfg.postgresAdvertise, async (key, value) => {
            await local.kvPut({ clusterId: cfg.clusterId, key, value }, internalCall());
          })
        : undefined;
      const loop = new ControlLoop({
        cfg,
        node: n,
        state,
        transport,
        log: log.child({ component: "control-loop" }),
        setLogLevel: (level) => setTreeLevel(log, level),
        currentLogLevel: () => log.level as LevelWithSilent,
        ...(postgresAddress ? { postgresAddress } : {}),
      });
      const sidecar = new Sidecar(cfg, log, n, state, transport, server, http, loop, creds, port, sql);
      sidecarRef.s = sidecar;
      n.start();
      loop.start();
      if (cfg.nodeGroup && cfg.pod) {
        sql.podGroup = new PodNodeGroup({ cfg, group: cfg.nodeGroup, state, leaderKnown: () => n.status().leader !== 0, log: log.child({ component: "pod-group" }) });
        sql.podGroup.start();
      }
      log.info(
        {
          grpc: `${cfg.listen.host}:${port}`,
          http: formatHostPort(http.address),
          sql: sql.endpoint ? `${sql.endpoint.address.host}:${sql.endpoint.address.port}` : undefined,
          proxy: proxyAddrs.readWrite,
          proxy_read_only: proxyAddrs.readOnly,
          data_dir: cfg.dataDir,
        },
        `sidecar started: node ${cfg.nodeId} (${cfg.nodeName}) of cluster ${cfg.clusterId}`,
      );
      if (fresh && cfg.join) await sidecar.joinCluster(cfg.join);
      return sidecar;
    } catch (e) {
      await sql.proxies?.stop();
      await sql.writeLeader?.stop();
      await sql.commitScope?.stop();
      await sql.podGroup?.stop();
      await sql.groups?.stop();
      await sql.link?.stop();
      await sql.endpoint?.close();
      sql.peersPg?.close();
      await pgMonitor?.stop();
      await http?.close();
      server.forceShutdown();
      transport.close();
      await n.stop();
      throw e;
    }
  }

  /** A client for the leader's Cluster service, cached per address. */
  leaderClient(): ClientOf<typeof pb.Cluster> | undefined {
    const leader = this.node.status().leader;
    if (!leader || leader === this.cfg.nodeId) return undefined;
    const addr = this.state.member(leader)?.raftAddress;
    if (!addr) return undefined;
    let c = this.leaderClients.get(addr);
    if (!c) {
      c = createClient(pb.Cluster, addr, this.creds);
      this.leaderClients.set(addr, c);
    }
    return c.methods;
  }

  /** Ask the members at `through` to add us (as a learner, promoted once caught up). */
  private async joinCluster(through: HostPort[]): Promise<void> {
    const deadline = Date.now() + 60_000;
    let lastError = "";
    for (let attempt = 0; Date.now() < deadline && !this.stopping; attempt++) {
      const target = through[attempt % through.length]!;
      const c = createClient(pb.Cluster, formatHostPort(target), this.creds);
      try {
        const res = await c.methods.join(
          { clusterId: this.cfg.clusterId, id: this.cfg.nodeId, name: this.cfg.nodeName, raftAddress: formatHostPort(this.cfg.advertise) },
          { timeoutMs: 10_000 },
        );
        for (const m of res.members) if (m.id !== this.cfg.nodeId && m.raftAddress) this.transport.setPeer(m.id, m.raftAddress);
        this.log.info({ via: formatHostPort(target), members: res.members.map((m) => m.id) }, `joined the cluster as a learner through ${formatHostPort(target)}`);
        return;
      } catch (e) {
        lastError = e instanceof Error ? e.message : String(e);
        this.log.warn({ via: formatHostPort(target) }, `join through ${formatHostPort(target)} failed: ${lastError}; retrying`);
        await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** Math.min(attempt, 4))));
      } finally {
        c.close();
      }
    }
    throw new Error(`could not join the cluster through ${through.map(formatHostPort).join(", ")}: ${lastError}`);
  }

  /** Graceful stop: hand leadership over when we hold it, then close everything. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const st = this.node.status();
      if (st.role === Role.Leader && st.conf.voters.length > 1) {
        const target = handOverTarget(st, this.cfg.nodeId);
        try {
          await this.node.transferLeadership(target, { timeoutMs: 2 * this.cfg.electionMs });
          this.log.info(`transferred leadership to ${target} before stopping`);
        } catch (e) {
          this.log.warn(`could not transfer leadership before stopping: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      this.loop.stop();
      await this.sql.proxies?.stop();
      await this.sql.writeLeader?.stop();
      await this.sql.commitScope?.stop();
      await this.sql.podGroup?.stop();
      await this.sql.groups?.stop();
      await this.sql.link?.stop();
      await this.sql.endpoint?.close();
      this.sql.peersPg?.close();
      await this.sql.monitor?.stop();
      await this.http.close();
      // Close the transport first: it ends the peers' incoming Raft streams, which
      // would otherwise keep tryShutdown waiting for as long as the peers run.
      this.transport.close();
      // Client calls in flight may finish; past a bound they are cut off.
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          this.server.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        this.server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      for (const c of this.leaderClients.values()) c.close();
      await this.node.stop();
      this.log.info("sidecar stopped");
    })();
    return this.stopping;
  }
}
