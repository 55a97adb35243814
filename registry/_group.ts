/**
 * The agents of one (pool, namespace): who is in the group, which images and
 * warm images its members have, and which of the group's image and warm
 * indexes exist. Filing agents in those indexes is _filing.ts's job; this
 * file keeps the membership and the counts that decide when an index may go.
 *
 * @module
 */
import { NoCapacityError } from "./errors.ts";
import { type Index, newIndex } from "./_load_index.ts";
import type { Slot } from "./_slot.ts";

/** The agents of one (pool, namespace). */
export interface Group {
  readonly pool: string;
  readonly namespace: string;
  readonly members: Set<Slot>;
  /** Ready members. */
  ready: number;
  readonly all: Index;
  /** How many members have each image. */
  readonly holders: Map<string, number>;
  /**
   * Indexes of the images that requests have asked for, built on the first
   * such request: an agent is filed only under those, so hosts caching many
   * images that nobody asks for pay nothing for them per allocation.
   */
  readonly byImage: Map<string, Index>;
  /** How many members list each image in their warm report, with any count. */
  readonly warmHolders: Map<string, number>;
  /** Warm indexes of the images that requests have asked for, built like `byImage`'s. */
  readonly byWarm: Map<string, Index>;
}

/** pool -> namespace -> group; nested so a lookup builds no key string. */
export type Groups = Map<string, Map<string, Group>>;

/** The group of `where`'s pool and namespace, made empty if there is none yet. */
export function groupOf(
  groups: Groups,
  where: { readonly pool: string; readonly namespace: string },
): Group {
  const { pool, namespace } = where;
  let byNamespace = groups.get(pool);
  if (byNamespace === undefined) {
    byNamespace = new Map();
    groups.set(pool, byNamespace);
  }
  let group = byNamespace.get(namespace);
  if (group === undefined) {
    group = {
      pool,
      namespace,
      members: new Set(),
      ready: 0,
      all: newIndex("", false),
      holders: new Map(),
      byImage: new Map(),
      warmHolders: new Map(),
      byWarm: new Map(),
    };
    byNamespace.set(namespace, group);
  }
  return group;
}

/**
 * Leaves the slot's group (unfiled, image indexes already detached); the
 * last member takes the group along, so pools that are gone cost nothing.
 */
export function leaveGroup(groups: Groups, slot: Slot): void {
  const group = slot.group;
  group.members.delete(slot);
  if (slot.info.ready) group.ready--;
  if (group.members.size === 0) {
    const byNamespace = groups.get(group.pool);
    if (byNamespace !== undefined) {
      byNamespace.delete(group.namespace);
      if (byNamespace.size === 0) groups.delete(group.pool);
    }
  }
}

/** Joins the group of the slot's (already updated) pool and namespace. */
export function joinGroup(groups: Groups, slot: Slot): void {
  const info = slot.info;
  const group = groupOf(groups, info);
  slot.group = group;
  slot.indexes[0] = group.all;
  group.members.add(slot);
  if (info.ready) group.ready++;
}

/** Counts the slot's images in its group and joins the indexes built for them (unfiled). */
export function attachImages(slot: Slot): void {
  const group = slot.group;
  for (const image of slot.info.images) {
    group.holders.set(image, (group.holders.get(image) ?? 0) + 1);
    const index = group.byImage.get(image);
    if (index !== undefined) slot.indexes.push(index);
  }
}

/** Undoes {@linkcode attachImages} (unfiled), dropping what no member of the group has any more. */
export function detachImages(slot: Slot): void {
  const group = slot.group;
  for (const image of slot.info.images) {
    const left = (group.holders.get(image) ?? 1) - 1;
    if (left > 0) {
      group.holders.set(image, left);
    } else {
      group.holders.delete(image);
      group.byImage.delete(image);
    }
  }
  slot.indexes.length = 1;
}

/**
 * Makes the held warm counts those of `report`, in place, counting the
 * images it adds to or drops from the agent's warm list in its group's
 * `warmHolders` (a warm index goes when no member lists its image). The
 * slot's warm indexes are left as they are: callers that change its warm
 * image set unfile it first and {@linkcode linkWarm} after.
 */
export function applyWarm(slot: Slot, report: ReadonlyMap<string, number>): void {
  const held = slot.info.warm;
  const group = slot.group;
  for (const image of held.keys()) {
    if (!report.has(image)) {
      held.delete(image);
      releaseWarmHolder(group, image);
    }
  }
  for (const [image, count] of report) {
    if (!held.has(image)) group.warmHolders.set(image, (group.warmHolders.get(image) ?? 0) + 1);
    held.set(image, count);
  }
}

/** Points the slot's warm indexes at the built ones of the images it has warm (unfiled). */
export function linkWarm(slot: Slot): void {
  const warmIndexes = slot.warmIndexes;
  warmIndexes.length = 0;
  const byWarm = slot.group.byWarm;
  if (byWarm.size === 0) return;
  for (const [image, count] of slot.info.warm) {
    if (count === 0) continue;
    const index = byWarm.get(image);
    if (index !== undefined) warmIndexes.push(index);
  }
}

/** Forgets the slot's warm counts in its group (unfiled), before it leaves the group. */
export function detachWarm(slot: Slot): void {
  const held = slot.info.warm;
  for (const image of held.keys()) releaseWarmHolder(slot.group, image);
  held.clear();
  slot.warmIndexes.length = 0;
}

/** One member fewer lists `image` in its warm report; the last one takes the warm index along. */
function releaseWarmHolder(group: Group, image: string): void {
  const left = (group.warmHolders.get(image) ?? 1) - 1;
  if (left > 0) {
    group.warmHolders.set(image, left);
  } else {
    group.warmHolders.delete(image);
    group.byWarm.delete(image);
  }
}

/** The no-capacity error, with the reason told apart by the group's counters. */
export function noCapacity(group: Group, ports: readonly number[] | undefined): NoCapacityError {
  if (group.ready === 0) {
    return new NoCapacityError(group.pool, group.namespace, "has no ready agents");
  }
  if (group.all.count === 0 || ports === undefined || ports.length === 0) {
    return new NoCapacityError(group.pool, group.namespace);
  }
  return new NoCapacityError(
    group.pool,
    group.namespace,
    `has no agent with a free slot and ports ${ports.join(", ")} free`,
  );
}
