/**
 * The calling half of `fsb debug profile`: makes the Profile call a plan
 * describes and writes what it streams back. Loaded on demand by
 * `debug_command.ts`, over the same light stack as `_sandbox_run.ts`
 * (`FetchChannel` and the codecs of `proto/fastpath_lite.ts`).
 *
 * A file is written under a temporary name beside it (mode 0600: a heap
 * snapshot holds the process's memory, secrets included) and renamed into
 * place only once the whole profile has arrived and looks whole (a CPU profile
 * that parses, a heap snapshot that ends its JSON), so a failed or
 * interrupted call (Ctrl-C included: SIGINT cancels the call while it runs)
 * never leaves half a profile under the name asked for, nor a temporary file.
 *
 * @module
 */
import { type Channel, withChannel } from "./_channel.ts";
import type { ClientConfig } from "./client_config.ts";
import type { ProfilePlan } from "./debug_command.ts";
import { cpuProfileSummary, parseCpuProfile } from "./flamegraph.ts";
import type { CliIo } from "./sandbox_command.ts";
import { concat } from "./_concat.ts";

// The controller samples for the whole duration before it sends a byte; a
// heap snapshot of a large process takes a while to write out.
const MARGIN_MS = 60_000;
const HEAP_TIMEOUT_MS = 300_000;

/** Where the profile's bytes go. */
interface Sink {
  write(bytes: Uint8Array): Promise<void>;
  /** Puts the file in place; after this, `discard` does nothing. */
  commit(): Promise<void>;
  /** Removes what was written, unless committed. */
  discard(): Promise<void>;
}

/** Runs `plan` against the controller `config` names; resolves to the exit status. */
export async function runProfilePlan(
  plan: ProfilePlan,
  config: ClientConfig,
  io: CliIo,
): Promise<number> {
  // Listening before the file exists: an interrupt never strands a temporary file.
  const cancel = cancellation(io.signal);
  // Opened before the call: a path that cannot be written fails now, not in 30 s.
  let sink: Sink;
  try {
    sink = plan.output === "-" ? stdoutSink(io) : await fileSink(plan.output);
  } catch (err) {
    cancel.release();
    io.stderr(`fsb: ${(err as Error).message}\n`);
    return 1;
  }
  const signal = cancel.signal;
  const cancelled = () => {
    io.stderr(`fsb: Cancelled${plan.output === "-" ? "" : `; ${plan.output} not written`}\n`);
    return 1;
  };
  try {
    return await withChannel(config, io.stderr, async ({ client }) => {
      try {
        return await call(client);
      } catch (err) {
        if (signal.aborted) return cancelled();
        throw err;
      }
    });
  } finally {
    cancel.release();
    await sink.discard();
  }

  async function call(client: Channel["client"]): Promise<number> {
    const { request } = plan;
    const timeoutMs = request.kind === "cpu"
      ? (request.seconds ?? 30) * 1000 + MARGIN_MS
      : HEAP_TIMEOUT_MS;
    const started = performance.now();
    const kept: Uint8Array[] = [];
    let bytes = 0;
    let first = -1;
    let last = -1;
    for await (const chunk of client.profile(request, { timeoutMs, signal })) {
      const data = chunk.data;
      if (data.length === 0) continue;
      if (first < 0) first = data[0];
      last = data[data.length - 1];
      await sink.write(data);
      if (request.kind === "cpu") kept.push(data.slice());
      bytes += data.length;
    }
    if (plan.verbose >= 2) {
      io.stderr(`fsb: Profile took ${(performance.now() - started).toFixed(1)} ms\n`);
    }
    const what = `${request.kind === "cpu" ? "CPU profile" : "Heap snapshot"} of ${
      request.agentId ? `agent "${request.agentId}"` : "the controller"
    }`;
    const where = plan.output === "-" ? "stdout" : plan.output;
    let problem: string | undefined;
    let summary = "";
    if (bytes === 0) {
      problem = "the controller sent nothing";
    } else if (request.kind === "heap") {
      // The stream's status is not seen once data has come (fetch hides
      // trailers): a snapshot cut short ends inside its JSON.
      if (first !== 0x7b || last !== 0x7d) problem = `cut short after ${bytes} bytes`;
    } else {
      try {
        const { samples, durationMs } = cpuProfileSummary(
          parseCpuProfile(new TextDecoder().decode(concat(kept))),
        );
        summary = `${samples} samples over ${(durationMs / 1000).toFixed(2)} s, `;
      } catch (err) {
        problem = `the controller sent ${bytes} bytes that are ${(err as Error).message}`;
      }
    }
    if (problem !== undefined) {
      const untouched = plan.output === "-" ? "" : ` (${plan.output} not written)`;
      io.stderr(`fsb: ${what}: ${problem}${untouched}\n`);
      return 1;
    }
    await sink.commit();
    io.stderr(`${what}: ${summary}${bytes} bytes written to ${where}\n`);
    return 0;
  }
}

/**
 * The signal a capture runs under: the caller's, and Ctrl-C (SIGINT) while
 * it lasts, so that an interrupted capture cancels its call and removes its
 * temporary file instead of dying with it. `release` stops listening.
 */
function cancellation(outer: AbortSignal | undefined): { signal: AbortSignal; release(): void } {
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort();
  let listening = false;
  try {
    Deno.addSignalListener("SIGINT", onInterrupt);
    listening = true;
  } catch {
    // No signals here: the caller's signal is all there is.
  }
  return {
    signal: outer === undefined ? interrupt.signal : AbortSignal.any([outer, interrupt.signal]),
    release: () => {
      if (listening) Deno.removeSignalListener("SIGINT", onInterrupt);
      listening = false;
    },
  };
}

function stdoutSink(io: CliIo): Sink {
  return {
    write: async (bytes) => {
      const written = io.stdoutBytes(bytes);
      if (written !== undefined) await written;
    },
    commit: () => Promise.resolve(),
    discard: () => Promise.resolve(),
  };
}

/** A temporary file beside `path` (mode 0600), renamed to `path` on commit. */
async function fileSink(path: string): Promise<Sink> {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  const base = path.slice(slash + 1);
  const failed = (err: unknown) => new Error(`Cannot write ${path}: ${(err as Error).message}`);
  if (base === "" || base === "." || base === "..") throw failed(new Error("not a file name"));
  let temp: string;
  let file: Deno.FsFile;
  try {
    temp = await Deno.makeTempFile({ dir, prefix: `.${base}.`, suffix: ".partial" });
    file = await Deno.open(temp, { write: true });
  } catch (err) {
    throw failed(err);
  }
  let state: "open" | "committed" | "discarded" = "open";
  return {
    async write(bytes) {
      try {
        let off = 0;
        while (off < bytes.length) off += await file.write(bytes.subarray(off));
      } catch (err) {
        throw failed(err);
      }
    },
    async commit() {
      try {
        file.close();
        state = "committed";
        await Deno.rename(temp, path);
      } catch (err) {
        await Deno.remove(temp).catch(() => {});
        throw failed(err);
      }
    },
    async discard() {
      if (state !== "open") return;
      state = "discarded";
      file.close();
      await Deno.remove(temp).catch(() => {});
    },
  };
}
