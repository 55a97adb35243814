// A FastPath server for CLI tests: Deno.serve speaking HTTP/2 with prior
// knowledge, as the CLI's FetchChannel does, that records every call (its
// headers and request) and answers as the test says, with protobuf-es
// encoding the replies, so that the CLI's lite codecs are read against the
// reference.
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { FastPath } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { Code } from "../../proto/rpc.ts";

/** One call the server saw. */
export interface FakeCall {
  /** The method's name, e.g. `CreateToken`. */
  readonly method: string;
  /** The request headers, `authorization` among them when the client sent one. */
  readonly headers: Headers;
  /** The request, decoded with the generated schema. */
  readonly request: unknown;
}

/** What a handler answers: a response message, or a failure (trailers-only). */
export type FakeAnswer =
  | { readonly message: unknown }
  | { readonly code: number; readonly error: string };

/** A running fake. */
export interface FakeFastPath {
  /** `127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** Every call so far, in order. */
  readonly calls: FakeCall[];
  /** Stops the server. */
  close(): Promise<void>;
}

function frame(body: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

/** Serve TLS (HTTP/2 over ALPN `h2`) with this certificate instead of cleartext. */
export interface FakeTls {
  readonly cert: string;
  readonly key: string;
}

/**
 * Starts a fake FastPath on a free loopback port. `answer` gets each call and
 * returns the reply; a method it does not handle should return a failure.
 */
export function startFakeFastPath(
  answer: (call: FakeCall) => FakeAnswer,
  tls?: FakeTls,
): FakeFastPath {
  const calls: FakeCall[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, ...tls },
    async (req) => {
      const name = new URL(req.url).pathname.split("/").pop() ?? "";
      const method = FastPath.methods.find((m) => m.name === name);
      if (method === undefined) return grpcError(Code.UNIMPLEMENTED, `No method ${name}`);
      const body = new Uint8Array(await req.arrayBuffer());
      const call: FakeCall = {
        method: name,
        // A copy: the request's own headers cannot be read once it is answered.
        headers: new Headers(req.headers),
        request: fromBinary(method.input, body.subarray(5)),
      };
      calls.push(call);
      const reply = answer(call);
      if ("code" in reply) return grpcError(reply.code, reply.error);
      const output = method.output as DescMessage;
      const bytes = toBinary(output, reply.message as MessageShape<typeof output>);
      return new Response(frame(bytes), {
        status: 200,
        headers: { "content-type": "application/grpc" },
      });
    },
  );
  return {
    endpoint: `127.0.0.1:${server.addr.port}`,
    calls,
    close: () => server.shutdown(),
  };
}

function grpcError(code: number, message: string): Response {
  return new Response(null, {
    status: 200,
    headers: {
      "content-type": "application/grpc",
      "grpc-status": String(code),
      "grpc-message": encodeURIComponent(message),
    },
  });
}
