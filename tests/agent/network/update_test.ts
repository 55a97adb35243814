/**
 * SandboxNetwork.update(): a sandbox attached with the default request (as a
 * warm container is) gets a request's egress rules and published ports in
 * place. Real nftables and namespaces on a bridge of the test's own; packets
 * go only to loopback and to namespaces the test makes, and rules naming
 * other addresses are read from `nft list`, never tried.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BridgeNetwork, HostNetwork, type NetworkRequest } from "../../../agent/network/mod.ts";
import { FailedPreconditionError, InvalidArgumentError } from "../../../registry/errors.ts";
import {
  type FakeInternet,
  sh,
  startFakeInternet,
  startTestNetwork,
} from "../../support/network.ts";
import { ignoreWithout } from "../../support/real_parts.ts";
import { freePort, freePorts } from "../../support/registry.ts";
import { eventually } from "../_runtime_harness.ts";

const ignore = ignoreWithout("root");

interface Scene {
  readonly dir: string;
  /** Replaced by a test that restarts it; the last one is torn down. */
  network: BridgeNetwork;
  /** Started on demand by {@linkcode internetOf}. */
  internet?: FakeInternet;
}

/** Runs `fn` on a network of its own, then removes what it left: processes, namespaces, rules. */
async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fsb-net-update-" });
  const s: Scene = { dir, network: await startTestNetwork(`${dir}/net`, 0) };
  try {
    await fn(s);
  } finally {
    // Servers a test started inside sandbox namespaces would keep them alive.
    const ours = async () =>
      (await sh("ip netns list")).split("\n").map((l) => l.split(" ")[0])
        .filter((n) => n.startsWith(`${s.network.bridge}-`));
    for (const name of await ours()) await sh(`ip netns pids ${name} | xargs -r kill -9`);
    await s.network.teardown();
    // Those no record names, had a test failed half-way through a restart.
    for (const name of await ours()) await sh(`ip netns del ${name} || true`);
    await s.internet?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function internetOf(s: Scene): Promise<FakeInternet> {
  s.internet ??= await startFakeInternet(s.dir);
  return s.internet;
}

/** A sandbox id made of `c`, 32 hex digits like the agent's. */
function idOf(c: string): string {
  return c.repeat(32);
}

/** The default request: what a warm container is attached with. */
function plain(sandboxId: string, extra: Partial<NetworkRequest> = {}): NetworkRequest {
  return {
    sandboxId,
    mode: "private",
    egress: "allow",
    allowCidrs: [],
    denyCidrs: [],
    ports: [],
    ...extra,
  };
}

/** Attaches `id` with the default request; returns its namespace's name and address. */
async function attachPlain(
  network: BridgeNetwork,
  id: string,
  extra: Partial<NetworkRequest> = {},
) {
  const a = await network.attach(plain(id, extra));
  assert.equal(a.netns.kind, "path");
  const netns = a.netns.kind === "path"
    ? a.netns.path.slice(a.netns.path.lastIndexOf("/") + 1)
    : "";
  return { netns, ip: a.ip };
}

function rulesOf(network: BridgeNetwork): Promise<string> {
  return sh(`nft list table inet ${network.table}`);
}

/** The egress chain's name for a sandbox address, as the ruleset names it. */
function chainOf(ip: string): string {
  return `eg_${ip.replaceAll(".", "_")}`;
}

/** The published map's elements, e.g. `["8080 : 10.1.2.3"]`. */
async function publishedOf(network: BridgeNetwork): Promise<string[]> {
  const rules = await rulesOf(network);
  const map = rules.match(/map published \{[^}]*?elements = \{([^}]*)\}/);
  return map === null ? [] : map[1].split(",").map((e) => e.trim()).sort();
}

/** Whether a host process could bind `port` now (then lets it go). */
function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "0.0.0.0", port }).close();
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) return false;
    throw err;
  }
}

/**
 * What `GET path` on `ip:port` answers (headers and body), run in `netns` or
 * on the host; "" when nothing does. busybox nc, as busybox wget crashes
 * resolving the service name.
 */
function httpGet(ip: string, port: number, opts: { netns?: string; path?: string } = {}) {
  const where = opts.netns === undefined ? "" : `ip netns exec ${opts.netns} `;
  return sh(
    `printf 'GET ${
      opts.path ?? "/x"
    } HTTP/1.0\\r\\n\\r\\n' | timeout 5 ${where}busybox nc -w 2 ${ip} ${port} || true`,
  );
}

