import assert from "node:assert/strict";
import { createServer } from "node:net";
import client from "prom-client";
import { AgentServer } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { RpcChannel } from "../../proto/grpc.ts";
import { silentLogger, waitFor } from "../support/cluster.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A controller in its own process, so that it can be SIGKILLed. */
function spawnController(port: number, dataDir: string, mode: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "controller",
      "serve",
      "--listen",
      `127.0.0.1:${port}`,
      "--metrics-listen",
      "127.0.0.1:0",
      "--data-dir",
      dataDir,
      "--mode",
      mode,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

for (const mode of ["fast", "strong"] as const) {
  Deno.test(`a SIGKILLed controller restarted on its data dir lists every acknowledged sandbox once (${mode})`, async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "fsb-restart-" });
    const port = await freePort();
    let controller = spawnController(port, `${dataDir}/controller`, mode);
    const agents: AgentServer[] = [];
    const runtimes: ProcessRuntime[] = [];
    // The controller writes its tokens before it listens.
    const tokenFile = (name: string) => `${dataDir}/controller/${name}`;
    await waitFor(async () => {
      try {
        return (await Deno.readTextFile(tokenFile("join-token"))).trim() !== "";
      } catch {
        return false;
      }
    }, 20_000);
    const adminToken = (await Deno.readTextFile(tokenFile("admin-token"))).trim();
    const joinToken = (await Deno.readTextFile(tokenFile("join-token"))).trim();
    const channel = new RpcChannel(`127.0.0.1:${port}`, {
      timeoutMs: 20_000,
      metadata: { authorization: `Bearer ${adminToken}` },
    });
    const fastpath = channel.client(FastPath);
    try {
      for (const id of ["a", "b"]) {
        const runtime = new ProcessRuntime({
          stateDir: `${dataDir}/${id}/process`,
          images: ["busybox"],
        });
        const agent = new AgentServer({
          controller: `127.0.0.1:${port}`,
          listen: "127.0.0.1:0",
          advertise: "127.0.0.1",
          id,
          pool: "default-pool",
          namespace: "default",
          capacity: 40,
          runtime,
          dataDir: `${dataDir}/${id}`,
          logger: silentLogger(),
          metricsRegistry: new client.Registry(),
          joinToken,
        });
        await agent.start();
        agents.push(agent);
        runtimes.push(runtime);
      }
      await waitFor(async () => {
        try {
          await fastpath.createSandbox({
            name: "warmup",
            image: "busybox",
            command: ["sleep", "120"],
          });
          return true;
        } catch {
          return false;
        }
      }, 20_000);

      const acked = new Set<string>(["warmup"]);
      let killed = false;
      const creates = Array.from({ length: 40 }, async (_, i) => {
        const name = `s${i}`;
        await new Promise((r) => setTimeout(r, i * 5));
        try {
          await fastpath.createSandbox({ name, image: "busybox", command: ["sleep", "120"] });
          if (!killed) acked.add(name);
        } catch {
          // Refused or cut off by the kill: not acknowledged, so no promise was made.
        }
      });
      await waitFor(() => acked.size >= 15, 20_000);
      controller.kill("SIGKILL");
      killed = true;
      await controller.status;
      await Promise.all(creates);
      assert.ok(acked.size >= 15, `only ${acked.size} creates were acknowledged before the kill`);

      controller = spawnController(port, `${dataDir}/controller`, mode);
      await waitFor(async () => {
        try {
          const list = await fastpath.listSandboxes({});
          const running = new Set(
            list.sandboxes.filter((s) => s.phase === "Running").map((s) => s.name),
          );
          return [...acked].every((name) => running.has(name));
        } catch {
          return false;
        }
      }, 30_000);

      const list = (await fastpath.listSandboxes({})).sandboxes;
      const names = list.map((s) => s.name);
      assert.equal(new Set(names).size, names.length, "a name is listed twice");
      for (const name of acked) {
        const info = list.find((s) => s.name === name);
        assert.equal(info?.phase, "Running", `${name} is ${info?.phase}`);
      }
      // Every sandbox the agents run is one the controller lists, by id: none twice, none orphaned.
      await waitFor(async () => {
        const running = (await Promise.all(runtimes.map((r) => r.list()))).flat();
        const listed = new Set(
          (await fastpath.listSandboxes({})).sandboxes.map((s) => s.sandboxId),
        );
        return running.length === listed.size && running.every((s) => listed.has(s.spec.sandboxId));
      }, 20_000);
    } finally {
      channel.close();
      controller.kill("SIGKILL");
      await controller.status.catch(() => {});
      for (const agent of agents) await agent.close();
      for (const runtime of runtimes) {
        for (const s of await runtime.list()) await runtime.delete(s.spec.sandboxId, 0);
      }
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}
