import assert from "node:assert/strict";
import { type CliIo, completionCommand, type CompletionCommands } from "../../cli/mod.ts";
import { clientCompletionCommands, completionScript } from "../../cli/completion.ts";
import type { FlagSpec } from "../../cli/flags.ts";
import { SANDBOX_ALIASES, SANDBOX_SPECS } from "../../cli/parse_sandbox_args.ts";
import { TOKEN_ALIASES, TOKEN_SPECS } from "../../cli/parse_token_args.ts";

const decoder = new TextDecoder();

// The server commands as main.ts hands them in (their specs are main.ts's own).
const SERVERS: CompletionCommands = {
  up: { flags: { listen: { type: "string" }, runtime: { type: "string" } } },
  controller: { commands: { serve: { flags: { store: { type: "string" } } } } },
  image: {
    commands: { import: { flags: { "containerd-socket": { type: "string" } }, args: "files" } },
  },
  version: {},
};

async function run(args: string[], commands?: CompletionCommands) {
  let out = "";
  let err = "";
  const io: CliIo = {
    stdout: (s) => out += s,
    stdoutBytes: () => {},
    stderr: (s) => err += s,
    env: {},
    home: "/nonexistent-home",
  };
  const code = await completionCommand(args, io, commands);
  return { code, stdout: out, stderr: err };
}

async function script(shell: "bash" | "zsh"): Promise<string> {
  const res = await run([shell], SERVERS);
  assert.equal(res.code, 0, res.stderr);
  const dir = await Deno.makeTempDir({ prefix: "fsb-completion-" });
  const path = `${dir}/fsb.${shell}`;
  await Deno.writeTextFile(path, res.stdout);
  return path;
}

