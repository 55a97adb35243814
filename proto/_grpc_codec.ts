/**
 * The codecs and method paths that RpcServer and RpcChannel both hand to
 * grpc-js for protobuf-es messages. Private to `proto/`.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

/**
 * Encodes `schema`'s messages for grpc-js, taking a message or its init shape.
 * grpc-js copies out of the serialized bytes with Buffer methods; a view costs no copy.
 */
export function serializer<D extends DescMessage>(
  schema: D,
): (value: MessageInitShape<D>) => Buffer {
  return (value) => {
    const msg = (value as { $typeName?: string }).$typeName === schema.typeName
      ? value as MessageShape<D>
      : create(schema, value);
    const bytes = toBinary(schema, msg);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** Decodes `schema`'s messages for grpc-js. */
export function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, bytes);
}

/** A method's gRPC path, `/PACKAGE.SERVICE/METHOD`. */
export function methodPath(service: { typeName: string }, name: string): string {
  return `/${service.typeName}/${name}`;
}
