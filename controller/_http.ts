/**
 * The plain-HTTP side: Prometheus `/metrics` and `/healthz` (open), the
 * profiling endpoints `/debug/pprof/profile?seconds=N` and
 * `/debug/pprof/heap`, and the dashboard at `/dashboard` (shared/DESIGN.md
 * section 16), which need a caller the given check admits (an admin token on
 * the controller, the controller's credential on an agent).
 *
 * The dashboard's login: a browser cannot send a bearer header when it
 * navigates, so the token is given once, by the login form (a POST: the token
 * never sits in a URL, history or logs) or by `/dashboard?token=...` (for a
 * link printed in a terminal; answered at once by a redirect to the bare
 * `/dashboard`, with no referrer). Either makes a server-side session and sets
 * its random id as an HttpOnly, SameSite=Strict cookie scoped to
 * `/dashboard`: the cookie never holds the token itself (cookies are shared
 * by every port of a host, so another local service could see it), scripts
 * cannot read it, and other sites cannot make the browser send it. Each
 * request checks the session's token again, so a revoked or expired token
 * ends its sessions at once. Scripts and curl may send `authorization:
 * Bearer` instead.
 *
 * @module
 */
import { formatHostPort, parseHostPort } from "../proto/host_port.ts";
import type client from "prom-client";
import { statusFromError } from "../proto/rpc.ts";
import { UnauthenticatedError } from "../registry/mod.ts";
import { MAX_PROFILE_SECONDS, type ProfileOptions } from "./profiler.ts";
import { dashboardPage, loginPage, newNonce, pageSecurityPolicy } from "./_dashboard.ts";

/** What the debug endpoints need; without it they answer 404. */
export interface HttpDebug {
  /** Throws (an UnauthenticatedError or PermissionDeniedError) unless the headers carry an admin. */
  readonly admit: (headers: Readonly<Record<string, string>>) => void;
  readonly profile: (opts: ProfileOptions) => AsyncIterable<Uint8Array>;
}

/** What the dashboard needs; without it `/` and `/dashboard` answer 404. */
export interface HttpDashboard {
  /** Throws (an UnauthenticatedError or PermissionDeniedError) unless the headers carry an admin. */
  readonly admit: (headers: Readonly<Record<string, string>>) => void;
  /** The data the page shows, as JSON-ready values. */
  readonly data: () => Promise<unknown>;
}

const HTTP_STATUS: Readonly<Record<number, number>> = { 3: 400, 7: 403, 14: 503, 16: 401 };

/** An error as an HTTP status and a message fit to show (never an internal one). */
function httpError(err: unknown): { status: number; message: string } {
  const { code, message } = statusFromError(err);
  const status = HTTP_STATUS[code];
  return status === undefined ? { status: 500, message: "internal error" } : { status, message };
}

/** Whether `address` (`HOST:PORT`) is on loopback only. */
export function isLoopback(address: string): boolean {
  const { host } = parseHostPort(address, { listen: true });
  return host === "localhost" || host.startsWith("127.") || host === "::1";
}

