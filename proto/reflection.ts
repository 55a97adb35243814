/**
 * gRPC server reflection (`grpc.reflection.v1.ServerReflection` and its
 * older twin `grpc.reflection.v1alpha.ServerReflection`), answered from the
 * protobuf-es descriptors of the services a server hosts, so that generic
 * clients (`grpcurl`, `grpcui`, Postman) work without .proto files.
 *
 * This module knows the protocol only; {@linkcode RpcServer} in `grpc.ts`
 * carries the calls (`reflection` option).
 *
 * @module
 */
import { create, createFileRegistry, toBinary } from "@bufbuild/protobuf";
import type { DescFile, DescMessage, DescService, MessageInitShape } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type DescriptorProtoSchema,
  type FieldDescriptorProto,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  type FieldDescriptorProtoSchema,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, RpcError } from "./rpc.ts";

/** The two package names of the reflection protocol, newest first. */
export const REFLECTION_PACKAGES = ["grpc.reflection.v1", "grpc.reflection.v1alpha"] as const;

/** One version of the reflection protocol: its file, service and messages. */
export interface ReflectionProtocol {
  readonly file: DescFile;
  readonly service: DescService;
  readonly request: DescMessage;
  readonly response: DescMessage;
}

/** A `ServerReflectionRequest`, as decoded by protobuf-es (either version). */
export interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename"; value: string }
    | { case: "fileContainingSymbol"; value: string }
    | {
      case: "fileContainingExtension";
      value: { containingType: string; extensionNumber: number };
    }
    | { case: "allExtensionNumbersOfType"; value: string }
    | { case: "listServices"; value: string }
    | { case: undefined; value?: undefined };
}

/** A `ServerReflectionResponse` init shape (either version). */
export interface ReflectionResponse {
  validHost: string;
  originalRequest: ReflectionRequest;
  messageResponse:
    | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
    | {
      case: "allExtensionNumbersResponse";
      value: { baseTypeName: string; extensionNumber: number[] };
    }
    | { case: "listServicesResponse"; value: { service: { name: string }[] } }
    | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };
}

function field(
  name: string,
  number: number,
  type: Type,
  more: { typeName?: string; repeated?: boolean; oneof?: number } = {},
): MessageInitShape<typeof FieldDescriptorProtoSchema> {
  return {
    name,
    number,
    type,
    label: more.repeated ? Label.REPEATED : Label.OPTIONAL,
    jsonName: name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
    // proto2 presence: only message fields name a type, only oneof members an index.
    ...(more.typeName === undefined ? {} : { typeName: more.typeName }),
    ...(more.oneof === undefined ? {} : { oneofIndex: more.oneof }),
  };
}

/**
 * The reflection protocol's FileDescriptorProto for `pkg`, written from
 * grpc/reflection/v1/reflection.proto (v1alpha differs only in its package).
 */
function reflectionFileProto(pkg: string): FileDescriptorProto {
  const t = (name: string) => `.${pkg}.${name}`;
  const message = (
    name: string,
    fields: MessageInitShape<typeof FieldDescriptorProtoSchema>[],
    oneofs: string[] = [],
  ): MessageInitShape<typeof DescriptorProtoSchema> => ({
    name,
    field: fields,
    oneofDecl: oneofs.map((name) => ({ name })),
  });
  return create(FileDescriptorProtoSchema, {
    name: `${pkg.replaceAll(".", "/")}/reflection.proto`,
    package: pkg,
    syntax: "proto3",
    messageType: [
      message("ServerReflectionRequest", [
        field("host", 1, Type.STRING),
        field("file_by_filename", 3, Type.STRING, { oneof: 0 }),
        field("file_containing_symbol", 4, Type.STRING, { oneof: 0 }),
        field("file_containing_extension", 5, Type.MESSAGE, {
          typeName: t("ExtensionRequest"),
          oneof: 0,
        }),
        field("all_extension_numbers_of_type", 6, Type.STRING, { oneof: 0 }),
        field("list_services", 7, Type.STRING, { oneof: 0 }),
      ], ["message_request"]),
      message("ExtensionRequest", [
        field("containing_type", 1, Type.STRING),
        field("extension_number", 2, Type.INT32),
      ]),
      message("ServerReflectionResponse", [
        field("valid_host", 1, Type.STRING),
        field("original_request", 2, Type.MESSAGE, { typeName: t("ServerReflectionRequest") }),
        field("file_descriptor_response", 4, Type.MESSAGE, {
          typeName: t("FileDescriptorResponse"),
          oneof: 0,
        }),
        field("all_extension_numbers_response", 5, Type.MESSAGE, {
          typeName: t("ExtensionNumberResponse"),
          oneof: 0,
        }),
        field("list_services_response", 6, Type.MESSAGE, {
          typeName: t("ListServiceResponse"),
          oneof: 0,
        }),
        field("error_response", 7, Type.MESSAGE, { typeName: t("ErrorResponse"), oneof: 0 }),
      ], ["message_response"]),
      message("FileDescriptorResponse", [
        field("file_descriptor_proto", 1, Type.BYTES, { repeated: true }),
      ]),
      message("ExtensionNumberResponse", [
        field("base_type_name", 1, Type.STRING),
        field("extension_number", 2, Type.INT32, { repeated: true }),
      ]),
      message("ListServiceResponse", [
        field("service", 1, Type.MESSAGE, { typeName: t("ServiceResponse"), repeated: true }),
      ]),
      message("ServiceResponse", [field("name", 1, Type.STRING)]),
      message("ErrorResponse", [
        field("error_code", 1, Type.INT32),
        field("error_message", 2, Type.STRING),
      ]),
    ],
    service: [{
      name: "ServerReflection",
      method: [{
        name: "ServerReflectionInfo",
        inputType: t("ServerReflectionRequest"),
        outputType: t("ServerReflectionResponse"),
        clientStreaming: true,
        serverStreaming: true,
      }],
    }],
  });
}

