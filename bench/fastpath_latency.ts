/**
 * FastPath create latency and throughput, end to end over loopback: this
 * process is the client (an already-connected SDK channel holding the admin
 * token); `fsb controller serve -v 2` and two `fsb agent run --runtime
 * process` (joined with the controller's join token) run as their own
 * processes, as deployed. The controller's timing log gives the stages.
 *
 * An agent holds at most 100 sandboxes, so the two agents have 200 slots
 * between them. Each series therefore runs in blocks of at most
 * {@linkcode BLOCK} creates: a block's sandboxes stay up until it ends, then
 * are deleted, untimed, before the next block. Latencies are those of every
 * create; creates/s is the creates over the blocks' summed wall time.
 *
 * Run: `deno run -A bench/fastpath_latency.ts [--creates N] [--json]`.
 * A script rather than Deno.bench because it reports p50/p99 and throughput
 * at fixed concurrency, which Deno.bench does not.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel } from "../proto/grpc.ts";
import {
  bearer,
  type CreateTiming,
  freePort,
  MAX_AGENT_CAPACITY,
  readTokens,
  runtimeMs,
  spawnAgent,
  spawnController,
  stop,
  summary,
  table,
} from "./_support.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    creates: { type: "string", default: "600" },
    json: { type: "boolean", default: false },
  },
});
const CREATES = Number(values.creates);
if (!Number.isInteger(CREATES) || CREATES < 1) {
  throw new Error(`--creates must be a positive whole number`);
}

const AGENT_IDS = ["bench-a", "bench-b"];
/**
 * Creates alive at once, at most: five waves at concurrency 32, and 40 of
 * the agents' 200 slots to spare (placement goes to the least loaded agent,
 * so a block splits evenly between the two).
 */
const BLOCK = 160;

interface RunResult {
  concurrency: number;
  creates: number;
  seconds: number;
  latencies: number[];
  stages: Record<string, number[]>;
}

async function main(): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-bench-" });
  const endpoint = `127.0.0.1:${await freePort()}`;
  const timings = new Map<string, CreateTiming>();
  const controller = spawnController(endpoint, `${dataDir}/controller`, timings);
  const agents: Deno.ChildProcess[] = [];
  let channel: RpcChannel | undefined;
  const command = ["sleep", "600"];
  /** Sandboxes created (or being created) and not yet deleted. */
  const live = new Set<string>();

  try {
    const tokens = await readTokens(`${dataDir}/controller`, controller);
    for (const id of AGENT_IDS) {
      agents.push(spawnAgent(endpoint, {
        id,
        dataDir: `${dataDir}/${id}`,
        runtime: ["process"],
        capacity: MAX_AGENT_CAPACITY,
        joinTokenFile: tokens.joinFile,
      }));
    }
    channel = new RpcChannel(endpoint, { timeoutMs: 30_000, metadata: bearer(tokens.admin) });
    const client = channel.client(FastPath);

    const create = async (name: string) => {
      live.add(name);
      return await client.createSandbox({ name, image: "busybox", command });
    };

    /** Deletes every live sandbox, 16 at a time (untimed). */
    const deleteLive = async () => {
      const names = [...live];
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < names.length) {
          const name = names[next++];
          try {
            await client.deleteSandbox({ name });
          } catch (err) {
            // A create that failed may have left nothing to delete.
            if (!/not found/i.test((err as Error).message)) throw err;
          }
          live.delete(name);
        }
      }));
      // Let the agents finish stopping those processes before anything is timed again.
      await new Promise((r) => setTimeout(r, 100));
    };

    /** Waits until both agents take sandboxes (probes land on distinct agents), then frees them. */
    const waitForAgents = async () => {
      const deadline = Date.now() + 60_000;
      let lastError = "";
      for (;;) {
        const seen = new Set<string>();
        try {
          for (const probe of AGENT_IDS.map((_, i) => `probe-${i}`)) {
            seen.add((await create(probe)).agent);
          }
        } catch (err) {
          // Not up yet.
          lastError = (err as Error).message;
        }
        // Kept in `live` if the controller is not answering yet: tried again next time.
        await deleteLive().catch((err) => lastError = (err as Error).message);
        if (seen.size === AGENT_IDS.length && live.size === 0) return;
        if (Date.now() > deadline) {
          throw new Error(
            `agents did not register: ${lastError}\n--- controller:\n${controller.tail()}`,
          );
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    };

    const run = async (concurrency: number, count: number, prefix: string): Promise<RunResult> => {
      const latencies = new Map<string, number>();
      let seconds = 0;
      for (let start = 0; start < count; start += BLOCK) {
        const end = Math.min(count, start + BLOCK);
        let next = start;
        const t0 = performance.now();
        await Promise.all(Array.from({ length: concurrency }, async () => {
          while (next < end) {
            const name = `${prefix}-${next++}`;
            const t = performance.now();
            await create(name);
            latencies.set(name, performance.now() - t);
          }
        }));
        seconds += (performance.now() - t0) / 1000;
        await deleteLive();
      }
      // The controller logs after replying; give the last lines time to arrive.
      await new Promise((r) => setTimeout(r, 300));
      const stages: Record<string, number[]> = {};
      for (const [name, latency] of latencies) {
        const t = timings.get(`sandboxes/default/${name}`);
        if (t === undefined) continue;
        for (const [stage, v] of Object.entries(t.ms)) (stages[stage] ??= []).push(v);
        const runtime = runtimeMs(t);
        (stages["runtime (the process start itself)"] ??= []).push(runtime);
        (stages["controller side minus runtime"] ??= []).push(t.ms.total - runtime);
        (stages["client to controller and back"] ??= []).push(latency - t.ms.total);
        (stages["end to end minus runtime"] ??= []).push(latency - runtime);
      }
      return { concurrency, creates: count, seconds, latencies: [...latencies.values()], stages };
    };

    await waitForAgents();
    await run(4, 100, "warm");
    const results = [await run(1, Math.min(CREATES, 300), "c1"), await run(32, CREATES, "c32")];
    console.log(
      `\nFastPath CreateSandbox, process runtime, ${AGENT_IDS.length} agents, loopback gRPC ` +
        `(blocks of at most ${BLOCK} creates, deleted between blocks, untimed)`,
    );
    table(
      ["concurrency", "creates", "p50 ms", "p99 ms", "creates/s"],
      results.map((r) => {
        const s = summary(r.latencies);
        return [
          String(r.concurrency),
          String(r.creates),
          s.p50,
          s.p99,
          (r.creates / r.seconds).toFixed(0),
        ];
      }),
    );
    for (const r of results) {
      console.log(`\nStage breakdown at concurrency ${r.concurrency} (ms)`);
      table(
        ["stage", "p50", "p99"],
        Object.entries(r.stages).map(([stage, vs]) => {
          const s = summary(vs);
          return [stage, s.p50, s.p99];
        }),
      );
    }
    if (values.json) {
      console.log(JSON.stringify(results.map((r) => ({ ...r, latencies: summary(r.latencies) }))));
    }
  } finally {
    if (channel !== undefined) {
      const client = channel.client(FastPath);
      for (const name of live) await client.deleteSandbox({ name }).catch(() => {});
      channel.close();
    }
    for (const a of agents) await stop(a);
    await stop(controller.child);
    await controller.logDone.catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
