/**
 * Controller failover (issue 11's target): three `fsb controller serve`
 * processes on a real 3-member etcd cluster, a process-runtime agent that
 * knows all three, and a steady load of creates from several clients, each
 * retrying its create (by name, so idempotent) while it fails with
 * UNAVAILABLE. Each round SIGKILLs the leader and measures the time from the
 * kill to the first create acknowledged after it (by the new leader); the
 * killed controller is started again before the next round. Reported: that
 * failover time's p50 and max over the rounds (target < 3 s), and the creates
 * per second and latency p50/p99 (retries included) over the whole run,
 * failovers and all, beside the same figures from a 10 s window of the
 * same load before the first kill.
 *
 * Run: `deno task bench:failover [--kills 10] [--clients 4] [--lease-ttl 2s]`.
 * Needs etcd on PATH.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Code, RpcError } from "../proto/rpc.ts";
import { startControllers } from "../tests/support/controllers.ts";
import { summary, table } from "./_support.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    kills: { type: "string", default: "10" },
    clients: { type: "string", default: "4" },
    "lease-ttl": { type: "string", default: "2s" },
  },
});
const kills = Number(args.values.kills);
const clients = Number(args.values.clients);

const scene = await startControllers(3, { leaseTtl: args.values["lease-ttl"] });
/** Create latencies (retries included) with no failover, then through the kills. */
const steady: number[] = [];
const through: number[] = [];
let latencies = steady;
const failovers: number[] = [];
let acknowledged = 0;
let lastAck = 0;
let running = true;
try {
  await scene.startAgent();
  const load = async (w: number) => {
    const client = scene.client();
    try {
      for (let n = 0; running; n++) {
        const name = `bench-${w}-${n}`;
        const t0 = performance.now();
        for (;;) {
          try {
            await client.sandboxes.create({ name, image: "busybox", command: ["sleep", "600"] });
            break;
          } catch (err) {
            if (!(err instanceof RpcError) || err.code !== Code.UNAVAILABLE) throw err;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        const t1 = performance.now();
        latencies.push(t1 - t0);
        acknowledged++;
        lastAck = t1;
        // Keep within the agent's capacity: each sandbox lives only until the next one is made.
        await client.sandboxes.delete(name).catch(() => {});
      }
    } finally {
      client.close();
    }
  };
  const loads = Array.from({ length: clients }, (_, w) => load(w));
  // A steady window first: the same load with no failover, to compare against.
  await new Promise((r) => setTimeout(r, 1_000));
  const steadyFrom = performance.now();
  const steadyAcks = acknowledged;
  steady.length = 0;
  await new Promise((r) => setTimeout(r, 10_000));
  const steadyRate = (acknowledged - steadyAcks) / ((performance.now() - steadyFrom) / 1000);
  latencies = through;
  const started = performance.now();
  const startAcks = acknowledged;
  for (let k = 0; k < kills; k++) {
    const leader = await scene.leader();
    // Let the load settle on this leader first.
    await new Promise((r) => setTimeout(r, 1_000));
    const killedAt = performance.now();
    const killedWall = Date.now();
    await leader.kill();
    while (lastAck <= killedAt) await new Promise((r) => setTimeout(r, 5));
    failovers.push(lastAck - killedAt);
    console.error(
      `kill ${k + 1}/${kills}: first create acknowledged after ${
        (lastAck - killedAt).toFixed(0)
      } ms`,
    );
    if (Deno.env.get("FSB_BENCH_VERBOSE")) {
      for (const line of scene.logs().split("\n")) {
        if (!line.startsWith("{")) continue;
        const rec = JSON.parse(line);
        if (rec.time < killedWall - 100) continue;
        console.error(
          `  +${rec.time - killedWall} ms ${rec.msg} ${
            rec.controller ?? rec.leader ?? rec.err ?? ""
          }`,
        );
      }
    }
    await leader.restart();
  }
  running = false;
  await Promise.all(loads);
  const seconds = (performance.now() - started) / 1000;
  const f = summary(failovers);
  const s = summary(steady);
  const l = summary(through);
  const rate = (acknowledged - startAcks) / seconds;
  table(["measure", "value", "target"], [
    ["failover p50 (kill to first acknowledged create)", `${f.p50.toFixed(0)} ms`, "< 3000 ms"],
    ["failover max", `${Math.max(...failovers).toFixed(0)} ms`, "< 3000 ms"],
    ["creates/s, steady (no failover)", steadyRate.toFixed(1), ""],
    [
      "creates/s through the failovers",
      `${rate.toFixed(1)} (${(rate / steadyRate).toFixed(2)}x)`,
      "",
    ],
    ["create p50 / p99, steady", `${s.p50.toFixed(1)} / ${s.p99.toFixed(1)} ms`, ""],
    ["create p50 / p99 through the failovers", `${l.p50.toFixed(1)} / ${l.p99.toFixed(1)} ms`, ""],
  ]);
  console.log(
    `${kills} kills, ${clients} clients, lease ${args.values["lease-ttl"]}: ` +
      `${acknowledged - startAcks} creates in ${seconds.toFixed(1)} s through the kills ` +
      "(each create then deleted; the killed controller restarts during the next round)",
  );
} finally {
  running = false;
  await scene.stop();
}