function protocol(pkg: string): ReflectionProtocol {
  const proto = reflectionFileProto(pkg);
  const registry = createFileRegistry(proto, () => undefined);
  const get = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`reflection descriptor lacks ${what}`);
    return value;
  };
  return {
    file: get(registry.getFile(proto.name), proto.name),
    service: get(registry.getService(`${pkg}.ServerReflection`), "the service"),
    request: get(registry.getMessage(`${pkg}.ServerReflectionRequest`), "the request"),
    response: get(registry.getMessage(`${pkg}.ServerReflectionResponse`), "the response"),
  };
}

let protocols: ReflectionProtocol[] | undefined;

/** Both versions of the reflection protocol (v1, then v1alpha), built once. */
export function reflectionProtocols(): readonly ReflectionProtocol[] {
  return protocols ??= REFLECTION_PACKAGES.map(protocol);
}

/**
 * What a server can say about itself: the files of the services it hosts
 * (with their imports), every symbol they declare, and its service names.
 * Built once per server; answering is a few map look-ups.
 */
export class ReflectionIndex {
  readonly #services: string[];
  readonly #files = new Map<string, DescFile>();
  readonly #bytes = new Map<DescFile, Uint8Array>();
  readonly #symbols = new Map<string, DescFile>();
  /** Extendee full name -> extension number -> the declaring file. */
  readonly #extensions = new Map<string, Map<number, DescFile>>();

  /** Indexes `services` (the reflection services themselves included by the caller). */
  constructor(services: Iterable<DescService>) {
    const names = new Set<string>();
    for (const service of services) {
      names.add(service.typeName);
      this.#addFile(service.file);
    }
    this.#services = [...names].sort();
  }

  /** The service names a `list_services` request gets. */
  get services(): readonly string[] {
    return this.#services;
  }

  #addFile(file: DescFile): void {
    const name = file.proto.name;
    if (this.#files.has(name)) return;
    this.#files.set(name, file);
    const p = file.proto;
    const scope = p.package === "" ? "" : `${p.package}.`;
    for (const m of p.messageType) this.#addMessage(file, scope, m);
    for (const e of p.enumType) {
      this.#symbols.set(`${scope}${e.name}`, file);
      // Enum values are scoped beside their enum, as in C++.
      for (const v of e.value) this.#symbols.set(`${scope}${v.name}`, file);
    }
    for (const s of p.service) {
      this.#symbols.set(`${scope}${s.name}`, file);
      for (const m of s.method) this.#symbols.set(`${scope}${s.name}.${m.name}`, file);
    }
    for (const x of p.extension) this.#addExtension(file, scope, x);
    for (const dep of file.dependencies) this.#addFile(dep);
  }

