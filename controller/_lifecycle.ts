/**
 * The lifecycle loop: stale agents, expiry, lost sandboxes and their
 * recreation.
 *
 * @module
 */
import { type Entry, occupiesSlot } from "./_entry.ts";
import type { Sandboxes } from "./_sandboxes.ts";

/** How long a failed auto-recreate waits before the next try. */
const RECREATE_BACKOFF_MS = 5_000;

/**
 * One pass of the lifecycle loop: stale agents, lost sandboxes to recreate,
 * expiry, and records whose agent never came back after a restart.
 */
export async function tick(s: Sandboxes): Promise<void> {
  const now = s.clock.now();
  for (const agent of s.registry.cleanupStaleAgents(now, s.agentTimeoutMs)) {
    s.log.warn({ agent: agent.id }, "agent missed its heartbeats; removing it");
    s.channels.drop(agent.id);
    for (const entry of [...(s.byAgent.get(agent.id) ?? [])]) {
      if (!entry.busy) s.lose(entry, `agent "${agent.id}" stopped sending heartbeats`);
    }
  }
  const recovering = now - s.startedAt < s.agentTimeoutMs;
  const nowSec = Math.floor(now / 1000);
  const work: Promise<unknown>[] = [];
  for (const entry of s.entries.values()) {
    if (entry.busy) continue;
    if (entry.placed && s.registry.getAgentById(entry.agentId) === undefined) {
      // Its agent was removed while an operation held the entry (a delete in flight, a create
      // answered just after): the stale sweep skipped it, so it is lost now.
      s.lose(entry, `agent "${entry.agentId}" stopped sending heartbeats`);
      continue;
    }
    if (
      entry.spec.expireTime > 0n && Number(entry.spec.expireTime) <= nowSec &&
      entry.phase !== "Expired"
    ) {
      work.push(
        s.exclusive(entry, () => expire(s, entry)).catch((err) => {
          s.log.error({ err, sandbox: entry.key }, "expiry failed; will retry");
        }),
      );
      continue;
    }
    if (recovering) continue;
    if (entry.phase === "Pending" && !entry.placed) {
      // A strong create that never got its reply before a restart: no agent has it.
      s.entries.delete(entry.key);
      s.unindex(entry);
      s.markDirty(entry.key);
    } else if (entry.agentId !== "" && !entry.placed && occupiesSlot(entry.phase)) {
      s.lose(entry, `agent "${entry.agentId}" did not come back after a controller restart`);
    } else if (
      entry.phase === "Lost" && entry.spec.failurePolicy === "AUTO_RECREATE" &&
      now >= entry.retryAt
    ) {
      work.push(
        s.exclusive(entry, () => s.recreate(entry, "auto-recreate")).catch((err) => {
          entry.retryAt = now + RECREATE_BACKOFF_MS;
          s.log.warn({ err: String(err), sandbox: entry.key }, "recreate failed; will retry");
        }),
      );
    }
  }
  await Promise.all(work);
}

async function expire(s: Sandboxes, entry: Entry): Promise<void> {
  await s.stop(entry, "Terminating");
  entry.phase = "Expired";
  entry.message = `expired at ${new Date(Number(entry.spec.expireTime) * 1000).toISOString()}`;
  entry.endpoints = [];
  entry.ip = "";
  s.markDirty(entry.key);
  s.log.info({ sandbox: entry.key }, "sandbox expired");
}
