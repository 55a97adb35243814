/**
 * Making and removing one warm container in containerd: the cold path's
 * container (same OCI spec builder, seccomp profile, helper mount, limits,
 * network namespace and `file://` log), but with PID 1 the helper's shell
 * waiting on its stdin, a FIFO on the host. Private to the warm pool.
 *
 * @module
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { SandboxSpecSchema } from "../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { Status } from "../../proto/gen/containerd/types/task_pb.ts";
import { Code } from "../../proto/grpc.ts";
import { FailedPreconditionError } from "../../registry/errors.ts";
import { normalizeImage } from "../../registry/normalize_image.ts";
import type { NetworkAttachment, NetworkRequest, SandboxNetwork } from "../network/mod.ts";
import type { ResolvedResources } from "../resources.ts";
import { type ContainerdClient, isCode, isNotFound } from "./client.ts";
import { LABELS } from "./labels.ts";
import type { ImageRecipe } from "./image.ts";
import type { LocalImages } from "./_local_images.ts";
import { buildOciSpec, HELPER_PATH } from "./oci_spec.ts";
import { forceDeleteRunsc, runscPids, runscRoot, RunscWrappers } from "./runsc.ts";
import { logPathOfUri } from "./_shim_logger.ts";
import { defaultSeccomp } from "./seccomp.ts";
import { makeFifos } from "./_fifo.ts";
import { startArgv } from "./_warm_script.ts";

/** Container labels of the warm machinery (the log's is the runtime's `fsb.io/log`). */
export const WARM_LABELS = {
  /** The normalized image of an unclaimed warm container; gone once claimed. */
  image: "fsb.io/warm",
  /** The digest of the image config it was made from, to spot a re-tagged image. */
  config: "fsb.io/warm-config",
  /** Its limits as made (JSON `{cpuMillis?, memoryBytes?, pids}`), before any runsc scaling. */
  limits: "fsb.io/warm-limits",
  /** Set at claim: the sandbox id it now serves. */
  claimed: "fsb.io/warm-claimed",
} as const;

/** An image as warm containers are made from it. */
export interface WarmImage {
  /** Normalized name (what requests are matched on). */
  readonly image: string;
  /** The name containerd stores it under. */
  readonly imageName: string;
  readonly recipe: ImageRecipe;
}

/** One running warm container, as the pool holds it. */
export interface WarmEntry {
  /** Its containerd container id: 32 hex digits, like a sandbox id (see `newId`). */
  readonly id: string;
  /** Normalized image. */
  readonly image: string;
  /** Digest of the image config it runs. */
  readonly config: string;
  /** Its task's pid (PID 1 on the host for runc; runsc's sandbox process for runsc). */
  readonly pid: number;
  /** The FIFO on the host its shell reads from (through the shim). */
  readonly fifo: string;
  /** Where its stdout and stderr go. */
  readonly logPath: string;
  readonly ip: string;
  /** Its network namespace's path, or "" for a namespace of its own without a path. */
  readonly netns: string;
  /** Its limits as made. */
  readonly limits: ResolvedResources;
  /** Its OCI spec as made (JSON-ready). */
  readonly oci: Record<string, unknown>;
}

/** Options for {@linkcode WarmContainers}. */
export interface WarmContainersOptions {
  readonly client: ContainerdClient;
  /** Finds images (never pulling) and prepares snapshots on them, unpacking a chain gone missing. */
  readonly images: LocalImages;
  readonly network: SandboxNetwork;
  readonly ociRuntime: "runc" | "runsc";
  /** The host's static busybox, mounted at `/.fsb/busybox`. */
  readonly helper: string;
  /** Absolute; FIFOs go in `STATE/warm`, runsc wrappers in `STATE/runsc` (as the runtime's). */
  readonly stateDir: string;
  /** Absolute; where warm containers' logs go until a claim moves them. */
  readonly logDir: string;
  /** Host files mounted read-only at the same path, as for cold sandboxes. */
  readonly hostFiles: readonly string[];
}

const RUNC_RUNTIME = "io.containerd.runc.v2";
const OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const SNAPSHOTTER = "overlayfs";
const SIGKILL = 9;
const STOP_WAIT_MS = 10_000;
const encoder = new TextEncoder();

