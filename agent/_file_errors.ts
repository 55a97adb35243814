/**
 * The typed errors of `./files.ts`, from how its helper ended.
 *
 * @module
 */
import { posix } from "node:path";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from "../registry/errors.ts";
import { EXIT } from "./_file_scripts.ts";
import type { HelperRun } from "./_file_helper.ts";
import type { ExecExitStatus } from "./runtime.ts";

/** What a failed helper run was doing, for its error's message. */
export interface Call {
  readonly id: string;
  readonly path: string;
  /** `read`, `write`, `list`, `stat`, `make directory`, `remove`. */
  readonly verb: string;
  readonly archive?: boolean;
  readonly parents?: boolean;
}

/** Why a helper run failed, as a typed error; waits for its end if `exit` is not given. */
export async function failure(
  run: HelperRun,
  call: Call,
  signal: AbortSignal | undefined,
  exit?: ExecExitStatus,
): Promise<Error> {
  const status = exit ?? await run.finish();
  if (signal?.aborted) return signal.reason;
  const { id, path, verb } = call;
  const where = `${path} in sandbox ${id}`;
  if (status.message !== "") {
    return new FailedPreconditionError(
      `Cannot ${verb} ${where} as its file helper could not run: ${status.message}`,
    );
  }
  if (status.signal !== "") {
    return new Error(`Cannot ${verb} ${where}: the file helper was killed by SIG${status.signal}`);
  }
  const parent = posix.dirname(path);
  const stderr = (await run.stderr).trim();
  switch (status.exitCode) {
    case EXIT.notFound:
      if (verb === "write" || verb === "make directory") {
        return new NotFoundError(
          `Cannot ${verb} ${where} as directory ${parent} does not exist`,
        );
      }
      return new NotFoundError(`File ${path} not found in sandbox ${id}`);
    case EXIT.notDir:
      if (verb === "list") {
        return new FailedPreconditionError(`Cannot list ${where} as it is not a directory`);
      }
      if (call.archive) {
        return new FailedPreconditionError(
          `Cannot extract an archive into ${where} as it is not a directory`,
        );
      }
      return new FailedPreconditionError(
        `Cannot ${verb} ${where} as a parent of it is not a directory`,
      );
    case EXIT.isDir:
      return new FailedPreconditionError(
        verb === "read"
          ? `Cannot read ${where} as it is a directory; read it as an archive`
          : `Cannot ${verb} ${where} as it is a directory`,
      );
    case EXIT.exists:
      return call.parents
        ? new FailedPreconditionError(
          `Cannot ${verb} ${where} as it exists and is not a directory`,
        )
        : new AlreadyExistsError(`Cannot ${verb} ${where} as it already exists`);
    case EXIT.notEmpty:
      return new FailedPreconditionError(
        `Cannot ${verb} ${where} as it is a directory that is not empty; remove it recursively`,
      );
    case EXIT.badArchive:
      if (!call.archive) break;
      return new FailedPreconditionError(`Cannot extract the archive into ${where}: ${stderr}`);
    case EXIT.replacesDir:
      return new FailedPreconditionError(`Cannot extract the archive into ${where}: ${stderr}`);
    case EXIT.sizeMismatch:
      return new Error(`Cannot ${verb} ${where}: the sandbox got other than the bytes sent`);
  }
  return new FailedPreconditionError(
    `Cannot ${verb} ${where}: ${stderr || `its file helper ended with ${status.exitCode}`}`,
  );
}
