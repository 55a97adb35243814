/**
 * The `containerd` runtime: each sandbox is a container and task in
 * containerd, on a snapshot of its image, writing one log file.
 *
 * @module
 */
import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { SandboxSpec } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import type { ContainerSchema } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { type Process, Status } from "../../proto/gen/containerd/types/task_pb.ts";
import { Code } from "../../proto/grpc.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  NotFoundError,
} from "../../registry/errors.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import { followLogFile } from "../log_file.ts";
import type {
  CreateOptions,
  CreateResult,
  ExecOutput,
  ExecProcess,
  ExecRecord,
  ExecSpec,
  LogsOptions,
  Runtime,
  RuntimePhase,
  RuntimeSandbox,
} from "../runtime.ts";
import { ContainerdClient, isCode, isNotFound, unreachable } from "./client.ts";
import type { ImageRecipe } from "./image.ts";
import { LocalImages } from "./_local_images.ts";
import { buildOciSpec } from "./oci_spec.ts";
import { oomKilled } from "./_oom.ts";
import { defaultSeccomp } from "./seccomp.ts";
import {
  forceDeleteRunsc,
  forgetRunscExec,
  killRunscExec,
  runscPids,
  runscRoot,
  RunscWrappers,
} from "./runsc.ts";
import type { Any } from "@bufbuild/protobuf/wkt";
import {
  HostNetwork,
  type NetworkAttachment,
  networkRequestOf,
  type SandboxNetwork,
} from "../network/mod.ts";
import {
  type HostCapacity,
  hostCapacity,
  resolveResources,
  type ResourceDefaults,
} from "../resources.ts";
import { RwLock } from "./_rw_lock.ts";
import { ContainerdExecs } from "./exec.ts";
import { findStaticBusybox } from "./_helper.ts";
import type { RegistryOptions } from "./pull.ts";

/** The logging that the runtime does (a pino logger fits). */
export interface ContainerdLogger {
  /** Per-create timing breakdowns. */
  debug(obj: object, msg: string): void;
  /** Cleanup steps that failed, orphans removed. */
  warn(obj: object, msg: string): void;
}

/** Options for {@linkcode ContainerdRuntime}. */
export interface ContainerdRuntimeOptions {
  /** containerd's socket: a path or a `unix://` address. */
  readonly socket: string;
  /** containerd namespace that holds fsb's containers and images; `fsb` unless told. */
  readonly namespace?: string;
  /**
   * A directory for the runtime's own files. Currently unused: everything a
   * restarted agent needs lives in containerd (labels, extensions) and in the
   * log files.
   */
  readonly stateDir: string;
  /** Where timing breakdowns (debug) and cleanup trouble (warn) go; nowhere unless told. */
  readonly logger?: ContainerdLogger;
  /** Called with each create stage's duration, e.g. for histograms. */
  readonly onStage?: (stage: string, ms: number) => void;
  /**
   * Whether this instance's containers share one runc shim process (they
   * carry the same spec annotation `io.kubernetes.cri.sandbox-id`): `true`
   * (the default) for a value of its own, a string for that value, `false`
   * for a shim per container. See the class notes.
   */
  readonly shimGroup?: boolean | string;
  /**
   * Limits for sandboxes that ask for none: `pids` 1024 and no CPU or
   * memory limit unless told.
   */
  readonly resources?: Partial<ResourceDefaults>;
  /** What the host has, to bound requests by; read from the host unless told. */
  readonly host?: HostCapacity;
  /**
   * Gives each sandbox its network namespace; the host's own network
   * (isolating nothing) unless told. The caller starts it; {@linkcode
   * ContainerdRuntime.close} closes it.
   */
  readonly network?: SandboxNetwork;
  /** The OCI runtime under the runc v2 shim: `runc` unless told, or `runsc` (gVisor). */
  readonly ociRuntime?: "runc" | "runsc";
  /**
   * How old a container fsb cannot account for must be before
   * {@linkcode ContainerdRuntime.removeOrphans} removes it; 10 minutes unless told.
   */
  readonly orphanGraceMs?: number;
  /** The clock for the orphan grace window, in Unix milliseconds; `Date.now` unless told. */
  readonly now?: () => number;
  /** How long {@linkcode ContainerdRuntime.ready} waits for an answer; 1 s unless told. */
  readonly readyTimeoutMs?: number;
  /**
   * Whether a create pulls an image the host lacks from its registry:
   * `never` unless told (the agent's `--pull` flag defaults to `if-missing`).
   */
  readonly pull?: "if-missing" | "never";
  /** How pulls reach registries (plain-HTTP hosts, credentials). */
  readonly registry?: RegistryOptions;
  /**
   * The host's static busybox, mounted read-only into every sandbox at
   * `/.fsb/busybox` for file operations; found on the host unless told,
   * none with `false`.
   */
  readonly helper?: string | false;
  /**
   * Warm containers to keep running per image (shared/DESIGN.md section 13);
   * none unless told. {@linkcode ContainerdRuntime.startWarm} starts the pool.
   */
  readonly warm?: Readonly<Record<string, number>>;
  /**
   * Writable snapshots to keep ready per image for creates the warm pool
   * cannot serve (the `prepared` path); as many per image as `warm` keeps
   * warm containers unless told. {@linkcode ContainerdRuntime.startWarm}
   * starts filling them.
   */
  readonly prepared?: Readonly<Record<string, number>>;
  /**
   * How long after a warm container or a prepared snapshot is taken the
   * refill starts, so it does not compete with the create that took it;
   * 50 ms for warm containers and 100 ms for snapshots unless told.
   */
  readonly refillDelayMs?: number;
}

