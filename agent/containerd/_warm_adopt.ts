/**
 * Taking back, after an agent restart, the warm containers containerd
 * holds: running ones a pool still wants go back into its stock, the others
 * are removed, and claims cut short between their record and their script
 * are finished. Private to the warm pool.
 *
 * @module
 */
import type { Container } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { Status } from "../../proto/gen/containerd/types/task_pb.ts";
import type { SandboxNetwork } from "../network/mod.ts";
import type { ResolvedResources } from "../resources.ts";
import { type ContainerdClient, isNotFound } from "./client.ts";
import { LABELS } from "./labels.ts";
import { HELPER_PATH } from "./oci_spec.ts";
import {
  WARM_LABELS,
  type WarmContainers,
  type WarmEntry,
  type WarmImage,
} from "./_warm_container.ts";
import { WarmPipe } from "./_warm_pipe.ts";
import { claimScript } from "./_warm_script.ts";
import type { WarmStock, WarmStockLogger } from "./_warm_stock.ts";

/** What {@linkcode adoptWarm} found in containerd. */
export interface AdoptResult {
  /** Running warm containers taken back into the pool. */
  readonly adopted: string[];
  /** Warm containers removed: stopped, cut short mid-claim, stale, or more than wanted. */
  readonly removed: string[];
  /** Claimed containers whose claim was cut short after its record: their command was sent now. */
  readonly resumed: string[];
}

/** What {@linkcode adoptWarm} works with. */
export interface AdoptOptions {
  readonly client: ContainerdClient;
  readonly containers: WarmContainers;
  readonly stock: WarmStock;
  readonly network: SandboxNetwork;
  readonly logger?: WarmStockLogger;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Goes through containerd's containers: a warm one (`fsb.io/warm`) that runs,
 * still has its FIFO, and is what `stock` wants now (image, config, limits,
 * count) goes back into it; any other warm one is removed, with its
 * namespace, FIFO and log. A claimed one (`fsb.io/warm-claimed`) whose FIFO
 * is still there had its record written but not its script: the script,
 * rebuilt from the record, goes now. Containers `stock` holds are skipped.
 */
export async function adoptWarm(opts: AdoptOptions): Promise<AdoptResult> {
  const { client, containers, stock } = opts;
  const result: AdoptResult = { adopted: [], removed: [], resumed: [] };
  const images = new Map<string, Promise<WarmImage | undefined>>();
  const { containers: all } = await client.containers.list({});
  for (const container of all) {
    if (stock.holds(container.id)) continue;
    const image = container.labels[WARM_LABELS.image];
    if (image === undefined) {
      if (container.labels[WARM_LABELS.claimed] !== undefined && await resume(container, opts)) {
        result.resumed.push(container.id);
      }
      continue;
    }
    const entry = await readEntry(container, opts);
    let why = typeof entry === "string" ? entry : "its image is not kept warm";
    if (typeof entry !== "string" && stock.target(image)) {
      let img = images.get(image);
      if (img === undefined) {
        img = containers.resolve(image).catch(() => undefined);
        images.set(image, img);
      }
      const resolved = await img;
      if (resolved !== undefined && stock.adopt(entry, resolved)) {
        result.adopted.push(entry.id);
        continue;
      }
      why = "it is stale, or more than wanted";
    }
    opts.logger?.warn({ container: container.id, why }, "removing a warm container");
    await containers.remove(container.id).catch((err) =>
      opts.logger?.warn(
        { container: container.id, err: String(err) },
        "removing a warm container failed",
      )
    );
    result.removed.push(container.id);
  }
  return result;
}

/**
 * Warm container `container` as an entry, or why it cannot be one (its
 * task is not running; its FIFO is gone: a claim was cut short).
 */
async function readEntry(
  container: Container,
  opts: AdoptOptions,
): Promise<WarmEntry | string> {
  const id = container.id;
  const task = await opts.client.tasks.get({ containerId: id }).then(
    (r) => r.process,
    (err) => {
      if (isNotFound(err)) return undefined;
      throw err;
    },
  );
  if (task === undefined || task.status !== Status.RUNNING) return "its task is not running";
  if (!isFifo(task.stdin)) return "its FIFO is gone";
  const labels = container.labels;
  let limits: ResolvedResources;
  let oci: Record<string, unknown>;
  try {
    limits = JSON.parse(labels[WARM_LABELS.limits] ?? "") as ResolvedResources;
    oci = JSON.parse(decoder.decode(container.spec?.value)) as Record<string, unknown>;
  } catch {
    return "its record cannot be read";
  }
  return {
    id,
    image: labels[WARM_LABELS.image] ?? "",
    config: labels[WARM_LABELS.config] ?? "",
    pid: task.pid,
    fifo: task.stdin,
    logPath: labels[LABELS.log] ?? "",
    ip: opts.network.ipOf(id),
    netns: netnsOf(oci),
    limits,
    oci,
  };
}

/** Sends the script of a claim cut short after its record; true when it went. */
async function resume(container: Container, opts: AdoptOptions): Promise<boolean> {
  const task = await opts.client.tasks.get({ containerId: container.id }).then(
    (r) => r.process,
    () => undefined,
  );
  if (task === undefined || task.status !== Status.RUNNING || task.stdin === "") return false;
  const pipe = WarmPipe.open(task.stdin);
  if (pipe === undefined) return false;
  try {
    const oci = JSON.parse(decoder.decode(container.spec?.value)) as {
      process?: { args?: string[]; env?: string[]; cwd?: string };
    };
    const p = oci.process ?? {};
    const req = { argv: p.args ?? [], env: p.env ?? [], cwd: p.cwd ?? "/" };
    if (req.argv.length === 0) throw new Error("its record has no command");
    // What the shell started with is not recorded any more: export everything, cd always.
    await pipe.send(encoder.encode(claimScript(req, { env: [], cwd: "", helper: HELPER_PATH })));
    return true;
  } catch (err) {
    pipe.close();
    opts.logger?.warn({ container: container.id, err: String(err) }, "cannot resume a claim");
    return false;
  }
}

/** The network namespace path in an OCI spec, or "". */
function netnsOf(oci: Record<string, unknown>): string {
  const linux = oci.linux as { namespaces?: { type?: string; path?: string }[] } | undefined;
  return linux?.namespaces?.find((n) => n.type === "network")?.path ?? "";
}

function isFifo(path: string): boolean {
  if (path === "") return false;
  try {
    return Deno.lstatSync(path).isFifo === true;
  } catch {
    return false;
  }
}
