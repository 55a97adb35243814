/**
 * Warm pools on containerd (shared/DESIGN.md section 13): containers started
 * ahead of any request, each in its own ready network namespace, whose PID 1
 * waits for a claim to turn it into the requested command.
 *
 * @module
 */
import { mkdirSync, renameSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { type SandboxSpec, SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import { HostNetwork, type SandboxNetwork } from "../network/mod.ts";
import {
  type HostCapacity,
  hostCapacity,
  type ResolvedResources,
  resolveResources,
  type ResourceDefaults,
} from "../resources.ts";
import { ContainerdClient, unreachable } from "./client.ts";
import { HELPER_PATH, processUser } from "./oci_spec.ts";
import { findStaticBusybox } from "./_helper.ts";
import { type AdoptResult, adoptWarm } from "./_warm_adopt.ts";
import { WARM_LABELS, WarmContainers, type WarmEntry, type WarmImage } from "./_warm_container.ts";
import { type Fit, fitClaim, type Misfit, type MissReason, type WarmShape } from "./_warm_fit.ts";
import { LocalImages } from "./_local_images.ts";
import { WarmPipe } from "./_warm_pipe.ts";
import { claimRecord } from "./_warm_record.ts";
import { claimScript, type WarmStart } from "./_warm_script.ts";
import { WarmStock } from "./_warm_stock.ts";
import { TaskUpdater } from "./_warm_update.ts";

export { type AdoptResult, type MissReason, WARM_LABELS };

/** Where the pool reports trouble it works around (a pino logger fits). */
export interface WarmPoolLogger {
  warn(obj: object, msg: string): void;
}

/** Options for {@linkcode WarmPool}. */
export interface WarmPoolOptions {
  /** containerd's socket: a path or a `unix://` address. */
  readonly socket: string;
  /** containerd namespace; `fsb` unless told (the runtime's). */
  readonly namespace?: string;
  /**
   * The runtime's state directory: FIFOs go in `STATE/warm`, runsc wrappers
   * in `STATE/runsc` (the runtime's own, so execs in claimed sandboxes work alike).
   */
  readonly stateDir: string;
  /**
   * Where warm containers' logs go until a claim moves them; `STATE/warm-logs`
   * unless told. It must be on the filesystem of the logs claims move them to.
   */
  readonly logDir?: string;
  /** How many running warm containers to keep per image (any spelling of its name). */
  readonly images: Readonly<Record<string, number>>;
  /**
   * How many more containers the agent may hold now, asked before each warm
   * container is made (count this pool's {@linkcode WarmPool.held} in);
   * no bound unless told.
   */
  readonly room?: () => number;
  /** Gives each warm container its namespace; the host's network unless told. Not closed here. */
  readonly network?: SandboxNetwork;
  /** `runc` unless told, or `runsc` (gVisor). */
  readonly ociRuntime?: "runc" | "runsc";
  /** The host's static busybox mounted at `/.fsb/busybox`; found on the host unless told. */
  readonly helper?: string;
  /** Limits for requests that ask for none, as the runtime's (`pids` 1024 unless told). */
  readonly resources?: Partial<ResourceDefaults>;
  /** What the host has; read from the host unless told. */
  readonly host?: HostCapacity;
  /** Host files mounted read-only, as for cold sandboxes: /etc/resolv.conf and /etc/hosts unless told. */
  readonly hostFiles?: readonly string[];
  /** How long after a claim the refill starts, so it does not compete with the claimed process's start; 50 ms unless told. */
  readonly refillDelayMs?: number;
  readonly logger?: WarmPoolLogger;
}

/** Options for {@linkcode WarmPool.claim}. */
export interface ClaimOptions {
  /** Moves the container's log here (same filesystem), e.g. where the agent keeps the sandbox's. */
  readonly logPath?: string;
  /** Labels to set on the container with the claim (e.g. the runtime's `fsb.io/*`). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Extensions to set on the container with the claim (e.g. a spec too big for a label). */
  readonly extensions?: Readonly<Record<string, Any>>;
  /** The user the command must run as; a miss unless it is the image's. */
  readonly user?: { readonly uid: number; readonly gid: number };
  /** Told why, when the claim misses. */
  readonly onMiss?: (reason: MissReason, detail: string) => void;
}

/** A claimed container: from now on an ordinary sandbox, the runtime's to run and delete. */
export interface Claimed {
  /** Its containerd container id (not the sandbox id: it was made before the request). */
  readonly containerId: string;
  /** Its task's pid, as containerd reports it. */
  readonly pid: number;
  /** Its address on the agent's bridge, or "". */
  readonly ip: string;
  /** Its network namespace's path, or "". */
  readonly netns: string;
  /** The log its stdout and stderr go to (`ClaimOptions.logPath` when given). */
  readonly logPath: string;
  /** Normalized image. */
  readonly image: string;
  /**
   * Milliseconds per claim stage: `warm_take`, `warm_limits` (only when the
   * limits changed), `warm_network` (only with egress rules or ports),
   * `warm_write` (the script sent), `warm_record` (the record written, which
   * overlaps the write).
   */
  readonly stageMs: Record<string, number>;
}

/** Claim outcomes so far and what is ready, e.g. for metrics. */
export interface WarmStats {
  readonly hits: number;
  readonly misses: Readonly<Partial<Record<MissReason, number>>>;
  /** Ready containers per normalized image. */
  readonly ready: Readonly<Record<string, number>>;
  /** Containers being made now. */
  readonly making: number;
}

const HOST_FILES = ["/etc/resolv.conf", "/etc/hosts"];
const encoder = new TextEncoder();

/**
 * Keeps `images[image]` running warm containers per image and hands them
 * out, each once, as sandboxes: see `_warm_script.ts` for how a claim
 * becomes the requested process.
 *
 * Claims never wait for containerd to make anything: a claim takes a ready
 * container, applies the request's limits when they differ (a task update;
 * runc only), then sends the script while containerd writes the container's
 * record (labels, and the OCI spec the command now runs by, which execs
 * start from); about one containerd round trip, two with limits, plus one
 * nftables transaction when the request has egress rules or ports (applied
 * to the container's namespace before its command runs). Refills run
 * in the background, one container at a time, within
 * {@linkcode WarmPoolOptions.room}.
 *
 * Warm containers carry `fsb.io/warm` (the image) and no sandbox spec, so
 * the runtime never lists them as sandboxes; a claim removes that label and
 * sets `fsb.io/warm-claimed` (the sandbox id). {@linkcode WarmPool.adopt}
 * takes them back after an agent restart. A claim unlinks the FIFO just
 * before it writes the script, so after a crash mid-claim a container still
 * labelled warm without its FIFO was claimed without its record: it is
 * removed (the caller never answered for it); one with its record but still
 * its FIFO gets its script then.
 */
export class WarmPool {
  readonly #opts: WarmPoolOptions;
  readonly #client: ContainerdClient;
  readonly #containers: WarmContainers;
  readonly #stock: WarmStock;
  readonly #updater: TaskUpdater;
  readonly #network: SandboxNetwork;
  /** Claims past their take and not yet ended: the refill waits for them. */
  #claims = 0;
  readonly #ociRuntime: "runc" | "runsc";
  readonly #defaults: ResourceDefaults;
  readonly #host: HostCapacity;
  readonly #limits: ResolvedResources;
  readonly #logDirs = new Set<string>();
  readonly #misses: Partial<Record<MissReason, number>> = {};
  #hits = 0;
  #closed = false;

  /**
   * Describes the pool; {@linkcode WarmPool.start} fills it. Throws
   * FailedPreconditionError when no static busybox is found on the host.
   */
  constructor(opts: WarmPoolOptions) {
    this.#opts = opts;
    const helper = opts.helper ?? findStaticBusybox();
    if (helper === undefined) {
      throw new FailedPreconditionError(
        "Cannot keep warm containers as this host has no static busybox (Debian's package: busybox-static)",
      );
    }
    const targets = new Map<string, number>();
    for (const [image, target] of Object.entries(opts.images)) {
      if (!Number.isInteger(target) || target < 0) {
        throw new RangeError(`Cannot keep ${target} warm containers of image "${image}"`);
      }
      targets.set(normalizeImage(image), target);
    }
    this.#client = new ContainerdClient(opts.socket, { namespace: opts.namespace });
    this.#updater = new TaskUpdater(opts.socket, this.#client.namespace);
    this.#network = opts.network ?? new HostNetwork();
    this.#ociRuntime = opts.ociRuntime ?? "runc";
    this.#defaults = { pids: 1024, ...opts.resources };
    this.#host = opts.host ?? hostCapacity();
    this.#limits = resolveResources(create(SandboxSpecSchema, {}), this.#defaults, this.#host);
    const stateDir = resolve(opts.stateDir);
    this.#containers = new WarmContainers({
      client: this.#client,
      // The pool never pulls: an image the host lacks has no warm containers.
      images: new LocalImages({
        client: this.#client,
        socket: opts.socket,
        snapshotter: "overlayfs",
      }),
      network: this.#network,
      ociRuntime: this.#ociRuntime,
      helper,
      stateDir,
      logDir: resolve(opts.logDir ?? `${stateDir}/warm-logs`),
      hostFiles: opts.hostFiles ?? HOST_FILES.filter(exists),
    });
    this.#stock = new WarmStock({
      containers: this.#containers,
      client: this.#client,
      targets,
      limits: this.#limits,
      room: opts.room,
      refillDelayMs: opts.refillDelayMs ?? 50,
      busy: () => this.#claims > 0,
      logger: opts.logger,
    });
  }

  /** Ready and in-the-making warm containers: what the pool holds toward the agent's capacity. */
  get held(): number {
    return this.#stock.held;
  }

  /** Ready containers per normalized image (for heartbeats). */
  counts(): Record<string, number> {
    return this.#stock.counts();
  }

  /** Claim outcomes so far and what is ready. */
  stats(): WarmStats {
    return {
      hits: this.#hits,
      misses: { ...this.#misses },
      ready: this.#stock.counts(),
      making: this.#stock.making,
    };
  }

  /** Takes back what a previous run left ({@linkcode WarmPool.adopt}), then starts filling. */
  async start(): Promise<AdoptResult> {
    const result = await this.adopt();
    this.#stock.refill();
    return result;
  }

  /** Counts a miss and tells `opts.onMiss`; undefined, for the claim to return. */
  #miss(opts: ClaimOptions, reason: MissReason, detail: string): undefined {
    this.#misses[reason] = (this.#misses[reason] ?? 0) + 1;
    opts.onMiss?.(reason, detail);
    return undefined;
  }

  /** Starts a background refill now (e.g. when the agent's room grew); never waits for it. */
  refill(): void {
    if (!this.#closed) this.#stock.refill();
  }

  /**
   * Claims a warm container of `spec.image` for `spec`: its PID 1 becomes
   * `spec`'s command (argv, env and working dir as the cold path would give
   * them), with `spec`'s limits. Resolves to undefined (a miss, its reason
   * told to `opts.onMiss` and counted in {@linkcode stats}) when no warm
   * container can serve it; the caller then takes the cold path. Never
   * throws for a request: one that is invalid misses, and the cold path
   * says why. Throws (UnavailableError when containerd is unreachable) only
   * when the container's record could not be written after its command had
   * started: the container is then removed.
   */
  async claim(spec: SandboxSpec, opts: ClaimOptions = {}): Promise<Claimed | undefined> {
    const t0 = performance.now();
    const miss = (reason: MissReason, detail: string) => this.#miss(opts, reason, detail);
    if (this.#closed) return miss("closed", "the warm pool is closed");
    const image = normalizeImage(spec.image);
    if (!this.#stock.target(image)) return miss("not-warm", `no warm containers of "${image}"`);
    const img = this.#stock.image(image);
    if (img === undefined) return miss("empty", `no warm container of "${image}" is ready`);
    let shape: WarmShape;
    try {
      shape = this.#shape(img);
    } catch (err) {
      // An image user fsb cannot run as (no warm container of it can exist either).
      return miss("user", (err as Error).message);
    }
    const fit = fitClaim(spec, shape, { user: opts.user });
    if (isMisfit(fit)) return miss(fit.reason, fit.detail);
    const taken = this.#stock.take(image, { img, open: (entry) => WarmPipe.open(entry.fifo) });
    if (taken === undefined) return miss("empty", `no warm container of "${image}" is ready`);
    const [entry, pipe] = taken;
    this.#claims++;
    try {
      return await this.#serve(spec, entry, { pipe, opts, fit, image, t0 });
    } finally {
      // The last claim of a burst starts the refill, which would have slowed the others.
      if (--this.#claims === 0) this.#stock.refillSoon();
    }
  }

  /** The rest of a claim, once a container is taken. */
  async #serve(
    spec: SandboxSpec,
    entry: WarmEntry,
    claim: { pipe: WarmPipe; opts: ClaimOptions; fit: Fit; image: string; t0: number },
  ): Promise<Claimed | undefined> {
    const { pipe, opts, fit, image, t0 } = claim;
    const miss = (reason: MissReason, detail: string) => this.#miss(opts, reason, detail);
    const stageMs: Record<string, number> = {};
    let t = performance.now();
    stageMs.warm_take = t - t0;
    const lap = (name: string) => {
      const now = performance.now();
      stageMs[name] = now - t;
      t = now;
    };
    let logPath = entry.logPath;
    try {
      if (opts.logPath !== undefined && resolve(opts.logPath) !== entry.logPath) {
        logPath = this.#moveLog(entry.logPath, resolve(opts.logPath));
      }
    } catch (err) {
      pipe.close();
      this.#stock.retire(entry);
      return miss("log", (err as Error).message);
    }
    const undo = (reason: MissReason, detail: string) => {
      pipe.close();
      if (logPath !== entry.logPath) renameQuietly(logPath, entry.logPath);
      this.#stock.retire(entry);
      return miss(reason, detail);
    };
    if (fit.update !== undefined) {
      // Before the command runs: it never runs under the pool's limits.
      try {
        await this.#updater.update(entry.id, fit.update);
      } catch (err) {
        return undo("resources", `updating the limits failed: ${(err as Error).message}`);
      }
      lap("warm_limits");
    }
    if (fit.network !== undefined) {
      // Before the command runs: it never sends a packet the request's rules forbid.
      try {
        await this.#network.update({ ...fit.network, sandboxId: entry.id });
      } catch (err) {
        return undo(
          "network",
          `applying the egress rules and ports failed: ${(err as Error).message}`,
        );
      }
      lap("warm_network");
    }
    // The command starts while containerd writes the record (a durable write,
    // the claim's slowest step); see the class notes for a crash in between.
    const recording = this.#client.containers.update(claimRecord(entry, {
      sandboxId: spec.sandboxId,
      fit,
      logPath,
      labels: opts.labels,
      extensions: opts.extensions,
      runsc: this.#ociRuntime === "runsc",
    }));
    recording.catch(() => {});
    try {
      await pipe.send(encoder.encode(claimScript(fit, startOf(entry))));
    } catch (err) {
      // The shim closed its end meanwhile: the container is gone.
      await recording.catch(() => {});
      return undo("empty", `the warm container stopped reading: ${(err as Error).message}`);
    }
    lap("warm_write");
    try {
      await recording;
    } catch (err) {
      // The command runs already, but a sandbox without its record would be
      // lost at the next restart: it goes, and the claim fails.
      this.#stock.retire(entry, logPath);
      throw unreachable(err, this.#client.address);
    }
    lap("warm_record");
    this.#hits++;
    return {
      containerId: entry.id,
      pid: entry.pid,
      ip: entry.ip,
      netns: entry.netns,
      logPath,
      image,
      stageMs,
    };
  }

  /**
   * Takes back the warm containers containerd holds (after an agent
   * restart): running ones of a wanted image, config and limits, up to each
   * image's count; removes the rest (and their namespaces, FIFOs and logs).
   * Claimed containers whose claim was cut short between its record and its
   * script (the FIFO is still there) get their script now, from the record.
   * Containers this pool holds already are left alone. Then FIFOs and logs
   * of warm containers containerd does not hold (an agent killed while it
   * made one) are removed.
   */
  async adopt(): Promise<AdoptResult> {
    const result = await adoptWarm({
      client: this.#client,
      containers: this.#containers,
      stock: this.#stock,
      network: this.#network,
      logger: this.#opts.logger,
    });
    const { containers } = await this.#client.containers.list({});
    const held = new Set(containers.map((c) => c.id));
    await this.#containers.sweepFiles((id) => held.has(id) || this.#stock.holds(id));
    return result;
  }

  /**
   * Removes every unclaimed warm container containerd holds that is not
   * this pool's: what other runs left (e.g. for an agent that now runs
   * without warm pools, whose pool has no images). Resolves to the ids removed.
   */
  async sweep(): Promise<string[]> {
    const { containers } = await this.#client.containers.list({});
    const removed: string[] = [];
    for (const c of containers) {
      if (c.labels[WARM_LABELS.image] === undefined || this.#stock.holds(c.id)) continue;
      await this.#containers.remove(c.id).catch((err) => this.#warn(c.id, err));
      removed.push(c.id);
    }
    return removed;
  }

  /**
   * Stops refilling and lets go of every warm container without removing
   * any, as an agent that stops for a restart would: the next run's
   * {@linkcode adopt} takes them back. Waits for a container being made.
   */
  async release(): Promise<void> {
    this.#closed = true;
    await this.#stock.stop();
    await this.#stock.settled();
    this.#updater.close();
    this.#client.close();
  }

  /**
   * Stops refilling and removes every unclaimed warm container of this pool
   * (and what it held: namespace, FIFO, log), waiting for any being made.
   * Claimed ones are the runtime's and stay.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const entry of await this.#stock.stop()) this.#stock.retire(entry);
    await this.#stock.settled();
    this.#updater.close();
    this.#client.close();
  }

  #shape(img: WarmImage): WarmShape {
    return {
      config: img.recipe.config,
      limits: this.#limits,
      defaults: this.#defaults,
      host: this.#host,
      networkKind: this.#network.kind,
      ociRuntime: this.#ociRuntime,
      user: processUser(img.recipe.config, img.image),
    };
  }

  #moveLog(from: string, to: string): string {
    if (exists(to)) throw new Error(`${to} exists already`);
    const dir = dirname(to);
    if (!this.#logDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.#logDirs.add(dir);
    }
    renameSync(from, to);
    return to;
  }

  #warn(id: string, err: unknown): void {
    this.#opts.logger?.warn(
      { container: id, err: String(err) },
      "removing a warm container failed",
    );
  }
}

function isMisfit(fit: ReturnType<typeof fitClaim>): fit is Misfit {
  return "reason" in fit;
}

/** What the warm shell started with, from its OCI spec. */
function startOf(entry: WarmEntry): WarmStart {
  const p = entry.oci.process as { env?: string[]; cwd?: string } | undefined;
  return { env: p?.env ?? [], cwd: p?.cwd ?? "/", helper: HELPER_PATH };
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function renameQuietly(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch {
    // The log stays where it is; the container is removed with it either way.
  }
}
