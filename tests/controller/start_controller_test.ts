import assert from "node:assert/strict";
import { join } from "node:path";
import client from "prom-client";
import { startController, type StartControllerOptions } from "../../controller/mod.ts";
import { silentLogger } from "../support/cluster.ts";

function options(dir: string, extra: Partial<StartControllerOptions>): StartControllerOptions {
  return {
    listen: "127.0.0.1:0",
    metricsListen: "",
    store: "sqlite:",
    dataDir: dir,
    mode: "fast",
    agentTimeoutMs: 10_000,
    logger: silentLogger(),
    metricsRegistry: new client.Registry(),
    tickMs: 3_600_000,
    ...extra,
  };
}

/** File descriptors of this process open on `path` (or its WAL and shared-memory files). */
async function openFds(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir("/proc/self/fd")) {
    const target = await Deno.readLink(`/proc/self/fd/${entry.name}`).catch(() => "");
    if (target.startsWith(path)) out.push(target);
  }
  return out;
}

/** A free loopback port: bound and released. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("startController() with its metrics address taken rejects naming it, and closes the gRPC server and the store", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_start_controller_test_" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const metrics = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
  const grpcPort = freePort();
  try {
    await assert.rejects(
      startController(options(dir, { listen: `127.0.0.1:${grpcPort}`, metricsListen: metrics })),
      (err: Error) => {
        assert.match(
          err.message,
          new RegExp(`^Cannot serve metrics on ${metrics.replaceAll(".", "\\.")}: .*in use`, "i"),
        );
        return true;
      },
    );
    assert.deepEqual(await openFds(join(dir, "fsb.db")), [], "the store is closed");
    // The gRPC port is free again.
    Deno.listen({ hostname: "127.0.0.1", port: grpcPort }).close();
    // And the same data dir serves once the address is free.
    taken.close();
    const handle = await startController(options(dir, { metricsListen: metrics }));
    assert.equal(handle.metricsAddress, metrics);
    await handle.close();
    assert.deepEqual(await openFds(join(dir, "fsb.db")), []);
  } finally {
    try {
      taken.close();
    } catch {
      // Closed above.
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startController() with its gRPC address taken rejects naming it, and closes the store", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_start_controller_test_" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const listen = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
  try {
    await assert.rejects(
      startController(options(dir, { listen })),
      (err: Error) => {
        assert.match(
          err.message,
          new RegExp(`^Cannot listen on ${listen.replaceAll(".", "\\.")}: `),
        );
        return true;
      },
    );
    assert.deepEqual(await openFds(join(dir, "fsb.db")), [], "the store is closed");
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});
