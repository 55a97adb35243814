/**
 * The controller: FastPath API, agent registry, sandbox store, lifecycle loop
 * and `/metrics`.
 *
 * @module
 */
import type { Logger } from "pino";
import type client from "prom-client";
import { RpcServer } from "../proto/grpc.ts";
import { type Clock, Controller, type SandboxRecord } from "./controller.ts";
import { createControllerMetrics } from "./metrics.ts";
import { addControllerServices } from "./_services.ts";
import { openStore } from "./store/mod.ts";
import { type HttpHandle, isLoopback, serveHttp } from "./_http.ts";
import { type AuthRecord, requireAdmin, TokenAuth } from "./auth.ts";
import { Leadership, type TermFactory } from "./_leadership.ts";
import type { LeaderElection } from "./leader_election.ts";
import type { EtcdStore } from "./store/etcd_store.ts";
import { formatHostPort, parseHostPort } from "../proto/host_port.ts";
import { captureProfile } from "./profiler.ts";
import { dashboardData } from "./dashboard_data.ts";
import type { Store } from "./store/mod.ts";
import { StoreProbe } from "./_store_probe.ts";
import { Health, healthService } from "../proto/health.ts";
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { AgentRegistry } from "../proto/gen/fsb/agent/v1/agent_pb.ts";

export { type Clock, Controller, type Phase, type SandboxRecord } from "./controller.ts";
export { createControllerMetrics } from "./metrics.ts";
export { type Principal, TokenAuth } from "./auth.ts";
export { captureProfile, MAX_PROFILE_SECONDS, type ProfileOptions } from "./profiler.ts";

/** Options for {@linkcode startController}. */
export interface StartControllerOptions {
  /** FastPath (and agent registry) gRPC address, `HOST:PORT`. */
  listen: string;
  /**
   * How long a connection with no call in flight may stay silent before it
   * is dropped; 5 minutes unless told (tests make it short).
   */
  idleSocketMs?: number;
  /** `/metrics` and `/healthz` address, `HOST:PORT`; empty disables it. */
  metricsListen: string;
  /** `sqlite:PATH` or `etcd://H:P,...`. */
  store: string;
  /**
   * The address other controllers, agents and clients reach this one at
   * (`--advertise`); default: the bound address, a wildcard host replaced by
   * this machine's hostname. On etcd it is this controller's name in the
   * election, and what followers tell callers to use.
   */
  advertise?: string;
  /**
   * The election lease's TTL in seconds (etcd only; `--lease-ttl`), default
   * 2: how long a crashed leader holds the lead before another takes it.
   */
  leaseSeconds?: number;
  dataDir: string;
  mode: "fast" | "strong";
  agentTimeoutMs: number;
  logger: Logger<"timing">;
  /** The process's one metrics registry. */
  metricsRegistry: client.Registry;
  /** How often the lifecycle loop runs. Default 500 ms. */
  tickMs?: number;
  deleteGraceMs?: number;
  /** Deadline for an agent's create. Default 30 s. */
  agentCreateTimeoutMs?: number;
  clock?: Clock;
  /**
   * `token` (default): every call needs a token, agents the join token;
   * `none`: nothing is checked, refused unless every listener is on loopback.
   */
  auth?: "token" | "none";
  /**
   * TLS: the FastPath port presents `cert` and `key`, and agents are dialed
   * over TLS, their certificates checked against `ca` (else the system's roots).
   */
  tls?: { cert: string; key: string; ca?: string };
}

/**
 * The most one call may carry to the controller: a Register (and a heartbeat
 * answering `send_specs`) holds every sandbox's spec, and an agent's capacity
 * is capped so that even specs at their bounds fit (see MAX_AGENT_CAPACITY).
 */
export const MAX_CONTROLLER_MESSAGE_BYTES = 32 * 1024 * 1024;

/** A running controller; see {@linkcode startController}. */
export interface ControllerHandle {
  /** The serving term's controller; throws UnavailableError when this controller does not lead. */
  readonly controller: Controller;
  /** Which controller leads, and this one's term when it does. */
  readonly leadership: Leadership;
  /** The bound FastPath address. */
  readonly address: string;
  /** The bound metrics address, or "" when disabled. */
  readonly metricsAddress: string;
  /** Stops serving, flushes the store and closes it. */
  close(): Promise<void>;
}

/** The most one election term may take to settle before startController resolves anyway. */
const SETTLE_MS = 15_000;

