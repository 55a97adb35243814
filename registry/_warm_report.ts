/**
 * Reading an agent's reported warm counts: validation, normalization, and
 * telling a heartbeat's counts from what the registry holds.
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** The raw warm report of an agent as it last sent it, kept to skip re-reading an unchanged one. */
export interface RawWarm {
  readonly keys: readonly string[];
  readonly counts: readonly number[];
}

/** No warm containers, as last sent by an agent that sent none. */
export const NO_RAW_WARM: RawWarm = { keys: [], counts: [] };

/** Whitespace or a control character: no image reference holds one. */
const NOT_IN_IMAGE_NAME = /[\s\p{Cc}]/u;

/** True when `raw` holds exactly the keys and counts of `last`, in the same order. */
export function sameRawWarm(
  raw: Readonly<Record<string, number>> | undefined,
  last: RawWarm,
): boolean {
  const keys = last.keys;
  if (raw === undefined) return keys.length === 0;
  const counts = last.counts;
  let i = 0;
  for (const key in raw) {
    if (i === keys.length || keys[i] !== key || counts[i] !== raw[key]) return false;
    i++;
  }
  return i === keys.length;
}

/** A copy of `raw` to compare later heartbeats with. */
export function rawWarmOf(raw: Readonly<Record<string, number>> | undefined): RawWarm {
  if (raw === undefined) return NO_RAW_WARM;
  const keys = Object.keys(raw);
  return { keys, counts: keys.map((key) => raw[key]) };
}

/**
 * Checks a warm report and returns its counts by normalized image (spellings
 * of one image added up, zero counts kept).
 *
 * @throws {InvalidArgumentError} an empty image name or one with whitespace
 *   or control characters (field `warm`), or a count that is not a
 *   non-negative integer (field `warm[IMAGE]`, the image as sent).
 */
export function readWarm(
  raw: Readonly<Record<string, number>> | undefined,
  normalize: (ref: string) => string,
): Map<string, number> {
  const counts = new Map<string, number>();
  if (raw === undefined) return counts;
  for (const ref in raw) {
    if (ref === "") throw new InvalidArgumentError("warm", "image name must not be empty");
    if (NOT_IN_IMAGE_NAME.test(ref)) {
      throw new InvalidArgumentError(
        "warm",
        `image name must not contain whitespace or control characters, got ${JSON.stringify(ref)}`,
      );
    }
    const count = raw[ref];
    if (!Number.isInteger(count) || count < 0) {
      throw new InvalidArgumentError(
        `warm[${ref}]`,
        `must be a non-negative integer, got ${count}`,
      );
    }
    const image = normalize(ref);
    counts.set(image, (counts.get(image) ?? 0) + count);
  }
  return counts;
}

/**
 * How a reported warm map differs from the one held: `"none"`; `"counts"`
 * when only counts or zero-count images differ (the set of images with a
 * warm container is the same); `"set"` when that set differs.
 */
export function warmChange(
  report: ReadonlyMap<string, number>,
  held: ReadonlyMap<string, number>,
): "none" | "counts" | "set" {
  let changed = report.size !== held.size;
  let positive = 0;
  for (const [image, count] of report) {
    const had = held.get(image);
    if (had !== count) changed = true;
    if (count > 0) {
      if (had === undefined || had === 0) return "set";
      positive++;
    }
  }
  if (positive !== countPositive(held)) return "set";
  return changed ? "counts" : "none";
}

function countPositive(counts: ReadonlyMap<string, number>): number {
  let n = 0;
  for (const count of counts.values()) if (count > 0) n++;
  return n;
}
