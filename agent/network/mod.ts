/**
 * Sandbox networking on an agent's host (shared/DESIGN.md section 11).
 *
 * @module
 */
export { BridgeNetwork } from "./bridge_network.ts";
export type { BridgeNetworkOptions, NetworkLogger } from "./bridge_network.ts";
export { HostNetwork } from "./host_network.ts";
export { networkRequestOf } from "./sandbox_network.ts";
export type {
  NetnsChoice,
  NetworkAttachment,
  NetworkRequest,
  SandboxNetwork,
} from "./sandbox_network.ts";