  #addMessage(file: DescFile, scope: string, m: DescriptorProto): void {
    const name = `${scope}${m.name}`;
    this.#symbols.set(name, file);
    for (const f of m.field) this.#symbols.set(`${name}.${f.name}`, file);
    for (const o of m.oneofDecl) this.#symbols.set(`${name}.${o.name}`, file);
    for (const e of m.enumType) {
      this.#symbols.set(`${name}.${e.name}`, file);
      for (const v of e.value) this.#symbols.set(`${name}.${v.name}`, file);
    }
    for (const n of m.nestedType) this.#addMessage(file, `${name}.`, n);
    for (const x of m.extension) this.#addExtension(file, `${name}.`, x);
  }

  #addExtension(file: DescFile, scope: string, x: FieldDescriptorProto): void {
    this.#symbols.set(`${scope}${x.name}`, file);
    const extendee = x.extendee.replace(/^\./, "");
    let byNumber = this.#extensions.get(extendee);
    if (byNumber === undefined) this.#extensions.set(extendee, byNumber = new Map());
    byNumber.set(x.number, file);
  }

  #encoded(file: DescFile): Uint8Array {
    let bytes = this.#bytes.get(file);
    if (bytes === undefined) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.#bytes.set(file, bytes);
    }
    return bytes;
  }

  /**
   * `file` then its transitive imports, breadth first, as grpc-go sends them:
   * the asked-for file always, imports only when not yet sent on this stream.
   */
  #withImports(file: DescFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const queue = [file];
    const seen = new Set<string>();
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const name = f.proto.name;
      if (seen.has(name)) continue;
      seen.add(name);
      if (out.length === 0 || !sent.has(name)) {
        sent.add(name);
        out.push(this.#encoded(f));
      }
      queue.push(...f.dependencies);
    }
    return out;
  }

  /**
   * Answers one request of a ServerReflectionInfo stream. `sent` holds the
   * files already sent on that stream. Unknown names get an error response
   * (NOT_FOUND) and the stream goes on, as in grpc-go.
   *
   * @throws {RpcError} INVALID_ARGUMENT for a request that asks nothing.
   */
  answer(req: ReflectionRequest, sent: Set<string>): ReflectionResponse {
    const base = { validHost: req.host, originalRequest: req };
    const notFound = (what: string): ReflectionResponse => ({
      ...base,
      messageResponse: {
        case: "errorResponse",
        value: { errorCode: Code.NOT_FOUND, errorMessage: `${what} not found` },
      },
    });
    const files = (file: DescFile): ReflectionResponse => ({
      ...base,
      messageResponse: {
        case: "fileDescriptorResponse",
        value: { fileDescriptorProto: this.#withImports(file, sent) },
      },
    });
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return {
          ...base,
          messageResponse: {
            case: "listServicesResponse",
            value: { service: this.#services.map((name) => ({ name })) },
          },
        };
      case "fileByFilename": {
        const file = this.#files.get(r.value);
        return file === undefined ? notFound(`file "${r.value}"`) : files(file);
      }
      case "fileContainingSymbol": {
        const file = this.#symbols.get(r.value.replace(/^\./, ""));
        return file === undefined ? notFound(`symbol "${r.value}"`) : files(file);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = r.value;
        const file = this.#extensions.get(containingType.replace(/^\./, ""))?.get(
          extensionNumber,
        );
        return file === undefined
          ? notFound(`extension ${extensionNumber} of "${containingType}"`)
          : files(file);
      }
      case "allExtensionNumbersOfType": {
        const type = r.value.replace(/^\./, "");
        if (!this.#symbols.has(type)) return notFound(`type "${r.value}"`);
        const numbers = [...(this.#extensions.get(type)?.keys() ?? [])].sort((a, b) => a - b);
        return {
          ...base,
          messageResponse: {
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: type, extensionNumber: numbers },
          },
        };
      }
      default:
        throw new RpcError(Code.INVALID_ARGUMENT, "reflection request names nothing to look up");
    }
  }
}

/**
 * Whether a gRPC peer (`HOST:PORT`, `[V6]:PORT`, as grpc-js reports it) is on
 * this host's loopback. A unix socket peer counts as local too; an unknown one does not.
 */
export function isLoopbackPeer(peer: string): boolean {
  if (peer.startsWith("unix:")) return true;
  let host = peer;
  const bracket = /^\[([^\]]*)\](?::\d+)?$/.exec(peer);
  if (bracket) host = bracket[1];
  else if ((peer.match(/:/g) ?? []).length === 1) host = peer.slice(0, peer.lastIndexOf(":"));
  host = host.replace(/^::ffff:/i, "");
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === "::1" || host === "localhost";
}
