/**
 * `fsb completion bash|zsh`: prints a shell completion script for fsb's
 * commands, subcommands, flags and the values of flags that take a fixed set
 * of words. The script is generated from the very flag specs the parsers use
 * (`SANDBOX_SPECS`, `TOKEN_SPECS`, and the server commands' specs `main.ts`
 * hands in), so it cannot drift from what fsb accepts.
 *
 * @module
 */
import type { FlagSpec } from "./flags.ts";
import { parseFlags } from "./flags.ts";
import { SANDBOX_ALIASES, SANDBOX_SPECS } from "./parse_sandbox_args.ts";
import { TOKEN_ALIASES, TOKEN_SPECS } from "./parse_token_args.ts";
import type { CliIo } from "./sandbox_command.ts";
import { usageFailure } from "./sandbox_command.ts";
import { UsageError } from "./usage_error.ts";

/**
 * One command as completion sees it: a group of subcommands, or a command
 * with flags and arguments. Every command also takes `-v N` and `-h`.
 */
export interface CompletionCommand {
  /** Subcommands by name (`serve` under `controller`); the command is a group when set. */
  readonly commands?: Readonly<Record<string, CompletionCommand>>;
  /** Other names of this command (`ls` for `list`). */
  readonly aliases?: readonly string[];
  /** The flags it takes, as its parser takes them. */
  readonly flags?: FlagSpec;
  /** What its arguments are: these words, or `"files"`; nothing is offered when unset. */
  readonly args?: readonly string[] | "files";
}

/** The top-level commands by name, as `main.ts` dispatches them. */
export type CompletionCommands = Readonly<Record<string, CompletionCommand>>;

/** The shells `fsb completion` writes for. */
export const COMPLETION_SHELLS = ["bash", "zsh"] as const;

/** A shell of {@linkcode COMPLETION_SHELLS}. */
export type CompletionShell = typeof COMPLETION_SHELLS[number];

/** Help of `fsb completion`; its first line is the one-line usage. */
export const completionUsage = `Usage: fsb completion <bash|zsh>

Prints a script that completes fsb's commands, subcommands and flags.

  bash   source <(fsb completion bash)     in ~/.bashrc, or save the output
                                           as /etc/bash_completion.d/fsb
  zsh    source <(fsb completion zsh)      in ~/.zshrc (after compinit), or save
                                           the output as _fsb in a directory of $fpath
`;

function group(
  specs: Readonly<Record<string, FlagSpec>>,
  aliases: Readonly<Record<string, string>>,
  args: Readonly<Record<string, CompletionCommand["args"]>> = {},
): CompletionCommand {
  const commands: Record<string, CompletionCommand> = {};
  for (const [name, flags] of Object.entries(specs)) {
    const others = Object.keys(aliases).filter((word) => word !== name && aliases[word] === name);
    commands[name] = {
      flags,
      ...(others.length === 0 ? {} : { aliases: others }),
      ...(args[name] === undefined ? {} : { args: args[name] }),
    };
  }
  return { commands };
}

/** `fsb sandbox` and `fsb token` with their subcommands, and `fsb completion` itself. */
export const clientCompletionCommands: CompletionCommands = {
  // cp's local side is a file name (its sandbox side, NAME:PATH, is not completed).
  sandbox: group(SANDBOX_SPECS, SANDBOX_ALIASES, { cp: "files" }),
  token: group(TOKEN_SPECS, TOKEN_ALIASES),
  completion: { args: COMPLETION_SHELLS },
};

/**
 * Runs `fsb completion ARGS...`: prints the script for the shell named to
 * stdout and resolves to 0; 2 on bad usage. `commands` are the top-level
 * commands besides {@linkcode clientCompletionCommands} (the servers',
 * `version`, `help`), which `main.ts` owns.
 */
export function completionCommand(
  args: readonly string[],
  io: CliIo,
  commands: CompletionCommands = {},
): Promise<number> {
  const usage = completionUsage.slice(0, completionUsage.indexOf("\n"));
  try {
    let f;
    try {
      f = parseFlags(args, {});
    } catch (err) {
      throw err instanceof UsageError ? new UsageError(err.message, { usage }) : err;
    }
    if (f.help) {
      io.stdout(completionUsage);
      return Promise.resolve(0);
    }
    const words = f.positionals.concat(f.passthrough);
    if (words.length === 0) throw new UsageError("Missing shell", { usage });
    if (words.length > 1) throw new UsageError(`Unexpected argument "${words[1]}"`, { usage });
    const shell = words[0];
    if (!(COMPLETION_SHELLS as readonly string[]).includes(shell)) {
      throw new UsageError(
        `Unknown shell "${shell}": expected ${COMPLETION_SHELLS.join(" or ")}`,
        { usage },
      );
    }
    io.stdout(
      completionScript(shell as CompletionShell, { ...commands, ...clientCompletionCommands }),
    );
    return Promise.resolve(0);
  } catch (err) {
    return Promise.resolve(usageFailure(err, io));
  }
}

