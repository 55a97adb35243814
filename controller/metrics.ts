/**
 * The controller's Prometheus metrics, created once per process and passed in.
 *
 * @module
 */
import client from "prom-client";

/** The metrics the controller records. */
export interface ControllerMetrics {
  /** End-to-end FastPath create latency, the reference's name and buckets. */
  readonly createDuration: client.Histogram<"mode" | "success">;
  /** Per-stage create latency: allocate, agent_rpc, runtime_create, runtime_start, store. */
  readonly createStage: client.Histogram<"stage">;
}

/** What the gauges read when scraped. */
export interface ControllerGauges {
  agents(): { ready: number; total: number; capacity: number; allocated: number };
  sandboxesByPhase(): Record<string, number>;
}

/**
 * Registers the controller's metrics on `registry`; gauges are read from
 * `gauges` only when scraped, so the hot path never touches them.
 */
export function createControllerMetrics(
  registry: client.Registry,
  gauges: ControllerGauges,
): ControllerMetrics {
  const createDuration = new client.Histogram({
    name: "fastpath_create_sandbox_duration_seconds",
    help: "FastPath CreateSandbox latency, from request to reply.",
    labelNames: ["mode", "success"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const createStage = new client.Histogram({
    name: "fastpath_create_stage_duration_seconds",
    help: "FastPath CreateSandbox latency by stage.",
    labelNames: ["stage"] as const,
    buckets: [0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  new client.Gauge({
    name: "fsb_agents",
    help: "Registered agents by readiness.",
    labelNames: ["ready"] as const,
    registers: [registry],
    collect() {
      const a = gauges.agents();
      this.set({ ready: "true" }, a.ready);
      this.set({ ready: "false" }, a.total - a.ready);
    },
  });
  new client.Gauge({
    name: "fsb_registry_slots",
    help: "Sandbox slots over all registered agents.",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const a = gauges.agents();
      this.set({ state: "capacity" }, a.capacity);
      this.set({ state: "allocated" }, a.allocated);
    },
  });
  new client.Gauge({
    name: "fsb_sandboxes",
    help: "Sandboxes known to the controller by phase.",
    labelNames: ["phase"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [phase, n] of Object.entries(gauges.sandboxesByPhase())) this.set({ phase }, n);
    },
  });
  return { createDuration, createStage };
}