/**
 * Opens the store and starts serving. On SQLite this controller serves at
 * once. On etcd it campaigns in the controllers' election (see
 * `_leadership.ts`) and resolves once the election has settled: it leads and
 * has loaded the store, or another controller is known to lead (then it
 * answers with the leader's address), or {@linkcode SETTLE_MS} passed.
 */
export async function startController(opts: StartControllerOptions): Promise<ControllerHandle> {
  const authMode = opts.auth ?? "token";
  if (authMode === "none") {
    for (const address of [opts.listen, opts.metricsListen]) {
      if (address !== "" && !isLoopback(address)) {
        throw new Error(
          `Cannot serve with --auth none on ${address}: without auth every listener must be on loopback`,
        );
      }
    }
  }
  // What is open so far, closed newest first if a later step fails.
  const opened: (() => Promise<void>)[] = [];
  const unwind = async (err: unknown): Promise<never> => {
    for (const close of opened.reverse()) {
      await close().catch((e) =>
        opts.logger.warn({ err: e }, "cleanup after a failed start failed")
      );
    }
    throw err;
  };
  const store = await openStore<SandboxRecord>(opts.store, { dataDir: opts.dataDir });
  const storeProbe = new StoreProbe(store as unknown as Store<unknown>);
  opened.push(() => store.close());
  const now = opts.clock === undefined ? undefined : () => opts.clock!.now();
  // One store for everything, keyed by prefix: auth records live beside sandboxes.
  const newAuth = (s: Store<SandboxRecord>) =>
    new TokenAuth({ store: s as unknown as Store<AuthRecord>, enabled: authMode === "token", now });
  const bootstrapAuth = newAuth(store);
  let leadership!: Leadership;
  let server!: RpcServer;
  let address!: string;
  let http: HttpHandle | undefined;
  // Created once per process; the gauges read whichever term serves when scraped.
  const metrics = createControllerMetrics(opts.metricsRegistry, {
    agents: () =>
      leadership?.peek()?.controller.agentTotals() ??
        { ready: 0, total: 0, capacity: 0, allocated: 0 },
    sandboxesByPhase: () => leadership?.peek()?.controller.sandboxesByPhase() ?? {},
  });
  // Checked by shape, so that a SQLite controller never loads etcd3 for an instanceof.
  const etcd = typeof (store as Partial<EtcdStore<SandboxRecord>>).fenced === "function"
    ? store as EtcdStore<SandboxRecord>
    : undefined;
  const terms: TermFactory = {
    async open(fence) {
      // A term writes only through its fence: once deposed, its writes fail in etcd itself.
      const termStore = fence === undefined ? store : etcd!.fenced(fence);
      const auth = fence === undefined ? bootstrapAuth : newAuth(termStore);
      if (fence !== undefined) await auth.load();
      const controller = new Controller({
        store: termStore,
        logger: opts.logger,
        metrics,
        defaultMode: opts.mode,
        agentTimeoutMs: opts.agentTimeoutMs,
        deleteGraceMs: opts.deleteGraceMs,
        agentCreateTimeoutMs: opts.agentCreateTimeoutMs,
        clock: opts.clock,
        auth,
        // A cluster that serves TLS speaks it on every hop: agents are dialed over TLS too.
        agentTls: opts.tls === undefined ? undefined : { ca: opts.tls.ca },
      });
      try {
        await controller.load();
      } catch (err) {
        await controller.close().catch(() => {});
        throw err;
      }
      return { controller, auth };
    },
    async close(term) {
      await term.controller.close();
    },
  };
  try {
    await bootstrapAuth.load();
    // Written before the controller listens, so whoever starts it can use them at once.
    await Deno.mkdir(opts.dataDir, { recursive: true });
    await bootstrapAuth.bootstrap({
      admin: `${opts.dataDir}/admin-token`,
      join: `${opts.dataDir}/join-token`,
    });
    server = new RpcServer({
      maxReceiveBytes: MAX_CONTROLLER_MESSAGE_BYTES,
      idleSocketMs: opts.idleSocketMs,
      tls: opts.tls === undefined ? undefined : { cert: opts.tls.cert, key: opts.tls.key },
      onInternalError: (err, method) => opts.logger.error({ err, method }, "internal error"),
      // Server reflection (grpcurl without .proto files): callers on loopback, or an admin token.
      reflection: {
        admit: (ctx) =>
          requireAdmin(
            leadership.current().auth.authenticate(ctx.metadata),
            "use server reflection",
          ),
      },
    });
    addControllerServices(server, () => leadership.current());
    server.add(
      Health,
      healthService({
        check: () => storeProbe.reachable && serving(leadership),
        services: [FastPath.typeName, AgentRegistry.typeName],
      }),
    );
    // Closing a server that never bound is harmless; one that did frees its port.
    opened.push(() => server.close());
    address = await server.listen(opts.listen);
    const self = opts.advertise ?? advertiseOf(address);
    let election: LeaderElection | undefined;
    if (etcd !== undefined) {
      const { LeaderElection } = await import("./leader_election.ts");
      election = new LeaderElection({
        endpoints: etcd.endpoints,
        name: `${etcd.prefix}election/controller/`,
        id: self,
        ttlSeconds: opts.leaseSeconds ?? 2,
        onError: (err) => opts.logger.debug({ err }, "election retrying"),
        // Reported only once started, after `leadership` below exists.
        onElected: (fence) => leadership.elected(fence),
        onDeposed: (reason) => leadership.deposed(reason),
        onLeaderChange: (leader) => leadership.leaderChanged(leader),
      });
      opened.push(() => election!.close());
    }
    leadership = new Leadership({ election, self, terms, logger: opts.logger });
    opened.push(() => leadership.close());
    await leadership.start();
    if (opts.metricsListen !== "") {
      http = await serveMetrics(opts.metricsListen, {
        registry: opts.metricsRegistry,
        debug: {
          admit: (headers) =>
            requireAdmin(leadership.current().auth.authenticate(headers), "profile the controller"),
          profile: captureProfile,
        },
        dashboard: {
          admit: (headers) =>
            requireAdmin(leadership.current().auth.authenticate(headers), "view the dashboard"),
          data: () => dashboardData(leadership.current().controller),
        },
        notReady: () =>
          !storeProbe.reachable
            ? `the store (${opts.store}) does not answer`
            : !serving(leadership)
            ? leadership.leading
              ? "recovering its state: waiting for the agents' reports"
              : "no controller leads yet"
            : undefined,
      });
    }
    await settle(leadership, SETTLE_MS);
  } catch (err) {
    return await unwind(err);
  }
  storeProbe.start();
  let ticking: Promise<void> | undefined;
  const timer = setInterval(() => {
    const term = leadership.peek();
    if (ticking || term === undefined) return;
    ticking = term.controller.tick()
      .catch((err) => opts.logger.error({ err }, "lifecycle tick failed"))
      .finally(() => ticking = undefined);
  }, opts.tickMs ?? 500);
  opts.logger.info(
    { address, metrics: http?.address ?? "", mode: opts.mode, store: opts.store, auth: authMode },
    "controller serving",
  );
  return {
    get controller() {
      return leadership.current().controller;
    },
    leadership,
    address,
    metricsAddress: http?.address ?? "",
    async close() {
      clearInterval(timer);
      storeProbe.stop();
      await ticking;
      await server.close(1000);
      await http?.close();
      // Resigning first lets another controller lead without waiting for the lease.
      await leadership.election?.close();
      await leadership.close();
      await store.close();
    },
  };
}

