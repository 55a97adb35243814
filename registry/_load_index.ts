/**
 * The registry's placement index: placeable agents by load level, each level
 * a FIFO queue of (agent number, stamp) entries. An entry is live while its
 * stamp equals the agent's current stamp in the array the index is checked
 * against; see _filing.ts for how stamps are handed out.
 *
 * @module
 */

/**
 * One load level of an index: a FIFO queue of entries in two parallel
 * growable buffers. Entries `head..end-1` may be live; an entry is live while
 * its stamp equals its agent's current stamp.
 */
export interface Queue {
  nums: Int32Array;
  stamps: Float64Array;
  head: number;
  end: number;
  /** Live entries (agents filed at this level). */
  live: number;
}

/** Placeable agents by load: one per group, one per (group, image), one per (group, warm image). */
export interface Index {
  /** `levels[k]` queues the agents with `allocated === k`. */
  readonly levels: Queue[];
  /** No level below this one has live entries; lets a search skip emptied levels. */
  low: number;
  /** Live entries across all levels: the agents able to take a sandbox now. */
  count: number;
  /** The image of a (group, image) index; empty for a group's own index. */
  readonly image: string;
  /**
   * True for a warm index (agents with a warm container of `image`), whose
   * entries carry warm stamps: the agent's stamp, or a later one when only
   * its set of warm images changed since.
   */
  readonly warm: boolean;
}

/** First buffer size of a queue, in entries. */
const QUEUE_START = 8;

/** An empty index; `image` is empty for a group's own index. */
export function newIndex(image: string, warm: boolean): Index {
  return { levels: [], low: 0, count: 0, image, warm };
}

function newQueue(): Queue {
  return {
    nums: new Int32Array(QUEUE_START),
    stamps: new Float64Array(QUEUE_START),
    head: 0,
    end: 0,
    live: 0,
  };
}

/**
 * Makes room at the end of a full queue: drops dead entries, and doubles the
 * buffers only if that frees less than half, so each compaction's cost is
 * covered by the appends that filled the space it frees.
 */
function makeRoom(q: Queue, stampOf: Float64Array): void {
  const nums = q.nums;
  const stamps = q.stamps;
  let to = 0;
  for (let i = q.head; i < q.end; i++) {
    const num = nums[i];
    if (stampOf[num] === stamps[i]) {
      nums[to] = num;
      stamps[to] = stamps[i];
      to++;
    }
  }
  q.head = 0;
  q.end = to;
  if (to * 2 > nums.length) {
    const grownNums = new Int32Array(nums.length * 2);
    const grownStamps = new Float64Array(nums.length * 2);
    grownNums.set(nums.subarray(0, to));
    grownStamps.set(stamps.subarray(0, to));
    q.nums = grownNums;
    q.stamps = grownStamps;
  }
}

/**
 * Appends a live entry for agent `num` at level `k` of `index`. `stampOf` is
 * the stamp array the index is checked against (the warm one for a warm index).
 */
export function enqueue(
  index: Index,
  k: number,
  num: number,
  stamp: number,
  stampOf: Float64Array,
): void {
  const levels = index.levels;
  while (levels.length <= k) levels.push(newQueue());
  const q = levels[k];
  if (q.end === q.nums.length) makeRoom(q, stampOf);
  q.nums[q.end] = num;
  q.stamps[q.end] = stamp;
  q.end++;
  q.live++;
  index.count++;
  if (k < index.low) index.low = k;
}

/** Counts one live entry at level `k` of `index` as dead (the stamp change made it so). */
export function dequeue(index: Index, k: number): void {
  const q = index.levels[k];
  if (--q.live === 0) {
    q.head = 0;
    q.end = 0;
  }
  index.count--;
}
