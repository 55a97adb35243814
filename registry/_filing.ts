/**
 * Where each agent is filed for placement, and the search over it.
 *
 * Each (pool, namespace) group has an index of its placeable agents by load
 * level, and so has each (group, image) pair that a request has asked for
 * (built on the first such request, so images nobody asks for cost nothing),
 * and each (group, image) pair with warm containers that a request has asked
 * for (agents filed there while their count is above 0). A level is a FIFO
 * queue of (agent number, stamp) entries (_load_index.ts). Every placement
 * change gives the agent a new stamp and appends one entry to each index it
 * is in; entries carrying an older stamp are dead, skipped at the head of a
 * queue and compacted away when its buffer fills. Warm indexes check a
 * second stamp array, so that a warm-set change can re-file an agent there
 * alone. So a change never touches other agents' records (no list
 * neighbours to relink), and the stamps to check sit in dense arrays: the
 * memory an operation touches, and so its cost, stays the same at 10,000
 * agents as at 100.
 *
 * @module
 */
import { applyWarm, type Group, linkWarm } from "./_group.ts";
import { dequeue, enqueue, type Index, newIndex } from "./_load_index.ts";
import type { Slot } from "./_slot.ts";

function holdsAny(held: Set<number>, ports: readonly number[]): boolean {
  if (held.size === 0) return false;
  for (let i = 0; i < ports.length; i++) {
    if (held.has(ports[i])) return true;
  }
  return false;
}

/**
 * The agent numbers and stamps behind every index of one registry: files
 * slots in their indexes, builds an index on its first request, and picks
 * from one. A slot's indexes themselves are the group's business
 * (_group.ts); this only moves the slot within them.
 */
export class Filing {
  /** The last stamp handed out; stamps only grow, so queue order is stamp order. */
  #stamp = 0;
  /** By agent number: its current stamp, or 0 while it is not placeable or the number is free. */
  #stampOf = new Float64Array(64);
  /**
   * By agent number: the stamp of its entries in warm indexes, or 0 like
   * #stampOf. Equal to its #stampOf, or newer after a warm-set change.
   */
  #warmStampOf = new Float64Array(64);
  /** By agent number: its slot. */
  readonly #slotOf: (Slot | undefined)[] = [];
  readonly #freeNums: number[] = [];

