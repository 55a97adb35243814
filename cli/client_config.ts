/**
 * How the client finds the controller and what it sends it (shared/DESIGN.md
 * sections 10 and 12): the endpoint, the token and the TLS CA.
 *
 * Only flags, the environment and `~/.fsb/config.json` count. Nothing is read
 * from the working directory: a cloned repository must not be able to redirect
 * the CLI, nor the secrets it sends.
 *
 * @module
 */
import { hostPortProblem } from "../proto/host_port.ts";
import type { FlagSpec, FlagValues } from "./flags.ts";
import { UsageError } from "./usage_error.ts";

/** The endpoint used when nothing else names one. */
export const DEFAULT_ENDPOINT = "127.0.0.1:9090";

/** The flags every command that calls the controller takes, for `parseFlags`. */
export const CONNECTION_FLAGS = {
  endpoint: { type: "string" },
  token: { type: "string" },
  "tls-ca": { type: "string" },
} as const satisfies FlagSpec;

/**
 * The help lines of {@linkcode CONNECTION_FLAGS} with `-v` and `-h`, as every
 * calling command lists them.
 */
export const CONNECTION_HELP =
  `      --endpoint H:P     controller address, or H:P,H:P,... tried in order (else
                         $FSB_ENDPOINT, ~/.fsb/config.json "endpoint", 127.0.0.1:9090)
      --token SECRET     the token sent as "authorization: Bearer" (else $FSB_TOKEN,
                         ~/.fsb/config.json "token")
      --tls-ca FILE      PEM CA that verifies the controller; calls then use TLS
                         (else $FSB_TLS_CA, ~/.fsb/config.json "tlsCa")
  -v, --verbose N        2 prints client timings, 4 debug
  -h, --help             show this help`;

/** The values of {@linkcode CONNECTION_FLAGS} as given on the command line. */
export interface ConnectionFlags {
  /** `--endpoint HOST:PORT`, if given. */
  readonly endpoint: string | undefined;
  /** `--token SECRET`, if given. */
  readonly token: string | undefined;
  /** `--tls-ca FILE`, if given. */
  readonly tlsCa: string | undefined;
}

/** `CONNECTION_FLAGS` as `parseFlags` returns them. */
export type ConnectionFlagValues = FlagValues<typeof CONNECTION_FLAGS>;

/** The connection flags out of a command's parsed flag values. */
export function connectionFlags(values: ConnectionFlagValues): ConnectionFlags {
  return { endpoint: values.endpoint, token: values.token, tlsCa: values["tls-ca"] };
}

/** What {@linkcode resolveClientConfig} looks at besides the flags. */
export interface ClientConfigSources {
  /** The connection flags of the command line. */
  readonly flags: ConnectionFlags;
  /**
   * The process environment: `FSB_ENDPOINT`, `FSB_TOKEN`, `FSB_TLS_CA` (an
   * empty value counts as unset).
   */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The user's home directory, whose `.fsb/config.json` is read last ("" skips it). */
  readonly home: string;
}

/** The chosen endpoint and where it came from, for messages. */
export interface ResolvedEndpoint {
  /** `HOST:PORT` (or `unix:PATH`), or a comma-separated list of them, tried in order. */
  readonly address: string;
  /** `--endpoint`, `FSB_ENDPOINT`, the config file's path, or `default`. */
  readonly source: string;
}

/** The token a call carries, and where it came from (never printed). */
export interface ResolvedToken {
  /** The secret, sent as `authorization: Bearer <secret>`. */
  readonly secret: string;
  /** `--token`, `FSB_TOKEN`, or the config file's path. */
  readonly source: string;
}

/** The CA that verifies the controller's certificate. */
export interface ResolvedTlsCa {
  /** The PEM text of the file. */
  readonly pem: string;
  /** The file it was read from (as given; relative ones in the config file made absolute). */
  readonly path: string;
  /** `--tls-ca`, `FSB_TLS_CA`, or the config file's path. */
  readonly source: string;
}

/** Everything a client needs to call the controller. */
export interface ClientConfig {
  readonly endpoint: ResolvedEndpoint;
  /** Undefined when no source names a token: calls then carry no `authorization`. */
  readonly token: ResolvedToken | undefined;
  /** Undefined when no source names a CA: the controller is called in cleartext. */
  readonly tlsCa: ResolvedTlsCa | undefined;
}

/** What `~/.fsb/config.json` holds: `{"endpoint", "token", "tlsCa"}`, each optional. */
interface ConfigFile {
  readonly path: string;
  readonly endpoint?: string;
  readonly token?: string;
  readonly tlsCa?: string;
}

/**
 * Resolves each setting on its own, first source that names it wins:
 *
 * - endpoint: `--endpoint`, `FSB_ENDPOINT`, `endpoint` in `~/.fsb/config.json`,
 *   else `127.0.0.1:9090`; each may be a comma-separated list, tried in order;
 * - token: `--token`, `FSB_TOKEN`, `token` in the config file, else none;
 * - TLS CA: `--tls-ca FILE`, `FSB_TLS_CA`, `tlsCa` in the config file (a path;
 *   a relative one is taken from `~/.fsb/`), else none. The file is read here.
 *
 * The config file is read only when flags and environment leave a setting
 * open, and never from the working directory.
 *
 * @throws {UsageError} when the endpoint is not `HOST:PORT`, the token is not
 * printable ASCII, the CA file cannot be read or holds no PEM certificate, or
 * the config file exists but cannot be read or parsed.
 */
