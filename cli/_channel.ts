/**
 * The connection half shared by the calling commands (`_sandbox_run.ts`,
 * `_token_run.ts`): connects the {@linkcode FsbClient} of `client.ts` as a
 * {@linkcode ClientConfig} says, and words a failed call for stderr. Loaded on
 * demand, never by parsing or help.
 *
 * @module
 */
import { Code, RpcError } from "../proto/rpc.ts";
import type { FastPathLiteClient } from "../proto/fastpath_lite.ts";
import { endpointsOf } from "./_client_transport.ts";
import { connect, type ConnectOptions, type FsbClient } from "./client.ts";
import { type ClientConfig, tokenHint } from "./client_config.ts";

// Long enough to connect over any sane network, short enough not to hold up an
// error that is already known.
const PROBE_MS = 300;

/**
 * The {@linkcode connect} options for `config`: its endpoint (a
 * comma-separated list stays one string), the token's secret when one is
 * known, and the TLS CA's PEM text when one is configured. Exported for
 * tests, which hold what is sent to this.
 */
export function clientOptions(config: ClientConfig): ConnectOptions {
  const opts: { -readonly [K in keyof ConnectOptions]: ConnectOptions[K] } = {
    endpoint: config.endpoint.address,
  };
  if (config.token !== undefined) opts.token = config.token.secret;
  if (config.tlsCa !== undefined) opts.tlsCa = config.tlsCa.pem;
  return opts;
}

/**
 * Runs `fn` with a client of the controller `config` names and closes it
 * after; a call that fails is described on stderr and resolves to 1. `fn` gets
 * `describe` too, for the failures it reports itself (one of several deletes).
 */
export async function withClient(
  config: ClientConfig,
  stderr: (s: string) => void,
  fn: (client: FsbClient, describe: (err: unknown) => Promise<string>) => Promise<number>,
): Promise<number> {
  let client: FsbClient;
  try {
    client = connect(clientOptions(config));
  } catch (err) {
    // Options the client refuses (a CA it cannot use): nothing was dialled.
    stderr(await describeError(err, () => Promise.resolve(true), config));
    return 1;
  }
  let probe: Promise<boolean> | undefined;
  const reachable = () => probe ??= client.ready(PROBE_MS).then(() => true, () => false);
  const describe = (err: unknown) => describeError(err, reachable, config);
  try {
    return await fn(client, describe);
  } catch (err) {
    stderr(await describe(err));
    return 1;
  } finally {
    client.close();
  }
}

/** The raw FastPath client under an {@linkcode FsbClient}, for calls it does not wrap. */
export interface Channel {
  readonly client: FastPathLiteClient;
}

/**
 * {@linkcode withClient} for commands that make FastPath calls the client
 * does not wrap (`fsb debug profile`): `fn` gets the raw FastPath client, with
 * the same endpoints, failover, token and TLS.
 */
export function withChannel(
  config: ClientConfig,
  stderr: (s: string) => void,
  fn: (channel: Channel, describe: (err: unknown) => Promise<string>) => Promise<number>,
): Promise<number> {
  return withClient(
    config,
    stderr,
    (client, describe) => fn({ client: endpointsOf.get(client)!.liteClient() }, describe),
  );
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
