import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NullDevice } from './null.js';
import { BlockError } from '../block/errors.js';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

async function rejectsWith(p: Promise<unknown>, code: string) {
  await assert.rejects(p, (err: unknown) => BlockError.is(err) && err.code === code);
}

describe('NullDevice', () => {
  it('drops writes: the last block of a 1 TiB device reads zeroes after a write', async () => {
    const dev = new NullDevice({ size: TiB });
    assert.equal(dev.kind, 'null');
    await dev.write(TiB - 512, Buffer.alloc(512, 0xab), { fua: true });
    const buf = Buffer.alloc(512, 0xee);
    await dev.read(TiB - 512, buf);
    assert.ok(buf.every((b) => b === 0));
    await dev.flush();
    await dev.close();
  });

  it('discard, write zeroes and copy succeed; a copy reports every byte offloaded', async () => {
    const dev = new NullDevice({ size: 64 * MiB });
    await dev.discard(0, 64 * MiB);
    await dev.writeZeroes(64 * MiB - 4096, 4096, { noUnmap: true });
    const r = await dev.copy(
      dev,
      [
        { src: 0, dst: MiB, len: MiB },
        { src: MiB, dst: 2 * MiB, len: 512 },
      ],
      { allowEmulation: false },
    );
    assert.deepEqual(r, { offloaded: MiB + 512, emulated: 0 });
  });

  it('checks requests like any device', async () => {
    const dev = new NullDevice({ size: MiB, logicalBlockSize: 4096, readOnly: true });
    await rejectsWith(dev.read(512, Buffer.alloc(4096)), 'EINVAL');
    await rejectsWith(dev.read(MiB, Buffer.alloc(4096)), 'ERANGE');
    await rejectsWith(dev.write(0, Buffer.alloc(4096)), 'EPERM');
    const other = new NullDevice({ size: MiB });
    await rejectsWith(
      other.copy(dev, [{ src: 0, dst: 0, len: 4096 }], { allowEmulation: true }),
      'EOPNOTSUPP',
    );
    const noCopy = new NullDevice({ size: MiB, copy: false });
    await rejectsWith(
      noCopy.copy(noCopy, [{ src: 0, dst: 512, len: 512 }], { allowEmulation: true }),
      'EOPNOTSUPP',
    );
    assert.throws(() => new NullDevice({ size: 100 }), { code: 'EINVAL' });
  });
});
