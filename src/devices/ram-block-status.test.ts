import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { RamDevice } from './ram.js';
import { SparseStore, SPARSE_CHUNK_BYTES } from './sparse-store.js';
import { BlockError } from '../block/errors.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const CHUNK = SPARSE_CHUNK_BYTES;

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });

describe('RamDevice blockStatus', () => {
  it('an empty device is one hole that reads as zeroes', async () => {
    const dev = new RamDevice({ size: GiB });
    assert.deepEqual(await dev.blockStatus(0, GiB), [hole(GiB)]);
    assert.deepEqual(await dev.blockStatus(GiB - 512, 512), [hole(512)]);
  });

  it('a block written at the last block of the device makes its chunk data', async () => {
    const dev = new RamDevice({ size: GiB });
    await dev.write(GiB - 512, Buffer.alloc(512, 0xab));
    assert.deepEqual(await dev.blockStatus(0, GiB), [hole(GiB - CHUNK), data(CHUNK)]);
    assert.deepEqual(await dev.blockStatus(GiB - 512, 512), [data(512)]);
    assert.deepEqual(await dev.blockStatus(GiB - CHUNK - 4096, 8192), [hole(4096), data(4096)]);
  });

  it('a device whose size is not a multiple of the chunk ends with a short data extent', async () => {
    const size = CHUNK + 4096;
    const dev = new RamDevice({ size, logicalBlockSize: 4096 });
    await dev.write(size - 4096, Buffer.alloc(4096, 1));
    assert.deepEqual(await dev.blockStatus(0, size), [hole(CHUNK), data(4096)]);
  });

  it('a partial chunk write makes the whole chunk data; ranges inside a chunk are cut to the range', async () => {
    const dev = new RamDevice({ size: 8 * CHUNK });
    await dev.write(CHUNK + 100 * 512, Buffer.alloc(4096, 7));
    assert.deepEqual(await dev.blockStatus(0, 3 * CHUNK), [hole(CHUNK), data(CHUNK), hole(CHUNK)]);
    assert.deepEqual(await dev.blockStatus(CHUNK + 512, 4096), [data(4096)]);
    assert.deepEqual(await dev.blockStatus(CHUNK / 2, CHUNK), [hole(CHUNK / 2), data(CHUNK / 2)]);
  });

  it('adjacent allocated chunks merge into one extent, written in any order', async () => {
    const dev = new RamDevice({ size: 8 * CHUNK });
    await dev.write(4 * CHUNK, Buffer.alloc(512, 1));
    await dev.write(2 * CHUNK, Buffer.alloc(512, 1));
    await dev.write(3 * CHUNK + 512, Buffer.alloc(512, 1));
    assert.deepEqual(await dev.blockStatus(0, 8 * CHUNK), [
      hole(2 * CHUNK),
      data(3 * CHUNK),
      hole(3 * CHUNK),
    ]);
  });

  it('discard and writeZeroes free chunks back to holes; writeZeroes with noUnmap keeps data', async () => {
    const dev = new RamDevice({ size: 4 * CHUNK });
    await dev.write(0, Buffer.alloc(4 * CHUNK, 0x5a));
    await dev.discard(0, CHUNK); // a whole chunk
    await dev.writeZeroes(CHUNK, CHUNK); // a whole chunk, unmapped
    await dev.writeZeroes(2 * CHUNK, CHUNK, { noUnmap: true }); // zeroes, still allocated
    await dev.discard(3 * CHUNK, 4096); // part of a chunk that still holds data
    assert.deepEqual(await dev.blockStatus(0, 4 * CHUNK), [hole(2 * CHUNK), data(2 * CHUNK)]);
    // The rest of the last chunk zeroed piecewise: it becomes all zero and is freed.
    await dev.discard(3 * CHUNK + 4096, CHUNK - 4096);
    assert.deepEqual(await dev.blockStatus(0, 4 * CHUNK), [hole(2 * CHUNK), data(CHUNK), hole(CHUNK)]);
  });

  it('a copied hole stays a hole and copied data is data', async () => {
    const dev = new RamDevice({ size: 4 * CHUNK });
    await dev.write(0, Buffer.alloc(CHUNK, 3));
    await dev.write(3 * CHUNK, Buffer.alloc(CHUNK, 3));
    await dev.copy(
      dev,
      [
        { src: 0, dst: CHUNK, len: CHUNK },
        { src: 2 * CHUNK, dst: 3 * CHUNK, len: CHUNK },
      ],
      { allowEmulation: false },
    );
    assert.deepEqual(await dev.blockStatus(0, 4 * CHUNK), [data(2 * CHUNK), hole(2 * CHUNK)]);
  });

  it('a 1 TiB device with 3 chunks answers the whole range exactly', async (t) => {
    const dev = new RamDevice({ size: TiB });
    await dev.write(0, Buffer.alloc(512, 1));
    await dev.write(TiB / 2 + 4096, Buffer.alloc(512, 1));
    await dev.write(TiB - 512, Buffer.alloc(512, 1));
    const expected = [
      data(CHUNK),
      hole(TiB / 2 - CHUNK),
      data(CHUNK),
      hole(TiB / 2 - 2 * CHUNK),
      data(CHUNK),
    ];
    const t0 = performance.now();
    const got = await dev.blockStatus(0, TiB);
    t.diagnostic(`answer took ${(performance.now() - t0).toFixed(3)} ms`);
    assert.deepEqual(got, expected);
  });

  // Tests do not assert on time (the machine may be loaded), so speed is checked by size: a
  // 4 PiB device has 2^32 chunk slots, which a walk over the range could not finish within
  // the timeout; the sorted index visits only the 3 allocated chunks.
  it('a 4 PiB device answers without walking its 2^32 chunk slots', { timeout: 20_000 }, async () => {
    const size = 4 * 1024 * TiB;
    const dev = new RamDevice({ size });
    await dev.write(size - 512, Buffer.alloc(512, 1));
    await dev.write(CHUNK, Buffer.alloc(512, 1));
    await dev.write(size / 4, Buffer.alloc(512, 1));
    for (let i = 0; i < 100; i++)
      assert.deepEqual(await dev.blockStatus(0, size), [
        hole(CHUNK),
        data(CHUNK),
        hole(size / 4 - 2 * CHUNK),
        data(CHUNK),
        hole(size - size / 4 - 2 * CHUNK),
        data(CHUNK),
      ]);
  });

  it('checks the range like every operation: past the end is ERANGE, misaligned EINVAL, closed EBADF', async () => {
    const dev = new RamDevice({ size: CHUNK });
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (err) {
        assert.ok(BlockError.is(err));
        return err.code;
      }
      return 'ok';
    };
    assert.equal(await code(dev.blockStatus(CHUNK - 512, 1024)), 'ERANGE');
    assert.equal(await code(dev.blockStatus(100, 512)), 'EINVAL');
    assert.deepEqual(await dev.blockStatus(0, 0), []);
    await dev.close();
    assert.equal(await code(dev.blockStatus(0, 512)), 'EBADF');
  });
});