  /** A free agent number for a new slot, growing the dense arrays when none is left. */
  takeNum(): number {
    const reused = this.#freeNums.pop();
    if (reused !== undefined) return reused;
    const num = this.#slotOf.length;
    if (num === this.#stampOf.length) {
      const grown = new Float64Array(num * 2);
      grown.set(this.#stampOf);
      this.#stampOf = grown;
      const grownWarm = new Float64Array(num * 2);
      grownWarm.set(this.#warmStampOf);
      this.#warmStampOf = grownWarm;
    }
    this.#slotOf.push(undefined);
    return num;
  }

  /** Makes `slot` the holder of its number, which {@linkcode Filing.takeNum} handed out. */
  adopt(slot: Slot): void {
    this.#slotOf[slot.num] = slot;
  }

  /** Frees the number of an unfiled slot that is leaving the registry. */
  forget(slot: Slot): void {
    this.#slotOf[slot.num] = undefined;
    this.#freeNums.push(slot.num);
  }

  /**
   * The first live agent of `index`, by level then FIFO, that holds none of
   * `ports`. Dead entries met at the head of a queue are dropped on the way.
   */
  pick(index: Index, ports: readonly number[] | undefined): Slot | undefined {
    if (index.count === 0) return undefined;
    const stampOf = index.warm ? this.#warmStampOf : this.#stampOf;
    const levels = index.levels;
    for (let k = index.low; k < levels.length; k++) {
      const q = levels[k];
      if (q.live === 0) {
        if (k === index.low) index.low = k + 1;
        continue;
      }
      const nums = q.nums;
      const stamps = q.stamps;
      const end = q.end;
      let i = q.head;
      while (i < end && stampOf[nums[i]] !== stamps[i]) i++;
      q.head = i;
      if (ports === undefined || ports.length === 0) return this.#slotOf[nums[i]];
      for (; i < end; i++) {
        const num = nums[i];
        if (stampOf[num] !== stamps[i]) continue;
        const slot = this.#slotOf[num]!;
        if (!holdsAny(slot.info.ports, ports)) return slot;
      }
    }
    return undefined;
  }

  /** Takes the agent out of its indexes: its entries die, the levels' live counts drop. */
  unfile(slot: Slot): void {
    const k = slot.filed;
    if (k < 0) return;
    const indexes = slot.indexes;
    for (let i = 0; i < indexes.length; i++) dequeue(indexes[i], k);
    const warmIndexes = slot.warmIndexes;
    for (let i = 0; i < warmIndexes.length; i++) dequeue(warmIndexes[i], k);
    slot.filed = -1;
    this.#stampOf[slot.num] = 0;
    this.#warmStampOf[slot.num] = 0;
  }

  /**
   * Files the agent, if placeable, last at its load level in each of its
   * indexes under a new stamp: this is what makes it the newest of its level.
   */
  file(slot: Slot): void {
    const info = slot.info;
    if (!info.ready || info.allocated >= info.capacity) return;
    const k = info.allocated;
    const stamp = ++this.#stamp;
    const num = slot.num;
    const stampOf = this.#stampOf;
    const warmStampOf = this.#warmStampOf;
    stampOf[num] = stamp;
    warmStampOf[num] = stamp;
    slot.filed = k;
    const indexes = slot.indexes;
    for (let i = 0; i < indexes.length; i++) enqueue(indexes[i], k, num, stamp, stampOf);
    const warmIndexes = slot.warmIndexes;
    for (let i = 0; i < warmIndexes.length; i++) {
      enqueue(warmIndexes[i], k, num, stamp, warmStampOf);
    }
  }

  /** {@linkcode Filing.unfile} then {@linkcode Filing.file} in one pass over the indexes, for the hot paths. */
  refile(slot: Slot): void {
    const info = slot.info;
    const from = slot.filed;
    const to = info.ready && info.allocated < info.capacity ? info.allocated : -1;
    const stampOf = this.#stampOf;
    const warmStampOf = this.#warmStampOf;
    const num = slot.num;
    const stamp = to < 0 ? 0 : ++this.#stamp;
    stampOf[num] = stamp;
    warmStampOf[num] = stamp;
    slot.filed = to;
    const indexes = slot.indexes;
    for (let i = 0; i < indexes.length; i++) {
      const index = indexes[i];
      if (from >= 0) dequeue(index, from);
      if (to >= 0) enqueue(index, to, num, stamp, stampOf);
    }
    const warmIndexes = slot.warmIndexes;
    for (let i = 0; i < warmIndexes.length; i++) {
      const index = warmIndexes[i];
      if (from >= 0) dequeue(index, from);
      if (to >= 0) enqueue(index, to, num, stamp, warmStampOf);
    }
  }

  /**
   * Makes `report` the agent's warm counts, for a heartbeat whose only
   * placement-relevant change is its warm image set, and re-files it in its
   * warm indexes alone: it leaves the indexes of images it no longer has
   * warm, and goes last at its level in the others under a new warm stamp.
   * Its place in the pool's and the image indexes stays.
   */
  rewarm(slot: Slot, report: ReadonlyMap<string, number>): void {
    const k = slot.filed;
    const warmIndexes = slot.warmIndexes;
    if (k >= 0) {
      for (let i = 0; i < warmIndexes.length; i++) dequeue(warmIndexes[i], k);
    }
    applyWarm(slot, report);
    linkWarm(slot);
    if (k < 0) return;
    const stamp = ++this.#stamp;
    const warmStampOf = this.#warmStampOf;
    warmStampOf[slot.num] = stamp;
    for (let i = 0; i < warmIndexes.length; i++) {
      enqueue(warmIndexes[i], k, slot.num, stamp, warmStampOf);
    }
  }

  /**
   * Builds the index of `image` in `group` on its first request: the image
   * index, or with `warm` the warm one. Agents already placeable enter it in
   * the order of their current stamps, which is the order they would have
   * had had the index always existed.
   */
  materialize(group: Group, image: string, warm: boolean): Index {
    const index = newIndex(image, warm);
    (warm ? group.byWarm : group.byImage).set(image, index);
    const placeable: Slot[] = [];
    for (const slot of group.members) {
      const info = slot.info;
      if (warm) {
        if (!((info.warm.get(image) ?? 0) > 0)) continue;
        slot.warmIndexes.push(index);
      } else {
        if (!info.images.has(image)) continue;
        slot.indexes.push(index);
      }
      if (slot.filed >= 0) placeable.push(slot);
    }
    const stampOf = warm ? this.#warmStampOf : this.#stampOf;
    placeable.sort((a, b) => stampOf[a.num] - stampOf[b.num]);
    for (const slot of placeable) enqueue(index, slot.filed, slot.num, stampOf[slot.num], stampOf);
    return index;
  }
}
