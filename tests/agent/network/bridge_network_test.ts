import assert from "node:assert/strict";
import { sh, startTestNetwork } from "../../support/network.ts";
import { ignoreWithout } from "../../support/real_parts.ts";

Deno.test({
  name: "BridgeNetwork.reconcile() puts its rules back after a host firewall flush",
  ignore: ignoreWithout("root"),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "fsb-net-" });
  const network = await startTestNetwork(`${dir}/net`, 0);
  try {
    const a = await network.attach({
      sandboxId: "ab".repeat(16),
      mode: "private",
      egress: "deny",
      allowCidrs: [],
      denyCidrs: [],
      ports: [],
    });
    await sh(`nft delete table inet ${network.table}`);
    await network.reconcile(new Set(["ab".repeat(16)]));
    const rules = await sh(`nft list table inet ${network.table}`);
    assert.match(rules, /169\.254\.0\.0\/16 drop/);
    assert.match(rules, new RegExp(`${a.ip.replaceAll(".", "\\.")} : jump eg_`));
  } finally {
    await network.teardown();
    await Deno.remove(dir, { recursive: true });
  }
});