/** Serves `body` as /x on `port` inside `netns` (busybox httpd, left for withScene to kill). */
async function serveIn(s: Scene, netns: string, port: number, body: string): Promise<void> {
  const www = `${s.dir}/www-${netns}-${port}`;
  await Deno.mkdir(www, { recursive: true });
  await Deno.writeTextFile(`${www}/x`, `${body}\n`);
  await sh(`ip netns exec ${netns} busybox httpd -p ${port} -h ${www} </dev/null >/dev/null 2>&1`);
}

/**
 * Whether the fake internet's page comes back to `netns` within `tries`
 * (three by default: a loaded host may drop one; a dropped one costs 2 s).
 */
async function reachesInternet(internet: FakeInternet, netns: string, tries = 3): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (
      (await httpGet(internet.ip, 8080, { netns, path: "/hello" })).includes(
        "hello from the internet",
      )
    ) return true;
  }
  return false;
}

Deno.test({
  name: "update() applies egress deny and CIDRs to an attached sandbox",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const internet = await internetOf(s);
    const id = idOf("a1");
    const { netns, ip } = await attachPlain(s.network, id);
    assert.equal(await reachesInternet(internet, netns), true, "allowed before the update");
    // What a warm claim with the default request does: nothing.
    const untouched = await rulesOf(s.network);
    await s.network.update(plain(id));
    assert.equal(await rulesOf(s.network), untouched);

    await s.network.update(plain(id, {
      egress: "deny",
      allowCidrs: ["192.0.2.9/24"],
      denyCidrs: ["198.51.100.7/32", "203.0.113.0/25"],
    }));
    const rules = await rulesOf(s.network);
    const chain = rules.slice(rules.indexOf(`chain ${chainOf(ip)} {`));
    assert.match(chain, /ip daddr \{ 198\.51\.100\.7, 203\.0\.113\.0\/25 \} drop/);
    assert.match(chain, /ip daddr 192\.0\.2\.0\/24 accept/, "the CIDR in canonical form");
    assert.match(rules, new RegExp(`${ip.replaceAll(".", "\\.")} : jump ${chainOf(ip)}`));
    assert.equal(await reachesInternet(internet, netns, 1), false, "DENY closes everything else");

    await s.network.update(plain(id, { egress: "deny", allowCidrs: [internet.cidr] }));
    const reopened = await rulesOf(s.network);
    assert.doesNotMatch(reopened, /192\.0\.2\.0|198\.51\.100\.7|203\.0\.113/, "old CIDRs gone");
    assert.equal(await reachesInternet(internet, netns), true, "an allow CIDR reopens it");

    await s.network.update(plain(id));
    assert.doesNotMatch(await rulesOf(s.network), new RegExp(chainOf(ip)));
    assert.equal(await reachesInternet(internet, netns), true);
    // Same namespace and address all along.
    assert.equal(s.network.ipOf(id), ip);
    assert.match(await sh(`ip -n ${netns} -4 -o addr show dev eth0`), new RegExp(`inet ${ip}/`));
  });
});

Deno.test({
  name: "update() publishes a port that then reaches the sandbox",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const internet = await internetOf(s);
    const id = idOf("b2");
    const { netns, ip } = await attachPlain(s.network, id);
    const port = await freePort();
    await serveIn(s, netns, port, "served-in-sandbox");
    assert.doesNotMatch(await httpGet("127.0.0.1", port), /served-in-sandbox/, "not yet published");

    await s.network.update(plain(id, { ports: [port] }));
    assert.deepEqual(await publishedOf(s.network), [`${port} : ${ip}`]);
    assert.equal(portFree(port), false, "held on the host for the sandbox");
    // httpd may still be starting: it was started just before the update.
    await eventually(
      "the published port answers from the host",
      async () => (await httpGet("127.0.0.1", port)).includes("served-in-sandbox"),
    );
    // From outside, through the host's address on the fake internet's link.
    assert.match(
      await httpGet(internet.hostIp, port, { netns: internet.netns }),
      /served-in-sandbox/,
    );
  });
});

