/**
 * Private sandbox networks on a Linux bridge: a network namespace per
 * sandbox with one veth on the bridge and an address of its own, host
 * firewall rules in one nftables table, and a small pool of namespaces kept
 * ready so that a create does not pay for making one.
 *
 * @module
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Cidr,
  cidrSize,
  FailedPreconditionError,
  formatCidr,
  formatIpv4,
  parseCidr,
  UnavailableError,
} from "../../registry/mod.ts";
import { runTool, writeSysctl } from "./_exec.ts";
import { addSandbox, fullRuleset, removeSandbox, type SandboxRules, tableName } from "./_nft.ts";
import type { NetworkAttachment, NetworkRequest, SandboxNetwork } from "./sandbox_network.ts";

/** Where the network reports trouble it works around (a pino logger fits). */
export interface NetworkLogger {
  warn(obj: object, msg: string): void;
}

/** Options for {@linkcode BridgeNetwork}. */
export interface BridgeNetworkOptions {
  /** Keeps one record per address in use, so a restarted agent neither reuses nor leaks one. */
  readonly stateDir: string;
  /** The bridge's name; `fsb0` unless told. At most 11 characters. */
  readonly bridge?: string;
  /** The sandboxes' subnet; `10.209.0.0/16` unless told. The bridge takes its first address. */
  readonly cidr?: string;
  /** How many namespaces to keep ready; 4 unless told. */
  readonly poolSize?: number;
  /**
   * Further addresses or CIDRs no sandbox may reach, e.g. the controller's
   * when it runs on another host (this host's own addresses always are).
   */
  readonly alwaysDeny?: readonly string[];
  readonly logger?: NetworkLogger;
}

/** One address and the namespace and veth made for it. */
interface Slot {
  readonly ip: string;
  readonly ipNum: number;
  readonly netns: string;
  readonly veth: string;
  sandboxId?: string;
  rules?: SandboxRules;
}

const NETNS_DIR = "/run/netns";
/** About one cold create on the machine measured (docs/PERFORMANCE.md). */
const REFILL_DELAY_MS = 150;

/** A short tag per bridge for veth names (15 characters at most in Linux). */
function bridgeTag(bridge: string): string {
  let h = 2166136261;
  for (let i = 0; i < bridge.length; i++) h = Math.imul(h ^ bridge.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16).padStart(8, "0").slice(0, 4);
}

/** A request's CIDRs in canonical form; InvalidArgumentError names the field of a bad one. */
function cidrsOf(req: NetworkRequest): { allowCidrs: string[]; denyCidrs: string[] } {
  return {
    allowCidrs: req.allowCidrs.map((c, i) => formatCidr(parseCidr(`network.allow_cidrs[${i}]`, c))),
    denyCidrs: req.denyCidrs.map((c, i) => formatCidr(parseCidr(`network.deny_cidrs[${i}]`, c))),
  };
}

/**
 * Sandbox networks on bridge `fsb0` (by default): see the module notes and
 * shared/DESIGN.md section 11. Needs root, iproute2 and nftables.
 */
