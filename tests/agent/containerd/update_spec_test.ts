/**
 * The containerd runtime's updateSpec (issue 11, fault 7): the spec a
 * container carries is replaced, moving from its `fsb.io/spec` label to the
 * extension when it outgrows the label, and a new runtime on the same
 * containerd (an agent restart) lists the new one; the task runs on. Real
 * containerd, runc.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { clone, fromJson, type JsonObject } from "@bufbuild/protobuf";
import { type SandboxSpec, SandboxSpecSchema } from "../../../proto/gen/fsb/agent/v1/agent_pb.ts";
import { NotFoundError } from "../../../registry/errors.ts";
import {
  ContainerdClient,
  ContainerdRuntime,
  importImage,
  LABELS,
  SPEC_EXTENSION,
} from "../../../agent/containerd/mod.ts";
import { buildBusyboxImage } from "../../support/busybox_image.ts";
import { startContainerd } from "../../support/containerd.ts";
import { assertSameSpec } from "../runtime_contract.ts";
import { ignoreWithout } from "../../support/real_parts.ts";

const IGNORE = ignoreWithout("containerd", "root");

function specOf(extra: JsonObject = {}): SandboxSpec {
  const id = crypto.randomUUID().replaceAll("-", "");
  return fromJson(SandboxSpecSchema, {
    sandboxId: id,
    name: `sb-${id.slice(0, 8)}`,
    namespace: "default",
    pool: "default-pool",
    image: "busybox",
    command: ["sleep", "30"],
    failurePolicy: "MANUAL",
    generation: 1,
    ...extra,
  });
}

/** `spec` at `generation` with `labels`. */
function updated(spec: SandboxSpec, generation: number, labels: Record<string, string>) {
  const next = clone(SandboxSpecSchema, spec);
  next.generation = generation;
  next.labels = labels;
  return next;
}

Deno.test({
  name:
    "updateSpec replaces the spec a container carries, into the extension once it outgrows the label, and a restarted runtime lists it",
  ignore: IGNORE,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb_ctrd_update_" });
  const server = await startContainerd();
  const client = new ContainerdClient(server.socket);
  const runtimes: ContainerdRuntime[] = [];
  const open = () => {
    const runtime = new ContainerdRuntime({ socket: server.socket, stateDir: join(dir, "state") });
    runtimes.push(runtime);
    return runtime;
  };
  try {
    await importImage(await buildBusyboxImage(dir), { socket: server.socket });
    const runtime = open();
    const spec = specOf({ labels: { a: "1" } });
    const id = spec.sandboxId;
    await runtime.create(spec, { logPath: join(dir, "logs", `${id}.log`) });
    const carried = async () => {
      const { container } = await client.containers.get({ id });
      return {
        label: container?.labels[LABELS.spec] !== undefined,
        extension: container?.extensions[SPEC_EXTENSION] !== undefined,
        log: container?.labels[LABELS.log],
      };
    };
    const logLabel = (await carried()).log;
    assert.ok(logLabel !== undefined);

    const steps = [
      updated(spec, 2, { a: "2" }),
      // Past a 4096-byte label: into the extension, the label gone.
      updated(spec, 3, { a: "3", note: "x".repeat(5000) }),
      // Small again, it stays in the extension: containerd cannot remove a container's last one.
      updated(spec, 4, { a: "4" }),
    ];
    for (const step of steps) {
      await runtime.updateSpec(step);
      const label = step.generation === 2;
      assert.deepEqual(await carried(), { label, extension: !label, log: logLabel });
      const [listed] = await runtime.list();
      assert.equal(listed.phase, "Running");
      assertSameSpec(listed.spec, step);
      const restarted = open();
      assertSameSpec((await restarted.list())[0].spec, step);
    }

    const unknown = specOf();
    await assert.rejects(
      runtime.updateSpec(unknown),
      (err: unknown) =>
        err instanceof NotFoundError &&
        err.message === `Cannot update sandbox ${unknown.sandboxId} as it does not exist`,
    );
    assert.equal(await runtime.delete(id, 0), true);
    await assert.rejects(
      runtime.updateSpec(updated(spec, 5, {})),
      (err: unknown) =>
        err instanceof NotFoundError &&
        err.message === `Cannot update sandbox ${id} as it does not exist`,
    );
  } finally {
    for (const runtime of runtimes) await runtime.close();
    client.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
