/**
 * The calling half of `fsb sandbox`: makes the call a plan describes through
 * the {@linkcode FsbClient} of `client.ts` and prints the answer. Loaded on
 * demand by `sandbox_command.ts`. Start-up is most of what a command costs,
 * so this path loads as little as it can: the client calls over Deno's fetch
 * (`proto/fetch_client.ts`), not grpc-js (about 100 ms), with the hand-written
 * codecs of `proto/fastpath_lite.ts`, not protobuf-es and the generated
 * schemas (about 45 ms).
 *
 * @module
 */
import { withClient } from "./_channel.ts";
import type { FsbClient, SandboxInfo } from "./client.ts";
import type { ClientConfig } from "./client_config.ts";
import type { CallingPlan, OutputFormat } from "./parse_sandbox_args.ts";
import type { CliIo } from "./sandbox_command.ts";
import { sandboxJson } from "./sandbox_json.ts";
import { sandboxTable } from "./sandbox_table.ts";

/** Runs `plan` against the controller `config` names; resolves to the exit status. */
export function runSandboxPlan(
  plan: CallingPlan,
  config: ClientConfig,
  io: CliIo,
): Promise<number> {
  return withClient(config, io.stderr, (client, describe) => run(plan, client, describe, io));
}

// Each call takes the client's default deadline for it.
async function run(
  plan: CallingPlan,
  client: FsbClient,
  describe: (err: unknown) => Promise<string>,
  io: CliIo,
): Promise<number> {
  const { sandboxes } = client;
  const opts = { signal: io.signal };
  const started = performance.now();
  switch (plan.kind) {
    case "create":
      return printOne(await sandboxes.create(plan.request, opts), "CreateSandbox", plan.output);
    case "get": {
      const { name = "", namespace } = plan.request;
      return printOne(await sandboxes.get(name, { ...opts, namespace }), "GetSandbox", plan.output);
    }
    case "update":
      return printOne(await sandboxes.update(plan.request, opts), "UpdateSandbox", plan.output);
    case "reset": {
      const { name = "", namespace } = plan.request;
      const info = await sandboxes.reset(name, { ...opts, namespace });
      return printOne(info, "UpdateSandbox", plan.output);
    }
    case "list": {
      const { namespace, allNamespaces } = plan.request;
      const list = await sandboxes.list({ ...opts, namespace, allNamespaces });
      timing(plan.verbose, "ListSandboxes");
      if (plan.output === "json") io.stdout(sandboxJson(list));
      else if (list.length > 0) io.stdout(sandboxTable(list, nowSec(io)));
      else if (allNamespaces) io.stderr("No sandboxes in any namespace\n");
      else io.stderr(`No sandboxes in namespace "${namespace || "default"}"\n`);
      return 0;
    }
    case "delete": {
      const results = await Promise.allSettled(
        plan.requests.map((req) =>
          sandboxes.delete(req.name ?? "", { ...opts, namespace: req.namespace })
        ),
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
      return await streamLogs(plan, client, io);
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
  client: FsbClient,
  io: CliIo,
): Promise<number> {
  const { name = "", namespace, follow } = plan.request;
  for await (const chunk of client.logs(name, { namespace, follow, signal: io.signal })) {
    try {
      const written = io.stdoutBytes(chunk);
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
