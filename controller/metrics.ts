/**
 * The controller's Prometheus metrics, created once per process and passed in.
 *
 * @module
 */
import client from "prom-client";
import type { Phase } from "./controller.ts";

/**
 * Every sandbox phase, so that `fsb_sandboxes` has a series (maybe 0) for
 * each from the first scrape: a phase with no sandboxes reads 0, not absent.
 */
export const SANDBOX_PHASES = [
  "Pending",
  "Creating",
  "Running",
  "Exited",
  "Failed",
  "Terminating",
  "Expired",
  "Lost",
] as const satisfies readonly Phase[];

// A compile error here means a phase was added to Phase but not to SANDBOX_PHASES.
const _everyPhase: readonly (typeof SANDBOX_PHASES)[number][] = [] as Phase[];

/**
 * prom-client's default metrics that `promtool check metrics` rejects: gauges
 * named `_total` ("non-counter metrics should not have _total suffix"). Each
 * is the sum of a labelled gauge that stays (`nodejs_active_handles` by
 * `type`, and so on): `sum(nodejs_active_handles)` gives the same number.
 */
export const NONCONFORMING_DEFAULT_METRICS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
] as const;

/**
 * A registry with prom-client's default process and runtime metrics, less
 * {@linkcode NONCONFORMING_DEFAULT_METRICS}: the process's one registry,
 * which the controller and agent then register their own metrics on.
 */
export function processMetricsRegistry(): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  for (const name of NONCONFORMING_DEFAULT_METRICS) registry.removeSingleMetric(name);
  return registry;
}

/** The metrics the controller records. */
export interface ControllerMetrics {
  /** End-to-end FastPath create latency, the reference's name and buckets. */
  readonly createDuration: client.Histogram<"mode" | "success" | "path">;
  /** Per-stage create latency: allocate, agent_rpc, runtime_create, runtime_start, store. */
  readonly createStage: client.Histogram<"stage" | "path">;
  /** Creates that a warm container served (hit) or not (miss). */
  readonly warm: client.Counter<"result">;
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
    // path: warm, prepared or cold (shared/DESIGN.md section 13); "none" for a create that failed.
    labelNames: ["mode", "success", "path"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const createStage = new client.Histogram({
    name: "fastpath_create_stage_duration_seconds",
    help: "FastPath CreateSandbox latency by stage.",
    labelNames: ["stage", "path"] as const,
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
      const counts = gauges.sandboxesByPhase();
      for (const phase of SANDBOX_PHASES) this.set({ phase }, counts[phase] ?? 0);
      // A phase outside the list (from a newer controller's records) still shows.
      for (const [phase, n] of Object.entries(counts)) {
        if (!(SANDBOX_PHASES as readonly string[]).includes(phase)) this.set({ phase }, n);
      }
    },
  });
  const warm = new client.Counter({
    name: "fsb_warm_creates_total",
    help: "Sandbox creates a warm container served (hit) or not (miss: prepared or cold path).",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  return { createDuration, createStage, warm };
}