Deno.test({
  name: "update() refuses a port in use and leaves the old rules and ports",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const id = idOf("c3");
    const [kept, fresh, taken] = freePorts(3);
    const { netns, ip } = await attachPlain(s.network, id, {
      egress: "deny",
      denyCidrs: ["198.51.100.0/24"],
      ports: [kept],
    });
    await serveIn(s, netns, kept, "still-published");
    const before = await rulesOf(s.network);
    const blocker = Deno.listen({ hostname: "0.0.0.0", port: taken });
    try {
      await assert.rejects(
        s.network.update(plain(id, { ports: [kept, fresh, taken] })),
        (err: unknown) => {
          assert.ok(err instanceof FailedPreconditionError);
          assert.equal(
            err.message,
            `Cannot publish port ${taken} of sandbox ${id} as the agent's host already uses it`,
          );
          return true;
        },
      );
    } finally {
      blocker.close();
    }
    assert.equal(await rulesOf(s.network), before, "the rules are untouched");
    assert.equal(portFree(kept), false, "the old port is still held");
    assert.equal(portFree(fresh), true, "a port bound for the failed update is let go");
    await eventually(
      "the old port still reaches the sandbox",
      async () => (await httpGet("127.0.0.1", kept)).includes("still-published"),
    );
    // Nothing is stuck: the same update goes through once the port is free.
    await s.network.update(plain(id, { ports: [kept, fresh, taken] }));
    assert.deepEqual(
      await publishedOf(s.network),
      [kept, fresh, taken].map((p) => `${p} : ${ip}`).sort(),
    );
  });
});

Deno.test({
  name: "update() removes ports no longer asked and frees them on the host",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const id = idOf("d4");
    const [dropped, kept] = freePorts(2);
    const { netns, ip } = await attachPlain(s.network, id, { ports: [dropped, kept] });
    await serveIn(s, netns, dropped, "dropped-port");
    await serveIn(s, netns, kept, "kept-port");
    await eventually(
      "both ports answer",
      async () =>
        (await httpGet("127.0.0.1", dropped)).includes("dropped-port") &&
        (await httpGet("127.0.0.1", kept)).includes("kept-port"),
    );

    await s.network.update(plain(id, { ports: [kept] }));
    assert.deepEqual(await publishedOf(s.network), [`${kept} : ${ip}`]);
    assert.equal(portFree(dropped), true, "a port no longer asked is free on the host");
    assert.equal(portFree(kept), false);
    assert.doesNotMatch(await httpGet("127.0.0.1", dropped), /dropped-port/);
    assert.match(await httpGet("127.0.0.1", kept), /kept-port/);

    await s.network.update(plain(id));
    assert.deepEqual(await publishedOf(s.network), []);
    assert.equal(portFree(kept), true);
  });
});

Deno.test({
  name: "update() survives a restart of the network (recovered rules and ports)",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const id = idOf("e5");
    const port = await freePort();
    const { netns, ip } = await attachPlain(s.network, id);
    await serveIn(s, netns, port, "after-restart");
    await s.network.update(
      plain(id, { egress: "deny", denyCidrs: ["198.51.100.0/24"], ports: [port] }),
    );

    await s.network.close();
    // startTestNetwork picks a /24 whose first address is the gateway.
    s.network = new BridgeNetwork({
      stateDir: `${s.dir}/net`,
      bridge: s.network.bridge,
      cidr: `${s.network.gateway.replace(/\.1$/, ".0")}/24`,
      poolSize: 0,
    });
    // start() replaces the whole table: the rules below come from the records alone.
    await s.network.start();

    assert.equal(s.network.ipOf(id), ip);
    const rules = await rulesOf(s.network);
    assert.match(rules, new RegExp(`chain ${chainOf(ip)} \\{[^}]*198\\.51\\.100\\.0/24 drop`));
    assert.deepEqual(await publishedOf(s.network), [`${port} : ${ip}`]);
    assert.equal(portFree(port), false, "held again after the restart");
    await eventually(
      "the published port answers after the restart",
      async () => (await httpGet("127.0.0.1", port)).includes("after-restart"),
    );
    // The recovered state is one update() can change again.
    await s.network.update(plain(id));
    assert.doesNotMatch(await rulesOf(s.network), new RegExp(chainOf(ip)));
    assert.equal(portFree(port), true);
  });
});