/**
 * Whether calls are served here: by this controller, leading and past its
 * recovery window; or, on a follower, by redirecting to a known leader.
 */
function serving(leadership: Leadership): boolean {
  const term = leadership.peek();
  if (term !== undefined) return !term.controller.recovering;
  const leader = leadership.leader();
  return leader !== undefined && !leadership.leading && leader !== leadership.self;
}

/** Waits for the election to settle, at most `ms`. */
async function settle(leadership: Leadership, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    leadership.settled(),
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/**
 * The address others reach a controller at, from the one it bound: a
 * wildcard host (`0.0.0.0`, `::`) names no host, so it becomes this
 * machine's hostname. Give `--advertise` when that does not resolve for the
 * others.
 */
function advertiseOf(bound: string): string {
  const { host, port } = parseHostPort(bound);
  if (host !== "0.0.0.0" && host !== "::" && host !== "") return formatHostPort(host, port);
  return formatHostPort(Deno.hostname(), port);
}

/** serveHttp, failing with the address it could not bind. */
async function serveMetrics(
  address: string,
  opts: Parameters<typeof serveHttp>[1],
): Promise<HttpHandle> {
  try {
    return await serveHttp(address, opts);
  } catch (err) {
    throw new Error(`Cannot serve metrics on ${address}: ${(err as Error).message}`);
  }
}
