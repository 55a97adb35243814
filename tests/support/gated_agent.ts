/**
 * A real agent (process runtime) in a test cluster that the controller
 * reaches only through a TCP gate the test can shut: a one-way network
 * fault, where the agent still heartbeats to the controller but the
 * controller's calls to the agent fail. The agent listens on 127.0.0.1 and
 * advertises 127.0.0.2, where the gate forwards from, on the same port.
 *
 * @module
 */
import client from "prom-client";
import { AgentServer } from "../../agent/mod.ts";
import { ProcessRuntime } from "../../agent/process_runtime.ts";
import { type Cluster, silentLogger, waitFor } from "./cluster.ts";

/** A TCP forwarder that can be shut (refusing and cutting connections) and opened again. */
class Gate {
  readonly #listen: Deno.ListenOptions;
  readonly #target: Deno.ConnectOptions;
  #listener: Deno.Listener | undefined;
  readonly #conns = new Set<Deno.Conn>();

  constructor(listen: Deno.ListenOptions, target: Deno.ConnectOptions) {
    this.#listen = listen;
    this.#target = target;
  }

  open(): void {
    const listener = Deno.listen(this.#listen);
    this.#listener = listener;
    (async () => {
      for await (const conn of listener) this.#carry(conn);
    })().catch(() => {});
  }

  async #carry(conn: Deno.Conn): Promise<void> {
    this.#conns.add(conn);
    let upstream: Deno.Conn | undefined;
    try {
      upstream = await Deno.connect(this.#target);
      this.#conns.add(upstream);
      await Promise.all([
        conn.readable.pipeTo(upstream.writable),
        upstream.readable.pipeTo(conn.writable),
      ]);
    } catch {
      // Shut, or one side went away: the other goes too.
    } finally {
      for (const c of [conn, upstream]) if (c !== undefined) this.#drop(c);
    }
  }

  #drop(conn: Deno.Conn): void {
    if (!this.#conns.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }

  shut(): void {
    this.#listener?.close();
    this.#listener = undefined;
    for (const conn of [...this.#conns]) this.#drop(conn);
  }
}

/** An agent behind a gate; see {@linkcode startGatedAgent}. */
export interface GatedAgent {
  readonly server: AgentServer;
  readonly runtime: ProcessRuntime;
  /** Cuts the controller's way to the agent; the agent's heartbeats still arrive. */
  shut(): void;
  /** Lets the controller reach the agent again. */
  open(): void;
  /** Deletes its sandboxes, stops the agent and removes its files. */
  close(): Promise<void>;
}

/** Starts agent `id` of `cluster` behind an open gate and waits until it has registered. */
export async function startGatedAgent(cluster: Cluster, id: string): Promise<GatedAgent> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-gated-agent-" });
  const runtime = new ProcessRuntime({ stateDir: `${dir}/process`, images: ["busybox"] });
  const server = new AgentServer({
    controller: cluster.controller.address,
    listen: "127.0.0.1:0",
    advertise: "127.0.0.2",
    id,
    pool: "default-pool",
    namespace: "default",
    capacity: 5,
    runtime,
    dataDir: `${dir}/agent`,
    logger: silentLogger(),
    metricsRegistry: new client.Registry(),
    joinToken: cluster.joinToken,
  });
  let gate: Gate | undefined;
  const close = async () => {
    gate?.shut();
    for (const s of await runtime.list()) await runtime.delete(s.spec.sandboxId, 0);
    await server.close();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await server.start();
    // Opened before the controller first dials: it dials only for calls, after the registration.
    const port = Number(server.address.slice(server.address.lastIndexOf(":") + 1));
    gate = new Gate({ hostname: "127.0.0.2", port }, { hostname: "127.0.0.1", port });
    gate.open();
    await waitFor(() => server.registered);
  } catch (err) {
    await close();
    throw err;
  }
  const opened = gate;
  return {
    server,
    runtime,
    shut: () => opened.shut(),
    open: () => opened.open(),
    close,
  };
}
