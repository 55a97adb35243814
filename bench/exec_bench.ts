/**
 * Exec and file copy through fsb on real containerd (issue 10's targets), in
 * one run so the series compare as ratios on a noisy machine:
 * - `ctr t exec`: wall time of the whole `ctr` process running `true` in a
 *   sandbox's task (containerd's own client, its start included);
 * - SDK: `fsb.run(name, ["true"])` through an already-connected client
 *   (`cli/client.ts`): client, controller, agent, containerd, and back;
 * - `fsb sandbox exec NAME -- true`: the whole CLI process;
 * - file copy: 100 MiB of random bytes written into a sandbox and read back
 *   through the SDK (`files.write`, `files.read`), MB/s each way, in rounds.
 *
 * Run: `deno task bench:exec [--execs N] [--mib N] [--copies N] [--oci-runtime runc|runsc]`.
 * Needs root, containerd, runc (or runsc), ctr, busybox-static.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { connect } from "../cli/client.ts";
import { importImage } from "../agent/containerd/mod.ts";
import { BridgeNetwork } from "../agent/network/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { buildBusyboxImage } from "../tests/support/busybox_image.ts";
import { benchBridge } from "./containerd_bench.ts";
import {
  type ControllerProc,
  type CreateTiming,
  freePort,
  readTokens,
  spawnAgent,
  spawnController,
  stop,
  summary,
  table,
  timeFsb,
} from "./_support.ts";

const WARMUP = 3;

/** Wall time of `ctr t exec --exec-id X ID true` (the whole process), in ms. */
async function ctrExec(socket: string, id: string): Promise<number> {
  const execId = `ctr${crypto.randomUUID().slice(0, 8)}`;
  const start = performance.now();
  const out = await new Deno.Command("ctr", {
    args: ["-a", socket, "-n", "fsb", "t", "exec", "--exec-id", execId, id, "true"],
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  if (!out.success) throw new Error(`ctr t exec failed: ${new TextDecoder().decode(out.stderr)}`);
  return ms;
}

async function* randomChunks(total: number, chunk: number): AsyncGenerator<Uint8Array> {
  // One random block, sent over and over: the copy, not the RNG, is measured.
  const block = new Uint8Array(chunk);
  for (let at = 0; at < chunk; at += 65536) {
    crypto.getRandomValues(block.subarray(at, Math.min(chunk, at + 65536)));
  }
  for (let sent = 0; sent < total; sent += chunk) {
    yield block.subarray(0, Math.min(chunk, total - sent));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      execs: { type: "string", default: "30" },
      mib: { type: "string", default: "100" },
      copies: { type: "string", default: "5" },
      "oci-runtime": { type: "string", default: "runc" },
    },
  });
  const execs = Number(values.execs);
  const mib = Number(values.mib);
  const oci = values["oci-runtime"];
  const copies = Number(values.copies);
  if (!Number.isInteger(copies) || copies < 1) {
    throw new Error("--copies must be a whole number >= 1");
  }
  if (!Number.isInteger(execs) || execs < 1) throw new Error("--execs must be a whole number >= 1");
  if (!Number.isInteger(mib) || mib < 1) throw new Error("--mib must be a whole number >= 1");
  if (oci !== "runc" && oci !== "runsc") throw new Error("--oci-runtime must be runc or runsc");

  const dir = await Deno.makeTempDir({ prefix: "fsb_exec_bench_" });
  const server = await startContainerd();
  const agentNet = await benchBridge();
  const endpoint = `127.0.0.1:${await freePort()}`;
  const timings = new Map<string, CreateTiming>();
  let controller: ControllerProc | undefined;
  let agent: Deno.ChildProcess | undefined;
  let fsb: ReturnType<typeof connect> | undefined;
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    controller = spawnController(endpoint, join(dir, "controller"), timings);
    const tokens = await readTokens(join(dir, "controller"), controller);
    const home = join(dir, "home");
    await Deno.mkdir(home);
    agent = spawnAgent(endpoint, {
      id: "bench",
      dataDir: join(dir, "agent"),
      runtime: [
        "containerd",
        "--containerd-socket",
        server.socket,
        "--bridge",
        agentNet.bridge,
        "--sandbox-cidr",
        agentNet.cidr,
        "--oci-runtime",
        oci,
      ],
      capacity: 5,
      joinTokenFile: tokens.joinFile,
    });
    fsb = connect({ endpoint, token: tokens.admin });
    const deadline = Date.now() + 30_000;
    let info;
    for (;;) {
      try {
        info = await fsb.sandboxes.create({
          name: "box",
          image: "busybox",
          command: ["sleep", "3600"],
        });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }

    const series = { ctr: [] as number[], sdk: [] as number[], shell: [] as number[] };
    for (let i = 0; i < WARMUP + execs; i++) {
      const ctrMs = await ctrExec(server.socket, info.sandboxId);
      const t = performance.now();
      const res = await fsb.run("box", ["true"]);
      const sdkMs = performance.now() - t;
      if (res.exitCode !== 0) throw new Error(`exec true exited ${res.exitCode}: ${res.message}`);
      const shellMs = await timeFsb(
        ["sandbox", "exec", "box", "--endpoint", endpoint, "--", "true"],
        { token: tokens.admin, home },
      );
      if (i < WARMUP) continue;
      series.ctr.push(ctrMs);
      series.sdk.push(sdkMs);
      series.shell.push(shellMs);
    }

    // Copies in rounds, as one copy's rate swings with what else the machine does.
    const bytes = mib * 1024 * 1024;
    const chunk = 256 * 1024;
    const rates = { write: [] as number[], read: [] as number[] };
    for (let round = 0; round < copies; round++) {
      let t = performance.now();
      const written = await fsb.files.write("box", "/tmp/big", randomChunks(bytes, chunk), {
        size: bytes,
      });
      rates.write.push(bytes / 1e6 / ((performance.now() - t) / 1000));
      if (Number(written.size) !== bytes) {
        throw new Error(`wrote ${written.size} of ${bytes} bytes`);
      }
      t = performance.now();
      let read = 0;
      for await (const data of fsb.files.read("box", "/tmp/big")) read += data.length;
      rates.read.push(bytes / 1e6 / ((performance.now() - t) / 1000));
      if (read !== bytes) throw new Error(`read ${read} of ${bytes} bytes`);
    }

    const ctr = summary(series.ctr);
    const rows = [
      { series: "ctr t exec (whole process)", ...ctr },
      { series: "exec true, SDK (connected)", ...summary(series.sdk) },
      { series: "fsb sandbox exec -- true (whole process)", ...summary(series.shell) },
    ];
    console.log(`${oci}, ${execs} execs per series (after ${WARMUP} warm-up)\n`);
    table(
      ["series", "p50 ms", "p99 ms", "mean ms", "p50 / ctr", "p99 / ctr"],
      rows.map((r) => [r.series, r.p50, r.p99, r.mean, r.p50 / ctr.p50, r.p99 / ctr.p99]),
    );
    console.log(`\nfile copy of ${mib} MiB over loopback, ${copies} rounds`);
    const mbs = (r: number[]) => ({ p50: summary(r).p50, best: Math.max(...r) });
    table(["direction", "MB/s p50", "MB/s best"], [
      ["into the sandbox (files.write)", mbs(rates.write).p50, mbs(rates.write).best],
      ["out of the sandbox (files.read)", mbs(rates.read).p50, mbs(rates.read).best],
    ]);
  } finally {
    await fsb?.sandboxes.delete("box").catch(() => {});
    fsb?.close();
    if (agent) await stop(agent);
    if (controller) {
      await stop(controller.child);
      await controller.logDone.catch(() => {});
    }
    const leftover = new BridgeNetwork({
      stateDir: join(dir, "agent", "network"),
      ...agentNet,
      poolSize: 0,
    });
    await leftover.start().then(() => leftover.teardown()).catch((err) =>
      console.error(`removing bridge ${agentNet.bridge} failed: ${err}`)
    );
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