// --- the script ---------------------------------------------------------------

// What every command takes besides its own flags (flags.ts adds them to every spec).
const COMMON_FLAGS: FlagSpec = {
  verbose: { type: "string", short: "v" },
  help: { type: "boolean", short: "h" },
};

const WORD = /^[A-Za-z0-9][A-Za-z0-9_.+:@-]*$/;

/** A word for the script; anything a shell would read twice is refused, not quoted. */
function word(w: string): string {
  if (!WORD.test(w)) throw new Error(`Cannot complete ${JSON.stringify(w)}: not a plain word`);
  return w;
}

interface Node {
  /** Space-separated path of canonical names: "" for fsb itself, "sandbox create". */
  readonly path: string;
  readonly command: CompletionCommand;
}

function nodes(root: CompletionCommand): Node[] {
  const out: Node[] = [];
  const walk = (path: string, command: CompletionCommand) => {
    out.push({ path, command });
    for (const [name, sub] of Object.entries(command.commands ?? {})) {
      walk(path === "" ? word(name) : `${path} ${word(name)}`, sub);
    }
  };
  walk("", root);
  return out;
}

/** `--name` and `-s` of every flag of `spec`, common ones last. */
function flagWords(spec: FlagSpec, valued: boolean | undefined): string[] {
  const out: string[] = [];
  for (const [name, def] of Object.entries({ ...spec, ...COMMON_FLAGS })) {
    if (valued !== undefined && (def.type === "string") !== valued) continue;
    out.push(`--${word(name)}`);
    if (def.short !== undefined) out.push(`-${word(def.short)}`);
  }
  return out;
}

/**
 * The shell functions both scripts share (bash and zsh read them alike):
 * `__fsb_spec PATH` sets what a command takes, `__fsb_child PATH WORD` the
 * path of a subcommand, `__fsb_choices PATH FLAG` the words a flag's value may be.
 */
function tables(root: CompletionCommand): string {
  const all = nodes(root);
  const spec: string[] = [];
  const child: string[] = [];
  const choices: string[] = [];
  for (const { path, command } of all) {
    const lines: string[] = [];
    if (command.commands !== undefined) {
      const words = Object.entries(command.commands).flatMap(([name, sub]) => [
        name,
        ...(sub.aliases ?? []),
      ]);
      lines.push(`__fsb_cmds="${words.map(word).join(" ")}"`);
      for (const [name, sub] of Object.entries(command.commands)) {
        const to = path === "" ? name : `${path} ${name}`;
        const from = [name, ...(sub.aliases ?? [])].map((w) => `"${path}|${word(w)}"`).join("|");
        child.push(`    ${from}) __fsb_next="${to}" ;;`);
      }
    } else {
      const flags = command.flags ?? {};
      lines.push(`__fsb_flags="${flagWords(flags, undefined).join(" ")}"`);
      lines.push(`__fsb_valued=" ${flagWords(flags, true).join(" ")} "`);
      const args = command.args;
      if (args !== undefined) {
        lines.push(`__fsb_args="${args === "files" ? "__files__" : args.map(word).join(" ")}"`);
      }
      for (const [name, def] of Object.entries(flags)) {
        if (def.type !== "string" || def.choices === undefined) continue;
        const names = [`--${name}`, ...(def.short === undefined ? [] : [`-${def.short}`])];
        choices.push(
          `    ${names.map((n) => `"${path}|${n}"`).join("|")}) __fsb_vals="${
            def.choices.map(word).join(" ")
          }" ;;`,
        );
      }
    }
    spec.push(`    "${path}")\n      ${lines.join("\n      ")}\n      ;;`);
  }
  return `__fsb_spec() {
  __fsb_cmds="" __fsb_flags="" __fsb_valued=" " __fsb_args=""
  case "$1" in
${spec.join("\n")}
  esac
}

__fsb_child() {
  __fsb_next=""
  case "$1|$2" in
${child.join("\n")}
  esac
}

__fsb_choices() {
  __fsb_vals=""
  case "$1|$2" in
${choices.join("\n")}
    *) return 1 ;;
  esac
}
`;
}

