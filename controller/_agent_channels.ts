/**
 * The controller's pool of gRPC channels, one per agent (shared/DESIGN.md
 * section 1). Private to `controller/`.
 *
 * @module
 */
import { Agent as AgentService } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { RpcChannel, type ServiceClient } from "../proto/grpc.ts";

/** The typed client of an agent, as the controller holds one per agent. */
export type AgentClient = ServiceClient<typeof AgentService.method>;

/** Where an agent is dialed and what its calls carry. */
export interface AgentTarget {
  readonly address: string;
  /** The agent serves only calls carrying its credential. */
  readonly credential: string;
}

/** One channel with the calls in flight on it. */
class PooledChannel {
  readonly address: string;
  readonly credential: string;
  readonly client: AgentClient;
  readonly #channel: RpcChannel;
  readonly #onClosed: (pooled: PooledChannel) => void;
  #inFlight = 0;
  #retired = false;
  #closed = false;

  constructor(
    target: AgentTarget,
    opts: { tls: { ca?: string } | undefined; onClosed: (pooled: PooledChannel) => void },
  ) {
    this.address = target.address;
    this.credential = target.credential;
    this.#onClosed = opts.onClosed;
    this.#channel = new RpcChannel(target.address, {
      metadata: { authorization: `Bearer ${target.credential}` },
      tls: opts.tls,
    });
    this.client = this.#tracked(this.#channel.client(AgentService));
  }

  /**
   * Closes the channel once no call is in flight on it: closing cuts calls
   * off, and a re-registration or a new address must not fail a create,
   * delete or log stream that was going well.
   */
  retire(): void {
    this.#retired = true;
    if (this.#inFlight === 0) this.close();
  }

  /** Closes the channel now; calls in flight on it fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#channel.close();
    this.#onClosed(this);
  }

  #enter(): void {
    this.#inFlight++;
  }

  #leave(): void {
    if (--this.#inFlight === 0 && this.#retired) this.close();
  }

  /** `inner` with each call counted while in flight. */
  #tracked(inner: AgentClient): AgentClient {
    const calls = inner as unknown as Record<string, (req: unknown, opts?: unknown) => unknown>;
    const out: Record<string, unknown> = {};
    for (const method of AgentService.methods) {
      const call = calls[method.localName];
      if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
        out[method.localName] = (req: unknown, opts?: unknown) => {
          this.#enter();
          let answer: Promise<unknown>;
          try {
            answer = call(req, opts) as Promise<unknown>;
          } catch (err) {
            this.#leave();
            throw err;
          }
          return answer.finally(() => this.#leave());
        };
      } else {
        // A stream is in flight from its first read until it ends or its reader stops.
        const enter = () => this.#enter();
        const leave = () => this.#leave();
        out[method.localName] = async function* (req: unknown, opts?: unknown) {
          enter();
          try {
            yield* call(req, opts) as AsyncIterable<unknown>;
          } finally {
            leave();
          }
        };
      }
    }
    return out as AgentClient;
  }
}

/**
 * One channel per agent, reused across calls and re-registrations. A channel
 * is replaced only when the agent's address or credential changes; the one
 * replaced (or dropped) is closed once the calls in flight on it have ended.
 */
export class AgentChannels {
  readonly #current = new Map<string, PooledChannel>();
  /** Every open channel, current or retired, so that close() reaches them all. */
  readonly #open = new Set<PooledChannel>();
  readonly #tls: { ca?: string } | undefined;

  /** With `tls`, agents are dialed over TLS, their certificates checked against `ca`. */
  constructor(opts: { tls?: { ca?: string } } = {}) {
    this.#tls = opts.tls;
  }

  /** The client of agent `id` at `target`: the pooled one when it still matches, else a new one. */
  client(id: string, target: AgentTarget): AgentClient {
    this.refresh(id, target);
    let pooled = this.#current.get(id);
    if (pooled === undefined) {
      pooled = new PooledChannel(target, {
        tls: this.#tls,
        onClosed: (p) => this.#open.delete(p),
      });
      this.#current.set(id, pooled);
      this.#open.add(pooled);
    }
    return pooled.client;
  }

  /** Retires agent `id`'s channel if its address or credential is no longer `target`'s. */
  refresh(id: string, target: AgentTarget): void {
    const pooled = this.#current.get(id);
    if (
      pooled !== undefined &&
      (pooled.address !== target.address || pooled.credential !== target.credential)
    ) {
      this.drop(id);
    }
  }

  /** Retires agent `id`'s channel: the next call dials anew, calls in flight finish first. */
  drop(id: string): void {
    const pooled = this.#current.get(id);
    if (pooled === undefined) return;
    this.#current.delete(id);
    pooled.retire();
  }

  /** Closes every channel now, calls in flight or not (shutdown). */
  close(): void {
    this.#current.clear();
    for (const pooled of [...this.#open]) pooled.close();
  }
}
