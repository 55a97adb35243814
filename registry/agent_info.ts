/**
 * The registry's data types.
 *
 * @module
 */

/** What an agent says about itself when it registers or heartbeats. */
export interface AgentRegistration {
  /** Stable agent id (one agent per host). */
  readonly id: string;
  /** `host:port` the controller dials for this agent's service. */
  readonly address: string;
  /** Host that sandbox endpoints are published on. */
  readonly advertiseHost?: string;
  readonly pool: string;
  readonly namespace: string;
  /** Most sandboxes this agent runs at once. */
  readonly capacity: number;
  /** Images present on the host; normalized by the registry. */
  readonly images: readonly string[];
  /** False while the agent's runtime cannot create sandboxes; such agents are never chosen. Default true. */
  readonly ready?: boolean;
}

/** An agent as the registry knows it. Read-only: only the registry changes it. */
export interface AgentInfo {
  readonly id: string;
  readonly address: string;
  readonly advertiseHost: string;
  readonly pool: string;
  readonly namespace: string;
  readonly capacity: number;
  /** Sandboxes placed on it (reserved by allocate or restore, freed by release). */
  readonly allocated: number;
  /** Normalized image references present on the host. */
  readonly images: ReadonlySet<string>;
  /** Host ports held by its sandboxes. */
  readonly ports: ReadonlySet<number>;
  readonly ready: boolean;
  /** The `now` of its last registerOrUpdate, in milliseconds. */
  readonly lastHeartbeat: number;
}

/** What a sandbox needs from an agent. */
export interface AllocationRequest {
  readonly pool: string;
  readonly namespace: string;
  /** Image reference; normalized before matching. */
  readonly image: string;
  /** Host ports the sandbox exposes; each 1..65535, no repeats. */
  readonly ports?: readonly number[];
}
