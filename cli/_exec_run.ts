/**
 * The calling half of the `fsb sandbox` subcommands that work inside a
 * sandbox: `exec`, `attach`, `ps`, `kill`, `wait` and `cp`. Loaded on demand
 * by `sandbox_command.ts`.
 *
 * Exit status: `exec`, `attach` and `wait` exit with the command's (or the
 * sandbox process's) status, and with 125 when fsb itself fails, as Docker
 * does, so that the two cannot be mixed up; `ps`, `kill` and `cp` with 0, or 1
 * when the request failed.
 *
 * @module
 */
import { withClient } from "./_channel.ts";
import { pumpSession } from "./_exec_session.ts";
import type { FsbClient } from "./client.ts";
import type { ClientConfig } from "./client_config.ts";
import { execJson } from "./exec_json.ts";
import { execTable } from "./exec_table.ts";
import type { ExecPlan } from "./parse_exec_args.ts";
import type { CliIo } from "./sandbox_command.ts";

/** The calls of an {@linkcode FsbClient} these commands make. */
export type ExecClient = Pick<FsbClient, "exec" | "execs" | "files" | "wait">;

/** The exit status of `exec`, `attach` and `wait` when fsb itself fails. */
export const FSB_FAILED = 125;

/** Runs `plan` against the controller `config` names; resolves to the exit status. */
export async function runExecPlan(
  plan: ExecPlan,
  config: ClientConfig,
  io: CliIo,
): Promise<number> {
  // withClient reports only its own failures (a client it cannot make) on
  // this stderr, and resolves to 1 then: that is fsb failing.
  let own = false;
  const stderr = (s: string) => {
    own = true;
    io.stderr(s);
  };
  const status = await withClient(
    config,
    stderr,
    (client, describe) => runInSandbox(plan, client, io, describe),
  );
  const commandStatus = plan.kind === "exec" || plan.kind === "attach" || plan.kind === "wait";
  return own && commandStatus ? FSB_FAILED : status;
}

/**
 * Runs `plan` with `client`; `describe` words a failed call for stderr
 * (`fsb: CODE_NAME: message\n`). Exported for tests, which pass a client of
 * their own.
 */
export async function runInSandbox(
  plan: ExecPlan,
  client: ExecClient,
  io: CliIo,
  describe: (err: unknown) => Promise<string>,
): Promise<number> {
  const failed = async (err: unknown, status: number) => {
    io.stderr(await describe(err));
    return status;
  };
  const opts = { namespace: plan.namespace, signal: io.signal };
  switch (plan.kind) {
    case "exec":
      return await exec(plan, client, io, describe);
    case "attach": {
      let session;
      try {
        session = client.execs.attach(plan.name, plan.execId, opts);
      } catch (err) {
        return await failed(err, FSB_FAILED);
      }
      const result = await pumpSession(session, io, {
        raw: false,
        resize: false,
        interrupt: "stop",
      });
      return await finish(result, io, describe);
    }
    case "wait": {
      // Ctrl-C stops waiting; nothing else does.
      const abort = new AbortController();
      const signal = io.signal === undefined
        ? abort.signal
        : AbortSignal.any([io.signal, abort.signal]);
      let code = 130;
      const undo = [
        io.onSignal?.("SIGINT", () => abort.abort()),
        io.onSignal?.("SIGTERM", () => {
          code = 143;
          abort.abort();
        }),
      ];
      try {
        const res = await client.wait(plan.name, { namespace: plan.namespace, signal });
        io.stdout(`${res.exitCode}\n`);
        return res.exitCode;
      } catch (err) {
        if (signal.aborted) return code;
        return await failed(err, FSB_FAILED);
      } finally {
        for (const u of undo) u?.();
      }
    }
    case "ps":
      try {
        const list = await client.execs.list(plan.name, opts);
        if (plan.output === "json") io.stdout(execJson(list));
        else if (list.length > 0) io.stdout(execTable(list, (io.now ?? Date.now)()));
        else io.stderr(`No execs in sandbox "${plan.namespace || "default"}/${plan.name}"\n`);
        return 0;
      } catch (err) {
        return await failed(err, 1);
      }
    case "kill":
      try {
        const info = await client.execs.kill(plan.name, plan.execId, {
          ...opts,
          ...(plan.signal === "" ? {} : { killSignal: plan.signal }),
        });
        io.stdout(`${info.execId || plan.execId}\n`);
        return 0;
      } catch (err) {
        return await failed(err, 1);
      }
    case "cp":
      try {
        const { copyFiles } = await import("./_cp_run.ts");
        await copyFiles(plan, client.files, io);
        return 0;
      } catch (err) {
        if (err instanceof Deno.errors.BrokenPipe) return 0;
        return await failed(err, 1);
      }
  }
}

async function exec(
  plan: Extract<ExecPlan, { kind: "exec" }>,
  client: ExecClient,
  io: CliIo,
  describe: (err: unknown) => Promise<string>,
): Promise<number> {
  const common = {
    namespace: plan.namespace,
    signal: io.signal,
    env: plan.env,
    workingDir: plan.workingDir,
  };
  if (plan.detach) {
    try {
      io.stdout(`${await client.execs.start(plan.name, plan.command, common)}\n`);
      return 0;
    } catch (err) {
      io.stderr(await describe(err));
      return FSB_FAILED;
    }
  }
  // As Docker: -t alone is fine anywhere; -it needs a terminal to put in raw mode.
  const raw = plan.tty && plan.interactive;
  if (raw && io.terminal?.stdinIsTerminal !== true) {
    io.stderr("fsb: Cannot run exec -it: stdin is not a terminal (drop -t, or run fsb in one)\n");
    return FSB_FAILED;
  }
  const size = plan.tty ? io.terminal?.size() : undefined;
  let session;
  try {
    session = client.exec(plan.name, plan.command, {
      ...common,
      tty: plan.tty,
      ...(plan.interactive ? { stdin: io.stdin ?? empty() } : {}),
      ...(size === undefined ? {} : { size: { cols: size.cols, rows: size.rows } }),
    });
  } catch (err) {
    io.stderr(await describe(err));
    return FSB_FAILED;
  }
  const result = await pumpSession(session, io, {
    raw,
    resize: plan.tty,
    interrupt: "forward",
  });
  return await finish(result, io, describe);
}

// The exit status for a session's end, and what to say about it.
async function finish(
  result: Awaited<ReturnType<typeof pumpSession>>,
  io: CliIo,
  describe: (err: unknown) => Promise<string>,
): Promise<number> {
  switch (result.kind) {
    case "exit":
      // Why the command could not run (126, 127).
      if (result.exit.message !== "") io.stderr(`fsb: ${result.exit.message}\n`);
      return result.exit.exitCode;
    case "stopped":
      return result.code;
    case "closed":
      // As a process killed by SIGPIPE, which is what a shell would show.
      return 141;
    case "failed":
      io.stderr(await describe(result.error));
      return FSB_FAILED;
  }
}

async function* empty(): AsyncGenerator<Uint8Array> {}
