/**
 * Size syntax for flags such as `--memory` and `--log-max-bytes`: the one
 * parser for sizes in fsb.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/** Options for {@linkcode parseSize}. */
export interface ParseSizeOptions {
  /** The flag the value came from, e.g. `--memory`, for the error message. */
  readonly flag?: string;
}

const UNIT_BYTES: Readonly<Record<string, number>> = {
  "": 1,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

const SIZE = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?$/;

/**
 * Parses a byte count: plain bytes (`1048576`) or a number with a binary
 * unit (`64Mi`, `1.5Gi`, `512Ki`), into whole bytes (rounded down). Rules on
 * the value (a minimum, a maximum) are the caller's.
 *
 * @throws {UsageError} when `value` is not such a size.
 *
 * @example
 * ```ts
 * import { parseSize } from "./parse_size.ts";
 * parseSize("64Mi"); // 67108864
 * ```
 */
export function parseSize(value: string, opts: ParseSizeOptions = {}): number {
  const m = SIZE.exec(value);
  const bytes = m === null ? NaN : Math.floor(Number(m[1]) * UNIT_BYTES[m[2] ?? ""]);
  if (!Number.isSafeInteger(bytes)) {
    const what = opts.flag === undefined ? "size" : `${opts.flag} value`;
    throw new UsageError(
      `invalid ${what} "${value}": use bytes or a number with Ki, Mi, Gi or Ti, e.g. 64Mi`,
    );
  }
  return bytes;
}
