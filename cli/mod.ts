/**
 * The fsb command-line client and the flag parsing every fsb command shares.
 * Importing this module is cheap: the gRPC stack is loaded only when a
 * `sandbox` or `token` command actually calls the controller.
 *
 * @module
 */
export { type CliIo, type CliSignal, type CliTerminal, sandboxCommand } from "./sandbox_command.ts";
export { tokenCommand } from "./token_command.ts";
export { denoCliIo, type DenoCliIoOptions } from "./deno_cli_io.ts";
export {
  type FlagDef,
  type FlagSpec,
  type FlagValues,
  type ParsedFlags,
  parseFlags,
} from "./flags.ts";
export { UsageError, type UsageErrorOptions } from "./usage_error.ts";
export { parseDuration, type ParseDurationOptions } from "./parse_duration.ts";
export { parseExpire, type ParseExpireOptions } from "./parse_expire.ts";
export { parseKeyValue, type ParseKeyValueOptions } from "./parse_key_value.ts";
export {
  callMetadata,
  type ClientConfig,
  type ClientConfigSources,
  configPath,
  type ConnectionFlags,
  DEFAULT_ENDPOINT,
  resolveClientConfig,
  type ResolvedEndpoint,
  type ResolvedTlsCa,
  type ResolvedToken,
} from "./client_config.ts";
export { type SandboxSubcommand, sandboxUsage } from "./sandbox_usage.ts";
export { type TokenSubcommand, tokenUsage } from "./token_usage.ts";
export {
  type CompletionCommand,
  completionCommand,
  type CompletionCommands,
  completionUsage,
} from "./completion.ts";
export {
  DEBUG_ALIASES,
  DEBUG_SPECS,
  debugCommand,
  type DebugPlan,
  type DebugSubcommand,
  debugUsage,
  parseDebugArgs,
} from "./debug_command.ts";
