/**
 * The behaviour {@linkcode SandboxFiles} must show on every runtime, as a set
 * of `Deno.test` cases that a runtime's test file registers with a fixture of
 * its own (see files_test.ts for the process runtime's).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SandboxFiles } from "../../agent/files.ts";
import type { Runtime } from "../../agent/runtime.ts";
import { collectExec, execSpec } from "./runtime_contract.ts";
import { dataCases } from "./_files_cases_data.ts";
import { treeCases } from "./_files_cases_tree.ts";
import type { Harness } from "./_files_harness.ts";

export { randomBytes, writeRequests } from "./_files_harness.ts";

const decoder = new TextDecoder();

/** What a runtime's test file hands the contract for one test case. */
export interface FilesFixture {
  readonly runtime: Runtime;
  /** A running sandbox with a file helper. */
  readonly sandboxId: string;
  /** An empty directory for the case, as an absolute path inside the sandbox. */
  readonly dir: string;
  /**
   * Whether paths are confined to the sandbox's own root (containers); false
   * for the process runtime, whose "sandbox" sees the host's files.
   */
  readonly confined: boolean;
  /** Deletes the sandbox and removes the fixture's files. */
  cleanup(): Promise<void>;
}

/**
 * Registers the contract's cases, named `NAME: ...`. `setup` runs once per
 * case and `cleanup` after it, whatever happened.
 */
export function filesContract(name: string, setup: () => Promise<FilesFixture>): void {
  function test(title: string, fn: (h: Harness) => Promise<void>): void {
    Deno.test(`${name}: ${title}`, async () => {
      const fixture = await setup();
      const h: Harness = {
        runtime: fixture.runtime,
        id: fixture.sandboxId,
        dir: fixture.dir,
        confined: fixture.confined,
        files: new SandboxFiles(fixture.runtime),
        filesWith: (opts) => new SandboxFiles(fixture.runtime, opts),
        path: (...parts) => join(fixture.dir, ...parts),
        async sh(script, ...args) {
          const helper = await fixture.runtime.helper(fixture.sandboxId);
          assert.ok(helper !== undefined, "the sandbox has a helper");
          const argv = [...helper, "sh", "-c", script, helper[0], ...args];
          const result = await collectExec(
            await fixture.runtime.exec(fixture.sandboxId, execSpec(argv, { uid: 0, gid: 0 })),
          );
          assert.equal(result.exit.exitCode, 0, decoder.decode(result.stderr));
          return decoder.decode(result.stdout);
        },
      };
      try {
        await fn(h);
      } finally {
        await fixture.cleanup();
      }
    });
  }

  dataCases(test);
  treeCases(test);
}
