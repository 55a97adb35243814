/**
 * Checks and defaults for the fields callers hand the registry, done before
 * anything changes so that a rejected call leaves no trace.
 *
 * @module
 */
import type { AgentRegistration } from "./agent_info.ts";
import { InvalidArgumentError } from "./errors.ts";

/**
 * Throws unless `value` is a non-empty string.
 *
 * @throws {InvalidArgumentError} on `field`, "must not be empty".
 */
export function requireText(value: unknown, field: string): void {
  if (typeof value !== "string" || value === "") {
    throw new InvalidArgumentError(field, "must not be empty");
  }
}

/**
 * Checks the fields of a registration that no agent may leave out or get
 * wrong (its warm report is read and checked separately).
 *
 * @throws {InvalidArgumentError} `agent_id`, `pool` or `namespace` is empty;
 *   `capacity` is not a non-negative integer.
 */
export function checkRegistration(reg: AgentRegistration): void {
  requireText(reg.id, "agent_id");
  requireText(reg.pool, "pool");
  requireText(reg.namespace, "namespace");
  const capacity = reg.capacity;
  if (!Number.isInteger(capacity) || capacity < 0) {
    throw new InvalidArgumentError("capacity", `must be a non-negative integer, got ${capacity}`);
  }
}

/** The host sandbox endpoints are published on: as advertised, else the host of the address. */
export function advertiseHostOf(reg: AgentRegistration): string {
  return reg.advertiseHost || hostOf(reg.address);
}

/** The host part of `host:port` or `[v6]:port`; the whole string when it carries no port. */
function hostOf(address: string): string {
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    return end < 0 ? address : address.slice(0, end + 1);
  }
  const colon = address.indexOf(":");
  if (colon < 0 || address.indexOf(":", colon + 1) >= 0) return address;
  return address.slice(0, colon);
}
