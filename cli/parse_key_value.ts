/**
 * `KEY=VALUE` syntax for `--env` and `--label`.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/** Options for {@linkcode parseKeyValue}. */
export interface ParseKeyValueOptions {
  /** The flag the value came from, e.g. `--label`, for the error message. */
  readonly flag?: string;
}

/**
 * Splits `KEY=VALUE` at the first `=`; the value may be empty or contain more
 * `=` signs, the key may not be empty.
 *
 * @throws {UsageError} when there is no `=` or nothing before it.
 */
export function parseKeyValue(value: string, opts: ParseKeyValueOptions = {}): [string, string] {
  const eq = value.indexOf("=");
  if (eq <= 0) {
    const where = opts.flag === undefined ? "" : ` for ${opts.flag}`;
    throw new UsageError(`Expected KEY=VALUE${where}, got "${value}"`);
  }
  return [value.slice(0, eq), value.slice(eq + 1)];
}
