import { test } from 'node:test';
import assert from 'node:assert/strict';

import { anySourceOverwritten, splitRanges, stronglyConnectedComponents } from './copy-plan.js';

test('splitRanges cuts at the piece size and at destination zone boundaries', () => {
  const [pieces] = splitRanges([{ src: 0, dst: 3072, len: 8192 }], 4096, 4096);
  assert.deepEqual(
    pieces!.map((p) => [p.offsetInRange, p.src, p.dst, p.len]),
    [
      [0, 0, 3072, 1024],
      [1024, 1024, 4096, 4096],
      [5120, 5120, 8192, 3072],
    ],
  );
  const [plain] = splitRanges([{ src: 0, dst: 3072, len: 8192 }], 4096, 0);
  assert.deepEqual(
    plain!.map((p) => p.len),
    [4096, 4096],
  );
});

test('anySourceOverwritten finds a source byte that some destination writes', () => {
  assert.equal(anySourceOverwritten([{ src: 0, dst: 4096, len: 4096 }]), false);
  assert.equal(anySourceOverwritten([{ src: 0, dst: 4095, len: 4096 }]), true);
  assert.equal(
    anySourceOverwritten([
      { src: 0, dst: 8192, len: 512 },
      { src: 8192, dst: 16384, len: 512 },
    ]),
    true,
  );
  assert.equal(
    anySourceOverwritten([
      { src: 0, dst: 8192, len: 512 },
      { src: 8704, dst: 16384, len: 512 },
    ]),
    false,
  );
});

test('stronglyConnectedComponents groups cycles and leaves a chain apart', () => {
  // 0 → 1 → 2 → 0 is a cycle; 3 → 4 is a chain; 5 alone.
  const comp = stronglyConnectedComponents([[1], [2], [0], [4], [], []]);
  assert.equal(comp[0], comp[1]);
  assert.equal(comp[1], comp[2]);
  assert.notEqual(comp[3], comp[4]);
  assert.equal(new Set(comp).size, 4);
  // A long chain does not overflow a stack.
  const n = 100_000;
  const chain = Array.from({ length: n }, (_, i) => (i + 1 < n ? [i + 1] : []));
  assert.equal(new Set(stronglyConnectedComponents(chain)).size, n);
});
