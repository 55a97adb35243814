/**
 * The standard gRPC health service (`grpc.health.v1.Health`), which every
 * fsb gRPC port serves so that load balancers, Kubernetes probes and
 * `grpc_health_probe` can ask whether it can serve. No token: it says
 * nothing but SERVING or NOT_SERVING.
 *
 * @module
 */
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "./gen/grpc/health/v1/health_pb.ts";
import { Code, RpcError, type ServiceImpl } from "./rpc.ts";

export { Health };

/** Options for {@linkcode healthService}. */
export interface HealthOptions {
  /**
   * Whether the server can serve now (the overall status, service ""), and
   * per service name; the services not listed are unknown.
   */
  readonly check: () => boolean;
  /** Fully qualified names of the services the port serves, e.g. `fsb.fastpath.v1.FastPath`. */
  readonly services: readonly string[];
  /** How often Watch looks for a change; 1 s unless told. */
  readonly watchIntervalMs?: number;
}

/** The handlers of `grpc.health.v1.Health` for `RpcServer.add(Health, ...)`. */
export function healthService(opts: HealthOptions): ServiceImpl<typeof Health.method> {
  const known = new Set(["", ...opts.services]);
  const status = () => opts.check() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  return {
    check(req) {
      if (!known.has(req.service)) {
        throw new RpcError(Code.NOT_FOUND, `Service "${req.service}" is not served here`);
      }
      return { status: status() };
    },
    async *watch(req, ctx) {
      const interval = opts.watchIntervalMs ?? 1000;
      let last: ServingStatus | undefined;
      while (!ctx.signal.aborted) {
        const now = known.has(req.service) ? status() : ServingStatus.SERVICE_UNKNOWN;
        if (now !== last) {
          last = now;
          yield { status: now };
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, interval);
          ctx.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          }, { once: true });
        });
      }
    },
  };
}
