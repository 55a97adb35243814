/**
 * The delta form of an agent's report, for heartbeats to a controller that
 * takes them (shared/DESIGN.md section 15).
 *
 * @module
 */
import type { AgentReport, SandboxBeat } from "../proto/gen/fsb/agent/v1/agent_pb.ts";

/**
 * `report` (a full one, as Register sends) with each sandbox as a beat (id,
 * phase, message, address and spec generation) instead of its full status,
 * except the sandboxes in `full`, which the controller asked for: those keep
 * their full status, spec included.
 */
export function deltaReport(report: AgentReport, full: ReadonlySet<string>): AgentReport {
  const beats: SandboxBeat[] = [];
  const sandboxes = [];
  for (const status of report.sandboxes) {
    const spec = status.spec;
    if (spec === undefined) continue;
    if (full.has(spec.sandboxId)) {
      sandboxes.push(status);
      continue;
    }
    beats.push({
      $typeName: "fsb.agent.v1.SandboxBeat",
      sandboxId: spec.sandboxId,
      phase: status.phase,
      message: status.message,
      ip: status.ip,
      generation: spec.generation,
    });
  }
  return { ...report, sandboxes, beats };
}
