/**
 * The agent's side of the controller's UpdateSandbox: a newer generation of
 * a sandbox's spec into the runtime's record of it (issue 11, fault 7).
 *
 * @module
 */
import { clone } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Code, RpcError } from "../proto/grpc.ts";
import { InvalidArgumentError, NotFoundError } from "../registry/mod.ts";
import type { Runtime } from "./runtime.ts";

/**
 * Takes updated specs into the runtime's records, one at a time: two
 * updates racing could otherwise leave the older one's record written last.
 */
export class SpecUpdater {
  readonly #runtime: Runtime;
  readonly #agentId: string;
  /** The last update queued; each waits for the one before it. */
  #queue: Promise<unknown> = Promise.resolve();

  /** Creates the updater of `runtime`'s records on agent `agentId`. */
  constructor(runtime: Runtime, agentId: string) {
    this.#runtime = runtime;
    this.#agentId = agentId;
  }

  /**
   * Takes `next` (whose id the caller has checked) into the runtime's
   * record, unless the record is already at its generation or a newer one;
   * resolves to the record's generation after. Only the fields an update
   * may change are taken (labels, expiry, failure policy): the sandbox runs
   * by the rest, which must stay as created.
   */
  update(next: SandboxSpec): Promise<number> {
    const run = this.#queue.then(() => this.#update(next));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #update(next: SandboxSpec): Promise<number> {
    const id = next.sandboxId;
    if (next.generation < 1) {
      throw new InvalidArgumentError(
        "spec.generation",
        `must be at least 1, got ${next.generation}`,
      );
    }
    const updateSpec = this.#runtime.updateSpec;
    if (updateSpec === undefined) {
      throw new RpcError(
        Code.UNIMPLEMENTED,
        `Runtime ${this.#runtime.name} on agent "${this.#agentId}" keeps no spec records to update`,
      );
    }
    const held = (await this.#runtime.list()).find((s) => s.spec.sandboxId === id)?.spec;
    if (held === undefined) {
      throw new NotFoundError(`Cannot update sandbox ${id} as it does not exist`);
    }
    if (next.generation <= held.generation) return held.generation;
    if (next.namespace !== held.namespace || next.name !== held.name) {
      throw new InvalidArgumentError(
        "spec",
        `names sandbox "${next.namespace}/${next.name}", but sandbox ${id} is "${held.namespace}/${held.name}"`,
      );
    }
    const spec = clone(SandboxSpecSchema, held);
    spec.labels = { ...next.labels };
    spec.expireTime = next.expireTime;
    spec.failurePolicy = next.failurePolicy;
    spec.generation = next.generation;
    await updateSpec.call(this.#runtime, spec);
    return spec.generation;
  }
}
