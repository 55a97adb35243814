/**
 * The calling half of `fsb token`: makes the call a plan describes through the
 * {@linkcode FsbClient} of `client.ts` and prints the answer. Loaded on demand
 * by `token_command.ts`, over the same light stack as `_sandbox_run.ts`.
 *
 * @module
 */
import { withClient } from "./_channel.ts";
import type { FsbClient } from "./client.ts";
import type { ClientConfig } from "./client_config.ts";
import type { TokenCallingPlan } from "./parse_token_args.ts";
import type { CliIo } from "./sandbox_command.ts";
import { createdTokenJson, tokenJson, tokenTable } from "./token_output.ts";

/** Runs `plan` against the controller `config` names; resolves to the exit status. */
export function runTokenPlan(
  plan: TokenCallingPlan,
  config: ClientConfig,
  io: CliIo,
): Promise<number> {
  return withClient(config, io.stderr, async ({ tokens }: FsbClient) => {
    // The client's default deadline (10 s) for each call.
    const opts = { signal: io.signal };
    const started = performance.now();
    const timing = (method: string) => {
      if (plan.verbose < 2) return;
      io.stderr(`fsb: ${method} took ${(performance.now() - started).toFixed(1)} ms\n`);
    };
    switch (plan.kind) {
      case "create": {
        const res = await tokens.create(plan.request, opts);
        timing("CreateToken");
        io.stdout(plan.output === "json" ? createdTokenJson(res) : `${res.secret}\n`);
        return 0;
      }
      case "list": {
        const list = await tokens.list(opts);
        timing("ListTokens");
        if (plan.output === "json") io.stdout(tokenJson(list));
        else if (list.length > 0) io.stdout(tokenTable(list, nowSec(io)));
        else io.stderr("No tokens\n");
        return 0;
      }
      case "revoke": {
        const token = await tokens.revoke(plan.request.id ?? "", opts);
        timing("RevokeToken");
        io.stdout(
          plan.output === "json"
            ? tokenJson(token)
            : `Revoked token "${token.id || plan.request.id}"\n`,
        );
        return 0;
      }
    }
  });
}

function nowSec(io: CliIo): number {
  return Math.floor((io.now ?? Date.now)() / 1000);
}
