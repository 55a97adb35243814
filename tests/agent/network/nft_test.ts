import assert from "node:assert/strict";
import { addSandbox, fullRuleset, removeSandbox } from "../../../agent/network/_nft.ts";

const base = {
  ip: "10.209.0.5",
  ports: [],
  egress: "allow" as const,
  allowCidrs: [],
  denyCidrs: [],
};

Deno.test("fullRuleset() publishes TCP only, so a sandbox can never take a host UDP service", () => {
  const rules = fullRuleset("fsb0", "10.209.0.0/16", [{ ...base, ports: [8125] }]);
  assert.match(rules, /dnat ip to tcp dport map @published/);
  assert.doesNotMatch(rules, /udp|th dport/);
  assert.match(rules, /add element inet fsb_fsb0 published \{ 8125 : 10\.209\.0\.5 \}/);
});

Deno.test("fullRuleset() always drops 169.254.0.0/16, the extra addresses, and traffic to the host", () => {
  const rules = fullRuleset("fsb0", "10.209.0.0/16", [], { alwaysDeny: ["192.0.2.7/32"] });
  assert.match(rules, /iifname "fsb0" ip daddr 169\.254\.0\.0\/16 drop/);
  assert.match(rules, /iifname "fsb0" ip daddr \{ 192\.0\.2\.7\/32 \} drop/);
  assert.match(rules, /chain input \{[^}]*iifname "fsb0" drop/);
  // The always-denied rules come before anything that accepts.
  const forward = rules.slice(rules.indexOf("chain forward"));
  assert.ok(
    forward.indexOf("169.254.0.0/16 drop") < forward.indexOf("ct state established,related accept"),
  );
});

Deno.test("addSandbox() closes deny CIDRs even inside allowed ones, and opens allow CIDRs only under DENY", () => {
  const allow = addSandbox("fsb0", {
    ...base,
    allowCidrs: ["192.0.2.0/24"],
    denyCidrs: ["192.0.2.2/32"],
  });
  assert.match(allow, /eg_10_209_0_5 ip daddr \{ 192\.0\.2\.2\/32 \} drop/);
  assert.doesNotMatch(allow, /accept/, "under ALLOW an allow CIDR adds nothing");
  const deny = addSandbox("fsb0", {
    ...base,
    egress: "deny",
    allowCidrs: ["192.0.2.0/24"],
    denyCidrs: ["192.0.2.2/32"],
  });
  const lines = deny.trim().split("\n").filter((l) => l.startsWith("add rule"));
  assert.deepEqual(lines.map((l) => l.replace(/^add rule inet fsb_fsb0 eg_10_209_0_5 /, "")), [
    "ip daddr { 192.0.2.2/32 } drop",
    "ip daddr { 192.0.2.0/24 } accept",
    "drop",
  ]);
  assert.equal(addSandbox("fsb0", base), "", "a default sandbox costs no nft call");
  assert.equal(removeSandbox("fsb0", base), "");
});
