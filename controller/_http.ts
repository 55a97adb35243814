/**
 * The plain-HTTP side: Prometheus `/metrics` and `/healthz` (open), and the
 * profiling endpoints `/debug/pprof/profile?seconds=N` and
 * `/debug/pprof/heap` (shared/DESIGN.md section 16), which need a caller the
 * given check admits (an admin token on the controller).
 *
 * @module
 */
import type client from "prom-client";
import { statusFromError } from "../proto/rpc.ts";
import { MAX_PROFILE_SECONDS, type ProfileOptions } from "./profiler.ts";

/** What the debug endpoints need; without it they answer 404. */
export interface HttpDebug {
  /** Throws (an UnauthenticatedError or PermissionDeniedError) unless the headers carry an admin. */
  readonly admit: (headers: Readonly<Record<string, string>>) => void;
  readonly profile: (opts: ProfileOptions) => AsyncIterable<Uint8Array>;
}

const HTTP_STATUS: Readonly<Record<number, number>> = { 3: 400, 7: 403, 16: 401 };

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
  opts: { registry: client.Registry; debug?: HttpDebug },
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
    if (opts.debug !== undefined && path.startsWith("/debug/pprof/")) {
      return debugResponse(req, path, opts.debug);
    }
    return new Response("not found\n", { status: 404 });
  });
  await ready.promise;
  return { address: bound, close: () => server.shutdown() };
}

/** A profile as a download, or the refusal as text with a fitting HTTP status. */
function debugResponse(req: Request, path: string, debug: HttpDebug): Response {
  try {
    debug.admit({ authorization: req.headers.get("authorization") ?? "" });
    const url = new URL(req.url);
    let opts: ProfileOptions;
    if (path === "/debug/pprof/profile") {
      const text = url.searchParams.get("seconds") ?? "30";
      const seconds = Number(text);
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PROFILE_SECONDS) {
        return new Response(`seconds must be a whole number from 1 to ${MAX_PROFILE_SECONDS}\n`, {
          status: 400,
        });
      }
      opts = { kind: "cpu", seconds, signal: req.signal };
    } else if (path === "/debug/pprof/heap") {
      opts = { kind: "heap", seconds: 0 };
    } else {
      return new Response("not found\n", { status: 404 });
    }
    const chunks = debug.profile(opts)[Symbol.asyncIterator]();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { value, done } = await chunks.next();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      async cancel() {
        await chunks.return?.();
      },
    });
    const file = opts.kind === "cpu" ? "profile.cpuprofile" : "heap.heapsnapshot";
    return new Response(body, {
      headers: {
        "content-type": "application/json",
        "content-disposition": `attachment; filename="${file}"`,
      },
    });
  } catch (err) {
    const { code, message } = statusFromError(err);
    return new Response(`${message}\n`, { status: HTTP_STATUS[code] ?? 500 });
  }
}
