/**
 * Keeps a client's GOAWAY frames from the HTTP/2 server RpcServer runs.
 * Private to `proto/`.
 *
 * Why: Deno 2.9.6's node:http2 (nghttp2 inside Deno) crashes the whole
 * process when a session that has served more than about a hundred streams
 * receives a GOAWAY: `free(): invalid pointer`, or the assertion
 * `stream->closed_next == NULL` in `find_stream_on_goaway_func`, before any
 * JavaScript runs (denoland/deno#36788 is the client-side face of it).
 * Checked here with a bare grpc-js server: 150 unary calls from one grpc-js
 * client that then closes its channel kill the server; 100 do not. Every
 * well-behaved client says GOAWAY when it closes (grpc-js, Deno's fetch), so
 * a controller or agent could be taken down by any client that made enough
 * calls. A client's GOAWAY only tells the server which of its streams the
 * client will still process, and a server pushes none, so it can be left
 * out: the session ends when the client closes the connection, as after a
 * crash of the client, which nghttp2 handles.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type { Socket } from "node:net";

const PREFACE_BYTES = 24;
const HEADER_BYTES = 9;
const GOAWAY = 0x7;

/**
 * A duplex over `socket` that passes every byte both ways, except the
 * GOAWAY frames the client sends; it answers for the socket's address
 * (`remoteAddress`, `remotePort`, ...) so that calls name their peer as
 * before. Reading stays flow-controlled: the socket pauses while the
 * session does not read.
 */
export function withoutClientGoaway(socket: Socket): Duplex {
  return new GoawayFilter(socket);
}

class GoawayFilter extends Duplex {
  readonly #socket: Socket;
  /** Bytes of the connection preface still to pass before the first frame. */
  #preface = PREFACE_BYTES;
  /** Payload bytes of the current frame still to pass (or drop). */
  #payload = 0;
  #dropping = false;
  /** The start of a frame header that ended a chunk, kept until the rest comes. */
  #partial: Buffer | undefined;

  constructor(socket: Socket) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      const out = this.#filter(chunk);
      if (out !== undefined && !this.push(out)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.#socket.remotePort;
  }

  get remoteFamily(): string | undefined {
    return this.#socket.remoteFamily;
  }

  get localAddress(): string | undefined {
    return this.#socket.localAddress;
  }

  get localPort(): number | undefined {
    return this.#socket.localPort;
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.#socket.setTimeout(ms, cb);
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.#socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    this.#socket.setKeepAlive(enable, delay);
    return this;
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _encoding: string, done: (err?: Error | null) => void): void {
    if (this.#socket.write(chunk)) done();
    else this.#socket.once("drain", () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#socket.end(() => done());
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#socket.destroy();
    done(err);
  }

  /** What of `chunk` the session gets: all of it but GOAWAY frames (undefined for nothing). */
  #filter(chunk: Buffer): Buffer | undefined {
    const data = this.#partial === undefined ? chunk : Buffer.concat([this.#partial, chunk]);
    this.#partial = undefined;
    const kept: Buffer[] = [];
    // The start of the run of bytes to pass on that `at` is in.
    let keepFrom = 0;
    let at = Math.min(this.#preface, data.length);
    this.#preface -= at;
    while (at < data.length) {
      if (this.#payload > 0) {
        const n = Math.min(this.#payload, data.length - at);
        this.#payload -= n;
        at += n;
        if (this.#dropping) keepFrom = at;
        if (this.#payload === 0) this.#dropping = false;
        continue;
      }
      if (data.length - at < HEADER_BYTES) {
        // The frame's type is not known yet: its header waits for the next chunk.
        if (at > keepFrom) kept.push(data.subarray(keepFrom, at));
        this.#partial = Buffer.from(data.subarray(at));
        return joined(kept);
      }
      this.#payload = data.readUIntBE(at, 3);
      if (data[at + 3] === GOAWAY) {
        if (at > keepFrom) kept.push(data.subarray(keepFrom, at));
        keepFrom = at + HEADER_BYTES;
        this.#dropping = this.#payload > 0;
      }
      at += HEADER_BYTES;
    }
    if (data.length > keepFrom) kept.push(keepFrom === 0 ? data : data.subarray(keepFrom));
    return joined(kept);
  }
}

function joined(parts: Buffer[]): Buffer | undefined {
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}
