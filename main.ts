/**
 * `fsb`: the one program. It only dispatches: each command's wiring lives in
 * the part it belongs to, and each command loads only what it needs, so the
 * client stays quick to start.
 *
 * @module
 */
import { UsageError } from "./cli/usage_error.ts";

/** The version printed by `fsb version`. */
export const VERSION = "0.1.0";

const USAGE = `Usage: fsb <command> [flags]

Commands:
  up                  controller and a local agent in one process (zero setup)
  controller serve    the FastPath API, registry, store and lifecycle loop
  agent run           an agent: registers with a controller and runs sandboxes
  sandbox ...         create|get|list|delete|update|reset|logs sandboxes;
                      exec|attach|ps|kill|cp|wait inside them
  token ...           create|list|revoke access tokens (admin)
  debug ...           profile|flamegraph: CPU profiles and heap snapshots (admin)
  completion SHELL    print a bash or zsh completion script
  image import FILE   import an OCI archive into the agent's containerd
  image pull REF      pull an image from a registry into the agent's containerd
  version             print the version
  help                print this help

Run "fsb <command> --help" for a command's flags.`;

const SHORT_USAGE =
  `Usage: fsb <up|controller serve|agent run|sandbox|token|image import|image pull|debug|completion|version|help> [flags]`;

/**
 * Imports a command's module. The specifier goes through a variable so that
 * Deno does not resolve the servers' module graph (grpc-js, prom-client,
 * pino) on every start of the client; `deno task compile` names these
 * modules with --include instead.
 */
function load<T>(specifier: string): Promise<T> {
  return import(specifier);
}

/** Where a command writes. */
const io = {
  stdout: (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s)),
  stderr: (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
};

function help(text: string): number {
  io.stdout(`${text}\n`);
  return 0;
}

/** Runs `fsb` with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, sub, ...rest] = args;
  try {
    switch (command) {
      case "sandbox": {
        const { sandboxCommand, denoCliIo } = await import("./cli/mod.ts");
        return await sandboxCommand(args.slice(1), denoCliIo());
      }
      case "controller": {
        const { controllerServe, SERVE_USAGE } = await load<
          typeof import("./controller/serve_command.ts")
        >("./controller/serve_command.ts");
        if (sub === "serve") return await controllerServe(rest, io);
        if (sub === "-h" || sub === "--help") return help(SERVE_USAGE);
        throw new UsageError(`Unknown command "controller ${sub ?? ""}"`, { usage: SERVE_USAGE });
      }
      case "agent": {
        const { agentRun, AGENT_USAGE } = await load<typeof import("./agent/run_command.ts")>(
          "./agent/run_command.ts",
        );
        if (sub === "run") return await agentRun(rest, io);
        if (sub === "-h" || sub === "--help") return help(AGENT_USAGE);
        throw new UsageError(`Unknown command "agent ${sub ?? ""}"`, { usage: AGENT_USAGE });
      }
      case "up": {
        const { up } = await load<typeof import("./agent/up_command.ts")>("./agent/up_command.ts");
        return await up(args.slice(1), io);
      }
      case "debug": {
        const { debugCommand, denoCliIo } = await import("./cli/mod.ts");
        return await debugCommand(args.slice(1), denoCliIo());
      }
      case "completion": {
        const { completionCommand, DEBUG_SPECS, denoCliIo } = await import("./cli/mod.ts");
        // Only this command reads every server command's flags, so only it loads them all.
        const [{ UP_FLAGS }, { SERVE_FLAGS }, { AGENT_FLAGS }, { IMAGE_IMPORT_FLAGS }, {
          IMAGE_PULL_FLAGS,
        }] = await Promise.all([
          load<typeof import("./agent/up_command.ts")>("./agent/up_command.ts"),
          load<typeof import("./controller/serve_command.ts")>("./controller/serve_command.ts"),
          load<typeof import("./agent/run_command.ts")>("./agent/run_command.ts"),
          load<typeof import("./agent/containerd/import_command.ts")>(
            "./agent/containerd/import_command.ts",
          ),
          load<typeof import("./agent/containerd/pull_command.ts")>(
            "./agent/containerd/pull_command.ts",
          ),
        ]);
        return await completionCommand(args.slice(1), denoCliIo(), {
          up: { flags: UP_FLAGS },
          controller: { commands: { serve: { flags: SERVE_FLAGS } } },
          agent: { commands: { run: { flags: AGENT_FLAGS } } },
          image: {
            commands: {
              import: { flags: IMAGE_IMPORT_FLAGS, args: "files" },
              pull: { flags: IMAGE_PULL_FLAGS },
            },
          },
          debug: {
            commands: {
              profile: { flags: DEBUG_SPECS.profile },
              flamegraph: { flags: DEBUG_SPECS.flamegraph, args: "files" },
            },
          },
          version: {},
          help: {},
        });
      }
      case "token": {
        const { tokenCommand, denoCliIo } = await import("./cli/mod.ts");
        return await tokenCommand(args.slice(1), denoCliIo());
      }
      case "image": {
        if (sub === "pull") {
          const { imagePull } = await load<typeof import("./agent/containerd/mod.ts")>(
            "./agent/containerd/mod.ts",
          );
          return await imagePull(rest, io);
        }
        const { imageImport, IMAGE_IMPORT_USAGE } = await load<
          typeof import("./agent/containerd/import_command.ts")
        >("./agent/containerd/import_command.ts");
        if (sub === "import") return await imageImport(rest, io);
        if (sub === "-h" || sub === "--help") return help(IMAGE_IMPORT_USAGE);
        throw new UsageError(`Unknown command "image ${sub ?? ""}"`, { usage: IMAGE_IMPORT_USAGE });
      }
      case "version":
      case "--version":
        io.stdout(`fsb ${VERSION} (deno ${Deno.version.deno})\n`);
        return 0;
      case "help":
      case "-h":
      case "--help":
      case undefined:
        return help(USAGE);
      default:
        throw new UsageError(`Unknown command "${command}"`, { usage: SHORT_USAGE });
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`fsb: ${err.message}\n${err.usage ?? SHORT_USAGE}\n`);
      return 2;
    }
    io.stderr(`fsb: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