export { LABELS, SPEC_EXTENSION } from "./labels.ts";
import { LABELS, SPEC_EXTENSION } from "./labels.ts";
import { WARM_LABELS, WarmPool } from "./warm_pool.ts";
import { type PreparedSnapshot, PreparedSnapshots } from "./_prepared_snapshots.ts";
import { identityOf, keepSpec, specOf } from "./_sandbox_record.ts";
import { logPathOfUri, shimLoggerUri, writeShimLogger } from "./_shim_logger.ts";
const OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC_RUNTIME = "io.containerd.runc.v2";
const SNAPSHOTTER = "overlayfs";
const SHIM_GROUP_ANNOTATION = "io.kubernetes.cri.sandbox-id";
const HOST_FILES = ["/etc/resolv.conf", "/etc/hosts"];
const SIGTERM = 15;
const SIGKILL = 9;
const KILL_WAIT_MS = 10_000;
const encoder = new TextEncoder();

/**
 * Runs sandboxes as containerd containers (runtime `io.containerd.runc.v2`,
 * snapshotter `overlayfs`) in one containerd namespace, on the host network.
 *
 * Create pulls only when told (`pull: "if-missing"`, through an
 * {@linkcode ImagePuller}); otherwise the image must be in containerd
 * already (see `importImage`), and a missing one is a
 * FailedPreconditionError. Each container
 * carries its sandbox's identity in `fsb.io/*` labels, the full spec included
 * (as an extension when it is too big for a label), so that {@linkcode list}
 * works for a new instance after an agent restart. stdout and stderr go to
 * one log that a small logger the shim starts writes (see `_shim_logger.ts`
 * for why not the shim's own `file://` log), so logs need no FIFO and
 * survive the agent.
 *
 * The container is created before its snapshot is prepared: a container's
 * snapshot key keeps the snapshot from containerd's garbage collector, so
 * this order needs no lease round trip per create.
 *
 * Shim sharing: by default all containers of one instance carry the same
 * `io.kubernetes.cri.sandbox-id` annotation, so the runc v2 shim started for
 * the first one serves the rest (as containerd's CRI does for a pod), which
 * spares each create the start of a shim daemon. On the 2-core machine
 * measured that took 1-6 ms off a 65-80 ms create (p50 over six runs, noisy
 * under load) and about 13 MiB of memory per running sandbox (10 sandboxes:
 * one shim of 14 MiB instead of ten totalling 130 MiB). Deleting a container
 * leaves the shim to the others; the shim exits when its last container's
 * task is deleted. A task create that overlapped that last delete could join
 * the exiting shim and fail, so task deletes wait for task creates in flight
 * and the other way round; the group's value is random per instance so that
 * no other process deletes in it. The price: a shim that crashes ends every
 * sandbox it serves, where separate shims would lose one. `shimGroup: false`
 * turns sharing off.
 *
 * Orphans: a container in the namespace whose spec cannot be read (made by
 * someone else, or broken) is removed by {@linkcode removeOrphans} once it is
 * older than the grace window; it is the agent's to call, on start and
 * periodically.
 * Snapshots left by a create cut short (an agent crash) are collected by
 * containerd itself, as nothing references them; prepared snapshots (which
 * the collector must leave alone while they wait) are swept on start.
 */
export class ContainerdRuntime implements Runtime {
  /** Always `containerd`. */
  readonly name = "containerd";
  /** `runc` or `runsc`: what runs each sandbox. */
  readonly sandboxRuntime: string;
  readonly #client: ContainerdClient;
  readonly #opts: ContainerdRuntimeOptions;
  readonly #namespace: string;
  readonly #resources: ResourceDefaults;
  readonly #host: HostCapacity;
  readonly #network: SandboxNetwork;
  /** The runsc wrappers under gVisor; undefined for plain runc. */
  readonly #runsc: RunscWrappers | undefined;
  /** OOM verdicts of stopped tasks, read once from their cgroups. */
  readonly #oom = new Map<string, boolean>();
  readonly #now: () => number;
  /** Images found, pulled, read and unpacked. */
  readonly #images: LocalImages;
  readonly #creating = new Map<string, Promise<unknown>>();
  /** Creates finished since the last orphan sweep began (see removeOrphans). */
  readonly #finished = new Set<string>();
  readonly #deleting = new Map<string, Promise<boolean>>();
  readonly #logDirs = new Set<string>();
  readonly #shimGroup: string | undefined;
  /** Task creates hold it shared, task deletes alone: see the class notes on shim sharing. */
  readonly #shimLock = new RwLock();
  #hostFiles: string[] | undefined;
  readonly #helper: string | undefined;
  readonly #execs: ContainerdExecs;
  /** The warm pool, when `warm` asks for one. */
  readonly #pool: WarmPool | undefined;
  /** How many warm containers the pool is asked to keep, all images together. */
  readonly #warmTotal: number;
  /** How many more sandboxes the agent may hold now (see startWarm). */
  #freeSlots: () => number = () => 0;
  /**
   * Sandboxes a warm container serves, by sandbox id: their container keeps
   * the id it was made under (see `fsb.io/warm-claimed`).
   */
  readonly #warmIds = new Map<string, string>();
  /** The logger script the shim runs for each log (see `_shim_logger.ts`), once written. */
  #shimLogger: Promise<string> | undefined;
  /** Snapshots prepared ahead for creates the pool cannot serve, when any are asked for. */
  readonly #prepared: PreparedSnapshots | undefined;

