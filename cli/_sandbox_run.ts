/**
 * The calling half of `fsb sandbox`: makes the FastPath call a plan describes
 * and prints the answer. Loaded on demand by `sandbox_command.ts`. Start-up is
 * most of what a command costs, so this path loads as little as it can: calls
 * go over Deno's fetch (`proto/fetch_client.ts`), not grpc-js (about 100 ms),
 * with the hand-written codecs of `proto/fastpath_lite.ts`, not protobuf-es
 * and the generated schemas (about 45 ms).
 *
 * @module
 */
import type { SandboxInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { type Channel, withChannel } from "./_channel.ts";
import type { ClientConfig } from "./client_config.ts";
import type { CallingPlan, OutputFormat } from "./parse_sandbox_args.ts";
import type { CliIo } from "./sandbox_command.ts";
import { sandboxJson } from "./sandbox_json.ts";
import { sandboxTable } from "./sandbox_table.ts";

// Create waits for the agent to start the process; delete waits out the
// container's stop grace (10 s by default); reset does both.
const TIMEOUT_MS = {
  create: 60_000,
  get: 10_000,
  list: 10_000,
  delete: 30_000,
  update: 10_000,
  reset: 90_000,
  logs: 60_000,
} as const;

/** Runs `plan` against the controller `config` names; resolves to the exit status. */
export function runSandboxPlan(
  plan: CallingPlan,
  config: ClientConfig,
  io: CliIo,
): Promise<number> {
  return withChannel(config, io.stderr, (channel, describe) => run(plan, channel, describe, io));
}

async function run(
  plan: CallingPlan,
  channel: Channel,
  describe: (err: unknown) => Promise<string>,
  io: CliIo,
): Promise<number> {
  const client = channel.client;
  const opts = { timeoutMs: TIMEOUT_MS[plan.kind], signal: io.signal };
  const started = performance.now();
  switch (plan.kind) {
    case "create":
      return printOne(await client.createSandbox(plan.request, opts), "CreateSandbox", plan.output);
    case "get":
      return printOne(await client.getSandbox(plan.request, opts), "GetSandbox", plan.output);
    case "update":
    case "reset":
      return printOne(await client.updateSandbox(plan.request, opts), "UpdateSandbox", plan.output);
    case "list": {
      const { sandboxes } = await client.listSandboxes(plan.request, opts);
      timing(plan.verbose, "ListSandboxes");
      if (plan.output === "json") io.stdout(sandboxJson(sandboxes));
      else if (sandboxes.length > 0) io.stdout(sandboxTable(sandboxes, nowSec(io)));
      else if (plan.request.allNamespaces) io.stderr("No sandboxes in any namespace\n");
      else io.stderr(`No sandboxes in namespace "${plan.request.namespace || "default"}"\n`);
      return 0;
    }
    case "delete": {
      const results = await Promise.allSettled(
        plan.requests.map((req) => client.deleteSandbox(req, opts)),
      );
      timing(plan.verbose, "DeleteSandbox");
      const deleted: SandboxInfo[] = [];
      const errors = new Set<string>();
      for (const [i, result] of results.entries()) {
        if (result.status === "rejected") {
          errors.add(await describe(result.reason));
          continue;
        }
        deleted.push(result.value);
        if (plan.output === "table") {
          const req = plan.requests[i];
          const namespace = result.value.namespace || req.namespace || "default";
          io.stdout(`Deleted sandbox "${namespace}/${result.value.name || req.name}"\n`);
        }
      }
      if (plan.output === "json") io.stdout(sandboxJson(deleted));
      for (const line of errors) io.stderr(line);
      return errors.size === 0 ? 0 : 1;
    }
    case "logs":
      return await streamLogs(plan, channel, io);
  }

  function printOne(info: SandboxInfo, method: string, output: OutputFormat): number {
    timing(plan.verbose, method);
    io.stdout(output === "json" ? sandboxJson(info) : sandboxTable([info], nowSec(io)));
    return 0;
  }

  function timing(verbose: number, method: string): void {
    if (verbose < 2) return;
    const now = performance.now();
    io.stderr(
      `fsb: ${method} took ${(now - started).toFixed(1)} ms, ${
        now.toFixed(1)
      } ms since process start\n`,
    );
  }
}

async function streamLogs(
  plan: Extract<CallingPlan, { kind: "logs" }>,
  channel: Channel,
  io: CliIo,
): Promise<number> {
  // A followed log has no deadline: it ends with the sandbox or with io.signal.
  const stream = channel.client.streamLogs(plan.request, {
    timeoutMs: plan.request.follow ? undefined : TIMEOUT_MS.logs,
    signal: io.signal,
  });
  for await (const chunk of stream) {
    if (chunk.data.length === 0) continue;
    try {
      const written = io.stdoutBytes(chunk.data);
      if (written !== undefined) await written;
    } catch (err) {
      // The reader went away (`fsb sandbox logs x | head`): that is how such a pipe ends.
      if (err instanceof Deno.errors.BrokenPipe) return 0;
      io.stderr(`fsb: Cannot write logs: ${(err as Error).message}\n`);
      return 1;
    }
  }
  return 0;
}

function nowSec(io: CliIo): number {
  return Math.floor((io.now ?? Date.now)() / 1000);
}
