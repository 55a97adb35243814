/**
 * The agent's runtime as the command line describes it: the flags that
 * `fsb agent run` and `fsb up` share for isolation and limits, and the
 * runtime (with its network) they make.
 *
 * @module
 */
import { parseHostPort } from "../proto/host_port.ts";
import type { Logger } from "pino";
import { parseSize } from "../cli/parse_size.ts";
import { parseKeyValue } from "../cli/parse_key_value.ts";
import { UsageError } from "../cli/usage_error.ts";
import type { ResourceDefaults } from "./resources.ts";
import type { Runtime } from "./runtime.ts";

/**
 * The image pull flags of `fsb agent run` and `fsb up` (part of
 * {@linkcode ISOLATION_FLAGS}): the pull-on-create policy and how pulls
 * reach registries.
 */
export const PULL_FLAGS = {
  pull: { type: "string" },
  "insecure-registry": { type: "string", multiple: true },
  "registry-auth": { type: "string" },
} as const;

/** The usage text of {@linkcode PULL_FLAGS}. */
export const PULL_USAGE =
  "[--pull if-missing|never] [--insecure-registry HOST:PORT]... [--registry-auth FILE]";

/** The isolation flags of `fsb agent run` and `fsb up` (with the pull flags). */
export const ISOLATION_FLAGS = {
  network: { type: "string" },
  "sandbox-cidr": { type: "string" },
  bridge: { type: "string" },
  "oci-runtime": { type: "string" },
  "default-cpus": { type: "string" },
  "default-memory": { type: "string" },
  "default-pids": { type: "string" },
  "log-max-bytes": { type: "string" },
  "always-deny": { type: "string", multiple: true },
  warm: { type: "string", multiple: true },
  ...PULL_FLAGS,
} as const;

/** The usage text of {@linkcode ISOLATION_FLAGS}. */
export const ISOLATION_USAGE =
  "[--network private|host] [--sandbox-cidr CIDR] [--bridge NAME] [--oci-runtime runc|runsc] " +
  "[--default-cpus N] [--default-memory SIZE] [--default-pids N] [--log-max-bytes SIZE] " +
  `[--always-deny CIDR]... [--warm IMAGE=N[,IMAGE=N...]]... ${PULL_USAGE}`;

/** What the isolation flags ask for. */
export interface IsolationOptions {
  /** `private` (default): a namespace per sandbox; `host`: shared, isolating nothing. */
  readonly network: "private" | "host";
  readonly sandboxCidr: string;
  readonly bridge: string;
  readonly ociRuntime: "runc" | "runsc";
  readonly defaults: ResourceDefaults;
  readonly logMaxBytes: number;
  /** CIDRs no sandbox may reach beyond the always-denied ones (e.g. a remote etcd, other agents). */
  readonly alwaysDeny: readonly string[];
  /**
   * Whether a create pulls an image the host lacks (containerd only):
   * `if-missing` when not given, or `never`.
   */
  readonly pull?: "if-missing" | "never";
  /** `HOST:PORT` registries pulled from over plain HTTP; none when not given. */
  readonly insecureRegistries?: readonly string[];
  /** A Docker `config.json` with registry credentials, if given. */
  readonly registryAuth?: string;
  /**
   * Warm containers to keep running per image (`--warm IMAGE=N`,
   * shared/DESIGN.md section 13; containerd only); none when not given.
   */
  readonly warm?: Readonly<Record<string, number>>;
}

/** The default sandbox limits: one CPU, 512 MiB, 1024 processes. */
export const DEFAULT_LIMITS: ResourceDefaults = {
  cpuMillis: 1000,
  memoryBytes: 512 * 1024 * 1024,
  pids: 1024,
};

/** The default cap on a sandbox's log file: 10 MiB. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;

type IsolationValues =
  & {
    readonly [
      K in Exclude<keyof typeof ISOLATION_FLAGS, "always-deny" | "insecure-registry" | "warm">
    ]?: string;
  }
  & {
    readonly "always-deny"?: readonly string[];
    readonly "insecure-registry"?: readonly string[];
    readonly warm?: readonly string[];
  };

/** The most warm containers one `--warm` may ask for per image: an agent's capacity at most. */
const MAX_WARM_PER_IMAGE = 100;

/** `--warm IMAGE=N[,IMAGE=N...]`, repeatable, as counts per image (later ones win). */
function warmCounts(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const value of values) {
    for (const item of value.split(",")) {
      const [image, count] = parseKeyValue(item.trim(), { flag: "--warm" });
      if (!/^\d+$/.test(count) || Number(count) > MAX_WARM_PER_IMAGE) {
        throw new UsageError(
          `Flag --warm needs IMAGE=N with N a whole number from 0 to ${MAX_WARM_PER_IMAGE}, got "${item}"`,
        );
      }
      out[image] = Number(count);
    }
  }
  return out;
}