  /** Creates the runtime; it connects to containerd on first use. */
  constructor(opts: ContainerdRuntimeOptions) {
    this.#opts = opts;
    this.#client = new ContainerdClient(opts.socket, { namespace: opts.namespace });
    this.#images = new LocalImages({
      client: this.#client,
      socket: opts.socket,
      snapshotter: SNAPSHOTTER,
      pull: opts.pull,
      registry: opts.registry,
    });
    this.#namespace = this.#client.namespace;
    this.#resources = { pids: 1024, ...opts.resources };
    this.#host = opts.host ?? hostCapacity();
    this.#network = opts.network ?? new HostNetwork();
    this.sandboxRuntime = opts.ociRuntime ?? "runc";
    this.#now = opts.now ?? Date.now;
    this.#helper = opts.helper === false ? undefined : opts.helper ?? findStaticBusybox();
    const wrappers = new RunscWrappers(`${resolve(opts.stateDir)}/runsc`);
    const gvisor = {
      root: runscRoot(this.#namespace),
      execPidDir: wrappers.execPidDir,
    };
    this.#runsc = this.sandboxRuntime === "runsc" ? wrappers : undefined;
    this.#execs = new ContainerdExecs({
      client: () => this.#client,
      now: this.#now,
      warn: (obj, msg) => this.#opts.logger?.warn(obj, msg),
      logUri: (path) => this.#logUri(path),
      ...(this.sandboxRuntime === "runsc"
        ? {
          kill: (id, execId, signo) => killRunscExec(id, execId, { ...gvisor, signo }),
          forget: (id, execId) => forgetRunscExec(id, execId, gvisor),
        }
        : {}),
    });
    const warm = opts.warm ?? {};
    this.#warmTotal = Object.values(warm).reduce((a, b) => a + b, 0);
    this.#pool = Object.keys(warm).length === 0 ? undefined : new WarmPool({
      socket: opts.socket,
      namespace: opts.namespace,
      stateDir: opts.stateDir,
      images: warm,
      // Never more than capacity + N containers: the free slots plus the pool's own N.
      room: () => this.#freeSlots() + this.#warmTotal - this.#pool!.held,
      network: this.#network,
      ociRuntime: this.sandboxRuntime === "runsc" ? "runsc" : "runc",
      ...(this.#helper === undefined ? {} : { helper: this.#helper }),
      resources: opts.resources,
      host: this.#host,
      refillDelayMs: opts.refillDelayMs,
      logger: opts.logger,
    });
    const prepared = opts.prepared ?? warm;
    this.#prepared = Object.values(prepared).some((n) => n > 0)
      ? new PreparedSnapshots({
        client: this.#client,
        images: prepared,
        recipeOf: (image) => this.#images.recipeOf(image),
        refillDelayMs: opts.refillDelayMs,
        logger: opts.logger,
      })
      : undefined;
    const group = opts.shimGroup ?? true;
    this.#shimGroup = group === true
      ? `fsb-${crypto.randomUUID()}`
      : group === false
      ? undefined
      : group;
  }

  /** The client this runtime talks to containerd with (e.g. for checks in tests). */
  get client(): ContainerdClient {
    return this.#client;
  }

  /**
   * Whether containerd answers its Version service within the ready timeout.
   * When it cannot be reached at all, later calls dial afresh at once (see
   * {@linkcode ContainerdClient.ready}); calls in flight are left alone.
   */
  ready(): Promise<boolean> {
    return this.#client.ready(this.#opts.readyTimeoutMs ?? 1000);
  }

  /**
   * Creates container `spec.sandboxId` from the local image `spec.image` and
   * starts its task. Stages reported: `image_resolve`, `container_create`,
   * `snapshot_prepare`, `task_create`, `task_start` (and `image_pull` when
   * the image was pulled, `image_unpack` when it had not been unpacked).
   *
   * With `pull: "if-missing"`, an image the host lacks is pulled first;
   * concurrent creates of one image share one pull, which no one create's
   * signal cancels.
   *
   * Throws FailedPreconditionError for an image the host lacks (naming it;
   * with the pull's error when it could not be pulled),
   * an image without a command when none is given, or a task that cannot
   * start (e.g. a missing command); AlreadyExistsError for an id in use;
   * UnavailableError when containerd cannot be reached. Every step that
   * fails undoes those before it.
   */
  async create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    const id = spec.sandboxId;
    if (this.#creating.has(id)) {
      throw new AlreadyExistsError(`Cannot create sandbox ${id} as it is being created`);
    }
    if (this.#warmIds.has(id)) {
      throw new AlreadyExistsError(`Cannot create sandbox ${id} as it already exists`);
    }
    // A warm container first; a miss (any reason) takes the cold path below, never an error.
    if (this.#pool !== undefined && !opts.signal?.aborted) {
      const claiming = this.#claim(spec, opts);
      this.#creating.set(id, claiming);
      let warm;
      try {
        warm = await claiming;
      } catch (err) {
        throw unreachable(err, this.#client.address);
      } finally {
        this.#creating.delete(id);
      }
      if (warm !== undefined) return warm;
    }
    const creating = this.#create(spec, opts);
    this.#creating.set(id, creating);
    try {
      const result = await creating;
      this.#finished.add(id);
      return result;
    } catch (err) {
      throw unreachable(err, this.#client.address);
    } finally {
      this.#creating.delete(id);
    }
  }

  async #create(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult> {
    const id = spec.sandboxId;
    const { signal } = opts;
    const client = this.#client;
    const stageMs: Record<string, number> = {};
    let t = performance.now();
    const stage = (name: string) => {
      const now = performance.now();
      stageMs[name] = now - t;
      this.#opts.onStage?.(name, now - t);
      t = now;
    };

    // Both throw before anything is made for a request this agent cannot serve.
    const netRequest = networkRequestOf(spec, this.#network.kind);
    const resources = resolveResources(spec, this.#resources, this.#host);
    const logPath = resolve(opts.logPath);
    // Overlaps the RPCs below; awaited before the task (which opens the log) exists.
    const logReady = this.#prepareLog(logPath);
    logReady.catch(() => {});
    // A ready namespace is taken from the pool while the image is resolved.
    const attaching = this.#network.attach(netRequest);
    attaching.catch(() => {});
    let net: NetworkAttachment;
    let recipe: ImageRecipe;
    let prepared: PreparedSnapshot | undefined;
    try {
      let imageName: string;
      ({ imageName, recipe } = await this.#images.resolve(spec, signal, () => stage("image_pull")));
      stage("image_resolve");
      if (!this.#images.unpacked(recipe)) {
        await this.#images.unpack(recipe);
        stage("image_unpack");
      }
      net = await attaching;
      stage("network");
      const runtimeOptions = await this.#runtimeOptions(net);
      const ociSpec = buildOciSpec(spec, recipe.config, {
        namespace: this.#namespace,
        resources: this.sandboxRuntime === "runsc"
          ? { ...resources, pids: runscPids(resources.pids) }
          : resources,
        netns: net.netns,
        seccomp: defaultSeccomp(),
        hostFiles: this.#hostFiles ??= HOST_FILES.filter(fileExists),
        helper: this.#helper,
        annotations: this.#shimGroup === undefined
          ? {}
          : { [SHIM_GROUP_ANNOTATION]: this.#shimGroup },
      });
      signal?.throwIfAborted();
      // A snapshot prepared ahead spares the create its own (the prepared path).
      prepared = this.#prepared?.take(recipe.chainId);
      try {
        await client.containers.create({
          container: {
            ...this.#container(spec, imageName, ociSpec, logPath, runtimeOptions),
            snapshotKey: prepared?.key ?? id,
          },
        });
      } catch (err) {
        if (isCode(err, Code.ALREADY_EXISTS)) {
          throw new AlreadyExistsError(`Cannot create sandbox ${id} as it already exists`);
        }
        throw err;
      }
    } catch (err) {
      await attaching.then(() => this.#network.detach(id), () => {});
      if (prepared !== undefined) await this.#removeSnapshot(prepared.key, id);
      throw err;
    }
    stage("container_create");

    let taskMade = false;
    let logExisted = true;
    try {
      logExisted = await logReady;
      let mounts = prepared?.mounts;
      if (mounts === undefined) {
        mounts = await this.#images.prepareSnapshot(id, recipe);
        stage("snapshot_prepare");
      }
      signal?.throwIfAborted();
      const uri = await this.#logUri(logPath);
      try {
        const req = { containerId: id, rootfs: mounts, stdout: uri, stderr: uri };
        await this.#shimLock.shared(() => client.tasks.create(req));
        taskMade = true;
        stage("task_create");
        signal?.throwIfAborted();
        await client.tasks.start({ containerId: id });
        stage("task_start");
      } catch (err) {
        // A runsc task whose start failed keeps its sandbox processes until runsc deletes it.
        if (taskMade && this.sandboxRuntime === "runsc") {
          await forceDeleteRunsc(runscRoot(this.#namespace), id).catch(() => {});
        }
        throw startError(err, id);
      }
    } catch (err) {
      await this.#undo(id, { taskMade, snapshotKey: prepared?.key ?? id });
      await this.#network.detach(id).catch((e) => this.#warnUnlessGone(e, id));
      if (!logExisted) await removeQuietly(logPath);
      throw err;
    }
    this.#opts.logger?.debug({ sandbox: id, ms: stageMs }, "containerd create timing");
    return { stageMs, ip: net.ip, path: prepared === undefined ? "cold" : "prepared" };
  }

  /** Serves `spec` from the warm pool, or undefined on a miss. */
  async #claim(spec: SandboxSpec, opts: CreateOptions): Promise<CreateResult | undefined> {
    const logPath = resolve(opts.logPath);
    const { labels, extensions } = identityOf(spec, logPath);
    await this.#prepareLog(logPath);
    const claimed = await this.#pool!.claim(spec, {
      logPath,
      labels,
      extensions,
      onMiss: (reason, detail) =>
        this.#opts.logger?.debug({ sandbox: spec.sandboxId, reason, detail }, "warm miss"),
    });
    if (claimed === undefined) return undefined;
    this.#warmIds.set(spec.sandboxId, claimed.containerId);
    this.#finished.add(claimed.containerId);
    return { stageMs: claimed.stageMs, ip: claimed.ip, path: "warm" };
  }

  /** The containerd id of sandbox `id`: its own, unless a warm container serves it. */
  #cid(id: string): string {
    return this.#warmIds.get(id) ?? id;
  }

  /**
   * Starts the warm pool (re-adopting warm containers left by an earlier
   * run), which then keeps within `freeSlots()` plus its own size; does
   * nothing without one.
   */
  async startWarm(opts: { freeSlots: () => number }): Promise<void> {
    this.#freeSlots = opts.freeSlots;
    if (this.#pool !== undefined) {
      // Sandboxes that claimed warm containers before a restart: found by their label.
      await this.list().catch(() => {});
      await this.#pool.start();
    }
    await this.#prepared?.start();
  }

  /**
   * Stops the warm pool and removes its unclaimed containers (namespaces,
   * logs and all) and the snapshots prepared ahead, e.g. for an agent that
   * is retired rather than restarted; {@linkcode ContainerdRuntime.close}
   * leaves the warm containers for the next start.
   */
  async closeWarm(): Promise<void> {
    await this.#pool?.close();
    await this.#prepared?.close();
  }

  /** Warm containers ready per image (see Runtime.warmCounts); empty without a pool. */
  warmCounts(): Record<string, number> {
    return this.#pool?.counts() ?? {};
  }

  /** Snapshots prepared ahead and ready, per normalized image; empty when none are kept. */
  preparedCounts(): Record<string, number> {
    return this.#prepared?.counts() ?? {};
  }

  /**
   * The stdio URI that writes a task's or detached exec's output to
   * `logPath`: through the shim logger, with the host's static busybox;
   * else a `file://` URI, whose stderr the shim may cut short (see
   * `_shim_logger.ts`).
   */
  async #logUri(logPath: string): Promise<string> {
    if (this.#helper === undefined) return `file://${logPath}`;
    if (this.#shimLogger === undefined) {
      const logger = writeShimLogger(resolve(this.#opts.stateDir), this.#helper);
      this.#shimLogger = logger;
      logger.catch(() => this.#shimLogger = undefined);
    }
    return shimLoggerUri(await this.#shimLogger, logPath);
  }

  /** Makes the log's directory (once per directory) and says whether the log already existed. */
  async #prepareLog(logPath: string): Promise<boolean> {
    const dir = dirname(logPath);
    if (!this.#logDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.#logDirs.add(dir);
    }
    try {
      await Deno.lstat(logPath);
      return true;
    } catch {
      return false;
    }
  }

  #container(
    spec: SandboxSpec,
    imageName: string,
    ociSpec: Record<string, unknown>,
    logPath: string,
    runtimeOptions: Any | undefined,
  ): MessageInitShape<typeof ContainerSchema> {
    const { labels, extensions } = identityOf(spec, logPath);
    return {
      id: spec.sandboxId,
      labels,
      image: imageName,
      runtime: {
        $typeName: "containerd.services.containers.v1.Container.Runtime",
        name: RUNC_RUNTIME,
        options: runtimeOptions,
      },
      spec: {
        $typeName: "google.protobuf.Any",
        typeUrl: OCI_SPEC_TYPE_URL,
        value: encoder.encode(JSON.stringify(ociSpec)),
      },
      snapshotter: SNAPSHOTTER,
      snapshotKey: spec.sandboxId,
      extensions,
    };
  }

  /** Removes what a failed create made, newest first; each step tolerates "already gone". */
  async #undo(id: string, opts: { taskMade: boolean; snapshotKey: string }): Promise<void> {
    const { taskMade, snapshotKey } = opts;
    const client = this.#client;
    const quiet = (p: Promise<unknown>) => p.catch((err) => this.#warnUnlessGone(err, id));
    if (taskMade) {
      await quiet(client.tasks.kill({ containerId: id, signal: SIGKILL }));
      await quiet(this.#deleteTask(id));
    }
    await quiet(client.containers.delete({ id }));
    await this.#removeSnapshot(snapshotKey, id);
  }

  /** Removes snapshot `key` of sandbox `id`; gone already counts as removed. */
  async #removeSnapshot(key: string, id: string): Promise<void> {
    await this.#client.snapshots.remove({ snapshotter: SNAPSHOTTER, key })
      .catch((err) => this.#warnUnlessGone(err, id));
  }

  #warnUnlessGone(err: unknown, id: string): void {
    if (isNotFound(err) || isCode(err, Code.FAILED_PRECONDITION)) return;
    this.#opts.logger?.warn({ sandbox: id, err: String(err) }, "cleanup step failed");
  }

  /**
   * Stops the task (SIGTERM; SIGKILL once `graceMs` has passed), then
   * deletes task, container, snapshot and log file. Resolves to whether the
   * container existed; what is already gone counts as removed.
   *
   * A container's init is its PID namespace's PID 1, for which the kernel
   * drops signals it has no handler for. When PID 1 neither handles nor
   * ignores SIGTERM (e.g. a bare `sleep`), waiting cannot help, so SIGKILL
   * follows at once; a process that handles or ignores SIGTERM gets the grace.
   */
  delete(sandboxId: string, graceMs: number): Promise<boolean> {
    const pending = this.#deleting.get(sandboxId);
    if (pending !== undefined) return pending;
    const deleting = (async () => {
      // A create (or warm claim) in flight finishes first: only then is its container id known.
      await this.#creating.get(sandboxId)?.catch(() => {});
      return await this.#delete(this.#cid(sandboxId), graceMs);
    })()
      .catch((err) => {
        throw unreachable(err, this.#client.address);
      })
      .finally(() => {
        this.#deleting.delete(sandboxId);
        this.#warmIds.delete(sandboxId);
        // A freed slot may make room for a warm container.
        this.#pool?.refill();
      });
    this.#deleting.set(sandboxId, deleting);
    return deleting;
  }

  async #delete(id: string, graceMs: number): Promise<boolean> {
    // A create in flight finishes (or undoes itself) first.
    await this.#creating.get(id)?.catch(() => {});
    const client = this.#client;
    const [container, task] = await Promise.all([
      client.containers.get({ id }).then((r) => r.container, orUndefined),
      client.tasks.get({ containerId: id }).then((r) => r.process, orUndefined),
    ]);
    if (task !== undefined) {
      // A task that never started has nothing to shut down gracefully.
      const grace = task.status === Status.CREATED ? 0 : graceMs;
      if (task.status !== Status.STOPPED) await this.#stop(id, task.pid, grace);
      await this.#deleteTask(id).catch(ignoreNotFound);
    }
    if (container !== undefined) await client.containers.delete({ id }).catch(ignoreNotFound);
    // A prepared snapshot's key is not the container's id.
    const key = container?.snapshotKey || id;
    await client.snapshots.remove({ snapshotter: SNAPSHOTTER, key }).catch(ignoreNotFound);
    await this.#network.detach(id);
    this.#oom.delete(id);
    this.#execs.forget(id);
    const logPath = container?.labels[LABELS.log] ?? logPathOfUri(task?.stdout);
    if (logPath !== undefined) {
      await removeQuietly(logPath);
      await Deno.remove(ContainerdExecs.execDir(logPath), { recursive: true }).catch(() => {});
    }
    return container !== undefined;
  }

  /** Deletes the task; never while a task create is in flight (see the class notes). */
  #deleteTask(containerId: string): Promise<unknown> {
    if (this.#shimGroup === undefined) return this.#client.tasks.delete({ containerId });
    return this.#shimLock.exclusive(() => this.#client.tasks.delete({ containerId }));
  }

  async #stop(containerId: string, pid: number, graceMs: number): Promise<void> {
    const kill = (signal: number) =>
      this.#client.tasks.kill({ containerId, signal }).catch(async (err) => {
        // Exited meanwhile. runsc says so as UNKNOWN ("sandbox is not running",
        // "connecting to control server ... connection refused"): ask the task.
        if (isNotFound(err) || isCode(err, Code.FAILED_PRECONDITION)) return;
        if (isCode(err, Code.UNKNOWN)) {
          const task = await this.#client.tasks.get({ containerId }).then(
            (r) => r.process,
            orUndefined,
          );
          if (task === undefined || task.status === Status.STOPPED) return;
        }
        throw err;
      });
    const exited = (timeoutMs: number) =>
      this.#client.tasks.wait({ containerId }, { timeoutMs }).then(
        () => true,
        (err) => {
          if (isCode(err, Code.DEADLINE_EXCEEDED)) return false;
          if (isNotFound(err)) return true;
          throw err;
        },
      );
    if (graceMs > 0 && await termReachesInit(pid)) {
      await kill(SIGTERM);
      if (await exited(graceMs)) return;
    }
    await kill(SIGKILL);
    await exited(KILL_WAIT_MS);
  }

  /**
   * Every container in the namespace whose spec can be read, with its phase
   * from its task: Running, Exited (`exit code N`), or Failed (no task, or a
   * task that never started). Creates in progress are left out.
   */
  async list(): Promise<RuntimeSandbox[]> {
    try {
      const [{ containers }, { tasks }] = await Promise.all([
        this.#client.containers.list({}),
        this.#client.tasks.list({}),
      ]);
      // containerd names a task by its container's id in `id`; `container_id` stays empty.
      const byId = new Map(tasks.map((t) => [t.containerId || t.id, t]));
      const out: RuntimeSandbox[] = [];
      for (const container of containers) {
        if (this.#creating.has(container.id)) continue;
        const spec = specOf(container);
        if (spec === undefined) continue;
        if (spec.sandboxId !== container.id) this.#warmIds.set(spec.sandboxId, container.id);
        const task = byId.get(container.id);
        const [phase, message] = phaseOf(task);
        const ip = this.#network.ipOf(container.id);
        if (phase === "Exited" && task?.exitStatus === 137 && this.#oomKilled(container.id)) {
          out.push({ spec, phase, message: "OOM killed", ip });
        } else {
          out.push({ spec, phase, message, ip });
        }
      }
      return out;
    } catch (err) {
      throw unreachable(err, this.#client.address);
    }
  }

  /**
   * The sandbox's log file from its start; with `follow`, until its task has
   * stopped (or is gone) and the file is drained, or `signal` aborts. Throws
   * NotFoundError, on first iteration, for a sandbox it does not hold.
   */
  async *logs(sandboxId: string, opts: LogsOptions): AsyncIterable<Uint8Array> {
    const id = this.#cid(sandboxId);
    const container = await this.#client.containers.get({ id }).then(
      (r) => r.container,
      orUndefined,
    )
      .catch((err) => {
        throw unreachable(err, this.#client.address);
      });
    const logPath = container?.labels[LABELS.log];
    if (container === undefined || logPath === undefined) {
      throw new NotFoundError(`Cannot read logs of sandbox ${sandboxId} as it does not exist`);
    }
    const isDone = async () => {
      try {
        const { process } = await this.#client.tasks.get({ containerId: id });
        return process === undefined || process.status === Status.STOPPED;
      } catch (err) {
        if (isNotFound(err)) return true;
        throw err;
      }
    };
    yield* followLogFile(logPath, { follow: opts.follow, signal: opts.signal, isDone });
  }

  /** Runs a command in a running sandbox through containerd's task Exec API (see `./exec.ts`). */
  exec(id: string, spec: ExecSpec, opts?: { signal?: AbortSignal }): Promise<ExecProcess> {
    return this.#execs.exec(this.#cid(id), spec, opts);
  }

  /** A detached exec's output from its start, then its exit. */
  execAttach(
    id: string,
    execId: string,
    opts?: { signal?: AbortSignal },
  ): AsyncIterable<ExecOutput> {
    return this.#execs.execAttach(this.#cid(id), execId, opts);
  }

  /** The sandbox's execs: detached ones from their records, attached ones this instance ran. */
  execList(id: string): Promise<ExecRecord[]> {
    return this.#execs.execList(this.#cid(id));
  }

  /** Sends `signo` to exec `execId`. */
  execKill(id: string, execId: string, signo: number): Promise<ExecRecord> {
    return this.#execs.execKill(this.#cid(id), execId, signo);
  }

  /** Until the sandbox's task ends; its exit status. */
  wait(id: string, opts?: { signal?: AbortSignal }): Promise<number> {
    return this.#execs.wait(this.#cid(id), opts);
  }

  /** `["/.fsb/busybox"]` when the sandbox was created with the helper mounted. */
  helper(id: string): Promise<readonly string[] | undefined> {
    return this.#execs.helper(this.#cid(id));
  }

  /**
   * Replaces the spec the container carries by `spec`; the task runs on
   * untouched. It goes where create would put it (its `fsb.io/spec` label
   * when it fits, else the extension), except that a spec once in the
   * extension stays there: containerd keeps a container's last extension
   * when an update leaves none.
   */
  async updateSpec(spec: SandboxSpec): Promise<void> {
    const id = spec.sandboxId;
    const gone = () => new NotFoundError(`Cannot update sandbox ${id} as it does not exist`);
    if (this.#creating.has(id) || this.#deleting.has(id)) throw gone();
    try {
      const { container } = await this.#client.containers.get({ id: this.#cid(id) });
      if (container === undefined || specOf(container) === undefined) throw gone();
      const labels = { ...container.labels };
      const extensions = { ...container.extensions };
      const inExtension = extensions[SPEC_EXTENSION] !== undefined;
      delete labels[LABELS.spec];
      delete extensions[SPEC_EXTENSION];
      keepSpec(spec, { labels, extensions }, inExtension);
      // Only these two fields are written; the rest of the container is sent as it was read.
      await this.#client.containers.update({
        container: { ...container, labels, extensions },
        updateMask: { paths: ["labels", "extensions"] },
      });
    } catch (err) {
      if (isNotFound(err)) throw gone();
      throw unreachable(err, this.#client.address);
    }
  }

  /** Normalized names of the images in the namespace. */
  async images(): Promise<string[]> {
    try {
      const { images } = await this.#client.images.list({});
      return [...new Set(images.map((i) => normalizeImage(i.name)))].sort();
    } catch (err) {
      throw unreachable(err, this.#client.address);
    }
  }

  /**
   * Removes the containers of the namespace that fsb cannot account for (no
   * readable `fsb.io/spec` label or extension, or one naming another id),
   * once containerd says they are older than the grace window by the
   * injected clock, skipping ids in `keep` and creates in progress. Each goes
   * the way of {@linkcode delete} with no grace. Resolves to the ids removed.
   */
  async removeOrphans(opts: { keep?: Iterable<string> } = {}): Promise<string[]> {
    const keep = new Set(opts.keep ?? []);
    const cutoff = this.#now() - (this.#opts.orphanGraceMs ?? 10 * 60_000);
    // Creates that finish while the list is in flight are missing from it; they must not lose
    // their network to the reconcile below.
    this.#finished.clear();
    try {
      const { containers } = await this.#client.containers.list({});
      const removed: string[] = [];
      for (const container of containers) {
        const id = container.id;
        if (keep.has(id) || this.#creating.has(id) || specOf(container) !== undefined) continue;
        // Unclaimed warm containers are the pool's (it adopts or removes them itself).
        if (container.labels[WARM_LABELS.image] !== undefined) continue;
        const created = container.createdAt === undefined ? 0 : timestampMs(container.createdAt);
        if (created > cutoff) continue;
        this.#opts.logger?.warn({ container: id }, "removing a container fsb cannot account for");
        await this.delete(id, 0);
        removed.push(id);
      }
      // Addresses held for containers that no longer exist (a crash between steps).
      const live = new Set(containers.map((c) => c.id));
      for (const id of this.#creating.keys()) live.add(id);
      for (const id of this.#finished) live.add(id);
      for (const id of removed) live.delete(id);
      await this.#network.reconcile(live);
      return removed;
    } catch (err) {
      throw unreachable(err, this.#client.address);
    }
  }

  /** The runc shim options that run this sandbox under runsc, or undefined for plain runc. */
  #runtimeOptions(net: NetworkAttachment): Promise<Any | undefined> {
    return this.#runsc?.options(net.netns) ?? Promise.resolve(undefined);
  }

  /** Whether a stopped task's container was OOM killed; asked once per container. */
  #oomKilled(id: string): boolean {
    let killed = this.#oom.get(id);
    if (killed === undefined) {
      killed = oomKilled(`/${this.#namespace}/${id}`);
      this.#oom.set(id, killed);
    }
    return killed;
  }

  /** Closes the connection and the network; containers keep running. */
  async close(): Promise<void> {
    // Warm containers stay for the next run's adopt(), as sandboxes do; prepared
    // snapshots would only be swept by it.
    await this.#pool?.release();
    await this.#prepared?.close();
    this.#client.close();
    this.#images.close();
    await this.#network.close();
  }
}

function phaseOf(task: Process | undefined): [RuntimePhase, string] {
  if (task === undefined) return ["Failed", "container has no task"];
  switch (task.status) {
    case Status.RUNNING:
    case Status.PAUSED:
    case Status.PAUSING:
      return ["Running", ""];
    case Status.STOPPED:
      return ["Exited", `exit code ${task.exitStatus}`];
    case Status.CREATED:
      return ["Failed", "task was created but never started"];
    default:
      return ["Failed", "task status unknown"];
  }
}

/**
 * Whether SIGTERM can reach the PID-namespace init `pid`: only when it has a
 * handler for it or ignores it on purpose (SigCgt or SigIgn has bit 15).
 * When /proc cannot tell (another PID namespace), assume it can.
 */
async function termReachesInit(pid: number): Promise<boolean> {
  if (pid <= 0) return true;
  let status = "";
  // Just after start the process may still be runc's init, which catches
  // every signal, on its way to exec the command (loading the seccomp
  // filter takes a moment): the command's own dispositions are what count.
  for (let waited = 0; waited < 500; waited += 10) {
    try {
      status = Deno.readTextFileSync(`/proc/${pid}/status`);
    } catch {
      return true;
    }
    if (!/^Name:\s*runc:\[/m.test(status)) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const mask = (name: string) => {
    const m = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, "m").exec(status);
    return m === null ? undefined : BigInt(`0x${m[1]}`);
  };
  const caught = mask("SigCgt");
  const ignored = mask("SigIgn");
  if (caught === undefined || ignored === undefined) return true;
  const bit = 1n << BigInt(SIGTERM - 1);
  return ((caught | ignored) & bit) !== 0n;
}

function startError(err: unknown, id: string): unknown {
  // containerd reports runc's refusals (missing command, bad cwd) as UNKNOWN.
  if (
    isCode(err, Code.UNKNOWN) || isCode(err, Code.FAILED_PRECONDITION) ||
    isCode(err, Code.NOT_FOUND)
  ) {
    return new FailedPreconditionError(`Cannot start sandbox ${id}: ${(err as Error).message}`);
  }
  return err;
}

function orUndefined(err: unknown): undefined {
  if (isNotFound(err)) return undefined;
  throw err;
}

function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}

function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function removeQuietly(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
