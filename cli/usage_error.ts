/**
 * The error for bad command-line input.
 *
 * @module
 */

/** Options for {@linkcode UsageError}. */
export interface UsageErrorOptions {
  /** The one-line usage of the command that was misused, for the caller to print. */
  readonly usage?: string;
}

/**
 * The command line could not be understood: an unknown flag, a flag without its
 * value, a missing argument, a value with the wrong syntax. Commands exit with
 * status 2 on it after printing the message and a one-line usage.
 */
export class UsageError extends Error {
  /** The one-line usage of the misused command, when the thrower knows it. */
  readonly usage: string | undefined;

  /** Creates the error; `message` names the offending flag or argument. */
  constructor(message: string, opts: UsageErrorOptions = {}) {
    super(message);
    this.name = "UsageError";
    this.usage = opts.usage;
  }
}