export class BridgeNetwork implements SandboxNetwork {
  /** Always `private`. */
  readonly kind = "private";
  readonly #bridge: string;
  readonly #cidr: Cidr;
  readonly #cidrText: string;
  readonly #gateway: string;
  readonly #first: number;
  readonly #last: number;
  readonly #tag: string;
  readonly #dir: string;
  readonly #poolSize: number;
  readonly #log: NetworkLogger | undefined;
  readonly #alwaysDeny: string[];
  readonly #slots = new Map<number, Slot>();
  readonly #bySandbox = new Map<string, Slot>();
  readonly #ready: Slot[] = [];
  readonly #held = new Map<string, Deno.TcpListener[]>();
  /** Per sandbox, the end of its queue of attach, update and detach calls. */
  readonly #busy = new Map<string, Promise<void>>();
  #cursor: number;
  #refilling: Promise<void> | undefined;
  #refillTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** Describes the network; {@linkcode BridgeNetwork.start} sets up the host. */
  constructor(opts: BridgeNetworkOptions) {
    this.#bridge = opts.bridge ?? "fsb0";
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,10}$/.test(this.#bridge)) {
      throw new Error(
        `Cannot use bridge name "${this.#bridge}": 1-11 letters, digits, '-' or '_'`,
      );
    }
    this.#cidr = parseCidr("--sandbox-cidr", opts.cidr ?? "10.209.0.0/16");
    if (this.#cidr.prefix > 29) {
      throw new Error(`Cannot use --sandbox-cidr ${opts.cidr}: it needs at least a /29`);
    }
    this.#cidrText = formatCidr(this.#cidr);
    this.#gateway = formatIpv4(this.#cidr.network + 1);
    this.#first = this.#cidr.network + 2;
    this.#last = this.#cidr.network + cidrSize(this.#cidr) - 2;
    this.#cursor = this.#first;
    this.#tag = bridgeTag(this.#bridge);
    this.#dir = join(opts.stateDir, "ips");
    this.#poolSize = opts.poolSize ?? 4;
    this.#log = opts.logger;
    this.#alwaysDeny = (opts.alwaysDeny ?? []).map((a, i) =>
      formatCidr(parseCidr(`alwaysDeny[${i}]`, a.includes("/") ? a : `${a}/32`))
    );
  }

  /** The bridge's name. */
  get bridge(): string {
    return this.#bridge;
  }

  /** The bridge's own address: the sandboxes' gateway. */
  get gateway(): string {
    return this.#gateway;
  }

  /** The nftables table (family `inet`) holding this network's rules. */
  get table(): string {
    return tableName(this.#bridge);
  }

  /** How many namespaces are ready now. */
  get readyCount(): number {
    return this.#ready.length;
  }

  async start(): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    const prefix = `${this.#gateway}/${this.#cidr.prefix}`;
    const bridgeExists = await Deno.stat(`/sys/class/net/${this.#bridge}`).then(
      () => true,
      () => false,
    );
    await runTool(
      "ip",
      ["-batch", "-"],
      [
        ...(bridgeExists ? [] : [`link add ${this.#bridge} type bridge`]),
        `addr replace ${prefix} dev ${this.#bridge}`,
        `link set ${this.#bridge} up`,
      ].join("\n"),
    );
    await writeSysctl("net/ipv4/ip_forward", "1");
    // Lets host clients of 127.0.0.1 reach published ports (DNAT, then masquerade).
    await writeSysctl(`net/ipv4/conf/${this.#bridge}/route_localnet`, "1");
    await writeSysctl(`net/ipv6/conf/${this.#bridge}/disable_ipv6`, "1").catch(() => {});
    await this.#recover();
    await this.#applyAll();
    this.#refill();
  }

  /** Loads the records of a previous run: keeps sandboxes', removes ready ones and strays. */
  async #recover(): Promise<void> {
    const stale: Slot[] = [];
    for (const file of await readdir(this.#dir)) {
      if (!file.endsWith(".json")) continue;
      let slot: Slot;
      try {
        slot = JSON.parse(await readFile(join(this.#dir, file), "utf8")) as Slot;
      } catch {
        await rm(join(this.#dir, file), { force: true });
        continue;
      }
      this.#slots.set(slot.ipNum, slot);
      if (slot.sandboxId === undefined) {
        stale.push(slot);
        continue;
      }
      this.#bySandbox.set(slot.sandboxId, slot);
      if (slot.ipNum >= this.#cursor) this.#cursor = slot.ipNum + 1;
      // A port some host process took while the agent was down stays that process's: it is
      // neither held nor forwarded to the sandbox any more.
      const kept: number[] = [];
      for (const port of slot.rules?.ports ?? []) {
        try {
          this.#hold(slot.sandboxId, [port], true);
          kept.push(port);
        } catch (err) {
          this.#log?.warn(
            { sandbox: slot.sandboxId, port, err: String(err) },
            "cannot hold a published port again after restart; no longer publishing it",
          );
        }
      }
      if (slot.rules !== undefined && kept.length !== slot.rules.ports.length) {
        slot.rules = { ...slot.rules, ports: kept };
        await this.#write(slot);
      }
    }
    for (const slot of stale) await this.#destroy(slot);
    // Namespaces of this bridge that no record names: left by a crash mid-way.
    const known = new Set([...this.#slots.values()].map((s) => s.netns));
    const names = await readdir(NETNS_DIR).catch(() => [] as string[]);
    const ours = new RegExp(`^${this.#bridge}-[0-9a-f]{8}$`);
    for (const name of names) {
      if (ours.test(name) && !known.has(name)) {
        await runTool("ip", ["netns", "del", name]).catch(() => {});
      }
    }
    if (this.#cursor > this.#last) this.#cursor = this.#first;
  }

  #rules(): SandboxRules[] {
    const out: SandboxRules[] = [];
    for (const slot of this.#bySandbox.values()) if (slot.rules) out.push(slot.rules);
    return out;
  }

  attach(req: NetworkRequest): Promise<NetworkAttachment> {
    if (req.mode === "none") return Promise.resolve({ netns: { kind: "new" }, ip: "" });
    return this.#exclusive(req.sandboxId, () => this.#attach(req));
  }

  async #attach(req: NetworkRequest): Promise<NetworkAttachment> {
    if (this.#bySandbox.has(req.sandboxId)) {
      throw new FailedPreconditionError(
        `Cannot attach sandbox ${req.sandboxId} to the network as it already is`,
      );
    }
    const { allowCidrs, denyCidrs } = cidrsOf(req);
    this.#hold(req.sandboxId, req.ports);
    let slot: Slot | undefined;
    try {
      slot = this.#ready.shift() ?? await this.#prepare();
      slot.sandboxId = req.sandboxId;
      slot.rules = { ip: slot.ip, ports: req.ports, egress: req.egress, allowCidrs, denyCidrs };
      this.#bySandbox.set(req.sandboxId, slot);
      // Recorded before the container exists, so a crash cannot leave it on a "ready" slot.
      await this.#write(slot);
      const commands = addSandbox(this.#bridge, slot.rules);
      if (commands !== "") await runTool("nft", ["-f", "-"], commands);
    } catch (err) {
      this.#release(req.sandboxId);
      if (slot !== undefined) {
        this.#bySandbox.delete(req.sandboxId);
        await this.#destroy(slot);
      }
      throw err;
    }
    this.#refillLater();
    return { netns: { kind: "path", path: `${NETNS_DIR}/${slot.netns}` }, ip: slot.ip };
  }

  ipOf(sandboxId: string): string {
    return this.#bySandbox.get(sandboxId)?.ip ?? "";
  }

  /**
   * Swaps the sandbox's rules in one nft transaction, once its new ports are
   * bound on the host and its record says what it will have; ports it no
   * longer publishes are released last. A `none` sandbox is never attached
   * here, so updating one fails as for an unknown sandbox.
   */
  update(req: NetworkRequest): Promise<void> {
    return this.#exclusive(req.sandboxId, () => this.#update(req));
  }

  async #update(req: NetworkRequest): Promise<void> {
    const id = req.sandboxId;
    const slot = this.#bySandbox.get(id);
    if (slot?.rules === undefined) {
      throw new FailedPreconditionError(
        `Cannot update the network of sandbox ${id} as it is not attached`,
      );
    }
    if (req.mode !== "private") {
      throw new FailedPreconditionError(
        `Cannot update the network of sandbox ${id} to mode ${req.mode} as it has a private network and the mode cannot change`,
      );
    }
    const { allowCidrs, denyCidrs } = cidrsOf(req);
    const old = slot.rules;
    const next: SandboxRules = {
      ip: slot.ip,
      ports: [...req.ports],
      egress: req.egress,
      allowCidrs,
      denyCidrs,
    };
    // What a warm claim with the default request asks: nothing to bind, write or swap.
    if (JSON.stringify(next) === JSON.stringify(old)) return;
    const held = this.#held.get(id) ?? [];
    const heldPorts = new Set(held.map((l) => l.addr.port));
    const added = this.#bind(id, req.ports.filter((p) => !heldPorts.has(p)));
    try {
      await this.#write({ ...slot, rules: next });
      const removal = removeSandbox(this.#bridge, old);
      const addition = addSandbox(this.#bridge, next);
      // Equal additions mean equal rules in the kernel (e.g. allow CIDRs under ALLOW changed).
      if (addition !== addSandbox(this.#bridge, old)) {
        await runTool("nft", ["-f", "-"], removal + addition);
      }
    } catch (err) {
      for (const l of added) l.close();
      await this.#write(slot).catch((e) =>
        this.#log?.warn({ sandbox: id, err: String(e) }, "cannot restore the network record")
      );
      throw err;
    }
    slot.rules = next;
    const asked = new Set(req.ports);
    const kept = held.filter((l) => asked.has(l.addr.port));
    for (const l of held) if (!asked.has(l.addr.port)) l.close();
    kept.push(...added);
    if (kept.length > 0) this.#held.set(id, kept);
    else this.#held.delete(id);
  }

  detach(sandboxId: string): Promise<void> {
    return this.#exclusive(sandboxId, () => this.#detach(sandboxId));
  }

  async #detach(sandboxId: string): Promise<void> {
    const slot = this.#bySandbox.get(sandboxId);
    if (slot === undefined) return;
    this.#bySandbox.delete(sandboxId);
    this.#release(sandboxId);
    const commands = slot.rules === undefined ? "" : removeSandbox(this.#bridge, slot.rules);
    if (commands !== "") {
      await runTool("nft", ["-f", "-"], commands).catch((err) =>
        this.#log?.warn({ sandbox: sandboxId, err: String(err) }, "removing rules failed")
      );
    }
    await this.#destroy(slot);
  }

  async reconcile(live: ReadonlySet<string>): Promise<void> {
    for (const id of [...this.#bySandbox.keys()]) {
      if (!live.has(id)) await this.detach(id);
    }
    await this.#ensureRules();
  }

  /**
   * Puts the rules back if something removed them (a host firewall reload
   * flushing nftables would otherwise leave sandboxes open to the host and
   * 169.254.0.0/16 until the agent restarts). Called with each reconcile.
   */
  async #ensureRules(): Promise<void> {
    const present = await runTool("nft", ["list", "table", "inet", this.table]).then(
      () => true,
      () => false,
    );
    if (present) return;
    this.#log?.warn({ table: this.table }, "the sandbox rules were gone; putting them back");
    await this.#applyAll();
  }

  async #applyAll(): Promise<void> {
    await runTool(
      "nft",
      ["-f", "-"],
      fullRuleset(this.#bridge, this.#cidrText, this.#rules(), { alwaysDeny: this.#alwaysDeny }),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#refillTimer);
    this.#refillTimer = undefined;
    await this.#refilling;
    // An attach or update in flight would otherwise hold its ports past the release below.
    await Promise.all(this.#busy.values());
    for (const slot of this.#ready.splice(0)) await this.#destroy(slot);
    for (const id of [...this.#held.keys()]) this.#release(id);
  }

  /**
   * Removes everything: every namespace, the rules table and the bridge.
   * For tests and uninstalls; sandboxes still running lose their network.
   */
  async teardown(): Promise<void> {
    await this.close();
    for (const slot of [...this.#slots.values()]) await this.#destroy(slot);
    this.#bySandbox.clear();
    await runTool("nft", ["delete", "table", "inet", this.table]).catch(() => {});
    await runTool("ip", ["link", "del", this.#bridge]).catch(() => {});
    await rm(this.#dir, { recursive: true, force: true });
  }

  /**
   * Binds each published port on the host for as long as the sandbox lives,
   * so no host service can be shadowed by a sandbox's DNAT, nor take the
   * port later. The bound sockets never see traffic: DNAT comes first.
   */
  #hold(sandboxId: string, ports: readonly number[], add = false): void {
    const bound = this.#bind(sandboxId, ports);
    const held = add ? [...this.#held.get(sandboxId) ?? [], ...bound] : bound;
    if (held.length > 0) this.#held.set(sandboxId, held);
  }

  /** Binds `ports` on the host, all or none (those bound are closed on failure). */
  #bind(sandboxId: string, ports: readonly number[]): Deno.TcpListener[] {
    const bound: Deno.TcpListener[] = [];
    try {
      for (const port of ports) bound.push(Deno.listen({ hostname: "0.0.0.0", port }));
    } catch (err) {
      const port = ports[bound.length];
      for (const l of bound) l.close();
      if (err instanceof Deno.errors.AddrInUse) {
        throw new FailedPreconditionError(
          `Cannot publish port ${port} of sandbox ${sandboxId} as the agent's host already uses it`,
        );
      }
      throw err;
    }
    return bound;
  }

  /**
   * Runs `fn` once the calls for the same sandbox made before it are done:
   * each awaits `ip`, `nft` or the record, and two interleaved could leave
   * rules in the kernel that the state here no longer names.
   */
  async #exclusive<T>(sandboxId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#busy.get(sandboxId);
    let done!: () => void;
    const mine = new Promise<void>((resolve) => done = resolve);
    this.#busy.set(sandboxId, mine);
    try {
      if (before !== undefined) await before;
      return await fn();
    } finally {
      done();
      if (this.#busy.get(sandboxId) === mine) this.#busy.delete(sandboxId);
    }
  }

  #release(sandboxId: string): void {
    for (const l of this.#held.get(sandboxId) ?? []) l.close();
    this.#held.delete(sandboxId);
  }

  /**
   * Refills once the create that took a namespace is likely done: making
   * one spawns `ip` twice, which on a 2-core host measurably slowed the
   * create's own containerd steps when run alongside them.
   */
  #refillLater(): void {
    if (this.#refillTimer !== undefined || this.#closed) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#refill();
    }, REFILL_DELAY_MS);
  }

  /** Keeps the pool full in the background, one namespace at a time. */
  #refill(): void {
    if (this.#refilling !== undefined || this.#closed) return;
    this.#refilling = (async () => {
      try {
        while (!this.#closed && this.#ready.length < this.#poolSize) {
          this.#ready.push(await this.#prepare());
        }
      } catch (err) {
        this.#log?.warn({ err: String(err) }, "cannot prepare a sandbox network namespace");
      }
    })()
      // On the promise, not inside it: with the pool full the body ends before this
      // assignment, and a `finally` inside would clear the field before it is set.
      .finally(() => this.#refilling = undefined);
  }

  /** The next free address after the last one handed out, so addresses are not reused at once. */
  #nextIp(): number {
    const span = this.#last - this.#first + 1;
    for (let i = 0; i < span; i++) {
      const ip = this.#cursor;
      this.#cursor = ip >= this.#last ? this.#first : ip + 1;
      if (!this.#slots.has(ip)) return ip;
    }
    throw new UnavailableError(`Cannot give a sandbox an address as ${this.#cidrText} is full`);
  }

  /** Makes a namespace with its veth on the bridge and an address, ready for a sandbox. */
  async #prepare(): Promise<Slot> {
    const ipNum = this.#nextIp();
    const ip = formatIpv4(ipNum);
    const hex = ipNum.toString(16).padStart(8, "0");
    const slot: Slot = { ip, ipNum, netns: `${this.#bridge}-${hex}`, veth: `v${this.#tag}${hex}` };
    this.#slots.set(ipNum, slot);
    try {
      await this.#write(slot);
      await runTool(
        "ip",
        ["-batch", "-"],
        [
          `netns add ${slot.netns}`,
          `link add ${slot.veth} type veth peer name eth0 netns ${slot.netns}`,
          `link set ${slot.veth} master ${this.#bridge}`,
          // Isolated ports reach the bridge (the host) but never each other.
          `link set dev ${slot.veth} type bridge_slave isolated on`,
          `link set ${slot.veth} up`,
        ].join("\n"),
      );
      await writeSysctl(`net/ipv6/conf/${slot.veth}/disable_ipv6`, "1").catch(() => {});
      await runTool(
        "ip",
        ["-n", slot.netns, "-batch", "-"],
        [
          `addr add ${ip}/${this.#cidr.prefix} dev eth0`,
          "link set eth0 addrgenmode none",
          "link set lo up",
          "link set eth0 up",
          `route add default via ${this.#gateway}`,
        ].join("\n"),
      );
    } catch (err) {
      await this.#destroy(slot);
      throw err;
    }
    return slot;
  }

  /** Removes the namespace (which takes the veth pair with it), the record and the address. */
  async #destroy(slot: Slot): Promise<void> {
    // The host end first: deleting it removes the pair at once, where a
    // deleted namespace frees its interfaces later, in the background.
    await runTool("ip", ["link", "del", slot.veth]).catch(() => {});
    await runTool("ip", ["netns", "del", slot.netns]).catch(() => {});
    await rm(join(this.#dir, `${slot.ip}.json`), { force: true });
    this.#slots.delete(slot.ipNum);
  }

  async #write(slot: Slot): Promise<void> {
    const path = join(this.#dir, `${slot.ip}.json`);
    await writeFile(`${path}.tmp`, JSON.stringify(slot));
    await rename(`${path}.tmp`, path);
  }
}
