import assert from "node:assert/strict";
import { startContainerd } from "../support/containerd.ts";
import { createWhenReady, fsb, startUp } from "../support/fsb_process.ts";
import { ignoreWithout } from "../support/real_parts.ts";

// `exec -t` needs a pseudo-terminal on both ends: the containerd runtime
// gives the command one (the process runtime has none), and util-linux
// `script` gives fsb one here, as a user's terminal would.

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

function hasScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"] }).outputSync().code === 0;
  } catch {
    return false;
  }
}

// Single quotes for sh, which script -c hands the command to.
function sq(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

Deno.test({
  name: "exec -it runs on a terminal of the local terminal's size and puts the local terminal back",
  ignore: ignoreWithout("containerd", "root") || !hasScript(),
}, async () => {
  const containerd = await startContainerd();
  const dataDir = await Deno.makeTempDir({ prefix: "fsb-e2e-ctrd-tty-" });
  const tag = crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
  const bridge = `fsbt${tag}`;
  const up = await startUp(dataDir, [
    "--containerd-socket",
    containerd.socket,
    "--bridge",
    bridge,
    "--sandbox-cidr",
    `10.${210 + (parseInt(tag, 16) % 30)}.${parseInt(tag, 16) % 256}.0/24`,
  ]);
  try {
    const created = await createWhenReady(up, "tty", ["sleep", "600"]);
    assert.equal(created.code, 0, created.stderr);
    const fsbLine = [Deno.execPath(), "run", "-A", MAIN].map(sq).join(" ");
    // The terminal gets a size first (script's own is 0x0 without one around
    // it); after fsb, stty -g shows whether raw mode was undone.
    const line = [
      "stty cols 91 rows 37",
      "stty -g > before",
      `${fsbLine} sandbox exec -it tty -- sh -c 'tty; stty size; exit 4'; echo "status $?"`,
      "stty -g > after",
    ].join("; ");
    const out = await new Deno.Command("script", {
      args: ["-qfec", line, "/dev/null"],
      cwd: dataDir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: {
        HOME: up.home,
        DENO_DIR,
        SHELL: "/bin/sh",
        FSB_ENDPOINT: "",
        FSB_TOKEN: "",
        NO_COLOR: "1",
      },
    }).output();
    // Both terminals turn "\n" into "\r\n": lines end in "\r\r\n".
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /\/dev\/pts\/\d+\r*\n/, text);
    assert.match(text, /37 91\r*\n/, text);
    assert.match(text, /status 4/, text);
    assert.equal(
      await Deno.readTextFile(`${dataDir}/after`),
      await Deno.readTextFile(`${dataDir}/before`),
      "the terminal's settings are what they were",
    );
    // Deleted through fsb, so that its network namespace goes with it.
    const deleted = await fsb(["sandbox", "delete", "tty"], up);
    assert.equal(deleted.code, 0, deleted.stderr);
  } finally {
    up.child.kill("SIGTERM");
    await up.child.status;
    await containerd.stop();
    await new Deno.Command("sh", {
      args: ["-c", `nft delete table inet fsb_${bridge}; ip link del ${bridge}; true`],
    }).output();
    await Deno.remove(dataDir, { recursive: true });
  }
});
