/**
 * Help texts of `fsb sandbox` and its subcommands. The first line of each is
 * the one-line usage printed after a usage error.
 *
 * @module
 */
import { CONNECTION_HELP } from "./client_config.ts";

/** The subcommands of `fsb sandbox`, by canonical name. */
export type SandboxSubcommand =
  | "create"
  | "get"
  | "list"
  | "delete"
  | "update"
  | "reset"
  | "logs"
  | "exec"
  | "attach"
  | "ps"
  | "kill"
  | "wait"
  | "cp";

const COMMON = `  -n, --namespace NS     namespace (default "default")
${CONNECTION_HELP}`;

const OUTPUT = `  -o, --output FORMAT    table (default) or json (proto3 JSON of SandboxInfo)`;

/** Help text per subcommand, plus `sandbox` for the command group itself. */
export const sandboxUsage: Readonly<Record<SandboxSubcommand | "sandbox", string>> = {
  sandbox:
    `Usage: fsb sandbox <create|get|list|delete|update|reset|logs|exec|attach|ps|kill|wait|cp> [flags]

Commands:
  create [NAME] --image IMG [-- CMD ARGS...]   create a sandbox and print it
  get NAME                                     print one sandbox
  list, ls                                     print the sandboxes of a namespace
  delete, rm NAME...                           stop and remove sandboxes
  update NAME                                  change expiry, failure policy, labels
  reset NAME                                   recreate a sandbox on a fresh placement
  logs NAME [-f]                               print a sandbox's stdout and stderr
  exec NAME [-i] [-t] [-d] [--] CMD ARGS...    run a command in a sandbox
  attach NAME EXEC_ID                          follow the output of a detached exec
  ps NAME                                      list a sandbox's execs
  kill NAME EXEC_ID [-s SIG]                   send a signal to an exec
  wait NAME                                    wait for a sandbox's process to end
  cp SRC DST                                   copy files and directories to or from
                                               a sandbox (one side NAME:PATH)

Run "fsb sandbox <command> -h" for a command's flags.
Exit status: 0 ok, 1 the request failed, 2 bad usage; exec, attach and wait
exit with the command's status, and 125 when fsb itself fails.
`,
  create: `Usage: fsb sandbox create [NAME] --image IMG [flags] [-- CMD ARGS...]

Creates a sandbox and prints it once it runs. Without NAME the controller picks
one (sb-...). The words after -- are the process's whole argv: all of them go
into the request's "command", and "args" stays empty.

Flags:
      --image IMG        image to run (required)
      --pool P           agent pool (default "default-pool")
  -p, --port N           host port the sandbox listens on; repeatable
  -e, --env K=V          environment variable; repeatable
  -w, --workdir DIR      working directory
      --mode MODE        fast or strong (default: the controller's)
      --expire WHEN      duration from now (90s, 1h30m), unix seconds, or 0 for never
      --failure-policy P manual (default) or auto-recreate
  -l, --label K=V        label; repeatable

Network flags (always denied: the agent's host, 169.254.0.0/16, other sandboxes):
      --network MODE     private (default: an IP of its own) or none (loopback only)
      --egress E         allow (default: the internet) or deny (nothing leaves)
      --allow CIDR       IPv4 range reachable even with --egress deny; repeatable
      --deny CIDR        IPv4 range unreachable even with --egress allow; repeatable

Limit flags (a limit not given is the agent's default):
      --cpus N           CPUs, decimals allowed (0.5 is half a CPU)
      --memory SIZE      bytes, or a number with Ki, Mi, Gi or Ti (64Mi, 1.5Gi)
      --pids N           most processes and threads at once

Other flags:
${OUTPUT}
${COMMON}
`,
  get: `Usage: fsb sandbox get NAME [flags]

Prints one sandbox.

Flags:
${OUTPUT}
${COMMON}
`,
  list: `Usage: fsb sandbox list [flags]

Prints the sandboxes of a namespace (alias: ls); -o json prints an array.

Flags:
  -A, --all-namespaces   every namespace
${OUTPUT}
${COMMON}
`,
  delete: `Usage: fsb sandbox delete NAME... [flags]

Stops and removes sandboxes (alias: rm); -o json prints an array of what was deleted.

Flags:
${OUTPUT}
${COMMON}
`,
  update:
    `Usage: fsb sandbox update NAME [--expire WHEN] [--failure-policy P] [--label K=V]... [flags]

Changes a sandbox's expiry, failure policy or labels (labels are upserted).

Flags:
      --expire WHEN      duration from now (90s, 1h30m), unix seconds, or 0 for never
      --failure-policy P manual or auto-recreate
  -l, --label K=V        label; repeatable
${OUTPUT}
${COMMON}
`,
  reset: `Usage: fsb sandbox reset NAME [flags]

Deletes the sandbox's container and creates it again on a fresh placement.

Flags:
${OUTPUT}
${COMMON}
`,
  logs: `Usage: fsb sandbox logs NAME [-f] [flags]

Writes the sandbox's stdout and stderr bytes as they were written.

Flags:
  -f, --follow           keep writing new output until the sandbox ends or Ctrl-C
${COMMON}
`,
  exec: `Usage: fsb sandbox exec NAME [-i] [-t] [-e K=V]... [-w DIR] [-d] [flags] [--] CMD ARGS...

Runs a command in a running sandbox and exits with its exit status. Flags
end at CMD (or at --), so the command's own flags are its own.

Exit status: the command's; 125 when fsb fails (cannot connect, the sandbox is
not running, ...: the reason and its gRPC code on stderr); 126 when the
command cannot be run, 127 when it is not found. Without -t, the command's
stdout and stderr go to fsb's stdout and stderr, byte for byte. Ctrl-C sends
the command SIGINT; a second Ctrl-C stops waiting and ends the command.

Flags:
  -i, --interactive      forward stdin; its end closes the command's stdin
  -t, --tty              run on a pseudo-terminal of the local terminal's size;
                         with -i, the local terminal is in raw mode meanwhile
  -e, --env K=V          environment variable; repeatable
  -w, --workdir DIR      working directory (absolute)
  -d, --detach           start it in the background and print its exec id
${COMMON}
`,
  attach: `Usage: fsb sandbox attach NAME EXEC_ID [flags]

Writes what a detached exec wrote so far, follows it until it ends, and exits
with its exit status (125 when fsb fails). Ctrl-C stops following; the exec
keeps running.

Flags:
${COMMON}
`,
  ps: `Usage: fsb sandbox ps NAME [-o table|json] [flags]

Lists a sandbox's execs: running ones and detached ones that ended.

Flags:
  -o, --output FORMAT    table (default) or json (proto3 JSON of ExecInfo, an array)
${COMMON}
`,
  kill: `Usage: fsb sandbox kill NAME EXEC_ID [-s SIG] [flags]

Sends a signal to an exec and prints its id.

Flags:
  -s, --signal SIG       a name (TERM, SIGINT) or a number (default KILL)
${COMMON}
`,
  wait: `Usage: fsb sandbox wait NAME [flags]

Waits until the sandbox's process ends, prints its exit code and exits with
it (125 when fsb fails).

Flags:
${COMMON}
`,
  cp: `Usage: fsb sandbox cp SRC DST [flags]

Copies a file or a directory between this machine and a sandbox, as docker cp
does. One side is NAME:PATH (PATH absolute in sandbox NAME), the other a local
path or - (a tar archive on stdin, extracted into the directory DST; or a tar
archive of SRC on stdout). A local path with a colon is written ./a:b.

  a file to an existing directory           goes into it, under its own name
  a file to any other path                  is written there (its directory must exist)
  a directory to a missing path             is created there with the same contents
  a directory to an existing directory      goes into it; with SRC ending in /.
                                            its contents go into it instead
Permission bits are kept (setuid and setgid are dropped out of a sandbox),
and so are modification times, except a single file's copied into a sandbox.
Files copied into a sandbox are owned by root. Symlinks are copied as links.
Nothing extracted here may land outside DST: entries with absolute paths, ..
or a path through a symlink are refused.

Flags:
${COMMON}
`,
};