/** Reads the isolation flags; syntax errors are UsageErrors naming the flag. */
export function isolationOptions(values: IsolationValues): IsolationOptions {
  const network = values.network ?? "private";
  if (network !== "private" && network !== "host") {
    throw new UsageError(`Flag --network must be one of private, host, got "${network}"`);
  }
  const ociRuntime = values["oci-runtime"] ?? "runc";
  if (ociRuntime !== "runc" && ociRuntime !== "runsc") {
    throw new UsageError(`Flag --oci-runtime must be one of runc, runsc, got "${ociRuntime}"`);
  }
  let cpuMillis = DEFAULT_LIMITS.cpuMillis;
  const cpus = values["default-cpus"];
  if (cpus !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(cpus) || Number(cpus) < 0.01) {
      throw new UsageError(`Flag --default-cpus needs a number of at least 0.01, got "${cpus}"`);
    }
    cpuMillis = Math.round(Number(cpus) * 1000);
  }
  const pidsText = values["default-pids"];
  if (pidsText !== undefined && !/^[1-9]\d*$/.test(pidsText)) {
    throw new UsageError(`Flag --default-pids needs a positive whole number, got "${pidsText}"`);
  }
  const memory = values["default-memory"];
  const pull = values.pull;
  if (pull !== undefined && pull !== "if-missing" && pull !== "never") {
    throw new UsageError(`Flag --pull must be one of if-missing, never, got "${pull}"`);
  }
  const insecureRegistries = values["insecure-registry"] ?? [];
  for (const host of insecureRegistries) {
    if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:.]+\](:\d+)?$/.test(host)) {
      throw new UsageError(`Flag --insecure-registry needs HOST:PORT, got "${host}"`);
    }
  }
  return {
    network,
    sandboxCidr: values["sandbox-cidr"] ?? "10.209.0.0/16",
    bridge: values.bridge ?? "fsb0",
    ociRuntime,
    defaults: {
      cpuMillis,
      memoryBytes: memory === undefined
        ? DEFAULT_LIMITS.memoryBytes
        : parseSize(memory, { flag: "--default-memory" }),
      pids: pidsText === undefined ? DEFAULT_LIMITS.pids : Number(pidsText),
    },
    alwaysDeny: values["always-deny"] ?? [],
    // Present only when given, so that the defaults read as before.
    ...(pull === undefined ? {} : { pull }),
    ...(insecureRegistries.length === 0 ? {} : { insecureRegistries }),
    ...(values["registry-auth"] === undefined ? {} : { registryAuth: values["registry-auth"] }),
    ...(values.warm === undefined || values.warm.length === 0
      ? {}
      : { warm: warmCounts(values.warm) }),
    logMaxBytes: values["log-max-bytes"] === undefined
      ? DEFAULT_LOG_MAX_BYTES
      : parseSize(values["log-max-bytes"], { flag: "--log-max-bytes" }),
  };
}

/** Options for {@linkcode createAgentRuntime}. */
export interface AgentRuntimeOptions {
  readonly kind: "process" | "containerd";
  readonly dataDir: string;
  readonly socket: string;
  /** Images the process runtime claims to have. */
  readonly images: readonly string[];
  readonly logger: Logger<"timing">;
  readonly isolation: IsolationOptions;
  /** The controller's `HOST:PORT`: its addresses are closed to sandboxes wherever it runs. */
  readonly controller?: string;
}

/**
 * The IPv4 addresses of the controllers' hosts (`--controller` may list several), for the always-denied set:
 * the literal, or what the name resolves to (none when it cannot be resolved).
 */
async function controllerAddresses(controller: string | undefined): Promise<string[]> {
  if (controller === undefined) return [];
  const out: string[] = [];
  // `--controller` may list several controllers: every one is the host's, none a sandbox's.
  for (const address of controller.split(",").filter((a) => a.trim() !== "")) {
    const { host } = parseHostPort(address.trim(), { what: "--controller" });
    if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
      if (!host.startsWith("127.")) out.push(host);
      continue;
    }
    if (host === "localhost" || host.includes(":")) continue;
    try {
      out.push(...await Deno.resolveDns(host, "A"));
    } catch {
      // Not resolvable now: nothing to deny for it.
    }
  }
  return [...new Set(out)];
}

/** A runtime ready to serve, and what the operator should be told about it. */
export interface AgentRuntime {
  readonly runtime: Runtime;
  /** Lines for the operator, e.g. that a mode isolates nothing. */
  readonly notes: string[];
}

/**
 * Makes the runtime the flags describe. For containerd with a private
 * network this sets up the bridge and its rules first (root, iproute2 and
 * nftables needed); the runtime's close() closes the network too.
 */
export async function createAgentRuntime(opts: AgentRuntimeOptions): Promise<AgentRuntime> {
  const iso = opts.isolation;
  if (opts.kind === "process") {
    if (iso.warm !== undefined) {
      throw new UsageError(
        "Flag --warm needs --runtime containerd: the process runtime keeps no warm pools",
      );
    }
    const { ProcessRuntime } = await import("./process_runtime.ts");
    return {
      runtime: new ProcessRuntime({
        stateDir: `${opts.dataDir}/process`,
        images: [...opts.images],
      }),
      notes: [
        "warning: the process runtime runs each sandbox as a plain host process: it isolates nothing (development only)",
      ],
    };
  }
  const { ContainerdRuntime } = await import("./containerd/mod.ts");
  const { BridgeNetwork, HostNetwork } = await import("./network/mod.ts");
  const notes: string[] = [];
  let network;
  if (iso.network === "host") {
    network = new HostNetwork();
    notes.push(
      "warning: --network host: sandboxes share this host's network, ports and listeners; it isolates nothing (development only)",
    );
  } else {
    network = new BridgeNetwork({
      stateDir: `${opts.dataDir}/network`,
      bridge: iso.bridge,
      cidr: iso.sandboxCidr,
      logger: opts.logger,
      alwaysDeny: [...await controllerAddresses(opts.controller), ...iso.alwaysDeny],
    });
    await network.start();
  }
  const runtime = new ContainerdRuntime({
    socket: opts.socket,
    stateDir: `${opts.dataDir}/containerd`,
    logger: opts.logger,
    network,
    resources: iso.defaults,
    ociRuntime: iso.ociRuntime,
    pull: iso.pull ?? "if-missing",
    registry: { insecure: iso.insecureRegistries ?? [], authFile: iso.registryAuth },
    warm: iso.warm,
  });
  return { runtime, notes };
}
