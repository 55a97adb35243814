/**
 * The registry: agents, their capacity, and the placement of sandboxes on
 * them (shared/DESIGN.md section 6). Pure and synchronous; every other part
 * of fsb imports it from here.
 *
 * @module
 */
export { Registry } from "./registry.ts";
export type { AgentInfo, AgentRegistration, AllocationRequest, Placement } from "./agent_info.ts";
export { normalizeImage } from "./normalize_image.ts";
export { validatePorts } from "./validate_ports.ts";
export {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NoCapacityError,
  NotFoundError,
  OutOfRangeError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.ts";
export { cidrContains, cidrSize, formatCidr, formatIpv4, parseCidr, parseIpv4 } from "./cidr.ts";
export type { Cidr } from "./cidr.ts";
export {
  checkExecCommand,
  checkExecStart,
  checkSandboxPath,
  type ExecCommand,
  type ExecStartFields,
  MAX_PATH_BYTES,
  parseSignal,
  readStart,
  signalName,
  startAgainError,
  type StartedRequest,
  type StartOf,
} from "./exec_rules.ts";
