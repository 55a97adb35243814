/**
 * gRPC bindings: FastPath and AgentRegistry calls onto the Controller, each
 * checked by the token authority first (shared/DESIGN.md section 12).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  FastPath,
  type TokenInfo,
  TokenInfoSchema,
} from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { AgentRegistry } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { RpcServer } from "../proto/grpc.ts";
import { InvalidArgumentError, NotFoundError } from "../registry/mod.ts";
import { requireAdmin, type TokenView } from "./auth.ts";
import type { Term } from "./_leadership.ts";
import { checkDnsLabel } from "./_validate.ts";
import { sandboxAccess } from "./sandbox_access.ts";
import { captureProfile, MAX_PROFILE_SECONDS, type ProfileOptions } from "./profiler.ts";

/** A ProfileRequest's kind and seconds, checked, with 30 s for an unset duration. */
export function profileOptions(kind: string, seconds: number, signal: AbortSignal): ProfileOptions {
  if (kind !== "" && kind !== "cpu" && kind !== "heap") {
    throw new InvalidArgumentError("kind", `must be cpu or heap, got "${kind}"`);
  }
  if (seconds > MAX_PROFILE_SECONDS) {
    throw new InvalidArgumentError(
      "seconds",
      `must be at most ${MAX_PROFILE_SECONDS}, got ${seconds}`,
    );
  }
  return { kind: kind === "heap" ? "heap" : "cpu", seconds: seconds || 30, signal };
}

async function* chunked(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<{ data: Uint8Array }> {
  for await (const data of bytes) yield { data };
}

/**
 * A log stream, then `{ end: true }` once it has ended as it should. Clients
 * over fetch (the CLI) see no trailers, so a stream that fails after its first
 * message just ends for them: a missing marker is how they know. A failure
 * sends no marker (its status says what happened), nor does a cancelled call.
 */
async function* endMarked(
  logs: AsyncIterable<{ data: Uint8Array }>,
  signal: AbortSignal,
): AsyncGenerator<{ data: Uint8Array; end?: boolean }> {
  yield* logs;
  if (!signal.aborted) yield { data: new Uint8Array(0), end: true };
}

/** The longest token lifetime accepted: about 100 years. */
const MAX_TTL_SECONDS = 100n * 365n * 86_400n;

function tokenInfo(t: TokenView): TokenInfo {
  return create(TokenInfoSchema, {
    id: t.id,
    namespaces: [...t.namespaces],
    admin: t.admin,
    expireTime: BigInt(t.expireTime),
    createdAt: BigInt(t.createdAt),
  });
}

/**
 * Adds the FastPath and AgentRegistry services to `server`, each call served
 * by the term `current()` gives (it throws UNAVAILABLE when this controller
 * does not lead, before anything of the call is read).
 */
export function addControllerServices(server: RpcServer, current: () => Term): void {
  server.add(FastPath, {
    createSandbox: (req, ctx) => {
      const { controller, auth } = current();
      return controller.createSandbox(req, auth.authenticate(ctx.metadata), { signal: ctx.signal });
    },
    getSandbox: (req, ctx) => {
      const { controller, auth } = current();
      return controller.getSandbox(req, auth.authenticate(ctx.metadata));
    },
    listSandboxes: (req, ctx) => {
      const { controller, auth } = current();
      return { sandboxes: controller.listSandboxes(req, auth.authenticate(ctx.metadata)) };
    },
    deleteSandbox: (req, ctx) => {
      const { controller, auth } = current();
      return controller.deleteSandbox(req, auth.authenticate(ctx.metadata));
    },
    updateSandbox: (req, ctx) => {
      const { controller, auth } = current();
      return controller.updateSandbox(req, auth.authenticate(ctx.metadata));
    },
    streamLogs: (req, ctx) => {
      const { controller, auth } = current();
      return endMarked(
        controller.streamLogs(req, ctx.signal, auth.authenticate(ctx.metadata)),
        ctx.signal,
      );
    },
    ...sandboxAccess(current),
    createToken: async (req, ctx) => {
      const { auth } = current();
      requireAdmin(auth.authenticate(ctx.metadata), "create tokens");
      if (!req.admin && req.namespaces.length === 0) {
        throw new InvalidArgumentError(
          "namespaces",
          "must name at least one namespace unless admin",
        );
      }
      req.namespaces.forEach((ns, i) => checkDnsLabel(`namespaces[${i}]`, ns));
      if (req.ttlSeconds < 0n || req.ttlSeconds > MAX_TTL_SECONDS) {
        throw new InvalidArgumentError(
          "ttl_seconds",
          `must be from 0 (never expires) to ${MAX_TTL_SECONDS}, got ${req.ttlSeconds}`,
        );
      }
      if (req.quota !== undefined && req.quota === 0) {
        throw new InvalidArgumentError("quota", "must be at least 1 sandbox when set");
      }
      const made = await auth.create({
        namespaces: req.namespaces,
        admin: req.admin,
        ttlSeconds: Number(req.ttlSeconds),
        quota: req.quota,
      });
      return { token: tokenInfo(made.token), secret: made.secret };
    },
    listTokens: (_req, ctx) => {
      const { auth } = current();
      requireAdmin(auth.authenticate(ctx.metadata), "list tokens");
      return { tokens: auth.list().map(tokenInfo) };
    },
    revokeToken: async (req, ctx) => {
      const { auth } = current();
      requireAdmin(auth.authenticate(ctx.metadata), "revoke tokens");
      if (req.id === "") throw new InvalidArgumentError("id", "is required");
      const gone = await auth.revoke(req.id);
      if (gone === undefined) {
        throw new NotFoundError(`Cannot revoke token "${req.id}" as it does not exist`);
      }
      return tokenInfo(gone);
    },
    profile: (req, ctx) => {
      const { controller, auth } = current();
      requireAdmin(auth.authenticate(ctx.metadata), "take profiles");
      const opts = profileOptions(req.kind, req.seconds, ctx.signal);
      if (req.agentId !== "") {
        return controller.profileAgent(req.agentId, opts, ctx.signal);
      }
      return chunked(captureProfile(opts));
    },
  });
  server.add(AgentRegistry, {
    register: (report, ctx) => current().controller.register(report, ctx.metadata),
    heartbeat: (report, ctx) => current().controller.heartbeat(report, ctx.metadata),
  });
}
