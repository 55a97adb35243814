/**
 * gRPC bindings: FastPath and AgentRegistry calls onto the Controller.
 *
 * @module
 */
import { FastPath } from "../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { AgentRegistry } from "../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { RpcServer } from "../proto/grpc.ts";
import type { Controller } from "./controller.ts";

/** Adds the FastPath and AgentRegistry services, backed by `controller`, to `server`. */
export function addControllerServices(server: RpcServer, controller: Controller): void {
  server.add(FastPath, {
    createSandbox: (req) => controller.createSandbox(req),
    getSandbox: (req) => controller.getSandbox(req),
    listSandboxes: (req) => ({ sandboxes: controller.listSandboxes(req) }),
    deleteSandbox: (req) => controller.deleteSandbox(req),
    updateSandbox: (req) => controller.updateSandbox(req),
    streamLogs: (req, ctx) => controller.streamLogs(req, ctx.signal),
  });
  server.add(AgentRegistry, {
    register: (report) => controller.register(report),
    heartbeat: (report) => controller.heartbeat(report),
  });
}
