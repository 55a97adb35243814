/**
 * IPv4 addresses and CIDR blocks: the one parser for both, shared by the
 * controller (validation) and the agent (its bridge subnet and egress rules).
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** An IPv4 block: its network address (as an unsigned 32-bit number) and prefix length. */
export interface Cidr {
  /** The network address, host bits cleared, as an unsigned 32-bit integer. */
  readonly network: number;
  /** The prefix length, 0 to 32. */
  readonly prefix: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** An IPv4 address in dotted form as an unsigned 32-bit integer, or undefined when it is not one. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

/** The dotted form of an unsigned 32-bit IPv4 address. */
export function formatIpv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/** The mask of a prefix length, as an unsigned 32-bit integer. */
function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Parses `a.b.c.d/n` (n from 0 to 32). Host bits may be set; they are
 * cleared, as `ip route` does. Throws InvalidArgumentError naming `field`.
 *
 * @example
 * ```ts
 * import { formatCidr, parseCidr } from "./cidr.ts";
 * formatCidr(parseCidr("net", "10.1.2.3/16")); // "10.1.0.0/16"
 * ```
 */
export function parseCidr(field: string, text: string): Cidr {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? undefined : parseIpv4(text.slice(0, slash));
  const prefixText = slash < 0 ? "" : text.slice(slash + 1);
  const prefix = /^[0-9]{1,2}$/.test(prefixText) ? Number(prefixText) : -1;
  if (addr === undefined || prefix < 0 || prefix > 32) {
    throw new InvalidArgumentError(
      field,
      `must be an IPv4 CIDR like 10.0.0.0/8, got "${
        text.length > 64 ? text.slice(0, 64) + "..." : text
      }"`,
    );
  }
  return { network: (addr & maskOf(prefix)) >>> 0, prefix };
}

/** The canonical text of a block, e.g. `10.1.0.0/16`. */
export function formatCidr(cidr: Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefix}`;
}

/** Whether `addr` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, addr: number): boolean {
  return ((addr & maskOf(cidr.prefix)) >>> 0) === cidr.network;
}

/** How many addresses the block holds. */
export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}
