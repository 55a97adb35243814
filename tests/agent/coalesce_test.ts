import assert from "node:assert/strict";
import { coalesce } from "../../agent/_coalesce.ts";

function bytes(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

Deno.test("coalesce() joins a steady source's chunks up to maxBytes, bytes in order", async () => {
  async function* source() {
    for (let i = 0; i < 10; i++) yield bytes(100, i);
  }
  const out: Uint8Array[] = [];
  for await (const chunk of coalesce(source(), { maxBytes: 300, lingerMs: 1000 })) out.push(chunk);
  assert.deepEqual(out.map((c) => c.length), [300, 300, 300, 100]);
  const all = out.flatMap((c) => [...c]);
  assert.deepEqual(all, Array.from({ length: 1000 }, (_, i) => Math.floor(i / 100)));
});

Deno.test("coalesce() sends what it holds when the source pauses, without waiting for more", async () => {
  const gate = Promise.withResolvers<void>();
  async function* source() {
    yield bytes(10, 1);
    yield bytes(10, 2);
    await gate.promise;
    yield bytes(10, 3);
  }
  const it = coalesce(source(), { maxBytes: 1_000_000, lingerMs: 1 })[Symbol.asyncIterator]();
  const first = await it.next();
  assert.deepEqual(first.value, new Uint8Array([...bytes(10, 1), ...bytes(10, 2)]));
  gate.resolve();
  assert.deepEqual((await it.next()).value, bytes(10, 3));
  assert.equal((await it.next()).done, true);
});

Deno.test("coalesce() stopped early ends its source", async () => {
  let ended = false;
  async function* source() {
    try {
      for (;;) yield bytes(10, 0);
    } finally {
      ended = true;
    }
  }
  for await (const _ of coalesce(source(), { maxBytes: 50, lingerMs: 1 })) break;
  assert.equal(ended, true);
});
