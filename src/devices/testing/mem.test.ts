import { test } from 'node:test';
import assert from 'node:assert/strict';

import { BlockError, CopyError, ErrorCode } from '../../block/errors.js';
import { MemDevice } from './mem.js';

const bytes = (len: number, seed: number) =>
  Uint8Array.from({ length: len }, (_, i) => ((i + seed) % 251) + 1);

async function read(dev: MemDevice, offset: number, len: number) {
  const b = new Uint8Array(len).fill(0xaa);
  await dev.read(offset, b);
  return b;
}

test('mem: unwritten bytes read as zeroes; writes read back, also across chunks and the last block', async () => {
  const dev = new MemDevice({ size: 64 * 1024 });
  assert.deepEqual(await read(dev, 0, 1024), new Uint8Array(1024));
  await dev.write(4096 - 512, bytes(1024, 1));
  await dev.write(dev.size - 512, bytes(512, 2));
  assert.deepEqual(await read(dev, 4096 - 512, 1024), bytes(1024, 1));
  assert.deepEqual(await read(dev, dev.size - 512, 512), bytes(512, 2));
  assert.equal(dev.allocatedChunks, 3);
});

test('mem: discard and write zeroes zero the range and free whole chunks', async () => {
  const dev = new MemDevice({ size: 64 * 1024 });
  await dev.write(0, bytes(8192, 1));
  await dev.discard(0, 4096);
  await dev.writeZeroes(4096, 512);
  assert.equal(dev.allocatedChunks, 1);
  assert.deepEqual(await read(dev, 0, 4608), new Uint8Array(4608));
  assert.deepEqual(await read(dev, 4608, 512), bytes(8192, 1).subarray(4608, 5120));
});

test('mem: copy reads every source before writing; a hook failure reports the prefix', async () => {
  const dev = new MemDevice({ size: 64 * 1024 });
  await dev.write(0, bytes(2048, 1));
  // Range 1 reads what range 0 overwrites: it must see the old bytes.
  await dev.copy(
    dev,
    [
      { src: 0, dst: 1024, len: 1024 },
      { src: 1024, dst: 4096, len: 1024 },
    ],
    { allowEmulation: false },
  );
  assert.deepEqual(await read(dev, 4096, 1024), bytes(2048, 1).subarray(1024));
  assert.deepEqual(await read(dev, 1024, 1024), bytes(2048, 1).subarray(0, 1024));
  dev.hook = (op, offset) => {
    if (op === 'copy' && offset === 8192) throw new BlockError(ErrorCode.EIO, 'injected');
  };
  await assert.rejects(
    dev.copy(
      dev,
      [
        { src: 0, dst: 6144, len: 512 },
        { src: 0, dst: 8192, len: 512 },
      ],
      { allowEmulation: false },
    ),
    (e: unknown) => CopyError.isCopyError(e) && e.code === ErrorCode.EIO && e.completed.join() === '512,0',
  );
  assert.deepEqual(
    dev.log.filter((l) => l.op === 'copy').map((l) => l.offset),
    [1024, 4096, 6144, 8192],
  );
});

test('mem: capabilities can be turned off', () => {
  const dev = new MemDevice({ size: 4096, copy: false, discard: false, writeZeroes: false });
  assert.equal(dev.limits.copy, undefined);
  assert.equal(dev.limits.discard, undefined);
  assert.equal(dev.limits.writeZeroes, undefined);
});
