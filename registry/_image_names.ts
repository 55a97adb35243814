/**
 * Image references as the registry holds them: normalized through a bounded
 * cache, since every heartbeat and request names images and most name the
 * same few, and compared so an unchanged heartbeat skips normalizing.
 *
 * The cache is a plain map owned by the registry and passed in, rather than
 * an object of its own, so that allocate, which normalizes the image of
 * every request, reaches it without going through one more object.
 *
 * @module
 */
import { normalizeImage } from "./normalize_image.ts";

/** Normalized image references kept at most; beyond it the oldest entry goes. */
const IMAGE_CACHE_LIMIT = 1024;

/** {@linkcode normalizeImage} of `ref`, remembered in `cache` (raw reference -> normalized). */
export function normalizeCached(cache: Map<string, string>, ref: string): string {
  let normalized = cache.get(ref);
  if (normalized === undefined) {
    normalized = normalizeImage(ref);
    if (cache.size >= IMAGE_CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
    cache.set(ref, normalized);
  }
  return normalized;
}

/** The normalized set of `refs`, empty references left out. */
export function normalizeAll(cache: Map<string, string>, refs: readonly string[]): Set<string> {
  const images = new Set<string>();
  for (const ref of refs) {
    if (ref !== "") images.add(normalizeCached(cache, ref));
  }
  return images;
}

/** True when `a` and `b` hold the same strings in the same order. */
export function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return false;
  }
  return true;
}

/** True when `a` and `b` hold the same strings. */
export function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) {
    if (!b.has(x)) return false;
  }
  return true;
}
