/**
 * A first-come-first-served readers-writer lock for async code.
 *
 * @module
 */

interface Waiter {
  readonly write: boolean;
  readonly grant: () => void;
}

/**
 * Many `shared` holders at once, or one `exclusive` holder. Waiters are
 * served in arrival order, so a stream of shared holders cannot starve an
 * exclusive one.
 */
export class RwLock {
  #readers = 0;
  #writer = false;
  readonly #queue: Waiter[] = [];

  /** Runs `fn` while holding the lock shared. */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#wake();
    }
  }

  /** Runs `fn` while holding the lock alone. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#wake();
    }
  }

  #acquire(write: boolean): Promise<void> {
    if (this.#queue.length === 0 && this.#fits(write)) {
      this.#take(write);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#queue.push({ write, grant: resolve }));
  }

  #fits(write: boolean): boolean {
    return write ? !this.#writer && this.#readers === 0 : !this.#writer;
  }

  #take(write: boolean): void {
    if (write) this.#writer = true;
    else this.#readers++;
  }

  #wake(): void {
    while (this.#queue.length > 0 && this.#fits(this.#queue[0].write)) {
      const next = this.#queue.shift()!;
      this.#take(next.write);
      next.grant();
    }
  }
}
