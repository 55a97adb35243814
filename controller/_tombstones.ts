/**
 * Ids of sandboxes the controller gave up on, bounded in size.
 *
 * @module
 */

const TOMBSTONE_LIMIT = 10_000;

/** Ids of sandboxes the controller gave up on; an agent reporting one is told to delete it. */
export class Tombstones {
  readonly #ids = new Set<string>();

  /** Whether `id` was given up on. */
  has(id: string): boolean {
    return this.#ids.has(id);
  }

  /** Records `id`, dropping the oldest id when full. */
  add(id: string): void {
    if (this.#ids.has(id)) return;
    if (this.#ids.size >= TOMBSTONE_LIMIT) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
    this.#ids.add(id);
  }
}
