/**
 * The one check of exposed ports, shared by the registry and the
 * controller's request validation.
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** Above this many ports, duplicate detection uses a Set instead of a nested loop. */
const SMALL_PORT_LIST = 16;

/**
 * Checks that every port is an integer in 1..65535 and none repeats.
 *
 * @throws {InvalidArgumentError} naming `exposed_ports[i]`.
 */
export function validatePorts(ports: readonly number[]): void {
  const n = ports.length;
  for (let i = 0; i < n; i++) {
    const port = ports[i];
    if (!Number.isInteger(port)) {
      throw new InvalidArgumentError(`exposed_ports[${i}]`, `must be an integer, got ${port}`);
    }
    if (port < 1 || port > 65535) {
      throw new InvalidArgumentError(`exposed_ports[${i}]`, `must be within 1..65535, got ${port}`);
    }
  }
  if (n <= SMALL_PORT_LIST) {
    for (let i = 1; i < n; i++) {
      for (let j = 0; j < i; j++) {
        if (ports[j] === ports[i]) {
          throw new InvalidArgumentError(`exposed_ports[${i}]`, `repeats port ${ports[i]}`);
        }
      }
    }
    return;
  }
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    if (seen.has(ports[i])) {
      throw new InvalidArgumentError(`exposed_ports[${i}]`, `repeats port ${ports[i]}`);
    }
    seen.add(ports[i]);
  }
}
