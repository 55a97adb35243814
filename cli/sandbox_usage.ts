/**
 * Help texts of `fsb sandbox` and its subcommands. The first line of each is
 * the one-line usage printed after a usage error.
 *
 * @module
 */
import { CONNECTION_HELP } from "./client_config.ts";

/** The subcommands of `fsb sandbox`, by canonical name. */
export type SandboxSubcommand = "create" | "get" | "list" | "delete" | "update" | "reset" | "logs";

const COMMON = `  -n, --namespace NS     namespace (default "default")
${CONNECTION_HELP}`;

const OUTPUT = `  -o, --output FORMAT    table (default) or json (proto3 JSON of SandboxInfo)`;

/** Help text per subcommand, plus `sandbox` for the command group itself. */
export const sandboxUsage: Readonly<Record<SandboxSubcommand | "sandbox", string>> = {
  sandbox: `Usage: fsb sandbox <create|get|list|delete|update|reset|logs> [flags]

Commands:
  create [NAME] --image IMG [-- CMD ARGS...]   create a sandbox and print it
  get NAME                                     print one sandbox
  list, ls                                     print the sandboxes of a namespace
  delete, rm NAME...                           stop and remove sandboxes
  update NAME                                  change expiry, failure policy, labels
  reset NAME                                   recreate a sandbox on a fresh placement
  logs NAME [-f]                               print a sandbox's stdout and stderr

Run "fsb sandbox <command> -h" for a command's flags.
Exit status: 0 ok, 1 the request failed, 2 bad usage.
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
};
