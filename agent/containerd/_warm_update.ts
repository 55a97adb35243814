/**
 * containerd's `Tasks.Update` (a running task's cgroup limits), which the
 * repo's trimmed copy of containerd's tasks.proto leaves out: a descriptor
 * of just that method and its request, built here, over a connection of its
 * own. Private to the warm pool, which applies a claim's limits with it.
 *
 * @module
 */
import { create, createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import {
  type EmptySchema,
  file_google_protobuf_any,
  file_google_protobuf_empty,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { RpcChannel } from "../../proto/grpc.ts";
import { socketAddress } from "./client.ts";

/** What `runc update` reads: the OCI `linux.resources` fields fsb sets. */
export interface LinuxResources {
  readonly memory?: { readonly limit: number };
  readonly cpu?: { readonly quota: number; readonly period: number };
  readonly pids?: { readonly limit: number };
}

/** The type URL containerd gives `LinuxResources`; the runc shim reads the JSON body alone. */
const RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
const TYPE_STRING = 9;
const TYPE_MESSAGE = 11;
const LABEL_OPTIONAL = 1;

type UpdateService = GenService<{
  update: { methodKind: "unary"; input: DescMessage; output: typeof EmptySchema };
}>;

/** containerd's UpdateTaskRequest (fields 1 and 2; 3, annotations, unused) and Tasks.Update. */
function updateService(): UpdateService {
  const file = create(FileDescriptorProtoSchema, {
    name: "fsb/containerd_tasks_update.proto",
    package: "containerd.services.tasks.v1",
    dependency: ["google/protobuf/any.proto", "google/protobuf/empty.proto"],
    syntax: "proto3",
    messageType: [{
      name: "UpdateTaskRequest",
      field: [
        {
          name: "container_id",
          jsonName: "containerId",
          number: 1,
          type: TYPE_STRING,
          label: LABEL_OPTIONAL,
        },
        {
          name: "resources",
          jsonName: "resources",
          number: 2,
          type: TYPE_MESSAGE,
          typeName: ".google.protobuf.Any",
          label: LABEL_OPTIONAL,
        },
      ],
    }],
    service: [{
      name: "Tasks",
      method: [{
        name: "Update",
        inputType: ".containerd.services.tasks.v1.UpdateTaskRequest",
        outputType: ".google.protobuf.Empty",
      }],
    }],
  });
  const deps = new Map([
    ["google/protobuf/any.proto", file_google_protobuf_any],
    ["google/protobuf/empty.proto", file_google_protobuf_empty],
  ]);
  const registry = createFileRegistry(file, (name) => deps.get(name));
  const service = registry.getService("containerd.services.tasks.v1.Tasks");
  if (service === undefined) throw new Error("Cannot build containerd's Tasks.Update descriptor");
  return service as unknown as UpdateService;
}

/** Calls containerd's `Tasks.Update` in one containerd namespace. */
export class TaskUpdater {
  readonly #channel: RpcChannel;
  readonly #client;

  /** Connects lazily to containerd's `socket` (a path or `unix://` address). */
  constructor(socket: string, namespace: string) {
    this.#channel = new RpcChannel(socketAddress(socket), {
      metadata: { "containerd-namespace": namespace },
      timeoutMs: 10_000,
      keepaliveMs: 0,
    });
    this.#client = this.#channel.client(updateService());
  }

  /** Sets running task `containerId`'s limits to `resources` (what is left out stays). */
  async update(containerId: string, resources: LinuxResources): Promise<void> {
    await this.#client.update({
      containerId,
      resources: {
        typeUrl: RESOURCES_TYPE_URL,
        value: new TextEncoder().encode(JSON.stringify(resources)),
      },
    });
  }

  /** Closes the connection. */
  close(): void {
    this.#channel.close();
  }
}
