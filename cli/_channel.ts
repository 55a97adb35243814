/**
 * The connection half shared by the calling commands (`_sandbox_run.ts`,
 * `_token_run.ts`): opens a FastPath client as a {@linkcode ClientConfig}
 * says, and words a failed call for stderr. Loaded on demand, never by
 * parsing or help.
 *
 * @module
 */
import { Code, RpcError } from "../proto/rpc.ts";
import { FetchChannel, type FetchChannelOptions } from "../proto/fetch_client.ts";
import { FastPathLite, type FastPathLiteClient } from "../proto/fastpath_lite.ts";
import { callMetadata, type ClientConfig, tokenHint } from "./client_config.ts";

// Long enough to connect over any sane network, short enough not to hold up an
// error that is already known.
const PROBE_MS = 300;

/** A FastPath client and the connection under it. */
export interface Channel {
  readonly client: FastPathLiteClient;
  ready(timeoutMs: number): Promise<void>;
  close(): void;
}

/**
 * The options the CLI gives {@linkcode FetchChannel} for `config`: the
 * `authorization` metadata when a token is known, and the TLS CA when one is
 * configured. Exported for tests, which hold what is sent to this.
 */
export function fetchChannelOptions(config: ClientConfig): FetchChannelOptions {
  const opts: FetchChannelOptions = { metadata: callMetadata(config) };
  if (config.tlsCa !== undefined) opts.tlsCa = config.tlsCa.pem;
  return opts;
}

/**
 * fetch for TCP endpoints; grpc-js, with the generated schemas, only for
 * `unix:` ones, which fetch cannot dial. A unix socket is local: it carries
 * the token but no TLS.
 */
export async function openChannel(config: ClientConfig): Promise<Channel> {
  const address = config.endpoint.address;
  if (!address.startsWith("unix:")) {
    const channel = new FetchChannel(address, fetchChannelOptions(config));
    return {
      client: channel.client(FastPathLite),
      ready: (timeoutMs) => channel.ready(timeoutMs),
      close: () => channel.close(),
    };
  }
  const [{ RpcChannel }, { FastPath }] = await Promise.all([
    import("../proto/grpc.ts"),
    import("../proto/gen/fsb/fastpath/v1/fastpath_pb.ts"),
  ]);
  const channel = new RpcChannel(address, { metadata: callMetadata(config) });
  return {
    client: channel.client(FastPath),
    ready: (timeoutMs) => channel.ready(timeoutMs),
    close: () => channel.close(),
  };
}

/**
 * Runs `fn` with a channel to the controller `config` names and closes it
 * after; a call that fails is described on stderr and resolves to 1. `fn` gets
 * `describe` too, for the failures it reports itself (one of several deletes).
 */
export async function withChannel(
  config: ClientConfig,
  stderr: (s: string) => void,
  fn: (channel: Channel, describe: (err: unknown) => Promise<string>) => Promise<number>,
): Promise<number> {
  let channel: Channel;
  try {
    channel = await openChannel(config);
  } catch (err) {
    // Options the channel refuses (a CA it cannot use): nothing was dialled.
    stderr(await describeError(err, () => Promise.resolve(true), config));
    return 1;
  }
  let probe: Promise<boolean> | undefined;
  const reachable = () => probe ??= channel.ready(PROBE_MS).then(() => true, () => false);
  const describe = (err: unknown) => describeError(err, reachable, config);
  try {
    return await fn(channel, describe);
  } catch (err) {
    stderr(await describe(err));
    return 1;
  } finally {
    channel.close();
  }
}

/**
 * The stderr line for a failed call. UNAVAILABLE and DEADLINE_EXCEEDED can come
 * from the controller (an agent it cannot reach) or from our own connection;
 * `reachable`, a quick connect probe made only when needed, tells which, so
 * that the message names the endpoint only when the endpoint is what failed.
 * UNAUTHENTICATED says where a token comes from, or where the one sent came from.
 */
export async function describeError(
  err: unknown,
  reachable: () => Promise<boolean>,
  config: ClientConfig,
): Promise<string> {
  if (!(err instanceof RpcError)) return `fsb: ${err instanceof Error ? err.message : err}\n`;
  const endpoint = config.endpoint;
  if (err.code === Code.UNAVAILABLE || err.code === Code.DEADLINE_EXCEEDED) {
    if (LOCAL_FAILURE.test(err.message) || !(await reachable())) {
      return `fsb: ${err.codeName}: Cannot reach the controller at ${endpoint.address} (${
        origin(endpoint)
      }): ${transportDetail(err.message)}\n`;
    }
  }
  if (err.code === Code.UNAUTHENTICATED) {
    return `fsb: ${err.codeName}: ${err.message} ${tokenHint(config)}\n`;
  }
  return `fsb: ${err.codeName}: ${err.message}\n`;
}

function origin(endpoint: ClientConfig["endpoint"]): string {
  return endpoint.source === "default"
    ? "the default endpoint; set --endpoint or FSB_ENDPOINT"
    : `from ${endpoint.source}`;
}

// How the transports word a connection they could not make; these need no probe.
const LOCAL_FAILURE = /^(?:No connection established|Name resolution failed|Cannot connect to )/;

// grpc-js wraps the socket error as "No connection established. Last error:
// Error: connect ECONNREFUSED 127.0.0.1:9. Resolution note: "; keep the socket error.
function transportDetail(message: string): string {
  const fetchFailure = /^Cannot connect to \S+: (.*)$/s.exec(message);
  if (fetchFailure !== null) return fetchFailure[1];
  const match =
    /^No connection established\. Last error: (?:Error: )?(.*?)(?:\. Resolution note: ?)?$/s
      .exec(message);
  return match === null ? message : match[1];
}