export function resolveClientConfig(sources: ClientConfigSources): ClientConfig {
  const { flags, env } = sources;
  const fromEnv = (name: string) => env[name] === "" ? undefined : env[name];
  let config: ConfigFile | undefined | null = null;
  const file = (): ConfigFile | undefined => {
    if (config === null) config = sources.home === "" ? undefined : readConfig(sources.home);
    return config;
  };

  let endpoint: ResolvedEndpoint;
  const envEndpoint = fromEnv("FSB_ENDPOINT");
  if (flags.endpoint !== undefined) endpoint = checkedEndpoint(flags.endpoint, "--endpoint");
  else if (envEndpoint !== undefined) endpoint = checkedEndpoint(envEndpoint, "FSB_ENDPOINT");
  else {
    const cfg = file();
    endpoint = cfg?.endpoint !== undefined
      ? checkedEndpoint(cfg.endpoint, cfg.path)
      : { address: DEFAULT_ENDPOINT, source: "default" };
  }

  let token: ResolvedToken | undefined;
  const envToken = fromEnv("FSB_TOKEN");
  if (flags.token !== undefined) token = checkedToken(flags.token, "--token");
  else if (envToken !== undefined) token = checkedToken(envToken, "FSB_TOKEN");
  else {
    const cfg = file();
    if (cfg?.token !== undefined) token = checkedToken(cfg.token, cfg.path);
  }

  let tlsCa: ResolvedTlsCa | undefined;
  const envCa = fromEnv("FSB_TLS_CA");
  if (flags.tlsCa !== undefined) tlsCa = readCa(flags.tlsCa, "--tls-ca");
  else if (envCa !== undefined) tlsCa = readCa(envCa, "FSB_TLS_CA");
  else {
    const cfg = file();
    if (cfg?.tlsCa !== undefined) {
      const path = cfg.tlsCa.startsWith("/") ? cfg.tlsCa : `${dirOf(cfg.path)}/${cfg.tlsCa}`;
      tlsCa = readCa(path, cfg.path);
    }
  }

  return { endpoint, token, tlsCa };
}

/** The metadata every call carries: `authorization: Bearer <secret>` when a token is known. */
export function callMetadata(config: Pick<ClientConfig, "token">): Record<string, string> {
  return config.token === undefined ? {} : { authorization: `Bearer ${config.token.secret}` };
}

/**
 * What to tell someone whose call was UNAUTHENTICATED: where a token comes
 * from, or where the one sent came from.
 */
export function tokenHint(config: Pick<ClientConfig, "token">): string {
  return config.token === undefined
    ? "(no token: pass --token, set FSB_TOKEN, or run fsb up, which writes ~/.fsb/config.json)"
    : `(token from ${config.token.source})`;
}

/** `HOME/.fsb/config.json`: the one config file the CLI reads (and `fsb up` writes). */
export function configPath(home: string): string {
  return `${home.endsWith("/") ? home.slice(0, -1) : home}/.fsb/config.json`;
}

function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}

const CONFIG_SHAPE = '{"endpoint": "HOST:PORT", "token": "SECRET", "tlsCa": "ca.pem"}';

function readConfig(home: string): ConfigFile | undefined {
  const path = configPath(home);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new UsageError(`Cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`Cannot parse ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`Cannot use ${path}: expected a JSON object like ${CONFIG_SHAPE}`);
  }
  const config = parsed as Record<string, unknown>;
  const field = (key: string, like: string): string | undefined => {
    const value = config[key];
    if (value === undefined) return undefined;
    if (typeof value !== "string") {
      throw new UsageError(`Cannot use ${path}: "${key}" must be a string like ${like}`);
    }
    return value;
  };
  return {
    path,
    endpoint: field("endpoint", '"HOST:PORT"'),
    token: field("token", '"SECRET"'),
    tlsCa: field("tlsCa", '"/path/to/ca.pem"'),
  };
}

// A comma-separated list is checked entry by entry, and kept as one string.
function checkedEndpoint(address: string, source: string): ResolvedEndpoint {
  for (const one of address.split(",")) {
    if (one.startsWith("unix:")) continue;
    const problem = one === "" ? "expected HOST:PORT" : hostPortProblem(one);
    if (problem !== undefined) {
      throw new UsageError(`Invalid endpoint "${address}" from ${source}: ${problem}`);
    }
  }
  return { address, source };
}

// The value is a secret: messages say where it came from, never what it is.
function checkedToken(secret: string, source: string): ResolvedToken {
  if (!/^[\x21-\x7e]+$/.test(secret)) {
    throw new UsageError(
      `Invalid token from ${source}: expected the secret fsb token create printed ` +
        `(printable ASCII, no spaces)`,
    );
  }
  return { secret, source };
}

function readCa(path: string, source: string): ResolvedTlsCa {
  const from = ` (from ${source})`;
  let pem: string;
  try {
    pem = Deno.readTextFileSync(path);
  } catch (err) {
    throw new UsageError(`Cannot read the TLS CA ${path}${from}: ${(err as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new UsageError(`Cannot use the TLS CA ${path}${from}: it holds no PEM certificate`);
  }
  return { pem, path, source };
}
