// Property test of RamDevice.readLoan: random writes, discards, write zeroes and copies run
// while random loans are taken and given back. Every loan must keep exactly the bytes the
// device held when it was taken (a lent chunk is copied on write, never modified), reads must
// always match a byte model of the device, and once every loan is back no chunk is still
// counted as lent. TSBLK_PROPERTY_RUNS scales the run count as for the other property tests
// (default 2000 → 50 runs here), TSBLK_PROPERTY_SEED replays.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RamDevice } from '../src/devices/ram.js';
import { SPARSE_CHUNK_BYTES } from '../src/devices/sparse-store.js';
import { readFully } from '../src/block/io.js';
import type { ReadLoan } from '../src/block/device.js';

const CHUNK = SPARSE_CHUNK_BYTES;
const LBS = 512;
const RUNS = Math.max(10, Math.ceil(Number(process.env.TSBLK_PROPERTY_RUNS ?? 2000) / 40));
const SEED = process.env.TSBLK_PROPERTY_SEED ? Number(process.env.TSBLK_PROPERTY_SEED) : undefined;

type Kind = 'write' | 'discard' | 'writeZeroes' | 'copy' | 'lend' | 'release';

const fraction = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  fc.constantFrom(0, 0.5, 0.999999),
);
const opArb = fc.record({
  kind: fc.constantFrom<Kind>('write', 'write', 'discard', 'writeZeroes', 'copy', 'lend', 'lend', 'release'),
  f: fraction,
  g: fraction,
  blocks: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })),
  fill: fc.integer({ min: 1, max: 255 }),
  noUnmap: fc.boolean(),
});

const worldArb = fc.record({
  chunks: fc.integer({ min: 1, max: 3 }),
  extraBlocks: fc.integer({ min: 0, max: 7 }),
  ops: fc.array(opArb, { maxLength: 24 }),
});

function joined(loan: ReadLoan): Buffer {
  return Buffer.concat(loan.buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
}

describe('RamDevice.readLoan (property)', () => {
  it('loans keep the bytes of the moment they were taken; the device matches its model', async () => {
    await fc.assert(
      fc.asyncProperty(worldArb, async (w) => {
        const size = w.chunks * CHUNK + w.extraBlocks * LBS;
        const blocks = size / LBS;
        const dev = new RamDevice({ name: 'ram-loan', size, logicalBlockSize: LBS });
        const model = Buffer.alloc(size);
        const loans: Array<{ loan: ReadLoan; expect: Buffer }> = [];
        const span = (f: number, n: number) => {
          const at = Math.min(Math.floor(f * blocks), blocks - 1);
          return { offset: at * LBS, length: Math.min(n, blocks - at) * LBS };
        };
        for (const op of w.ops) {
          const r = span(op.f, op.blocks);
          switch (op.kind) {
            case 'write': {
              const data = Buffer.alloc(r.length, op.fill);
              data[0] = op.fill ^ 0x5a; // not uniform, so a misplaced piece shows
              await dev.write(r.offset, data);
              data.copy(model, r.offset);
              break;
            }
            case 'discard':
              await dev.discard(r.offset, r.length);
              model.fill(0, r.offset, r.offset + r.length);
              break;
            case 'writeZeroes':
              await dev.writeZeroes(r.offset, r.length, { noUnmap: op.noUnmap });
              model.fill(0, r.offset, r.offset + r.length);
              break;
            case 'copy': {
              const dst = span(op.g, op.blocks);
              const len = Math.min(r.length, dst.length);
              await dev.copy(dev, [{ src: r.offset, dst: dst.offset, len }], { allowEmulation: false });
              Buffer.from(model.subarray(r.offset, r.offset + len)).copy(model, dst.offset);
              break;
            }
            case 'lend': {
              const loan = await dev.readLoan(r.offset, r.length);
              assert.ok(loan, 'RAM lends its chunks');
              const expect = Buffer.from(model.subarray(r.offset, r.offset + r.length));
              assert.ok(joined(loan).equals(expect), `loan at ${r.offset}+${r.length} holds the data`);
              loans.push({ loan, expect });
              break;
            }
            case 'release': {
              const i = Math.floor(op.f * loans.length);
              const l = loans.splice(i, 1)[0];
              l?.loan.release();
              break;
            }
          }
          for (const { loan, expect } of loans)
            assert.ok(joined(loan).equals(expect), 'a loan never changes');
        }
        const back = Buffer.alloc(size);
        await readFully(dev, 0, back);
        assert.ok(back.equals(model), 'device matches the model');
        for (const { loan } of loans) {
          loan.release();
          loan.release(); // twice is harmless
        }
        assert.equal(dev.lentChunks, 0, 'every chunk given back');
        await dev.close();
      }),
      { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });

  it('checks a loan like a read: out of range, unaligned, closed', async () => {
    const dev = new RamDevice({ name: 'ram-loan', size: CHUNK, logicalBlockSize: LBS });
    await assert.rejects(dev.readLoan(CHUNK - LBS, 2 * LBS), { code: 'ERANGE' });
    await assert.rejects(dev.readLoan(1, LBS), { code: 'EINVAL' });
    const empty = await dev.readLoan(0, 0);
    assert.deepEqual(empty?.buffers.length, 0);
    await dev.close();
    await assert.rejects(dev.readLoan(0, LBS), { code: 'EBADF' });
  });
});
