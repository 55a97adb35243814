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
  /**
   * Warm containers ready to claim, by image reference (a protobuf map field
   * as decoded). Images are normalized; two spellings of one image add up.
   * An agent should list every image it keeps a pool of, with 0 while that
   * pool is drained, so the registry's warm index for the image outlives the
   * gap. Default: none.
   */
  readonly warm?: Readonly<Record<string, number>>;
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
  /**
   * Warm containers per normalized image: the counts of its last
   * registerOrUpdate, less one for each warm container allocate chose since.
   * Images it keeps a drained pool of are listed with 0.
   */
  readonly warm: ReadonlyMap<string, number>;
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

/** The outcome of `Registry.place`: the agent chosen, and whether for a warm container. */
export interface Placement {
  /** The agent, with one slot and the requested ports reserved (its live record). */
  readonly agent: AgentInfo;
  /**
   * True when it was chosen for a warm container of the image, which the
   * registry now counts as taken (its `warm` count went down by one) until
   * the agent's next heartbeat reports fresh counts.
   */
  readonly warm: boolean;
  /** The requested image, normalized: the key of `agent.warm` that was counted down. */
  readonly image: string;
}
