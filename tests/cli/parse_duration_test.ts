import assert from "node:assert/strict";
import { parseDuration, UsageError } from "../../cli/mod.ts";

function throwsUsage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("parseDuration() reads single units", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("90s"), 90 * 1000);
  assert.equal(parseDuration("5m"), 5 * 60 * 1000);
  assert.equal(parseDuration("2h"), 2 * 60 * 60 * 1000);
  assert.equal(parseDuration("1d"), 24 * 60 * 60 * 1000);
});

Deno.test("parseDuration() adds up combined units", () => {
  assert.equal(parseDuration("1h30m"), (60 + 30) * 60 * 1000);
  assert.equal(parseDuration("1m30s250ms"), 90 * 1000 + 250);
});

Deno.test("parseDuration() takes fractions and rounds to whole milliseconds", () => {
  assert.equal(parseDuration("1.5h"), 90 * 60 * 1000);
  assert.equal(parseDuration("0.0005s"), 1);
});

Deno.test("parseDuration() takes a bare 0", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("0s"), 0);
});

Deno.test("parseDuration() rejects numbers without units, unknown units and junk", () => {
  for (const value of ["", "90", "5x", "m", "1h30", "-5s", " 5s", "5 s", "5S", "1e3s"]) {
    throwsUsage(
      () => parseDuration(value),
      `Invalid duration "${value}": use numbers with units, e.g. 90s, 5m, 1h30m or 250ms`,
    );
  }
});

Deno.test("parseDuration() names the flag in its error when told", () => {
  throwsUsage(
    () => parseDuration("soon", { flag: "--agent-timeout" }),
    'Invalid duration "soon" for --agent-timeout: use numbers with units, e.g. 90s, 5m, 1h30m or 250ms',
  );
});

Deno.test("parseDuration() rejects durations too long to count in milliseconds", () => {
  throwsUsage(
    () => parseDuration("99999999999999999999d"),
    'Invalid duration "99999999999999999999d": use numbers with units, e.g. 90s, 5m, 1h30m or 250ms',
  );
});
