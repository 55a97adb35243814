/**
 * The report of bench/warm_bench.ts: one table of every series beside its
 * target, then each series' stages from the controller's timing log.
 *
 * @module
 */
import { summary, table } from "./_support.ts";

/** One OCI runtime's samples from bench/warm_bench.ts, in ms. */
export interface WarmResults {
  oci: string;
  warmCreate: number[];
  warmTti: number[];
  coldCreate: number[];
  coldTti: number[];
  ctrProcess: number[];
  ctrTti: number[];
  shell: number[];
  /** `fsb version`, whole process: what any `fsb` process costs before its work. */
  version: number[];
  /** `fsb sandbox create --help`, whole process: the CLI's modules loaded, no call made. */
  help: number[];
  burst: number[];
  /** Wall time of each burst. */
  burstWall: number[];
  /** Creates that should have been warm and were not, by series. */
  misses: Record<string, number>;
  burstWarm: number;
  stages: Record<string, Record<string, number[]>>;
  /** /proc/loadavg's three load averages at the start and the end of the runtime's series. */
  load: string[];
  error?: string;
}

/**
 * Prints `results` as markdown tables (or, with `json`, everything as JSON):
 * p50, p99 and creates/s (1000 / mean) per series, each target with whether
 * it was met, then the stage breakdowns.
 */
export function reportWarm(
  results: WarmResults[],
  opts: {
    machine: Record<string, string | number>;
    iterations: number;
    pool: number;
    bursts: number;
    warmup: number;
    json: boolean;
  },
): void {
  if (opts.json) {
    console.log(JSON.stringify({ machine: opts.machine, results }, null, 2));
    return;
  }
  for (const r of results) if (r.error !== undefined) console.error(`${r.oci} failed: ${r.error}`);
  const m = opts.machine;
  console.log(`${m.cpu}, ${m.cpus} vCPUs, Linux ${m.kernel}, ${m.date}`);
  console.log(`${m.containerd}\n${m.runc}${m.runsc ? `\n${m.runsc}` : ""}`);
  console.log(
    `${opts.iterations} per series after ${opts.warmup} warm-ups, interleaved; ` +
      `${opts.bursts} bursts of ${opts.pool} on a pool of ${opts.pool}`,
  );
  for (const r of results) {
    console.log(
      `${r.oci}: load average (1, 5, 15 min) ${r.load[0]} at the start, ${
        r.load[1] ?? "?"
      } at the end`,
    );
  }
  console.log("");
  const rows: (string | number)[][] = [];
  for (const r of results) {
    const row = (
      series: string,
      samples: number[],
      extra: { target?: string; note?: string; rate?: false },
    ) => {
      if (samples.length === 0) return;
      const s = summary(samples);
      const perSecond = extra.rate === false ? "" : 1000 / s.mean;
      rows.push([
        r.oci,
        series,
        String(samples.length),
        s.p50,
        s.p99,
        perSecond,
        extra.target ?? "",
        extra.note ?? "",
      ]);
      return s;
    };
    const verdict = (ok: boolean) => ok ? "met" : "MISSED";
    const warm = summary(r.warmCreate);
    const ctr = summary(r.ctrProcess);
    const shell = summary(r.shell);
    row("time to interactive: warm (create + first line via logs)", r.warmTti, {});
    row("time to interactive: cold (coldbox, nothing made ahead)", r.coldTti, {});
    row("time to interactive: ctr run -d + first line in its log", r.ctrTti, {});
    // What the logs call adds to the create: the agent polls a log file every 50 ms.
    const part = (tti: number[], create: number[]) => tti.map((t, i) => t - create[i]);
    row(
      "  of which the first line after the create returned: warm",
      part(r.warmTti, r.warmCreate),
      { rate: false },
    );
    row(
      "  of which the first line after the create returned: cold",
      part(r.coldTti, r.coldCreate),
      { rate: false },
    );
    row("  of which the first line after ctr exited", part(r.ctrTti, r.ctrProcess), {
      rate: false,
    });
    row("create, warm, SDK one at a time", r.warmCreate, {
      target: "p50 < 10, p99 < 20",
      note: `${verdict(warm.p50 < 10 && warm.p99 < 20)}; misses ${r.misses.warm}`,
    });
    row("create, cold, SDK one at a time", r.coldCreate, {});
    const burst = summary(r.burst);
    const wall = r.burstWall.reduce((a, b) => a + b, 0);
    row(`burst of ${opts.pool} at once, pool of ${opts.pool}`, r.burst, {
      target: "p99 < 100",
      note: `${verdict(burst.p99 < 100)}; ${r.burstWarm}/${r.burst.length} warm, ` +
        `${(r.burst.length / wall * 1000).toFixed(0)} creates/s over the bursts`,
    });
    row("fsb sandbox create, whole process, warm hit", r.shell, {
      target: "p50 <= 0.5 x ctr",
      note: `${verdict(shell.p50 <= 0.5 * ctr.p50)}: p50 ${(shell.p50 / ctr.p50).toFixed(2)} x, ` +
        `p99 ${(shell.p99 / ctr.p99).toFixed(2)} x; misses ${r.misses.shell}`,
    });
    row("ctr run -d, whole process", r.ctrProcess, {});
    row("fsb version, whole process (a Deno process's floor)", r.version, {});
    row("fsb sandbox create --help, whole process (+ the CLI's modules)", r.help, {});
  }
  table(["oci", "series", "n", "p50 ms", "p99 ms", "creates/s", "target", "result"], rows);
  console.log("\ncreates/s: 1000 / mean for one at a time; the burst's own rate is in its note");
  for (const r of results) {
    for (const [series, stages] of Object.entries(r.stages)) {
      console.log(`\n${r.oci}, ${series}: stages (ms, controller -v 2 timing log)`);
      table(
        ["stage", "p50", "p99", "mean"],
        Object.entries(stages).map(([stage, ms]) => {
          const s = summary(ms);
          return [stage, s.p50, s.p99, s.mean];
        }),
      );
    }
  }
}
