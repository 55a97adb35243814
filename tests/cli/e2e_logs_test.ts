// `fsb sandbox logs -f` as a user runs it (its own process) and the SDK's
// `logs`, against a real controller and agent (process runtime, real gRPC
// over loopback): a log stream cut off by its agent going away must fail, and
// one that ends with its sandbox must not (issue 11, fault 8).
import assert from "node:assert/strict";
import { Code, connect, RpcError } from "../../cli/client.ts";
import { type Cluster, startCluster } from "../support/cluster.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();
const CUT_SHORT = "The log stream ended before its end (the server or its agent failed)";
/** Deno's own cache, pinned as tests/support/fsb_process.ts does: HOME is a scratch one. */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

/** `fsb sandbox logs -f NAME` against `cluster`, as its own process, its output read as it comes. */
class FollowingCli {
  readonly #child: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #stdout = "";

  constructor(cluster: Cluster, name: string, home: string) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "sandbox",
        "logs",
        "-f",
        name,
        "--endpoint",
        cluster.controller.address,
        "--token",
        cluster.adminToken,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { FSB_ENDPOINT: "", FSB_TOKEN: "", FSB_TLS_CA: "", NO_COLOR: "1", HOME: home, DENO_DIR },
    }).spawn();
    this.#reader = this.#child.stdout.getReader();
  }

  /** Reads stdout until it holds `text`; fails if the process ends first. */
  async until(text: string): Promise<void> {
    while (!this.#stdout.includes(text)) {
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`fsb ended before printing ${JSON.stringify(text)}`);
      this.#stdout += decoder.decode(value, { stream: true });
    }
  }

  /** Waits for the process to end: its status, all of stdout, and stderr. */
  async exit(): Promise<{ code: number; stdout: string; stderr: string }> {
    const stderr = new Response(this.#child.stderr).text();
    for (;;) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      this.#stdout += decoder.decode(value, { stream: true });
    }
    const { code } = await this.#child.status;
    return { code, stdout: this.#stdout, stderr: await stderr };
  }
}

async function withCluster(fn: (cluster: Cluster, home: string) => Promise<void>): Promise<void> {
  const cluster = await startCluster();
  const home = await Deno.makeTempDir({ prefix: "fsb-home-" });
  try {
    await fn(cluster, home);
  } finally {
    await cluster.close();
    await Deno.remove(home, { recursive: true });
  }
}

Deno.test("logs -f exits 1 after what it printed, and the SDK rejects, when the agent stops partway", () =>
  withCluster(async (cluster, home) => {
    using fsb = connect({ endpoint: cluster.controller.address, token: cluster.adminToken });
    await fsb.sandboxes.create({
      name: "ticker",
      image: "busybox",
      command: ["sh", "-c", "echo first; exec sleep 60"],
    });
    // The SDK follows too: its first chunk comes before the agent stops.
    const sdk = fsb.logs("ticker", { follow: true })[Symbol.asyncIterator]();
    const first = await sdk.next();
    assert.equal(first.done, false);
    assert.equal(decoder.decode(first.value), "first\n");
    const cli = new FollowingCli(cluster, "ticker", home);
    await cli.until("first\n");

    await cluster.stopAgent("agent-1");

    await assert.rejects(sdk.next(), (err) => {
      assert.ok(err instanceof RpcError, `expected an RpcError, got ${err}`);
      assert.equal(err.code, Code.UNKNOWN);
      assert.equal(err.message, CUT_SHORT);
      return true;
    });
    assert.deepEqual(await cli.exit(), {
      code: 1,
      stdout: "first\n",
      stderr: `fsb: UNKNOWN: ${CUT_SHORT}\n`,
    });
  }));

Deno.test("logs -f exits 0 with the whole log, and the SDK ends quietly, when the sandbox exits", () =>
  withCluster(async (cluster, home) => {
    using fsb = connect({ endpoint: cluster.controller.address, token: cluster.adminToken });
    await fsb.sandboxes.create({
      name: "job",
      image: "busybox",
      // It waits for `go`, written once the CLI follows: the CLI sees the exit, not a finished log.
      command: ["sh", "-c", "echo one; while [ ! -e go ]; do sleep 0.05; done; echo two"],
      workingDir: home,
    });
    // Settled either way, so that a failure is this test's assertion, not an unhandled rejection.
    const sdk = (async () => {
      let out = "";
      for await (const chunk of fsb.logs("job", { follow: true })) out += decoder.decode(chunk);
      return out;
    })().then((out) => ({ out }), (error: unknown) => ({ error }));
    const cli = new FollowingCli(cluster, "job", home);
    await cli.until("one\n");
    await Deno.writeTextFile(`${home}/go`, "");

    assert.deepEqual(await cli.exit(), { code: 0, stdout: "one\ntwo\n", stderr: "" });
    assert.deepEqual(await sdk, { out: "one\ntwo\n" });
    // And once it has ended, the whole log without follow: 0 too.
    let out = "";
    for await (const chunk of fsb.logs("job")) out += decoder.decode(chunk);
    assert.equal(out, "one\ntwo\n");
  }));