/** The network a warm container starts with: a private address, the default egress, no ports. */
function defaultNetworkRequest(id: string): NetworkRequest {
  return {
    sandboxId: id,
    mode: "private",
    egress: "allow",
    allowCidrs: [],
    denyCidrs: [],
    ports: [],
  };
}

/** Makes and removes warm containers; see the module notes. */
export class WarmContainers {
  readonly #opts: WarmContainersOptions;
  readonly #client: ContainerdClient;
  /** The runtime's wrappers (the same directory), under gVisor; undefined for runc. */
  readonly #runsc: RunscWrappers | undefined;
  #dirsMade: Promise<void> | undefined;

  /** Uses `opts.client` and `opts.network`, which stay the caller's to close. */
  constructor(opts: WarmContainersOptions) {
    this.#opts = opts;
    this.#client = opts.client;
    this.#runsc = opts.ociRuntime === "runsc"
      ? new RunscWrappers(join(opts.stateDir, "runsc"))
      : undefined;
  }

  /** Where the FIFOs live. */
  get runDir(): string {
    return join(this.#opts.stateDir, "warm");
  }

  /**
   * Finds `image` (any spelling containerd stores it under) and reads its
   * recipe. FailedPreconditionError when the host lacks it: the pool never pulls.
   */
  async resolve(image: string): Promise<WarmImage> {
    const found = await this.#opts.images.find(image);
    if (found === undefined) {
      throw new FailedPreconditionError(
        `Cannot keep warm containers of image "${image}" as it is not present on this host`,
      );
    }
    return { image: normalizeImage(image), imageName: found.imageName, recipe: found.recipe };
  }

  /**
   * A fresh warm container id: 32 random hex digits, shaped like a sandbox
   * id, as the id names the container's cgroup, which the sandbox that
   * claims it can read (`/proc/self/cgroup`): nothing there may tell it came
   * from a pool. The `fsb.io/warm` label, not the id, marks warm containers.
   */
  static newId(): string {
    return crypto.randomUUID().replaceAll("-", "");
  }

  /**
   * Makes and starts warm container `opts.id` of `img` with `opts.limits`.
   * Every step that fails undoes those before it.
   */
  async make(
    img: WarmImage,
    opts: { readonly id: string; readonly limits: ResolvedResources },
  ): Promise<WarmEntry> {
    const { id, limits } = opts;
    const fifo = this.fifoPath(id);
    const logPath = this.logPath(id);
    this.#dirsMade ??= Promise.all([
      mkdir(this.runDir, { recursive: true, mode: 0o700 }),
      mkdir(this.#opts.logDir, { recursive: true }),
    ]).then(() => {});
    await this.#dirsMade.catch((err) => {
      this.#dirsMade = undefined;
      throw err;
    });
    const fifoMade = makeFifos([fifo]);
    fifoMade.catch(() => {});
    const network = this.#opts.network;
    let net: NetworkAttachment | undefined;
    let containerMade = false;
    let taskMade = false;
    try {
      net = await network.attach(defaultNetworkRequest(id));
      const oci = this.#ociSpec(id, img, limits, net);
      await this.#client.containers.create({
        container: {
          id,
          labels: {
            [WARM_LABELS.image]: img.image,
            [WARM_LABELS.config]: img.recipe.configDescriptor.digest,
            [WARM_LABELS.limits]: JSON.stringify(limits),
            [LABELS.log]: logPath,
          },
          image: img.imageName,
          runtime: {
            $typeName: "containerd.services.containers.v1.Container.Runtime",
            name: RUNC_RUNTIME,
            options: await this.#runtimeOptions(net),
          },
          spec: {
            $typeName: "google.protobuf.Any",
            typeUrl: OCI_SPEC_TYPE_URL,
            value: encoder.encode(JSON.stringify(oci)),
          },
          snapshotter: SNAPSHOTTER,
          snapshotKey: id,
        },
      });
      containerMade = true;
      const mounts = await this.#opts.images.prepareSnapshot(id, img.recipe);
      await fifoMade;
      const uri = `file://${logPath}`;
      const { pid } = await this.#client.tasks.create({
        containerId: id,
        rootfs: mounts,
        stdin: fifo,
        stdout: uri,
        stderr: uri,
      });
      taskMade = true;
      await this.#client.tasks.start({ containerId: id });
      return {
        id,
        image: img.image,
        config: img.recipe.configDescriptor.digest,
        pid,
        fifo,
        logPath,
        ip: net.ip,
        netns: net.netns.kind === "path" ? net.netns.path : "",
        limits,
        oci,
      };
    } catch (err) {
      if (taskMade && this.#opts.ociRuntime === "runsc") {
        await forceDeleteRunsc(runscRoot(this.#client.namespace), id).catch(() => {});
      }
      await fifoMade.catch(() => {});
      await this.remove(id, { fifo, logPath, container: containerMade, network: net !== undefined })
        .catch(() => {});
      throw err;
    }
  }

  /**
   * Removes container `id` (SIGKILL, then task, container, snapshot), its
   * network, FIFO and, when given, its log. What is gone already counts as removed.
   */
  async remove(
    id: string,
    opts: { fifo?: string; logPath?: string; container?: boolean; network?: boolean } = {},
  ): Promise<void> {
    const client = this.#client;
    const task = await client.tasks.get({ containerId: id }).then((r) => r.process, orGone);
    if (task !== undefined) {
      if (task.status !== Status.STOPPED) {
        await client.tasks.kill({ containerId: id, signal: SIGKILL, all: true }).catch(orGone);
        await client.tasks.wait({ containerId: id }, { timeoutMs: STOP_WAIT_MS }).catch(() => {});
      }
      await client.tasks.delete({ containerId: id }).catch(async (err) => {
        if (isNotFound(err)) return;
        if (this.#opts.ociRuntime !== "runsc") throw err;
        // A runsc task can need runsc's own forced delete first (see runsc.ts).
        await forceDeleteRunsc(runscRoot(client.namespace), id);
        await client.tasks.delete({ containerId: id }).catch(orGone);
      });
    }
    if (opts.container !== false) await client.containers.delete({ id }).catch(orGone);
    await client.snapshots.remove({ snapshotter: SNAPSHOTTER, key: id }).catch(orGone);
    if (opts.network !== false) await this.#opts.network.detach(id);
    // Without a task (an agent killed mid-make), the paths `make` gives them.
    const fifo = opts.fifo ?? (task?.stdin || this.fifoPath(id));
    await rm(fifo, { force: true });
    const log = opts.logPath ?? logPathOfUri(task?.stdout) ?? this.logPath(id);
    await rm(log, { force: true });
  }

  /** Where warm container `id`'s FIFO is. */
  fifoPath(id: string): string {
    return join(this.runDir, `${id}.in`);
  }

  /** Where warm container `id`'s log is until a claim moves it. */
  logPath(id: string): string {
    return join(this.#opts.logDir, `${id}.log`);
  }

  /**
   * Removes FIFOs and logs of warm containers `live` says no to (ids
   * containerd holds or the pool makes now are live): left by an agent
   * killed between making them and creating the container. Resolves to the
   * paths removed.
   */
  async sweepFiles(live: (id: string) => boolean): Promise<string[]> {
    const removed: string[] = [];
    for (const [dir, ext] of [[this.runDir, ".in"], [this.#opts.logDir, ".log"]]) {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (!name.endsWith(ext) || live(name.slice(0, -ext.length))) continue;
        await rm(join(dir, name), { force: true });
        removed.push(join(dir, name));
      }
    }
    return removed;
  }

  /** The cold path's OCI spec for a sandbox of `img` whose command is the warm shell. */
  #ociSpec(
    id: string,
    img: WarmImage,
    limits: ResolvedResources,
    net: NetworkAttachment,
  ): Record<string, unknown> {
    const runsc = this.#opts.ociRuntime === "runsc";
    const spec = create(SandboxSpecSchema, {
      sandboxId: id,
      image: img.image,
      command: startArgv(HELPER_PATH),
    });
    return buildOciSpec(spec, img.recipe.config, {
      namespace: this.#client.namespace,
      resources: runsc ? { ...limits, pids: runscPids(limits.pids) } : limits,
      netns: net.netns,
      seccomp: defaultSeccomp(),
      hostFiles: this.#opts.hostFiles,
      helper: this.#opts.helper,
    });
  }

  /** runsc's shim options (the runtime's wrapper for this network mode), none for runc. */
  #runtimeOptions(net: NetworkAttachment): Promise<Any | undefined> {
    return this.#runsc?.options(net.netns) ?? Promise.resolve(undefined);
  }
}

function orGone(err: unknown): undefined {
  if (isNotFound(err) || isCode(err, Code.FAILED_PRECONDITION)) return undefined;
  throw err;
}
