/**
 * The agent: runs sandboxes on one host through a runtime and reports them to
 * the controller.
 *
 * @module
 */
export { type AgentOptions, AgentServer } from "./agent.ts";
export type {
  CreateOptions,
  CreateResult,
  LogsOptions,
  Runtime,
  RuntimePhase,
  RuntimeSandbox,
} from "./runtime.ts";
