/**
 * Keeping agents' records of sandbox specs current (issue 11, fault 7): an
 * agent keeps each sandbox's spec with its container and reports it after a
 * restart, so an update the controller made must reach that record too.
 *
 * @module
 */
import { Code, RpcError } from "../proto/grpc.ts";
import type { Entry } from "./_entry.ts";
import type { Sandboxes } from "./_sandboxes.ts";

/** How long one push may take: the agent rewrites one small record. */
const PUSH_TIMEOUT_MS = 10_000;

/**
 * Sends sandboxes' specs to their agents (Agent.UpdateSandbox) in the
 * background, one call per sandbox at a time. A push that fails is not
 * retried on a timer: the agent's next report of an older generation
 * ({@linkcode SpecPush.catchUp}) sends it again, so an update made while the
 * agent was away reaches it once it is back.
 */
export class SpecPush {
  readonly #s: Sandboxes;
  /** Sandbox ids with a push in flight. */
  readonly #inFlight = new Set<string>();
  /** Ids whose spec changed again while their push was in flight: pushed once more after it. */
  readonly #again = new Set<string>();
  /** Agents that do not serve UpdateSandbox (an older version): left alone until they register. */
  readonly #unable = new Set<string>();

  /** Creates the pusher of `sandboxes`' specs. */
  constructor(sandboxes: Sandboxes) {
    this.#s = sandboxes;
  }

  /** Sends `entry`'s spec to the agent it is placed on, in the background. */
  push(entry: Entry): void {
    const spec = entry.spec;
    const id = spec.sandboxId;
    if (this.#inFlight.has(id)) {
      this.#again.add(id);
      return;
    }
    if (!entry.placed || this.#s.closed || this.#unable.has(entry.agentId)) return;
    const agent = this.#s.registry.getAgentById(entry.agentId);
    if (agent === undefined) return;
    this.#inFlight.add(id);
    this.#s.client(agent).updateSandbox({ spec }, { timeoutMs: PUSH_TIMEOUT_MS }).then(
      (res) =>
        this.#s.log.debug(
          { agent: agent.id, id, generation: res.generation },
          "agent took the sandbox's spec",
        ),
      (err: unknown) => {
        if (err instanceof RpcError && err.code === Code.UNIMPLEMENTED) this.#unable.add(agent.id);
        this.#s.log.warn(
          { err: String(err), agent: agent.id, id, generation: spec.generation },
          "cannot send the sandbox's updated spec to its agent; sent again when it reports an older one",
        );
      },
    ).finally(() => {
      this.#inFlight.delete(id);
      if (
        this.#again.delete(id) && entry.spec.sandboxId === id &&
        entry.spec.generation > spec.generation
      ) {
        this.push(entry);
      }
    });
  }

  /**
   * An agent reported generation `reported` of `entry`'s spec: when that is
   * older than the controller's, the agent missed an update, and is sent it.
   */
  catchUp(entry: Entry, reported: number): void {
    if (reported < entry.spec.generation) this.push(entry);
  }

  /** Agent `agentId` registered, perhaps upgraded: it is pushed to again. */
  registered(agentId: string): void {
    this.#unable.delete(agentId);
  }
}
