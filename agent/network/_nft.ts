/**
 * The agent's nftables ruleset, as text for `nft -f`: pure functions of the
 * bridge, the subnet and the sandboxes' rules, so a restarted agent rebuilds
 * exactly what it had and tests can read the rules.
 *
 * @module
 */

/** What the ruleset needs to know about one sandbox with a private network. */
export interface SandboxRules {
  readonly ip: string;
  /** Host ports published to the same port at `ip`. */
  readonly ports: readonly number[];
  readonly egress: "allow" | "deny";
  readonly allowCidrs: readonly string[];
  readonly denyCidrs: readonly string[];
}

/** The table's name for a bridge: nft identifiers take letters, digits and `_`. */
export function tableName(bridge: string): string {
  return `fsb_${bridge.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

/** Whether a sandbox needs a chain of its own (anything but default egress). */
export function needsEgressChain(rules: SandboxRules): boolean {
  return rules.egress === "deny" || rules.allowCidrs.length > 0 || rules.denyCidrs.length > 0;
}

function chainName(ip: string): string {
  return `eg_${ip.replaceAll(".", "_")}`;
}

/**
 * Under ALLOW, deny_cidrs are closed (allow_cidrs add nothing); under DENY,
 * only allow_cidrs are open. Either way a CIDR in deny_cidrs is never reachable.
 */
function egressRules(rules: SandboxRules): string[] {
  const out: string[] = [];
  if (rules.denyCidrs.length > 0) out.push(`ip daddr { ${rules.denyCidrs.join(", ")} } drop`);
  if (rules.egress === "deny") {
    if (rules.allowCidrs.length > 0) {
      out.push(`ip daddr { ${rules.allowCidrs.join(", ")} } accept`);
    }
    out.push("drop");
  }
  return out;
}

/**
 * The whole table, replacing any previous one atomically (one transaction):
 * - input: a sandbox reaches no address of the host, only replies pass;
 * - forward: never 169.254.0.0/16 nor another sandbox; from outside only
 *   published ports (DNAT) and replies reach a sandbox; per-sandbox egress
 *   chains through a verdict map; the rest goes out;
 * - nat: published TCP ports on every host address (not from sandboxes;
 *   TCP only, as only TCP ports are held on the host), and masquerade for
 *   egress and for host loopback clients of published ports.
 */
export function fullRuleset(
  bridge: string,
  cidr: string,
  sandboxes: readonly SandboxRules[],
  opts: { alwaysDeny?: readonly string[] } = {},
): string {
  const t = tableName(bridge);
  const br = JSON.stringify(bridge);
  const lines = [
    // Declaring first makes the delete valid when the table does not exist yet.
    `table inet ${t} {}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    "  map published { type inet_service : ipv4_addr; }",
    "  map egress { type ipv4_addr : verdict; }",
    "  chain input {",
    "    type filter hook input priority filter - 10; policy accept;",
    `    iifname ${br} ct state established,related accept`,
    `    iifname ${br} drop`,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority filter - 10; policy accept;",
    `    iifname ${br} ip daddr 169.254.0.0/16 drop`,
    ...(opts.alwaysDeny?.length
      ? [`    iifname ${br} ip daddr { ${opts.alwaysDeny.join(", ")} } drop`]
      : []),
    `    iifname ${br} oifname ${br} drop`,
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} ct status dnat accept`,
    `    oifname ${br} drop`,
    `    iifname ${br} ip daddr ${cidr} drop`,
    `    iifname ${br} ct state established,related accept`,
    `    iifname ${br} ip saddr vmap @egress`,
    `    iifname ${br} accept`,
    "  }",
    "  chain prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    `    iifname != ${br} fib daddr type local dnat ip to tcp dport map @published`,
    "  }",
    "  chain output {",
    // The inet family names no `dstnat` priority for output; -100 is its value.
    "    type nat hook output priority -100; policy accept;",
    "    fib daddr type local dnat ip to tcp dport map @published",
    "  }",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip saddr ${cidr} oifname != ${br} masquerade`,
    `    oifname ${br} ip saddr 127.0.0.0/8 masquerade`,
    "  }",
  ];
  for (const s of sandboxes) {
    if (!needsEgressChain(s)) continue;
    lines.push(`  chain ${chainName(s.ip)} {`);
    for (const rule of egressRules(s)) lines.push(`    ${rule}`);
    lines.push("  }");
  }
  lines.push("}");
  for (const s of sandboxes) lines.push(...addElements(t, s));
  return lines.join("\n") + "\n";
}

function addElements(table: string, s: SandboxRules): string[] {
  const out: string[] = [];
  if (s.ports.length > 0) {
    out.push(
      `add element inet ${table} published { ${s.ports.map((p) => `${p} : ${s.ip}`).join(", ")} }`,
    );
  }
  if (needsEgressChain(s)) {
    out.push(`add element inet ${table} egress { ${s.ip} : jump ${chainName(s.ip)} }`);
  }
  return out;
}

/** The commands that add one sandbox's rules; empty when it needs none. */
export function addSandbox(bridge: string, s: SandboxRules): string {
  const t = tableName(bridge);
  const lines: string[] = [];
  if (needsEgressChain(s)) {
    const chain = chainName(s.ip);
    lines.push(`add chain inet ${t} ${chain}`);
    for (const rule of egressRules(s)) lines.push(`add rule inet ${t} ${chain} ${rule}`);
  }
  lines.push(...addElements(t, s));
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

/** The commands that remove one sandbox's rules; empty when it had none. */
export function removeSandbox(bridge: string, s: SandboxRules): string {
  const t = tableName(bridge);
  const lines: string[] = [];
  if (s.ports.length > 0) {
    lines.push(`delete element inet ${t} published { ${s.ports.join(", ")} }`);
  }
  if (needsEgressChain(s)) {
    lines.push(`delete element inet ${t} egress { ${s.ip} }`);
    lines.push(`delete chain inet ${t} ${chainName(s.ip)}`);
  }
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}
