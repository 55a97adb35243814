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
import { serveHttp } from "./_http.ts";

export { type Clock, Controller, type Phase, type SandboxRecord } from "./controller.ts";
export { createControllerMetrics } from "./metrics.ts";

/** Options for {@linkcode startController}. */
export interface StartControllerOptions {
  /** FastPath (and agent registry) gRPC address, `HOST:PORT`. */
  listen: string;
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
}

/** A running controller. */
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
  const store = await openStore<SandboxRecord>(opts.store, { dataDir: opts.dataDir });
  // The gauges read the controller only when scraped, after it exists.
  const controller: Controller = new Controller({
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
  });
  await controller.load();
  const server = new RpcServer({
    onInternalError: (err, method) => opts.logger.error({ err, method }, "internal error"),
  });
  addControllerServices(server, controller);
  let address: string;
  try {
    address = await server.listen(opts.listen);
  } catch (err) {
    await store.close();
    throw err;
  }
  const http = opts.metricsListen === ""
    ? undefined
    : await serveHttp(opts.metricsListen, { registry: opts.metricsRegistry });
  let ticking: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = controller.tick()
      .catch((err) => opts.logger.error({ err }, "lifecycle tick failed"))
      .finally(() => ticking = undefined);
  }, opts.tickMs ?? 500);
  opts.logger.info(
    { address, metrics: http?.address ?? "", mode: opts.mode, store: opts.store },
    "controller serving",
  );
  return {
    controller,
    address,
    metricsAddress: http?.address ?? "",
    async close() {
      clearInterval(timer);
      await ticking;
      await server.close(1000);
      await http?.close();
      await controller.close();
      await store.close();
    },
  };
}
