/**
 * The compact durations of the tables (a sandbox's AGE, a token's EXPIRES
 * and CREATED).
 *
 * @module
 */

/**
 * A whole number of seconds, compactly: `45s`, `3m20s` under ten minutes,
 * `42m`, `2h5m` under ten hours, `15h`, `3d4h` under ten days, then `12d`.
 * Negative counts as 0.
 */
export function compactDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 10) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 24) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 10) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  return `${d}d`;
}
