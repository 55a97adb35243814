import assert from "node:assert/strict";
import { parseExpire, UsageError } from "../../cli/mod.ts";

const NOW = 1_700_000_000;

function throwsUsage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("parseExpire() counts a duration from now", () => {
  assert.equal(parseExpire("90s", NOW), NOW + 90);
  assert.equal(parseExpire("1h30m", NOW), NOW + 90 * 60);
});

Deno.test("parseExpire() rounds a duration up to whole seconds", () => {
  assert.equal(parseExpire("250ms", NOW), NOW + 1);
  assert.equal(parseExpire("90s", NOW + 0.75), NOW + 90);
});

Deno.test("parseExpire() takes a plain integer as unix seconds, past ones included", () => {
  assert.equal(parseExpire("1800000000", NOW), 1_800_000_000);
  assert.equal(parseExpire("5", NOW), 5);
});

Deno.test("parseExpire() names another flag in its error when told", () => {
  throwsUsage(
    () => parseExpire("soon", NOW, { flag: "--until" }),
    'Invalid --until "soon": use a duration such as 90s or 1h30m, unix seconds, or 0 for never',
  );
});

Deno.test("parseExpire() takes 0 as never", () => {
  assert.equal(parseExpire("0", NOW), 0);
});

Deno.test("parseExpire() rejects what is neither a duration nor an integer", () => {
  for (const value of ["", "soon", "-5", "5x", "1.5", "2030-01-01"]) {
    throwsUsage(
      () => parseExpire(value, NOW),
      `Invalid --expire "${value}": use a duration such as 90s or 1h30m, unix seconds, or 0 for never`,
    );
  }
});
