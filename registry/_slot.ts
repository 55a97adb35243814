/**
 * The record the registry keeps per agent: the writable agent info it hands
 * out, and beside it where the agent is filed and what it last sent.
 *
 * @module
 */
import type { AgentRegistration } from "./agent_info.ts";
import type { Group } from "./_group.ts";
import type { Index } from "./_load_index.ts";
import { type RawWarm, rawWarmOf } from "./_warm_report.ts";

/** The internal, writable shape behind each exposed `AgentInfo` (agent_info.ts). */
export interface Info {
  id: string;
  address: string;
  advertiseHost: string;
  pool: string;
  namespace: string;
  capacity: number;
  allocated: number;
  images: Set<string>;
  ports: Set<number>;
  ready: boolean;
  /** Live: allocate counts it down in place; a heartbeat rewrites it in place. */
  readonly warm: Map<string, number>;
  lastHeartbeat: number;
}

/** Everything the registry keeps about one agent. */
export interface Slot {
  readonly info: Info;
  /** The agent's position in the registry's dense per-agent arrays. */
  readonly num: number;
  group: Group;
  /** `indexes[0]` is the group's own index; the rest are its image indexes. */
  readonly indexes: Index[];
  /** The built warm indexes of the images it has a warm container of (count above 0). */
  readonly warmIndexes: Index[];
  /** The level it is filed at in all of its indexes, or -1 when not placeable. */
  filed: number;
  /** The images array as last sent, so an unchanged heartbeat skips normalization. */
  rawImages: string[];
  /** The warm report as last sent, and as read, so an unchanged heartbeat skips reading it. */
  rawWarm: RawWarm;
  reportedWarm: ReadonlyMap<string, number>;
  /** Allocate counted a warm container down since the last heartbeat. */
  warmTaken: boolean;
  /** Neighbours in the heartbeat-ordered list. */
  hbPrev: Slot | null;
  hbNext: Slot | null;
}

/** What {@linkcode newSlot} takes besides the registration: what the registry worked out from it. */
export interface NewSlotFields {
  readonly num: number;
  readonly group: Group;
  /** The registration's images, normalized. */
  readonly images: Set<string>;
  readonly ready: boolean;
  readonly advertiseHost: string;
  readonly warmReport: ReadonlyMap<string, number>;
  readonly now: number;
}

/**
 * The slot of a newly registered agent: nothing allocated, no ports held,
 * no warm counts yet (the caller applies the report, so its group counts
 * them), in no index but its group's and unfiled, outside the heartbeat list.
 */
export function newSlot(reg: AgentRegistration, fields: NewSlotFields): Slot {
  const info: Info = {
    id: reg.id,
    address: reg.address,
    advertiseHost: fields.advertiseHost,
    pool: reg.pool,
    namespace: reg.namespace,
    capacity: reg.capacity,
    allocated: 0,
    images: fields.images,
    ports: new Set(),
    ready: fields.ready,
    warm: new Map(),
    lastHeartbeat: fields.now,
  };
  return {
    info,
    num: fields.num,
    group: fields.group,
    indexes: [fields.group.all],
    warmIndexes: [],
    filed: -1,
    rawImages: reg.images.slice(),
    rawWarm: rawWarmOf(reg.warm),
    reportedWarm: fields.warmReport,
    warmTaken: false,
    hbPrev: null,
    hbNext: null,
  };
}
