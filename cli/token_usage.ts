/**
 * Help texts of `fsb token` and its subcommands. The first line of each is
 * the one-line usage printed after a usage error.
 *
 * @module
 */

import { CONNECTION_HELP } from "./client_config.ts";

/** The subcommands of `fsb token`, by canonical name. */
export type TokenSubcommand = "create" | "list" | "revoke";

/** Help text per subcommand, plus `token` for the command group itself. */
export const tokenUsage: Readonly<Record<TokenSubcommand | "token", string>> = {
  token: `Usage: fsb token <create|list|revoke> [flags]

Manages the tokens clients send the controller; each command needs an admin token.

Commands:
  create -n NS... | --admin     make a token and print its secret, once
  list, ls                      print the tokens (never their secrets)
  revoke ID                     revoke a token at once

Run "fsb token <command> -h" for a command's flags.
Exit status: 0 ok, 1 the request failed, 2 bad usage.
`,
  create: `Usage: fsb token create (-n NS... | --admin) [--ttl DURATION] [--quota N] [flags]

Makes a token and prints its secret alone, followed by a newline, so that
T=$(fsb token create -n team-a) keeps it. The secret is shown this once: the
controller keeps only its hash.

Flags:
  -n, --namespace NS     a namespace the token may use; repeatable
      --admin            every namespace, plus tokens and debug endpoints
      --ttl DURATION     expires after this long (90s, 12h, 30d); 0 or absent: never
      --quota N          at most N sandboxes at once in each of its namespaces
  -o, --output FORMAT    secret (default) or json: {"id", "secret", "namespaces",
                         "admin", "expireTime"}
${CONNECTION_HELP}
`,
  list: `Usage: fsb token list [flags]

Prints the tokens (alias: ls): ids, namespaces, expiry; never secrets.

Flags:
  -o, --output FORMAT    table (default) or json (an array of TokenInfo)
${CONNECTION_HELP}
`,
  revoke: `Usage: fsb token revoke ID [flags]

Revokes a token: calls carrying it fail with UNAUTHENTICATED from then on.

Flags:
  -o, --output FORMAT    table (default) or json (the revoked TokenInfo)
${CONNECTION_HELP}
`,
};
