/**
 * What the dashboard shows (shared/DESIGN.md section 16), as plain JSON:
 * agents, sandbox counts by namespace and phase, warm pools and the
 * create-latency histogram. `/dashboard/data` serves it and the page embeds
 * its first copy, so the page draws at once and then polls.
 *
 * @module
 */
import type { Controller } from "./controller.ts";
import { SANDBOX_PHASES } from "./metrics.ts";

/** One agent as the dashboard lists it. */
export interface DashboardAgent {
  readonly id: string;
  readonly address: string;
  readonly pool: string;
  readonly namespace: string;
  readonly capacity: number;
  readonly allocated: number;
  readonly ready: boolean;
  /** Normalized image references on its host, sorted. */
  readonly images: string[];
  /** Milliseconds since its last heartbeat, by the controller's clock. */
  readonly heartbeatAgeMs: number;
  /** Its warm pool; none yet (section 13 is still to come). */
  readonly warmPool: null;
}

/** Sandboxes of one namespace, by phase. */
export interface DashboardNamespace {
  readonly namespace: string;
  readonly total: number;
  readonly phases: Record<string, number>;
}

/** One bar of the histogram: observations in (previous bound, `le`]. */
export interface DashboardBucket {
  /** Upper bound in seconds; `null` for the overflow bar (above the last bound). */
  readonly le: number | null;
  /** Creates that succeeded in this bucket. */
  readonly ok: number;
  /** Creates that failed in this bucket. */
  readonly failed: number;
}

/** The whole dashboard. */
export interface DashboardData {
  /** When it was taken, ISO 8601. */
  readonly time: string;
  readonly agents: DashboardAgent[];
  readonly totals: { agents: number; ready: number; capacity: number; allocated: number };
  readonly sandboxes: {
    readonly total: number;
    /** The phases that occur, in lifecycle order. */
    readonly phases: string[];
    /** Sorted by namespace. */
    readonly namespaces: DashboardNamespace[];
  };
  /** Warm pools, none yet. */
  readonly warmPools: never[];
  readonly createLatency: {
    /** The histogram's name on `/metrics`. */
    readonly metric: string;
    readonly buckets: DashboardBucket[];
    readonly count: number;
    readonly failed: number;
    /** Sum of all observations, seconds. */
    readonly sum: number;
  };
}

/** Lifecycle order (shared/DESIGN.md section 5); phases not listed sort after, by name. */
const PHASE_ORDER: readonly string[] = SANDBOX_PHASES;

function phaseRank(phase: string): number {
  const i = PHASE_ORDER.indexOf(phase);
  return i < 0 ? PHASE_ORDER.length : i;
}

/** The histogram as prom-client's `get()` reports it. */
export interface HistogramValues {
  readonly name: string;
  readonly values: readonly {
    readonly labels: Readonly<Record<string, string | number | undefined>>;
    readonly value: number;
    readonly metricName?: string;
  }[];
}

/**
 * The bounds of `fastpath_create_sandbox_duration_seconds` (shared/DESIGN.md
 * section 9), drawn while nothing has been observed: prom-client reports no
 * series for a labelled histogram before its first observation.
 */
export const CREATE_LATENCY_BOUNDS: readonly number[] = [
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
];

/**
 * Turns prom-client's cumulative `_bucket` series (one set per label
 * combination) into one bar per bucket, split by the `success` label, plus
 * the overflow above the last bound. `emptyBounds` are drawn when there is
 * no series yet.
 */
export function histogramBars(
  h: HistogramValues,
  emptyBounds: readonly number[] = CREATE_LATENCY_BOUNDS,
): DashboardData["createLatency"] {
  // Cumulative counts per label set, by bound.
  const series = new Map<string, { ok: boolean; cum: Map<number, number>; count: number }>();
  let sum = 0;
  const bounds = new Set<number>();
  for (const v of h.values) {
    const { le, ...rest } = v.labels;
    const key = JSON.stringify(Object.entries(rest).sort(([a], [b]) => a < b ? -1 : 1));
    let s = series.get(key);
    if (s === undefined) {
      s = { ok: rest.success !== "false", cum: new Map(), count: 0 };
      series.set(key, s);
    }
    const name = v.metricName ?? "";
    if (name.endsWith("_bucket") && le !== undefined && le !== "+Inf") {
      const bound = Number(le);
      bounds.add(bound);
      s.cum.set(bound, v.value);
    } else if (name.endsWith("_count")) {
      s.count = v.value;
    } else if (name.endsWith("_sum")) {
      sum += v.value;
    }
  }
  const sorted = bounds.size > 0 ? [...bounds].sort((a, b) => a - b) : [...emptyBounds];
  const buckets: DashboardBucket[] = [];
  let count = 0, failed = 0;
  const add = (i: number, ok: number, bad: number) => {
    const b = buckets[i];
    buckets[i] = { le: b.le, ok: b.ok + ok, failed: b.failed + bad };
  };
  for (const le of sorted) buckets.push({ le, ok: 0, failed: 0 });
  buckets.push({ le: null, ok: 0, failed: 0 });
  for (const s of series.values()) {
    let prev = 0;
    sorted.forEach((le, i) => {
      const cum = s.cum.get(le) ?? prev;
      add(i, s.ok ? cum - prev : 0, s.ok ? 0 : cum - prev);
      prev = cum;
    });
    const over = Math.max(0, s.count - prev);
    add(sorted.length, s.ok ? over : 0, s.ok ? 0 : over);
    count += s.count;
    if (!s.ok) failed += s.count;
  }
  return { metric: h.name, buckets, count, failed, sum };
}

/** The dashboard's data, from the controller's snapshot. */
export async function dashboardData(controller: Controller): Promise<DashboardData> {
  const snap = await controller.dashboard();
  const agents = snap.agents.map((a): DashboardAgent => ({
    id: a.id,
    address: a.address,
    pool: a.pool,
    namespace: a.namespace,
    capacity: a.capacity,
    allocated: a.allocated,
    ready: a.ready,
    images: [...a.images].sort(),
    heartbeatAgeMs: Math.max(0, snap.now - a.lastHeartbeat),
    warmPool: null,
  })).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const phases = new Set<string>();
  let total = 0;
  const namespaces = Object.entries(snap.sandboxes).map(([namespace, byPhase]) => {
    let n = 0;
    for (const [phase, k] of Object.entries(byPhase)) {
      phases.add(phase);
      n += k;
    }
    total += n;
    return { namespace, total: n, phases: { ...byPhase } };
  }).sort((a, b) => a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0);
  return {
    time: new Date(snap.now).toISOString(),
    agents,
    totals: {
      agents: agents.length,
      ready: agents.filter((a) => a.ready).length,
      capacity: agents.reduce((n, a) => n + a.capacity, 0),
      allocated: agents.reduce((n, a) => n + a.allocated, 0),
    },
    sandboxes: {
      total,
      phases: [...phases].sort((a, b) => phaseRank(a) - phaseRank(b) || (a < b ? -1 : 1)),
      namespaces,
    },
    warmPools: [],
    createLatency: histogramBars(snap.createDuration),
  };
}
