// Property test of RamDevice.blockStatus: after random writes, discards and write zeroes,
// every answer (asked again from where the last one ended) covers the requested range in
// order, with positive, block-aligned extents; every extent marked zero reads back as
// zeroes; and every block holding a non-zero byte lies in a data extent (checked against a
// byte model of the device). TSBLK_PROPERTY_RUNS scales the run count as for the other
// property tests (default 2000 → 50 runs here), TSBLK_PROPERTY_SEED replays.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RamDevice } from '../src/devices/ram.js';
import { SPARSE_CHUNK_BYTES } from '../src/devices/sparse-store.js';
import { readFully } from '../src/block/io.js';
import type { BlockStatusExtent } from '../src/block/device.js';

const CHUNK = SPARSE_CHUNK_BYTES;
const RUNS = Math.max(10, Math.ceil(Number(process.env.TSBLK_PROPERTY_RUNS ?? 2000) / 40));
const SEED = process.env.TSBLK_PROPERTY_SEED ? Number(process.env.TSBLK_PROPERTY_SEED) : undefined;

type Op =
  | { kind: 'write'; at: number; blocks: number; fill: number }
  | { kind: 'discard'; at: number; blocks: number }
  | { kind: 'writeZeroes'; at: number; blocks: number; noUnmap: boolean };

/** Offsets are fractions of the device, so they land near chunk edges and the last block often. */
const fraction = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  fc.constantFrom(0, 0.25, 0.5, 0.999999),
);
const opArb: fc.Arbitrary<{ op: Op['kind']; f: number; blocks: number; fill: number; noUnmap: boolean }> =
  fc.record({
    op: fc.constantFrom('write', 'write', 'discard', 'writeZeroes') as fc.Arbitrary<Op['kind']>,
    f: fraction,
    blocks: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })),
    fill: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 255 })),
    noUnmap: fc.boolean(),
  });

const worldArb = fc.record({
  lbs: fc.constantFrom(512 as const, 4096 as const),
  // 1 to 4 chunks, plus some blocks so the last chunk may be short.
  chunks: fc.integer({ min: 1, max: 4 }),
  extraBlocks: fc.integer({ min: 0, max: 7 }),
  ops: fc.array(opArb, { maxLength: 12 }),
  queries: fc.array(fc.tuple(fraction, fraction), { minLength: 1, maxLength: 4 }),
});

async function collect(dev: RamDevice, offset: number, length: number): Promise<BlockStatusExtent[]> {
  const lbs = dev.limits.logicalBlockSize;
  const out: BlockStatusExtent[] = [];
  let pos = offset;
  while (pos < offset + length) {
    const left = offset + length - pos;
    const got = await dev.blockStatus(pos, left);
    assert.ok(got.length >= 1, 'at least one extent');
    let covered = 0;
    for (const e of got) {
      assert.ok(Number.isSafeInteger(e.length) && e.length > 0, `positive length ${e.length}`);
      assert.equal(e.length % lbs, 0, `length ${e.length} is a multiple of ${lbs}`);
      assert.ok(!e.hole || e.zero, 'a RAM hole reads as zeroes');
      covered += e.length;
      out.push(e);
    }
    assert.ok(covered <= left, `answer ${covered} within the ${left} asked`);
    assert.ok(covered >= Math.min(lbs, left), 'at least one block');
    pos += covered;
  }
  return out;
}

describe('property: RamDevice blockStatus', () => {
  it(`${RUNS} random sequences: answers cover the range; zero extents read as zeroes`, async () => {
    await fc.assert(
      fc.asyncProperty(worldArb, async (w) => {
        const lbs = w.lbs;
        const size = w.chunks * CHUNK + w.extraBlocks * lbs;
        const blocks = size / lbs;
        const dev = new RamDevice({ size, logicalBlockSize: lbs });
        const model = Buffer.alloc(size);
        for (const o of w.ops) {
          const at = Math.min(blocks - 1, Math.floor(o.f * blocks)) * lbs;
          const len = Math.min(o.blocks * lbs, size - at);
          if (o.op === 'write') {
            const buf = Buffer.alloc(len, o.fill);
            await dev.write(at, buf);
            model.fill(o.fill, at, at + len);
          } else if (o.op === 'discard') {
            await dev.discard(at, len);
            model.fill(0, at, at + len);
          } else {
            await dev.writeZeroes(at, len, { noUnmap: o.noUnmap });
            model.fill(0, at, at + len);
          }
        }
        for (const [a, b] of [[0, 1] as const, ...w.queries]) {
          const first = Math.min(blocks - 1, Math.floor(Math.min(a, b) * blocks));
          const last = Math.min(blocks, Math.max(first + 1, Math.ceil(Math.max(a, b) * blocks)));
          const offset = first * lbs;
          const length = (last - first) * lbs;
          const extents = await collect(dev, offset, length);
          let pos = offset;
          for (const e of extents) {
            if (e.zero) {
              const buf = Buffer.alloc(e.length, 0xee);
              await readFully(dev, pos, buf);
              assert.ok(
                buf.every((x) => x === 0),
                `zero extent ${pos}+${e.length} reads as zeroes`,
              );
              assert.ok(
                model.subarray(pos, pos + e.length).every((x) => x === 0),
                `the model agrees at ${pos}+${e.length}`,
              );
            }
            pos += e.length;
          }
          assert.equal(pos, offset + length);
        }
      }),
      { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });
});
