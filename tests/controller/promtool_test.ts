/**
 * `/metrics` passes Prometheus's own linter, `promtool check metrics`
 * (Debian's `prometheus` package), and the sandbox gauge has a series for
 * every phase. Ignored where promtool is missing, unless FSB_REQUIRE_REAL=1.
 */
import assert from "node:assert/strict";
import { startCluster } from "../support/cluster.ts";
import { startUp } from "../support/fsb_process.ts";
import { ignoreWithout } from "../support/real_parts.ts";
import {
  NONCONFORMING_DEFAULT_METRICS,
  processMetricsRegistry,
  SANDBOX_PHASES,
} from "../../controller/metrics.ts";

/** Pipes `text` through `promtool check metrics`; its exit code and what it said. */
async function promtool(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
}

async function assertPromtoolAccepts(text: string): Promise<void> {
  const { code, output } = await promtool(text);
  assert.equal(code, 0, `promtool check metrics failed (exit ${code}):\n${output}`);
}

/** The series of `name` in an exposition text, as `{labels} value` lines. */
function series(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => l.slice(name.length));
}

const ignore = ignoreWithout("promtool");

Deno.test({
  name: "promtool accepts the controller's /metrics, with process metrics as main.ts adds them",
  ignore,
  fn: async () => {
    const cluster = await startCluster();
    try {
      const url = `http://${cluster.controller.metricsAddress}/metrics`;
      // Before any sandbox: every phase reads 0 rather than being absent.
      const empty = await (await fetch(url)).text();
      assert.deepEqual(
        series(empty, "fsb_sandboxes"),
        SANDBOX_PHASES.map((phase) => `{phase="${phase}"} 0`),
      );
      await cluster.client.createSandbox({
        name: "metrics",
        namespace: "default",
        image: "busybox",
        command: ["sleep", "30"],
      });
      const text = await (await fetch(url)).text();
      assert.ok(series(text, "fsb_sandboxes").includes('{phase="Running"} 1'));
      assert.ok(series(text, "fsb_sandboxes").includes('{phase="Failed"} 0'));
      assert.match(text, /^fastpath_create_sandbox_duration_seconds_bucket\{/m);
      await assertPromtoolAccepts(text);

      // The cluster's registry has no process metrics; main.ts's does. The two
      // sets of names are disjoint, so their texts concatenate into one valid page.
      const registry = processMetricsRegistry();
      const processText = await registry.metrics();
      for (const name of NONCONFORMING_DEFAULT_METRICS) {
        assert.ok(!processText.includes(`${name} `), `${name} is left out`);
      }
      assert.match(processText, /^process_cpu_seconds_total /m);
      assert.match(processText, /^# TYPE nodejs_active_handles gauge$/m);
      await assertPromtoolAccepts(`${text}${processText}`);
    } finally {
      await cluster.close();
    }
  },
});

Deno.test({
  name: "promtool accepts what `fsb up` serves on /metrics",
  ignore,
  fn: async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "fsb-promtool-" });
    const up = await startUp(dataDir, ["--runtime", "process"]);
    try {
      const text = await (await fetch(up.metrics)).text();
      assert.match(text, /^process_cpu_seconds_total /m, "fsb up serves process metrics");
      assert.match(text, /^fsb_sandboxes\{phase="Running"\} 0$/m);
      await assertPromtoolAccepts(text);
    } finally {
      up.child.kill("SIGTERM");
      await up.child.status;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