describe('SparseStore.extents', () => {
  it('reports holes and chunks with a small chunk size, cut to the asked range', () => {
    const s = new SparseStore(10 * 4096, 4096);
    s.write(4096 + 10, Buffer.from([1]));
    s.write(5 * 4096, Buffer.alloc(8192, 2));
    assert.deepEqual(s.extents(0, 10 * 4096), [
      hole(4096),
      data(4096),
      hole(3 * 4096),
      data(8192),
      hole(3 * 4096),
    ]);
    assert.deepEqual(s.extents(6 * 4096 + 512, 1024), [data(1024)]);
    assert.deepEqual(s.extents(2 * 4096, 4096), [hole(4096)]);
    s.clear();
    assert.deepEqual(s.extents(0, 10 * 4096), [hole(10 * 4096)]);
  });

  it('keeps its index sorted through allocations and frees in any order', () => {
    const s = new SparseStore(64 * 512, 512);
    const order = [9, 3, 40, 0, 63, 17, 3, 22];
    for (const i of order) s.write(i * 512, Buffer.from([1]));
    s.zero(17 * 512, 512);
    s.zero(40 * 512, 512);
    const live = [0, 3, 9, 22, 63];
    const got = s.extents(0, 64 * 512);
    let pos = 0;
    const dataChunks: number[] = [];
    for (const e of got) {
      if (!e.hole) for (let c = pos / 512; c < (pos + e.length) / 512; c++) dataChunks.push(c);
      pos += e.length;
    }
    assert.equal(pos, 64 * 512);
    assert.deepEqual(dataChunks, live);
    assert.equal(s.allocatedChunks, live.length);
  });
});