/** A running HTTP listener. */
export interface HttpHandle {
  /** The bound `HOST:PORT`. */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves `/metrics` from `registry`, `/healthz` (the process lives) and
 * `/readyz` (it can serve) on `address`, with the
 * debug endpoints and the dashboard when given; resolves once bound.
 */
export async function serveHttp(
  address: string,
  opts: {
    registry: client.Registry;
    debug?: HttpDebug;
    dashboard?: HttpDashboard;
    /** `/readyz`: why the process cannot serve now, or undefined when it can; always ready unless given. */
    notReady?: () => string | undefined;
  },
): Promise<HttpHandle> {
  const parsed = parseHostPort(address, { listen: true, what: "metrics address" });
  const host = parsed.host === "" ? "0.0.0.0" : parsed.host;
  const port = parsed.port;
  let bound = "";
  let dashboard: ((req: Request, path: string) => Promise<Response>) | undefined;
  const ready = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: host,
    port,
    onListen: (addr) => {
      bound = formatHostPort(host, addr.port);
      // One cookie name per port: cookies are per host, and two controllers may share one.
      if (opts.dashboard !== undefined) {
        dashboard = dashboardHandler(opts.dashboard, `fsb_dashboard_${addr.port}`);
      }
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
    if (path === "/readyz") {
      const why = opts.notReady?.();
      return why === undefined
        ? new Response("ready\n")
        : new Response(`not ready: ${why}\n`, { status: 503 });
    }
    if (opts.debug !== undefined && path.startsWith("/debug/pprof/")) {
      return debugResponse(req, path, opts.debug);
    }
    if (
      dashboard !== undefined &&
      (path === "/" || path === "/dashboard" || path.startsWith("/dashboard/"))
    ) {
      return await dashboard(req, path);
    }
    return new Response("not found\n", { status: 404 });
  });
  await ready.promise;
  return { address: bound, close: () => server.shutdown() };
}

/**
 * The agent's metrics port (`fsb agent run --metrics-listen ADDR`):
 * `/metrics` from the agent's registry (its stage histograms included),
 * `/healthz`, and `/debug/pprof/*` for callers `admit` lets in (the
 * controller's credential for this agent). No dashboard: that is the
 * controller's.
 */
export function serveAgentMetrics(
  address: string,
  opts: {
    registry: client.Registry;
    admit: HttpDebug["admit"];
    profile: HttpDebug["profile"];
  },
): Promise<HttpHandle> {
  return serveHttp(address, {
    registry: opts.registry,
    debug: { admit: opts.admit, profile: opts.profile },
  });
}

/** How long a dashboard login lasts. */
const SESSION_MS = 12 * 60 * 60 * 1000;
/** The most dashboard sessions kept; past it the oldest is forgotten. */
const MAX_SESSIONS = 1000;
/** The most a login form may send. */
const MAX_LOGIN_BYTES = 8 * 1024;

/** Headers every dashboard answer carries. */
const DASHBOARD_HEADERS = {
  "cache-control": "no-store",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
};

/** Dashboard sessions: random ids to the token that opened them, and when they end. */
class Sessions {
  readonly #byId = new Map<string, { secret: string; endsAt: number }>();