async function shell(name: string, args: string[]) {
  const out = await new Deno.Command(name, { args, stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function has(command: string): Promise<boolean> {
  try {
    return (await shell(command, ["-c", "exit 0"])).code === 0;
  } catch {
    return false;
  }
}

/**
 * What bash offers for the command line `words`, the last being the word under
 * the cursor: sources the script in a fresh bash and calls its function as
 * `complete -F` would.
 */
async function bashComplete(path: string, words: string[]): Promise<string[]> {
  const res = await shell("bash", [
    "--norc",
    "--noprofile",
    "-c",
    'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); ' +
    'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; _fsb; printf "%s\\n" "${COMPREPLY[@]}"',
    "bash",
    path,
    ...words,
  ]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, "");
  return res.stdout.split("\n").filter((w) => w !== "");
}

/** Every word a spec's flags go by, long and short, with -v and -h. */
function flagWords(spec: FlagSpec): string[] {
  const out: string[] = [];
  for (const [name, def] of Object.entries(spec)) {
    out.push(`--${name}`);
    if (def.short !== undefined) out.push(`-${def.short}`);
  }
  return out.concat(["--verbose", "-v", "--help", "-h"]);
}

Deno.test("fsb completion exits 2 without a shell or with an unknown one, and prints help on -h", async () => {
  const usage = "Usage: fsb completion <bash|zsh>\n";
  assert.deepEqual(await run([]), { code: 2, stdout: "", stderr: "fsb: Missing shell\n" + usage });
  assert.deepEqual(await run(["fish"]), {
    code: 2,
    stdout: "",
    stderr: 'fsb: Unknown shell "fish": expected bash or zsh\n' + usage,
  });
  assert.deepEqual(await run(["bash", "zsh"]), {
    code: 2,
    stdout: "",
    stderr: 'fsb: Unexpected argument "zsh"\n' + usage,
  });
  assert.equal((await run(["bash", "--bogus"])).stderr, "fsb: Unknown flag --bogus\n" + usage);
  const help = await run(["-h"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: fsb completion <bash\|zsh>\n/);
  assert.match(help.stdout, /source <\(fsb completion bash\)/);
});

Deno.test("the bash script is valid bash and registers _fsb for fsb", async () => {
  const path = await script("bash");
  try {
    const syntax = await shell("bash", ["-n", path]);
    assert.equal(syntax.code, 0, syntax.stderr);
    const registered = await shell("bash", [
      "--norc",
      "-c",
      'source "$1"; complete -p fsb',
      "bash",
      path,
    ]);
    assert.equal(registered.stdout, "complete -F _fsb fsb\n");
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("bash completes commands, subcommands, flags and flag values", async () => {
  const path = await script("bash");
  const complete = (...words: string[]) => bashComplete(path, ["fsb", ...words]);
  try {
    assert.deepEqual(await complete("sandbox", "cr"), ["create"]);
    assert.deepEqual(await complete("sandbox", "l"), ["list", "ls", "logs"]);
    assert.deepEqual(await complete(""), [
      "up",
      "controller",
      "image",
      "version",
      "sandbox",
      "token",
      "completion",
    ]);
    assert.deepEqual(await complete("co"), ["controller", "completion"]);
    assert.deepEqual(await complete("controller", ""), ["serve"]);
    assert.deepEqual(await complete("controller", "serve", "--st"), ["--store"]);
    assert.deepEqual(await complete("token", "cr"), ["create"]);
    assert.deepEqual(await complete("sandbox", "-"), ["-h", "--help"]);
    assert.deepEqual(await complete("sandbox", "create", "--mo"), ["--mode"]);
    assert.deepEqual(await complete("sandbox", "create", "-e", "A=1", "--wor"), ["--workdir"]);
    // Values: after the flag, after "--flag=" and with part of the value typed.
    assert.deepEqual(await complete("sandbox", "create", "--mode", ""), ["fast", "strong"]);
    assert.deepEqual(await complete("sandbox", "create", "--mode", "=", "s"), ["strong"]);
    assert.deepEqual(await complete("sandbox", "create", "--failure-policy", "="), [
      "manual",
      "auto-recreate",
    ]);
    assert.deepEqual(await complete("sandbox", "ls", "-o", "j"), ["json"]);
    assert.deepEqual(await complete("token", "create", "-o", ""), ["secret", "json"]);
    assert.deepEqual(await complete("completion", ""), ["bash", "zsh"]);
    // Free values, names and the sandbox's own command line get no words of ours.
    assert.deepEqual(await complete("sandbox", "create", "--image", ""), []);
    assert.deepEqual(await complete("sandbox", "get", ""), []);
    assert.deepEqual(await complete("sandbox", "create", "--image", "b", "--", "--mo"), []);
    assert.deepEqual(await complete("nonsense", "-"), []);
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("bash offers exactly the flags each sandbox and token subcommand parses, aliases included", async () => {
  const path = await script("bash");
  try {
    for (
      const [group, specs, aliases] of [
        ["sandbox", SANDBOX_SPECS, SANDBOX_ALIASES],
        ["token", TOKEN_SPECS, TOKEN_ALIASES],
      ] as const
    ) {
      const words = Object.keys(aliases);
      assert.deepEqual(
        (await bashComplete(path, ["fsb", group, ""])).sort(),
        words.slice().sort(),
      );
      for (const [word, sub] of Object.entries(aliases)) {
        const offered = await bashComplete(path, ["fsb", group, word, "-"]);
        const spec: FlagSpec = (specs as Record<string, FlagSpec>)[sub];
        assert.deepEqual(offered.sort(), flagWords(spec).sort(), `fsb ${group} ${word}`);
      }
    }
    // Docker's short flags are among them.
    const create = await bashComplete(path, ["fsb", "sandbox", "create", "-"]);
    for (const flag of ["-e", "-p", "-w", "-l", "-n", "-o"]) assert.ok(create.includes(flag), flag);
    assert.ok((await bashComplete(path, ["fsb", "sandbox", "update", "-"])).includes("-l"));
    assert.ok((await bashComplete(path, ["fsb", "sandbox", "logs", "-"])).includes("-f"));
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("every short flag is unique within its command, and -v and -h are left to every command", () => {
  for (const specs of [SANDBOX_SPECS, TOKEN_SPECS]) {
    for (const [sub, spec] of Object.entries(specs as Record<string, FlagSpec>)) {
      const shorts = Object.values(spec).flatMap((def) => def.short ?? []);
      assert.equal(new Set(shorts).size, shorts.length, `${sub}: ${shorts}`);
      assert.ok(!shorts.includes("v") && !shorts.includes("h"), sub);
    }
  }
});

Deno.test("the zsh script is a #compdef file that zsh reads, and completes like the bash one", async () => {
  const path = await script("zsh");
  try {
    const text = await Deno.readTextFile(path);
    assert.match(text, /^#compdef fsb\n/);
    assert.match(text, /compdef _fsb fsb/);
    if (!(await has("zsh"))) {
      console.log("zsh is not installed: checked the script's structure only");
      return;
    }
    const syntax = await shell("zsh", ["-n", path]);
    assert.equal(syntax.code, 0, syntax.stderr);
    // compadd and _files exist only inside completion: stand-ins print what they are given.
    const complete = async (...words: string[]) => {
      const res = await shell("zsh", [
        "-f",
        "-c",
        'compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@"; }; _files() { print -r -- "<files>"; }; ' +
        'compset() { :; }; compdef() { :; }; source "$1"; shift; words=("$@"); CURRENT=$#words; _fsb',
        "zsh",
        path,
        "fsb",
        ...words,
      ]);
      assert.equal(res.stderr, "");
      return res.stdout.split("\n").filter((w) => w !== "");
    };
    // compadd filters by what was typed; the stand-in shows every candidate.
    assert.deepEqual(await complete("sandbox", "cr"), Object.keys(SANDBOX_ALIASES));
    assert.deepEqual(
      (await complete("sandbox", "create", "-")).sort(),
      flagWords(SANDBOX_SPECS.create).sort(),
    );
    assert.deepEqual(await complete("sandbox", "create", "--mode", ""), ["fast", "strong"]);
    assert.deepEqual(await complete("sandbox", "create", "--mode=s"), ["fast", "strong"]);
    assert.deepEqual(await complete("sandbox", "create", "--tls-ca", ""), ["<files>"]);
    assert.deepEqual(await complete("image", "import", ""), ["<files>"]);
    assert.deepEqual(await complete("sandbox", "create", "--", ""), ["<files>"]);
    assert.deepEqual(await complete("completion", ""), ["bash", "zsh"]);
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("completionScript() refuses a word a shell would read twice", () => {
  assert.throws(
    () => completionScript("bash", { "a;rm": {} }),
    /Cannot complete "a;rm": not a plain word/,
  );
  assert.throws(
    () => completionScript("bash", { x: { flags: { "o$(id)": { type: "string" } } } }),
    /not a plain word/,
  );
});

Deno.test("bash completes the exec family: exec's flags, kill's signals, ps's formats", async () => {
  const path = await script("bash");
  try {
    const exec = await bashComplete(path, ["fsb", "sandbox", "exec", "-"]);
    for (const flag of ["-i", "-t", "-e", "-w", "-d", "--interactive", "--tty", "--detach"]) {
      assert.ok(exec.includes(flag), flag);
    }
    assert.ok(
      (await bashComplete(path, ["fsb", "sandbox", "kill", "box", "e", "-s", ""])).includes("TERM"),
    );
    assert.deepEqual(await bashComplete(path, ["fsb", "sandbox", "ps", "box", "-o", ""]), [
      "table",
      "json",
    ]);
    for (const sub of ["attach", "ps", "kill", "wait", "cp"]) {
      assert.ok((await bashComplete(path, ["fsb", "sandbox", ""])).includes(sub), sub);
    }
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("cp's arguments complete as file names", () => {
  assert.equal(clientCompletionCommands.sandbox.commands?.cp.args, "files");
  assert.equal(clientCompletionCommands.sandbox.commands?.exec.args, undefined);
});
