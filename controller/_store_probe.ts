/**
 * Whether the store answers, asked in the background so that health checks
 * (`grpc.health.v1.Health`, `/readyz`) answer at once from the last answer.
 *
 * @module
 */
import type { Store } from "./store/mod.ts";

/** The key read to see that the store answers; nothing is ever written there. */
const PROBE_KEY = "health/probe";

/** Asks `store` for a key every `intervalMs`; a read that fails or takes `timeoutMs` counts as down. */
export class StoreProbe {
  readonly #store: Store<unknown>;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #asking = false;
  /** The last answer; true until a probe says otherwise (it was just opened). */
  reachable = true;

  /** A probe of `store`; {@linkcode start} begins asking. */
  constructor(store: Store<unknown>, opts: { intervalMs?: number; timeoutMs?: number } = {}) {
    this.#store = store;
    this.#intervalMs = opts.intervalMs ?? 2000;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
  }

  /** Asks now, then every interval. */
  start(): void {
    this.#timer ??= setInterval(() => void this.probe(), this.#intervalMs);
    void this.probe();
  }

  /** Stops asking. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One probe: reads the key, with the timeout; resolves to (and keeps) the answer. */
  async probe(): Promise<boolean> {
    if (this.#asking) return this.reachable;
    this.#asking = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#store.get(PROBE_KEY),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("timed out")), this.#timeoutMs);
        }),
      ]);
      this.reachable = true;
    } catch {
      this.reachable = false;
    } finally {
      clearTimeout(timer);
      this.#asking = false;
    }
    return this.reachable;
  }
}
