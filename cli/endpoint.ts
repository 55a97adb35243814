/**
 * Where the client finds the controller (shared/DESIGN.md section 10).
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/** The endpoint used when nothing else names one. */
export const DEFAULT_ENDPOINT = "127.0.0.1:9090";

/** What {@linkcode resolveEndpoint} looks at, in this order. */
export interface EndpointSources {
  /** The value of `--endpoint`, if given. */
  readonly flag?: string | undefined;
  /** The process environment; `FSB_ENDPOINT` is read from it (empty counts as unset). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The working directory, whose `.fsb/config.json` is read next ("" skips it). */
  readonly cwd: string;
  /** The user's home directory, whose `.fsb/config.json` is read last ("" skips it). */
  readonly home: string;
}

/** The chosen endpoint and where it came from, for messages. */
export interface ResolvedEndpoint {
  /** `HOST:PORT` (or `unix:PATH`). */
  readonly address: string;
  /** `--endpoint`, `FSB_ENDPOINT`, the config file's path, or `default`. */
  readonly source: string;
}

/**
 * Picks the controller endpoint: `--endpoint`, else `FSB_ENDPOINT`, else
 * `endpoint` in `./.fsb/config.json`, else in `~/.fsb/config.json`, else
 * `127.0.0.1:9090`. A config file without an `endpoint` key is skipped.
 *
 * @throws {UsageError} when the chosen value is not `HOST:PORT`, or a config
 * file that exists cannot be read or parsed.
 */
export function resolveEndpoint(sources: EndpointSources): ResolvedEndpoint {
  if (sources.flag !== undefined) return checked(sources.flag, "--endpoint");
  const env = sources.env.FSB_ENDPOINT;
  if (env !== undefined && env !== "") return checked(env, "FSB_ENDPOINT");
  // An unknown directory ("") is skipped rather than read as the filesystem root.
  const local = sources.cwd === "" ? undefined : configPath(sources.cwd);
  if (local !== undefined) {
    const fromLocal = readConfig(local);
    if (fromLocal !== undefined) return checked(fromLocal, local);
  }
  const global = sources.home === "" ? undefined : configPath(sources.home);
  if (global !== undefined && global !== local) {
    const fromHome = readConfig(global);
    if (fromHome !== undefined) return checked(fromHome, global);
  }
  return { address: DEFAULT_ENDPOINT, source: "default" };
}

function configPath(dir: string): string {
  return `${dir.endsWith("/") ? dir.slice(0, -1) : dir}/.fsb/config.json`;
}

function readConfig(path: string): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new UsageError(`Cannot read ${path}: ${(err as Error).message}`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`Cannot parse ${path}: ${(err as Error).message}`);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new UsageError(
      `Cannot use ${path}: expected a JSON object like {"endpoint": "HOST:PORT"}`,
    );
  }
  const endpoint = (config as Record<string, unknown>).endpoint;
  if (endpoint === undefined) return undefined;
  if (typeof endpoint !== "string") {
    throw new UsageError(`Cannot use ${path}: "endpoint" must be a string like "HOST:PORT"`);
  }
  return endpoint;
}

function checked(address: string, source: string): ResolvedEndpoint {
  if (!address.startsWith("unix:") && !/^[^\s/]+:\d+$/.test(address)) {
    throw new UsageError(`Invalid endpoint "${address}" from ${source}: expected HOST:PORT`);
  }
  return { address, source };
}
