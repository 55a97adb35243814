/**
 * `fsb token ...`: makes, lists and revokes the tokens clients send the
 * controller (shared/DESIGN.md section 12).
 *
 * @module
 */
import { type ClientConfig, resolveClientConfig } from "./client_config.ts";
import { parseTokenArgs, type TokenPlan } from "./parse_token_args.ts";
import { type CliIo, debugConfig, usageFailure } from "./sandbox_command.ts";

/**
 * Runs `fsb token ARGS...` and resolves to the exit status, as
 * {@linkcode sandboxCommand} does: 0 ok, 1 the request failed (`fsb:
 * CODE_NAME: message` on stderr), 2 bad usage (the message and a one-line
 * usage on stderr). Help goes to stdout with status 0. `create` prints the
 * secret alone on stdout, followed by a newline.
 */
export async function tokenCommand(args: readonly string[], io: CliIo): Promise<number> {
  let plan: TokenPlan;
  let config: ClientConfig;
  try {
    plan = parseTokenArgs(args);
    if (plan.kind === "help") {
      io.stdout(plan.text);
      return 0;
    }
    config = resolveClientConfig({ flags: plan, env: io.env, home: io.home });
  } catch (err) {
    return usageFailure(err, io);
  }
  if (plan.verbose >= 4) debugConfig(config, io);
  const { runTokenPlan } = await import("./_token_run.ts");
  return runTokenPlan(plan, config, io);
}
