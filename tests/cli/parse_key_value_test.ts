import assert from "node:assert/strict";
import { parseKeyValue, UsageError } from "../../cli/mod.ts";

function throwsUsage(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${err}`);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("parseKeyValue() splits at the first =", () => {
  assert.deepEqual(parseKeyValue("A=b"), ["A", "b"]);
  assert.deepEqual(parseKeyValue("URL=a=b&c=d"), ["URL", "a=b&c=d"]);
});

Deno.test("parseKeyValue() keeps an empty value", () => {
  assert.deepEqual(parseKeyValue("EMPTY="), ["EMPTY", ""]);
});

Deno.test("parseKeyValue() rejects a missing = or an empty key, naming the flag", () => {
  throwsUsage(
    () => parseKeyValue("novalue", { flag: "--env" }),
    'Expected KEY=VALUE for --env, got "novalue"',
  );
  throwsUsage(() => parseKeyValue("=v"), 'Expected KEY=VALUE, got "=v"');
});
