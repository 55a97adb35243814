/**
 * The host's end of a warm container's stdin FIFO, opened without waiting,
 * so a claim learns at once whether anyone still reads it. Private to the
 * warm pool.
 *
 * @module
 */
import { closeSync, constants, openSync, unlinkSync, writeSync } from "node:fs";

/** How long a claim waits between writes the pipe had no room for. */
const FULL_PIPE_WAIT_MS = 1;

/** A FIFO opened for writing; see the module notes. */
export class WarmPipe {
  readonly path: string;
  #fd: number | undefined;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  /**
   * Opens `path` for writing, non-blocking: undefined when it is gone or
   * nobody has it open for reading (ENXIO: the shim, and so the container,
   * is gone).
   */
  static open(path: string): WarmPipe | undefined {
    try {
      return new WarmPipe(path, openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      return undefined;
    }
  }

  /**
   * Removes the FIFO's name (the shim keeps its own ends open: a container
   * whose FIFO is gone was being claimed), writes all of `bytes`, and closes.
   * A script bigger than the pipe goes in parts, as the shim drains it.
   */
  async send(bytes: Uint8Array): Promise<void> {
    const fd = this.#fd;
    if (fd === undefined) throw new Error(`Cannot write to ${this.path} as it is closed`);
    try {
      unlinkSync(this.path);
      let at = 0;
      while (at < bytes.length) {
        try {
          at += writeSync(fd, bytes, at, bytes.length - at);
        } catch (err) {
          if ((err as { code?: string }).code !== "EAGAIN") throw err;
          await new Promise((resolve) => setTimeout(resolve, FULL_PIPE_WAIT_MS));
        }
      }
    } finally {
      this.close();
    }
  }

  /** Closes the FIFO without writing; idempotent. */
  close(): void {
    if (this.#fd === undefined) return;
    try {
      closeSync(this.#fd);
    } catch {
      // Already closed.
    }
    this.#fd = undefined;
  }
}