const BASH = `
_fsb() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" node="" i=1 j flag=""
  COMPREPLY=()
  # Subcommands come first, one word each, as fsb reads them.
  while __fsb_spec "$node"; [[ -n $__fsb_cmds ]]; do
    if (( i == COMP_CWORD )); then
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "-h --help" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "$__fsb_cmds" -- "$cur"))
      fi
      return 0
    fi
    __fsb_child "$node" "\${COMP_WORDS[i]}"
    [[ -z $__fsb_next ]] && return 0
    node=$__fsb_next
    (( i++ ))
  done
  # After "--" come the sandbox's own command and arguments.
  for (( j = i; j < COMP_CWORD; j++ )); do
    if [[ \${COMP_WORDS[j]} == -- ]]; then
      compopt -o default 2>/dev/null
      return 0
    fi
  done
  # bash splits "--flag=value" at "=": the words are "--flag" "=" "value".
  if [[ $cur == = && $__fsb_valued == *" \${COMP_WORDS[COMP_CWORD-1]} "* ]]; then
    flag=\${COMP_WORDS[COMP_CWORD-1]}
    cur=""
  elif (( COMP_CWORD > i + 1 )) && [[ \${COMP_WORDS[COMP_CWORD-1]} == = &&
    $__fsb_valued == *" \${COMP_WORDS[COMP_CWORD-2]} "* ]]; then
    flag=\${COMP_WORDS[COMP_CWORD-2]}
  elif (( COMP_CWORD > i )) && [[ $__fsb_valued == *" \${COMP_WORDS[COMP_CWORD-1]} "* ]]; then
    flag=\${COMP_WORDS[COMP_CWORD-1]}
  fi
  if [[ -n $flag ]]; then
    if __fsb_choices "$node" "$flag"; then
      COMPREPLY=($(compgen -W "$__fsb_vals" -- "$cur"))
    elif [[ $flag != -v && $flag != --verbose ]]; then
      compopt -o default 2>/dev/null
    fi
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$__fsb_flags" -- "$cur"))
  elif [[ $__fsb_args == __files__ ]]; then
    compopt -o default 2>/dev/null
  elif [[ -n $__fsb_args ]]; then
    COMPREPLY=($(compgen -W "$__fsb_args" -- "$cur"))
  fi
  return 0
}

complete -F _fsb fsb
`;

// zsh does not split an unquoted variable: \${=var} does. Its \`words\` start at 1
// with the command's name; \`path\` is taken (it is $PATH), hence \`node\`.
const ZSH = `
_fsb() {
  local cur="\${words[CURRENT]}" prev="\${words[CURRENT-1]}" node="" i=2 j
  while __fsb_spec "$node"; [[ -n $__fsb_cmds ]]; do
    if (( i == CURRENT )); then
      if [[ $cur == -* ]]; then
        compadd -- -h --help
      else
        compadd -- \${=__fsb_cmds}
      fi
      return
    fi
    __fsb_child "$node" "\${words[i]}"
    [[ -z $__fsb_next ]] && return 1
    node=$__fsb_next
    (( i++ ))
  done
  # After "--" come the sandbox's own command and arguments.
  for (( j = i; j < CURRENT; j++ )); do
    if [[ \${words[j]} == -- ]]; then
      _files
      return
    fi
  done
  if [[ $cur == --*=* ]]; then
    local flag="\${cur%%=*}"
    compset -P '*='
    if __fsb_choices "$node" "$flag"; then
      compadd -- \${=__fsb_vals}
    else
      _files
    fi
    return
  fi
  if (( CURRENT > i )) && [[ $__fsb_valued == *" $prev "* ]]; then
    if __fsb_choices "$node" "$prev"; then
      compadd -- \${=__fsb_vals}
    elif [[ $prev != -v && $prev != --verbose ]]; then
      _files
    fi
    return
  fi
  if [[ $cur == -* ]]; then
    compadd -- \${=__fsb_flags}
  elif [[ $__fsb_args == __files__ ]]; then
    _files
  elif [[ -n $__fsb_args ]]; then
    compadd -- \${=__fsb_args}
  fi
}

if [[ "\${funcstack[1]}" == _fsb ]]; then
  _fsb "$@"
else
  compdef _fsb fsb
fi
`;

/**
 * The completion script for `shell` over `commands` (the top-level commands
 * by name). Pure: tests source it in the shell itself.
 */
export function completionScript(shell: CompletionShell, commands: CompletionCommands): string {
  const head = shell === "zsh" ? "#compdef fsb\n" : "";
  return `${head}# fsb completion for ${shell}, written by "fsb completion ${shell}" from the flags fsb
# parses. Load it with: source <(fsb completion ${shell})

${tables({ commands })}${shell === "bash" ? BASH : ZSH}`;
}
