import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { RamDevice } from './ram.js';
import { SPARSE_CHUNK_BYTES } from './sparse-store.js';
import type { BlockDevice, CopyRange } from '../block/device.js';
import { BlockError } from '../block/errors.js';
import { DEFAULT_COPY_LIMITS } from '../block/limits.js';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;
const CHUNK = SPARSE_CHUNK_BYTES;

async function readAll(dev: RamDevice, offset: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len, 0xee);
  await dev.read(offset, buf);
  return buf;
}

function isZero(buf: Uint8Array): boolean {
  return buf.every((b) => b === 0);
}

async function rejectsWith(p: Promise<unknown>, code: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('RamDevice sparseness', () => {
  it('a 1 TiB device costs only the chunk written at its last block', async () => {
    const dev = new RamDevice({ size: TiB });
    assert.equal(dev.allocatedBytes(), 0);
    const last = TiB - 512;
    const data = randomBytes(512);
    await dev.write(last, data);
    assert.equal(dev.allocatedBytes(), CHUNK);
    assert.deepEqual(await readAll(dev, last, 512), data);
    assert.ok(isZero(await readAll(dev, last - CHUNK, CHUNK)), 'the block before the chunk is a hole');
    assert.ok(isZero(await readAll(dev, 0, 4096)), 'unwritten bytes read as zeroes');
    assert.deepEqual(dev.details(), { allocatedBytes: CHUNK, chunkBytes: CHUNK });
    await dev.close();
  });

  it('a device whose size is not a whole number of chunks allocates only the short last chunk', async () => {
    const dev = new RamDevice({ size: CHUNK + 4096 });
    await dev.write(CHUNK + 3584, Buffer.alloc(512, 7));
    assert.equal(dev.allocatedBytes(), 4096);
    assert.deepEqual(await readAll(dev, CHUNK + 3584, 512), Buffer.alloc(512, 7));
  });

  it('4096-byte logical blocks: the last block reads back', async () => {
    const dev = new RamDevice({ size: 16 * MiB, logicalBlockSize: 4096 });
    const data = randomBytes(4096);
    await dev.write(16 * MiB - 4096, data);
    assert.deepEqual(await readAll(dev, 16 * MiB - 4096, 4096), data);
    await rejectsWith(dev.write(512, Buffer.alloc(512)), 'EINVAL');
  });
});

describe('RamDevice read and write', () => {
  it('reads back a write that spans chunk boundaries', async () => {
    const dev = new RamDevice({ size: 8 * MiB });
    const data = randomBytes(2 * MiB + 1024);
    await dev.write(CHUNK - 512, data);
    assert.deepEqual(await readAll(dev, CHUNK - 512, data.length), data);
    assert.equal(dev.allocatedBytes(), 4 * CHUNK);
    // Bytes around the write are untouched.
    assert.ok(isZero(await readAll(dev, CHUNK - 1024, 512)));
    assert.ok(isZero(await readAll(dev, CHUNK - 512 + data.length, 512)));
  });

  it('a write does not keep a reference to the caller buffer', async () => {
    const dev = new RamDevice({ size: MiB });
    const data = Buffer.alloc(CHUNK, 1);
    await dev.write(0, data);
    data.fill(2);
    assert.deepEqual(await readAll(dev, 0, 512), Buffer.alloc(512, 1));
  });
});

describe('RamDevice discard and write zeroes', () => {
  it('discard frees whole chunks and zeroes partial ones', async () => {
    const dev = new RamDevice({ size: 8 * MiB });
    const data = randomBytes(4 * MiB);
    await dev.write(0, data);
    assert.equal(dev.allocatedBytes(), 4 * CHUNK);
    // Half of chunk 0, all of chunk 1, 512 bytes of chunk 2.
    await dev.discard(CHUNK / 2, CHUNK / 2 + CHUNK + 512);
    assert.equal(dev.allocatedBytes(), 3 * CHUNK, 'chunk 1 was freed');
    const after = await readAll(dev, 0, 4 * MiB);
    assert.deepEqual(after.subarray(0, CHUNK / 2), data.subarray(0, CHUNK / 2));
    assert.ok(isZero(after.subarray(CHUNK / 2, 2 * CHUNK + 512)));
    assert.deepEqual(after.subarray(2 * CHUNK + 512), data.subarray(2 * CHUNK + 512));
  });

  it('a chunk zeroed piece by piece is freed once all zero', async () => {
    const dev = new RamDevice({ size: 4 * MiB });
    await dev.write(CHUNK + 4096, Buffer.alloc(8192, 9));
    assert.equal(dev.allocatedBytes(), CHUNK);
    await dev.discard(CHUNK + 4096, 4096);
    assert.equal(dev.allocatedBytes(), CHUNK, 'still holds data');
    await dev.discard(CHUNK + 8192, 4096);
    assert.equal(dev.allocatedBytes(), 0);
  });

  it('writeZeroes frees chunks, and keeps them allocated with noUnmap', async () => {
    const dev = new RamDevice({ size: 4 * MiB });
    const last = 4 * MiB - 512;
    await dev.write(0, randomBytes(4 * MiB));
    await dev.writeZeroes(0, 2 * MiB, { noUnmap: true });
    assert.equal(dev.allocatedBytes(), 4 * CHUNK);
    assert.ok(isZero(await readAll(dev, 0, 2 * MiB)));
    await dev.writeZeroes(2 * MiB, 2 * MiB);
    assert.equal(dev.allocatedBytes(), 2 * CHUNK);
    assert.ok(isZero(await readAll(dev, last, 512)));
  });

  it('discard of the whole device in one request, and the limits say discarded blocks read as zeroes', async () => {
    const dev = new RamDevice({ size: 64 * MiB });
    await dev.write(64 * MiB - 512, Buffer.alloc(512, 3));
    await dev.discard(0, 64 * MiB);
    assert.equal(dev.allocatedBytes(), 0);
    assert.ok(isZero(await readAll(dev, 64 * MiB - 512, 512)));
    assert.equal(dev.limits.discard?.zeroesData, true);
    assert.equal(dev.limits.discard?.granularity, 512);
  });
});

describe('RamDevice copy offload', () => {
  it('A→B and B→C in one request: C gets the old B', async () => {
    const dev = new RamDevice({ size: 16 * MiB });
    const a = Buffer.alloc(2 * MiB, 0xaa);
    const b = Buffer.alloc(2 * MiB, 0xbb);
    await dev.write(0, a);
    await dev.write(2 * MiB, b);
    const r = await dev.copy(
      dev,
      [
        { src: 0, dst: 2 * MiB, len: 2 * MiB },
        { src: 2 * MiB, dst: 4 * MiB, len: 2 * MiB },
      ],
      { allowEmulation: true },
    );
    assert.deepEqual(r, { offloaded: 4 * MiB, emulated: 0 });
    assert.deepEqual(await readAll(dev, 2 * MiB, 2 * MiB), a);
    assert.deepEqual(await readAll(dev, 4 * MiB, 2 * MiB), b);
  });

  it('swaps two ranges in one request', async () => {
    const dev = new RamDevice({ size: 4 * MiB });
    const a = randomBytes(MiB + 512);
    const b = randomBytes(MiB + 512);
    await dev.write(0, a);
    await dev.write(2 * MiB, b);
    await dev.copy(
      dev,
      [
        { src: 0, dst: 2 * MiB, len: a.length },
        { src: 2 * MiB, dst: 0, len: b.length },
      ],
      { allowEmulation: false },
    );
    assert.deepEqual(await readAll(dev, 0, b.length), b);
    assert.deepEqual(await readAll(dev, 2 * MiB, a.length), a);
  });

  it('a range overlapping itself moves like memmove, in both directions', async () => {
    const dev = new RamDevice({ size: 8 * MiB });
    const data = randomBytes(3 * MiB);
    await dev.write(MiB, data);
    await dev.copy(dev, [{ src: MiB, dst: MiB + 4096, len: 3 * MiB }], { allowEmulation: true });
    assert.deepEqual(await readAll(dev, MiB + 4096, 3 * MiB), data);
    await dev.copy(dev, [{ src: MiB + 4096, dst: MiB - 512, len: 3 * MiB }], { allowEmulation: true });
    assert.deepEqual(await readAll(dev, MiB - 512, 3 * MiB), data);
  });

  it('copies between offsets that are not chunk aligned, up to the last block', async () => {
    const size = 8 * MiB;
    const dev = new RamDevice({ size });
    const data = randomBytes(2 * MiB);
    await dev.write(512, data);
    await dev.copy(dev, [{ src: 512, dst: size - 2 * MiB, len: 2 * MiB }], { allowEmulation: true });
    assert.deepEqual(await readAll(dev, size - 2 * MiB, 2 * MiB), data);
  });

  it('copying out of a hole leaves zeroes and allocates nothing', async () => {
    const dev = new RamDevice({ size: 16 * MiB });
    await dev.write(8 * MiB, randomBytes(2 * MiB)); // chunks 8 and 9 hold data
    assert.equal(dev.allocatedBytes(), 2 * CHUNK);
    // A whole-chunk hole onto chunk 8 frees it; a partial hole onto chunk 9 zeroes part of it.
    await dev.copy(
      dev,
      [
        { src: 0, dst: 8 * MiB, len: MiB },
        { src: 2 * MiB, dst: 9 * MiB, len: 4096 },
        { src: 4 * MiB, dst: 12 * MiB, len: MiB },
      ],
      { allowEmulation: true },
    );
    assert.equal(dev.allocatedBytes(), CHUNK);
    assert.ok(isZero(await readAll(dev, 8 * MiB, MiB + 4096)));
    assert.ok(!isZero(await readAll(dev, 9 * MiB + 4096, 4096)));
    assert.ok(isZero(await readAll(dev, 12 * MiB, MiB)));
  });

  it('a source half hole, half data copies both halves', async () => {
    const dev = new RamDevice({ size: 8 * MiB });
    const data = randomBytes(MiB);
    await dev.write(MiB, data);
    await dev.write(4 * MiB, Buffer.alloc(2 * MiB, 0xff));
    await dev.copy(dev, [{ src: MiB / 2, dst: 4 * MiB + 512, len: MiB }], { allowEmulation: true });
    const got = await readAll(dev, 4 * MiB, 2 * MiB);
    assert.ok(got.subarray(0, 512).every((b) => b === 0xff));
    assert.ok(isZero(got.subarray(512, 512 + MiB / 2)));
    assert.deepEqual(got.subarray(512 + MiB / 2, 512 + MiB), data.subarray(0, MiB / 2));
    assert.ok(got.subarray(512 + MiB).every((b) => b === 0xff));
  });

  it('matches a read-everything-then-write-in-order model for random overlapping requests', () => {
    const size = 4 * MiB;
    const block = 512;
    const blocks = size / block;
    const range = fc
      .record({ src: fc.nat(blocks - 1), dst: fc.nat(blocks - 1), len: fc.integer({ min: 1, max: 3000 }) })
      .map(({ src, dst, len }) => {
        const n = Math.min(len, blocks - src, blocks - dst);
        return { src: src * block, dst: dst * block, len: n * block };
      });
    return fc.assert(
      fc.asyncProperty(fc.array(range, { minLength: 1, maxLength: 6 }), fc.nat(), async (ranges, seed) => {
        const dev = new RamDevice({ size });
        // Some chunks hold data, some are holes.
        const model = Buffer.alloc(size);
        for (let c = 0; c < size / CHUNK; c++) {
          if ((seed >> c) & 1) continue;
          const data = Buffer.alloc(CHUNK, (seed + c) & 0xff);
          for (let i = 0; i < CHUNK; i += 4096) data[i] = (i / 4096 + c) & 0xff;
          data.copy(model, c * CHUNK);
          await dev.write(c * CHUNK, data);
        }
        const sources = ranges.map((r: CopyRange) => Buffer.from(model.subarray(r.src, r.src + r.len)));
        ranges.forEach((r, i) => sources[i]!.copy(model, r.dst));
        await dev.copy(dev, ranges, { allowEmulation: true });
        assert.ok((await readAll(dev, 0, size)).equals(model));
      }),
      { numRuns: Number(process.env.TSBLK_PROPERTY_RUNS ?? 100) },
    );
  });

  it("a subclass that copies from another device gets that device's bytes, read before any write", async () => {
    class Pooled extends RamDevice {
      override canCopyFrom(source: BlockDevice): boolean {
        return source instanceof RamDevice;
      }
    }
    const src = new RamDevice({ size: 4 * MiB });
    const dst = new Pooled({ size: 4 * MiB });
    const data = randomBytes(MiB);
    await src.write(MiB, data);
    const r = await dst.copy(src, [{ src: MiB, dst: 3 * MiB, len: MiB }], { allowEmulation: true });
    assert.deepEqual(r, { offloaded: MiB, emulated: 0 });
    assert.deepEqual(await readAll(dst, 3 * MiB, MiB), data);
    assert.equal(src.allocatedBytes(), CHUNK);
  });

  it('default copy limits are DEFAULT_COPY_LIMITS, a copy of its own object', () => {
    const dev = new RamDevice({ size: MiB });
    assert.deepEqual(dev.limits.copy, { ...DEFAULT_COPY_LIMITS });
    assert.notEqual(dev.limits.copy, DEFAULT_COPY_LIMITS);
    const tuned = new RamDevice({ size: MiB, copy: { maxRanges: 2 } });
    assert.equal(tuned.limits.copy?.maxRanges, 2);
    assert.equal(tuned.limits.copy?.maxBytes, DEFAULT_COPY_LIMITS.maxBytes);
  });
});

describe('RamDevice errors', () => {
  it('a read-only device refuses writes, discard, write zeroes and copies with EPERM', async () => {
    const dev = new RamDevice({ size: MiB, readOnly: true });
    await rejectsWith(dev.write(0, Buffer.alloc(512)), 'EPERM');
    await rejectsWith(dev.discard(0, 512), 'EPERM');
    await rejectsWith(dev.writeZeroes(0, 512), 'EPERM');
    await rejectsWith(dev.copy(dev, [{ src: 0, dst: 512, len: 512 }], { allowEmulation: true }), 'EPERM');
    assert.ok(isZero(await readAll(dev, MiB - 512, 512)));
    await dev.flush();
  });

  it('the base class checks bounds, alignment and transfer size', async () => {
    const dev = new RamDevice({ size: MiB, maxTransferBytes: 64 * 1024 });
    await rejectsWith(dev.read(MiB, Buffer.alloc(512)), 'ERANGE');
    await rejectsWith(dev.write(MiB - 512, Buffer.alloc(1024)), 'ERANGE');
    await rejectsWith(dev.read(100, Buffer.alloc(512)), 'EINVAL');
    await rejectsWith(dev.write(0, Buffer.alloc(100)), 'EINVAL');
    await rejectsWith(dev.read(0, Buffer.alloc(128 * 1024)), 'E2BIG');
    await rejectsWith(dev.discard(MiB - 512, 1024), 'ERANGE');
    assert.equal(dev.allocatedBytes(), 0, 'no failed request stored anything');
  });

  it('copy limits: another device, disabled offload, too many ranges, too long a range', async () => {
    const dev = new RamDevice({
      size: 4 * MiB,
      copy: { maxRanges: 2, maxRangeBytes: MiB, maxBytes: 2 * MiB },
    });
    const other = new RamDevice({ size: 4 * MiB });
    const one = [{ src: 0, dst: MiB, len: 512 }];
    assert.equal(dev.canCopyFrom(other), false);
    assert.equal(dev.canCopyFrom(dev), true);
    await rejectsWith(dev.copy(other, one, { allowEmulation: true }), 'EOPNOTSUPP');
    const three = [0, 1, 2].map((i) => ({ src: i * 512, dst: MiB + i * 512, len: 512 }));
    await rejectsWith(dev.copy(dev, three, { allowEmulation: true }), 'E2BIG');
    await rejectsWith(
      dev.copy(dev, [{ src: 0, dst: 2 * MiB, len: MiB + 512 }], { allowEmulation: true }),
      'E2BIG',
    );
    await rejectsWith(dev.copy(dev, [{ src: 0, dst: 2 * MiB, len: 0 }], { allowEmulation: true }), 'EINVAL');
    await rejectsWith(
      dev.copy(dev, [{ src: 0, dst: 4 * MiB - 512, len: 1024 }], { allowEmulation: true }),
      'ERANGE',
    );
    const noCopy = new RamDevice({ size: MiB, copy: false });
    assert.equal(noCopy.limits.copy, undefined);
    assert.equal(noCopy.canCopyFrom(noCopy), false);
    await rejectsWith(noCopy.copy(noCopy, one, { allowEmulation: true }), 'EOPNOTSUPP');
  });

  it('bad options fail with EINVAL', () => {
    assert.throws(() => new RamDevice({ size: 1000 }), { code: 'EINVAL' });
    assert.throws(() => new RamDevice({ size: 4096, logicalBlockSize: 1024 as 512 }), { code: 'EINVAL' });
    assert.throws(() => new RamDevice({ size: 4096, maxTransferBytes: 100 }), { code: 'EINVAL' });
    assert.throws(() => new RamDevice({ size: 4096, copy: { maxBytes: 1000 } }), { code: 'EINVAL' });
  });

  it('a closed device fails with EBADF and has freed its memory', async () => {
    const dev = new RamDevice({ size: MiB, name: 'r-close' });
    await dev.write(0, Buffer.alloc(512, 1));
    await dev.close();
    assert.equal(dev.allocatedBytes(), 0);
    await rejectsWith(dev.read(0, Buffer.alloc(512)), 'EBADF');
    await dev.close(); // twice is fine
  });
});
