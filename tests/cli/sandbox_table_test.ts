import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { SandboxInfoSchema } from "../../proto/gen/fsb/fastpath/v1/fastpath_pb.ts";
import { sandboxTable } from "../../cli/sandbox_table.ts";

const NOW = 1_700_000_000;

function info(name: string, ageSec: number, more: Record<string, unknown> = {}) {
  return create(SandboxInfoSchema, {
    sandboxId: "0123456789abcdef0123456789abcdef",
    name,
    namespace: "default",
    phase: "Running",
    agent: "agent-1",
    ip: "10.209.0.12",
    endpoints: ["10.0.0.5:8080", "10.0.0.5:9000"],
    image: "docker.io/library/busybox:latest",
    createdAt: BigInt(NOW - ageSec),
    ...more,
  });
}

Deno.test("sandboxTable() aligns columns to the widest cell, three spaces apart", () => {
  const table = sandboxTable([
    info("demo", 45),
    info("a-much-longer-name", 3600 * 3, {
      namespace: "ci",
      agent: "a2",
      ip: "10.209.255.254",
      endpoints: [],
    }),
  ], NOW);
  assert.equal(
    table,
    [
      "NAME                 NAMESPACE   PHASE     AGENT     IP               IMAGE                              ENDPOINTS                     AGE",
      "demo                 default     Running   agent-1   10.209.0.12      docker.io/library/busybox:latest   10.0.0.5:8080,10.0.0.5:9000   45s",
      "a-much-longer-name   ci          Running   a2        10.209.255.254   docker.io/library/busybox:latest   -                             3h",
      "",
    ].join("\n"),
  );
});

Deno.test("sandboxTable() shows - for empty cells and for an unset creation time", () => {
  const table = sandboxTable(
    [create(SandboxInfoSchema, { name: "x", phase: "Pending" })],
    NOW,
  );
  assert.equal(
    table,
    "NAME   NAMESPACE   PHASE     AGENT   IP   IMAGE   ENDPOINTS   AGE\n" +
      "x      -           Pending   -       -    -       -           -\n",
  );
});

Deno.test("sandboxTable() adds a MESSAGE column only when some sandbox has a message", () => {
  const table = sandboxTable([
    info("ok", 10, { endpoints: [] }),
    info("done", 10, { phase: "Exited", message: "exit code 0", ip: "", endpoints: [] }),
  ], NOW);
  assert.equal(
    table,
    [
      "NAME   NAMESPACE   PHASE     AGENT     IP            IMAGE                              ENDPOINTS   AGE   MESSAGE",
      "ok     default     Running   agent-1   10.209.0.12   docker.io/library/busybox:latest   -           10s   -",
      "done   default     Exited    agent-1   -             docker.io/library/busybox:latest   -           10s   exit code 0",
      "",
    ].join("\n"),
  );
});

Deno.test("sandboxTable() shows each sandbox's IP after its agent, - when it has none", () => {
  const table = sandboxTable([
    info("private", 5, { endpoints: [] }),
    info("offline", 5, { ip: "", endpoints: [] }),
  ], NOW);
  assert.equal(
    table,
    [
      "NAME      NAMESPACE   PHASE     AGENT     IP            IMAGE                              ENDPOINTS   AGE",
      "private   default     Running   agent-1   10.209.0.12   docker.io/library/busybox:latest   -           5s",
      "offline   default     Running   agent-1   -             docker.io/library/busybox:latest   -           5s",
      "",
    ].join("\n"),
  );
});

Deno.test("sandboxTable() prints only the header for no sandboxes", () => {
  assert.equal(
    sandboxTable([], NOW),
    "NAME   NAMESPACE   PHASE   AGENT   IP   IMAGE   ENDPOINTS   AGE\n",
  );
});

Deno.test("sandboxTable() writes ages compactly at every scale", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [59, "59s"],
    [60, "1m"],
    [200, "3m20s"],
    [599, "9m59s"],
    [600, "10m"],
    [3599, "59m"],
    [3600, "1h"],
    [2 * 3600 + 5 * 60 + 9, "2h5m"],
    [10 * 3600 + 59 * 60, "10h"],
    [86400, "1d"],
    [3 * 86400 + 4 * 3600, "3d4h"],
    [12 * 86400 + 5 * 3600, "12d"],
    [-30, "0s"],
  ];
  for (const [ageSec, want] of cases) {
    const row = sandboxTable([info("x", ageSec, { endpoints: [] })], NOW).split("\n")[1];
    assert.equal(row.split(/\s+/).at(-1), want, `age ${ageSec}s`);
  }
});