Deno.test("update() of an unknown sandbox is FailedPrecondition", async () => {
  // Refused before anything on the host is touched, so the network need not be started.
  const dir = await Deno.makeTempDir({ prefix: "fsb-net-update-" });
  try {
    const network = new BridgeNetwork({ stateDir: dir });
    const id = idOf("f6");
    for (const mode of ["private", "none"] as const) {
      await assert.rejects(network.update(plain(id, { mode })), (err: unknown) => {
        assert.ok(err instanceof FailedPreconditionError);
        assert.equal(
          err.message,
          `Cannot update the network of sandbox ${id} as it is not attached`,
        );
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "update() cannot turn a private sandbox into one with mode none",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const id = idOf("a7");
    await attachPlain(s.network, id, { egress: "deny" });
    const before = await rulesOf(s.network);
    await assert.rejects(s.network.update(plain(id, { mode: "none" })), (err: unknown) => {
      assert.ok(err instanceof FailedPreconditionError);
      assert.equal(
        err.message,
        `Cannot update the network of sandbox ${id} to mode none as it has a private network and the mode cannot change`,
      );
      return true;
    });
    assert.equal(await rulesOf(s.network), before);
  });
});

Deno.test({
  name: "update() rejects a malformed CIDR naming its field, and changes nothing",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const id = idOf("b8");
    const port = await freePort();
    await attachPlain(s.network, id);
    const before = await rulesOf(s.network);
    const bad = plain(id, { denyCidrs: ["10.0.0.0/8", "nope"], ports: [port] });
    await assert.rejects(s.network.update(bad), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.equal(err.field, "network.deny_cidrs[1]");
      assert.equal(
        err.message,
        `Invalid network.deny_cidrs[1]: must be an IPv4 CIDR like 10.0.0.0/8, got "nope"`,
      );
      return true;
    });
    assert.equal(await rulesOf(s.network), before);
    assert.equal(portFree(port), true, "nothing was bound for it");
  });
});

Deno.test({
  name: "update() calls for one sandbox take effect in order, also against a detach",
  ignore,
}, async () => {
  await withScene(async (s) => {
    const id = idOf("c9");
    const [first, second] = freePorts(2);
    const { ip } = await attachPlain(s.network, id);

    await Promise.all([
      s.network.update(plain(id, { egress: "deny", ports: [first] })),
      s.network.update(plain(id, { ports: [second] })),
    ]);
    assert.doesNotMatch(await rulesOf(s.network), new RegExp(chainOf(ip)), "the last one won");
    assert.deepEqual(await publishedOf(s.network), [`${second} : ${ip}`]);
    assert.equal(portFree(first), true);
    assert.equal(portFree(second), false);

    // The update, called first, completes; the detach then removes all it put in.
    const [updated, detached] = await Promise.allSettled([
      s.network.update(plain(id, { egress: "deny", ports: [first, second] })),
      s.network.detach(id),
    ]);
    assert.equal(updated.status, "fulfilled");
    assert.equal(detached.status, "fulfilled");
    const rules = await rulesOf(s.network);
    assert.doesNotMatch(rules, new RegExp(`${chainOf(ip)}|${ip.replaceAll(".", "\\.")}`));
    assert.equal(portFree(first), true);
    assert.equal(portFree(second), true);
    await assert.rejects(s.network.update(plain(id)), FailedPreconditionError);
  });
});

Deno.test("HostNetwork.update() is a no-op for a plain request, published ports included", async () => {
  const network = new HostNetwork();
  const port = await freePort();
  await network.update(plain(idOf("d0"), { ports: [port] }));
  // On the host's network the sandbox listens on the host's port itself: nothing may hold it.
  assert.equal(portFree(port), true);
});

Deno.test("HostNetwork.update() refuses egress rules and mode none, naming the sandbox", async () => {
  const network = new HostNetwork();
  const id = idOf("e1");
  const refused: [Partial<NetworkRequest>, string][] = [
    [
      { egress: "deny" },
      `Cannot update sandbox ${id} with egress rules as its agent runs with --network host`,
    ],
    [
      { allowCidrs: ["192.0.2.0/24"] },
      `Cannot update sandbox ${id} with egress rules as its agent runs with --network host`,
    ],
    [
      { denyCidrs: ["192.0.2.0/24"] },
      `Cannot update sandbox ${id} with egress rules as its agent runs with --network host`,
    ],
    [
      { mode: "none" },
      `Cannot update the network of sandbox ${id} to mode none as it shares the host's network and the mode cannot change`,
    ],
  ];
  for (const [extra, message] of refused) {
    await assert.rejects(network.update(plain(id, extra)), (err: unknown) => {
      assert.ok(err instanceof FailedPreconditionError);
      assert.equal(err.message, message);
      return true;
    });
  }
});
