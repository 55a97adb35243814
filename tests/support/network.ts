/**
 * Networks for tests: a sandbox network on a bridge and subnet of the
 * test's own, and a stand-in for "the internet" in a network namespace the
 * test makes. Traffic stays on this machine: loopback, the bridge and these
 * namespaces.
 *
 * @module
 */
import { BridgeNetwork } from "../../agent/network/mod.ts";

function hex4(): string {
  return crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
}

function byte(min: number, max: number): number {
  return min + (crypto.getRandomValues(new Uint8Array(1))[0] % (max - min + 1));
}

/** Runs a command and returns its stdout; fails with its stderr. */
export async function sh(script: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${script} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/**
 * A BridgeNetwork on a bridge named `fsbt` + 4 random hex digits and a
 * random /24 in 10.210.0.0-10.239.255.0 (fsb's default 10.209.0.0/16 is left
 * to real agents), with its state under `stateDir`. Started.
 */
export async function startTestNetwork(stateDir: string, poolSize = 2): Promise<BridgeNetwork> {
  const network = new BridgeNetwork({
    stateDir,
    bridge: `fsbt${hex4()}`,
    cidr: `10.${byte(210, 239)}.${byte(0, 255)}.0/24`,
    poolSize,
  });
  await network.start();
  return network;
}

/** What a test's network left on the host: namespaces, veths and the rules table. */
export async function networkLeftovers(bridge: string, table: string): Promise<string[]> {
  const left: string[] = [];
  for (const name of (await sh("ip netns list")).split("\n")) {
    if (name.startsWith(`${bridge}-`)) left.push(`netns ${name.split(" ")[0]}`);
  }
  const links = await sh(`ip -o link show master ${bridge} 2>/dev/null || true`);
  for (const line of links.split("\n")) {
    if (line.trim() !== "") left.push(`port ${line.split(":")[1]}`);
  }
  const tables = await sh("nft list tables");
  if (!tables.includes(`inet ${table}`)) left.push("(rules table missing)");
  return left;
}

/** A web server in a namespace of the test's own, standing for the internet. */
export interface FakeInternet {
  /** The server's address. */
  readonly ip: string;
  /** The /30 it sits in. */
  readonly cidr: string;
  /** The host's end of the link. */
  readonly hostIp: string;
  /** The namespace's name. */
  readonly netns: string;
  /** `http://ip:8080/hello`: answers `hello from the internet`. */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * A namespace linked to the host by a veth pair on a random /30 in
 * 10.250.0.0/16, running busybox httpd on port 8080.
 */
export async function startFakeInternet(dir: string): Promise<FakeInternet> {
  const tag = hex4();
  const netns = `fsbti${tag}`;
  const third = byte(0, 255);
  const fourth = byte(0, 63) * 4;
  const hostIp = `10.250.${third}.${fourth + 1}`;
  const ip = `10.250.${third}.${fourth + 2}`;
  const www = `${dir}/www-${tag}`;
  await Deno.mkdir(www, { recursive: true });
  await Deno.writeTextFile(`${www}/hello`, "hello from the internet\n");
  await sh([
    `ip netns add ${netns}`,
    `ip link add ti${tag} type veth peer name eth0 netns ${netns}`,
    `ip addr add ${hostIp}/30 dev ti${tag}`,
    `ip link set ti${tag} up`,
    `ip -n ${netns} addr add ${ip}/30 dev eth0`,
    `ip -n ${netns} link set eth0 up`,
    `ip -n ${netns} link set lo up`,
    `ip -n ${netns} route add default via ${hostIp}`,
    `ip netns exec ${netns} busybox httpd -p 8080 -h ${www} </dev/null >/dev/null 2>&1`,
  ].join(" && "));
  return {
    ip,
    cidr: `10.250.${third}.${fourth}/30`,
    hostIp,
    netns,
    url: `http://${ip}:8080/hello`,
    stop: async () => {
      await sh(`ip netns pids ${netns} | xargs -r kill -9; ip netns del ${netns}; true`);
    },
  };
}
