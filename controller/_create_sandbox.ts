/**
 * The create path: idempotency by name, quota, placement, and undoing a
 * create whose caller has gone.
 *
 * @module
 */
import { AlreadyExistsError, FailedPreconditionError } from "../registry/mod.ts";
import type { SandboxSpec } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { SandboxInfo } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code, RpcError } from "../proto/grpc.ts";
import { sameRequest } from "./_validate.ts";
import { type Entry, keyOf, newEntry, SANDBOX_PREFIX } from "./_entry.ts";
import { checkCaller, ms, type Sandboxes } from "./_sandboxes.ts";

/** What a create call brings besides its spec. */
export interface CreateCall {
  /** When the call started (performance.now()). */
  readonly t0: number;
  /** Aborts when the caller has gone. */
  readonly signal: AbortSignal | undefined;
  /** Whether the caller named the sandbox, and so can find it after a reply it never saw. */
  readonly findable: boolean;
}

/** Creates sandbox `spec` in `s`, or answers for the one of that name already there. */
export async function createSandbox(
  s: Sandboxes,
  spec: SandboxSpec,
  opts: { mode: "fast" | "strong"; call: CreateCall },
): Promise<SandboxInfo> {
  const { mode, call } = opts;
  const key = keyOf(spec.namespace, spec.name);
  for (;;) {
    const existing = s.entries.get(key);
    if (existing === undefined) {
      // An agent not yet heard from since a restart may hold a sandbox of that name whose record
      // never reached the store: placing another would supersede it. A generated name is new.
      if (call.findable) {
        s.requireRecovered(`Cannot create sandbox "${spec.namespace}/${spec.name}" yet`);
      }
      break;
    }
    if (existing.busy) {
      await existing.busy.catch(() => {});
      checkCaller(spec, call.signal);
      continue;
    }
    if (sameRequest(existing.spec, spec)) {
      // An idempotent repeat answers for a sandbox that is there; these have no container.
      if (existing.phase === "Lost" || existing.phase === "Expired") {
        throw new FailedPreconditionError(
          `Cannot create sandbox "${spec.namespace}/${spec.name}" as it exists and is ${existing.phase}; delete it first`,
        );
      }
      return s.info(existing);
    }
    throw new AlreadyExistsError(
      `Cannot create sandbox "${spec.namespace}/${spec.name}" as one with that name and a different spec exists`,
    );
  }
  const entry = newEntry(key, spec, { phase: mode === "strong" ? "Pending" : "Creating" });
  s.entries.set(key, entry);
  // Made busy before the first await, so a concurrent create of the name waits for this one.
  return await s.exclusive(entry, () => createEntry(s, entry, { mode, call }));
}

async function createEntry(
  s: Sandboxes,
  entry: Entry,
  opts: { mode: "fast" | "strong"; call: CreateCall },
): Promise<SandboxInfo> {
  const { mode, call } = opts;
  const key = entry.key;
  const t0 = call.t0;
  let persisted = false;
  try {
    checkCaller(entry.spec, call.signal);
    if (mode === "strong") {
      await s.persistence.persist(key);
      persisted = true;
    }
    checkCaller(entry.spec, call.signal);
    const stages = await s.place(entry, call.signal);
    if (mode === "strong") {
      const tStore = performance.now();
      await s.persistence.persist(key);
      stages.store = ms(tStore);
    }
    // Done, but a caller that has gone cannot find a name it never learnt: undone below.
    if (!call.findable) checkCaller(entry.spec, call.signal);
    if (mode === "fast") s.markDirty(key);
    const path = entry.path || "cold";
    for (const [stage, value] of Object.entries(stages)) {
      s.metrics.createStage.observe({ stage, path }, value / 1000);
    }
    s.metrics.warm.inc({ result: path === "warm" ? "hit" : "miss" });
    if (s.log.isLevelEnabled("timing")) {
      stages.total = ms(t0);
      s.log.timing({ sandbox: key, agent: entry.agentId, mode, ms: stages }, "create timing");
    }
    return s.info(entry);
  } catch (err) {
    if (entry.placed) {
      // Placed but not acknowledged (the Running write failed): undo the placement too.
      const agentId = entry.agentId;
      s.unplace(entry);
      s.forget(agentId, entry.spec.sandboxId);
    }
    s.entries.delete(key);
    if (persisted) {
      await s.persistence.persist(key).catch((e: unknown) => {
        s.log.error({ err: e, key }, "store delete failed; will retry");
        s.markDirty(key);
      });
    }
    throw err;
  }
}

/**
 * Throws RESOURCE_EXHAUSTED when the spec's namespace has a quota and as
 * many sandboxes as it allows (an idempotent repeat of an existing name
 * passes). Counting walks the sandboxes, so only namespaces with a quota pay.
 */
export function checkQuota(s: Sandboxes, spec: SandboxSpec): void {
  const quota = s.auth.quota(spec.namespace);
  if (quota === undefined || s.entries.has(keyOf(spec.namespace, spec.name))) return;
  const prefix = `${SANDBOX_PREFIX}${spec.namespace}/`;
  let count = 0;
  for (const entry of s.entries.values()) {
    if (entry.key.startsWith(prefix) && entry.phase !== "Expired") count++;
  }
  if (count >= quota) {
    throw new RpcError(
      Code.RESOURCE_EXHAUSTED,
      `Cannot create sandbox "${spec.namespace}/${spec.name}" as namespace "${spec.namespace}" has reached its quota of ${quota} sandboxes`,
    );
  }
}
