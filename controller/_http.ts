/**
 * The plain-HTTP side: Prometheus `/metrics` and `/healthz`.
 *
 * @module
 */
import type client from "prom-client";

/** Splits `HOST:PORT` (IPv6 hosts in brackets). */
export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  if (i < 0) throw new Error(`Invalid address "${address}": expected HOST:PORT`);
  let host = address.slice(0, i);
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`Invalid address "${address}": port must be within 0..65535`);
  }
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/** Serves `/metrics` from `registry` and `/healthz` on `address`; resolves once bound. */
export async function serveHttp(
  address: string,
  opts: { registry: client.Registry },
): Promise<{ address: string; close(): Promise<void> }> {
  const { host, port } = splitHostPort(address);
  let bound = "";
  const ready = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: host,
    port,
    onListen: (addr) => {
      bound = `${host.includes(":") ? `[${host}]` : host}:${addr.port}`;
      ready.resolve();
    },
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(await opts.registry.metrics(), {
        headers: { "content-type": opts.registry.contentType },
      });
    }
    if (path === "/healthz") return new Response("ok\n");
    return new Response("not found\n", { status: 404 });
  });
  await ready.promise;
  return { address: bound, close: () => server.shutdown() };
}
