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
 * The most one call may carry to the controller: a heartbeat holds every
 * sandbox's spec, and an agent's capacity is capped so that even specs at
 * their bounds fit (see MAX_AGENT_CAPACITY).
 */
export const MAX_CONTROLLER_MESSAGE_BYTES = 32 * 1024 * 1024;

export interface ControllerHandle {
  readonly controller: Controller;
  /** The bound FastPath address. */
  readonly address: string;
  /** The bound metrics address, or "" when disabled. */
  readonly metricsAddress: string;
  /** Stops serving, flushes the store and closes it. */
  close(): Promise<void>;
}

/** Opens the store, loads sandboxes, and starts serving. */
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
  // One store for everything, keyed by prefix: auth records live beside sandboxes.
  const auth = new TokenAuth({
    store: store as unknown as Store<AuthRecord>,
    enabled: authMode === "token",
    now: opts.clock === undefined ? undefined : () => opts.clock!.now(),
  });
  let controller!: Controller;
  let server!: RpcServer;
  let address!: string;
  let http: HttpHandle | undefined;
  try {
    await auth.load();
    // Written before the controller listens, so whoever starts it can use them at once.
    await Deno.mkdir(opts.dataDir, { recursive: true });
    await auth.bootstrap({
      admin: `${opts.dataDir}/admin-token`,
      join: `${opts.dataDir}/join-token`,
    });
    // The gauges read the controller only when scraped, after it exists.
    controller = new Controller({
      store,
      logger: opts.logger,
      metrics: createControllerMetrics(opts.metricsRegistry, {
        agents: () => controller.agentTotals(),
        sandboxesByPhase: () => controller.sandboxesByPhase(),
      }),
      defaultMode: opts.mode,
      agentTimeoutMs: opts.agentTimeoutMs,
      deleteGraceMs: opts.deleteGraceMs,
      agentCreateTimeoutMs: opts.agentCreateTimeoutMs,
      clock: opts.clock,
      auth,
      // A cluster that serves TLS speaks it on every hop: agents are dialed over TLS too.
      agentTls: opts.tls === undefined ? undefined : { ca: opts.tls.ca },
    });
    opened.push(() => controller.close());
    await controller.load();
    server = new RpcServer({
      maxReceiveBytes: MAX_CONTROLLER_MESSAGE_BYTES,
      idleSocketMs: opts.idleSocketMs,
      tls: opts.tls === undefined ? undefined : { cert: opts.tls.cert, key: opts.tls.key },
      onInternalError: (err, method) => opts.logger.error({ err, method }, "internal error"),
      // Server reflection (grpcurl without .proto files): callers on loopback, or an admin token.
      reflection: {
        admit: (ctx) => requireAdmin(auth.authenticate(ctx.metadata), "use server reflection"),
      },
    });
    addControllerServices(server, controller, auth);
    server.add(
      Health,
      healthService({
        check: () => storeProbe.reachable && !controller.recovering,
        services: [FastPath.typeName, AgentRegistry.typeName],
      }),
    );
    // Closing a server that never bound is harmless; one that did frees its port.
    opened.push(() => server.close());
    address = await server.listen(opts.listen);
    if (opts.metricsListen !== "") {
      http = await serveMetrics(opts.metricsListen, {
        registry: opts.metricsRegistry,
        debug: {
          admit: (headers) => requireAdmin(auth.authenticate(headers), "profile the controller"),
          profile: captureProfile,
        },
        dashboard: {
          admit: (headers) => requireAdmin(auth.authenticate(headers), "view the dashboard"),
          data: () => dashboardData(controller),
        },
        notReady: () =>
          !storeProbe.reachable
            ? `the store (${opts.store}) does not answer`
            : controller.recovering
            ? "recovering its state: waiting for the agents' reports"
            : undefined,
      });
    }
  } catch (err) {
    return await unwind(err);
  }
  storeProbe.start();
  let ticking: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = controller.tick()
      .catch((err) => opts.logger.error({ err }, "lifecycle tick failed"))
      .finally(() => ticking = undefined);
  }, opts.tickMs ?? 500);
  opts.logger.info(
    { address, metrics: http?.address ?? "", mode: opts.mode, store: opts.store, auth: authMode },
    "controller serving",
  );
  return {
    controller,
    address,
    metricsAddress: http?.address ?? "",
    async close() {
      clearInterval(timer);
      storeProbe.stop();
      await ticking;
      await server.close(1000);
      await http?.close();
      await controller.close();
      await store.close();
    },
  };
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