  open(secret: string): string {
    const id = Array.from(
      crypto.getRandomValues(new Uint8Array(32)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    while (this.#byId.size >= MAX_SESSIONS) this.#byId.delete(this.#byId.keys().next().value!);
    this.#byId.set(id, { secret, endsAt: Date.now() + SESSION_MS });
    return id;
  }

  /** The session's token, unless it is unknown or over. */
  secret(id: string): string | undefined {
    const s = this.#byId.get(id);
    if (s === undefined) return undefined;
    if (s.endsAt <= Date.now()) {
      this.#byId.delete(id);
      return undefined;
    }
    return s.secret;
  }

  close(id: string): void {
    this.#byId.delete(id);
  }
}

function cookieOf(req: Request, name: string): string | undefined {
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Whether a POST comes from a page of this origin (or from no page at all, like curl). */
function sameOrigin(req: Request): boolean {
  const origin = req.headers.get("origin");
  if (origin === null) return true;
  try {
    return new URL(origin).host === req.headers.get("host");
  } catch {
    return false;
  }
}

/** Reads at most `limit` bytes of the body, or undefined when it is longer. */
async function boundedText(req: Request, limit: number): Promise<string | undefined> {
  if (Number(req.headers.get("content-length") ?? "0") > limit) return undefined;
  if (req.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.byteLength;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/** Routes `/`, `/dashboard` and `/dashboard/*`; see the module notes for the login. */
function dashboardHandler(
  dashboard: HttpDashboard,
  cookie: string,
): (req: Request, path: string) => Promise<Response> {
  const sessions = new Sessions();
  const text = (status: number, body: string, headers: Record<string, string> = {}) =>
    new Response(`${body}\n`, {
      status,
      headers: { ...DASHBOARD_HEADERS, "content-type": "text/plain; charset=utf-8", ...headers },
    });
  const html = (status: number, page: (nonce: string) => string, headers = {}) => {
    const nonce = newNonce();
    return new Response(page(nonce), {
      status,
      headers: {
        ...DASHBOARD_HEADERS,
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": pageSecurityPolicy(nonce),
        ...headers,
      },
    });
  };
  const redirect = (headers: Record<string, string> = {}) =>
    new Response(null, {
      status: 303,
      headers: { ...DASHBOARD_HEADERS, location: "/dashboard", ...headers },
    });
  const login = (err: unknown) => {
    const { status, message } = httpError(err);
    return html(status, (nonce) => loginPage({ nonce, message }));
  };
  // Checks the token and opens a session for it; a redirect to the bare page sets the cookie.
  const openSession = (secret: string) => {
    try {
      dashboard.admit({ authorization: `Bearer ${secret}` });
    } catch (err) {
      return login(err);
    }
    const id = sessions.open(secret);
    return redirect({
      "set-cookie": `${cookie}=${id}; Path=/dashboard; Max-Age=${
        SESSION_MS / 1000
      }; HttpOnly; SameSite=Strict`,
    });
  };
  // The caller, by bearer header or session cookie; throws when neither admits.
  const admit = (req: Request) => {
    const authorization = req.headers.get("authorization");
    if (authorization !== null) return dashboard.admit({ authorization });
    const id = cookieOf(req, cookie);
    const secret = id === undefined ? undefined : sessions.secret(id);
    if (secret === undefined) {
      throw new UnauthenticatedError("Log in with an admin token: /dashboard");
    }
    dashboard.admit({ authorization: `Bearer ${secret}` });
  };
  const reading = (req: Request) => req.method === "GET" || req.method === "HEAD";

  return async (req, path) => {
    if (path === "/" || path === "/dashboard/") {
      return reading(req) ? redirect() : text(405, "method not allowed", { allow: "GET" });
    }
    if (path === "/dashboard") {
      if (!reading(req)) return text(405, "method not allowed", { allow: "GET" });
      const token = new URL(req.url).searchParams.get("token");
      if (token !== null) return openSession(token.trim());
      try {
        admit(req);
      } catch (err) {
        return login(err);
      }
      const data = await dashboard.data();
      return html(200, (nonce) => dashboardPage({ nonce, data }));
    }
    if (path === "/dashboard/data") {
      if (!reading(req)) return text(405, "method not allowed", { allow: "GET" });
      try {
        admit(req);
        return new Response(JSON.stringify(await dashboard.data()), {
          headers: { ...DASHBOARD_HEADERS, "content-type": "application/json" },
        });
      } catch (err) {
        const { status, message } = httpError(err);
        return text(status, message);
      }
    }
    if (path === "/dashboard/login") {
      if (reading(req)) return redirect();
      if (req.method !== "POST") return text(405, "method not allowed", { allow: "GET, POST" });
      if (!sameOrigin(req)) return text(403, "cross-origin login refused");
      const body = await boundedText(req, MAX_LOGIN_BYTES);
      if (body === undefined) return text(413, "login form too large");
      return openSession((new URLSearchParams(body).get("token") ?? "").trim());
    }
    if (path === "/dashboard/logout") {
      if (req.method !== "POST") return text(405, "method not allowed", { allow: "POST" });
      if (!sameOrigin(req)) return text(403, "cross-origin logout refused");
      const id = cookieOf(req, cookie);
      if (id !== undefined) sessions.close(id);
      return redirect({
        "set-cookie": `${cookie}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict`,
      });
    }
    return text(404, "not found");
  };
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
    const { status, message } = httpError(err);
    return new Response(`${message}\n`, { status });
  }
}
