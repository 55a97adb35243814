/**
 * `HOST:PORT`, the one parser of it for the whole of fsb: listen addresses,
 * endpoints, agent and controller addresses (issue 11 found six, each with
 * rules of its own). Pure; loads nothing.
 *
 * The rules: a port of 1 to 5 decimal digits within 0..65535 after the last
 * colon; a host before it that is a name or IPv4 literal without colons, or
 * an IPv6 literal in brackets (`[::1]:9090`; a bare `::1:9090` is refused as
 * ambiguous); no spaces, slashes or commas. An empty host (`:9090`) and port
 * 0 (pick a free one) are for listen addresses only.
 *
 * @module
 */
import { Code, RpcError } from "./rpc.ts";

/** A parsed `HOST:PORT`; `host` without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Options for {@linkcode parseHostPort}. */
export interface ParseHostPortOptions {
  /** A listen address: an empty host (every interface) and port 0 (a free one) are allowed. */
  readonly listen?: boolean;
  /** How the address is named in errors (e.g. `--listen`); `address` unless told. */
  readonly what?: string;
}

/**
 * Parses `address` by the rules above. Throws RpcError INVALID_ARGUMENT,
 * naming `opts.what` and the rule it broke.
 */
export function parseHostPort(address: string, opts: ParseHostPortOptions = {}): HostPort {
  const parsed = readHostPort(address, opts.listen ?? false);
  if (typeof parsed === "string") {
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      `Invalid ${opts.what ?? "address"} "${address}": ${parsed}`,
    );
  }
  return parsed;
}

/** The rule `address` breaks (e.g. `expected HOST:PORT`), or undefined when it is a valid `HOST:PORT`. */
export function hostPortProblem(
  address: string,
  opts: { listen?: boolean } = {},
): string | undefined {
  const parsed = readHostPort(address, opts.listen ?? false);
  return typeof parsed === "string" ? parsed : undefined;
}

/** The address, or the rule it breaks. */
function readHostPort(address: string, listen: boolean): HostPort | string {
  const i = address.lastIndexOf(":");
  if (i < 0) return "expected HOST:PORT";
  const portText = address.slice(i + 1);
  if (!/^\d{1,5}$/.test(portText)) return "the port must be a number within 0..65535";
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !listen)) {
    return `the port must be within ${listen ? 0 : 1}..65535`;
  }
  let host = address.slice(0, i);
  if (/[\s/,]/.test(host)) return "expected HOST:PORT, without a scheme, path or spaces";
  if (host.startsWith("[")) {
    if (!/^\[[0-9A-Fa-f:.]+(%[\w.-]+)?\]$/.test(host)) {
      return "an IPv6 host goes in brackets: [::1]:9090";
    }
    host = host.slice(1, -1);
  } else if (host.includes(":")) {
    return "an IPv6 host goes in brackets: [::1]:9090";
  } else if (host.includes("]")) {
    return "the host must be a name or an IP address";
  }
  if (host === "" && !listen) return "the host is missing";
  return { host, port };
}

/** `host:port`, with an IPv6 host in brackets. */
export function formatHostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
