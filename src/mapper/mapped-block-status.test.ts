import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MappedDevice } from './mapped-device.js';
import { LinearTarget } from './linear.js';
import { RamDevice, type RamDeviceOptions } from '../devices/ram.js';
import { NullDevice } from '../devices/null.js';
import { FaultDevice } from '../devices/fault.js';
import type { BlockDevice, BlockStatusExtent } from '../block/device.js';
import { BlockError, ErrorCode } from '../block/errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });

const lin = (start: number, length: number, device: BlockDevice, offset = 0) =>
  new LinearTarget({ start, length, device, offset });

/** A RAM device whose blockStatus answer is scripted: `answer(offset, length)`. */
class ScriptedRam extends RamDevice {
  constructor(
    options: RamDeviceOptions,
    readonly answer: (offset: number, length: number) => BlockStatusExtent[],
  ) {
    super(options);
  }
  protected override async doBlockStatus(offset: number, length: number) {
    return this.answer(offset, length);
  }
}

describe('MappedDevice blockStatus', () => {
  it('a linear target at an offset asks its device for the mapped range', async () => {
    const ram = new RamDevice({ name: 'ram', size: 8 * MiB });
    await ram.write(3 * MiB + 512, Buffer.alloc(512, 1));
    await ram.write(8 * MiB - 512, Buffer.alloc(512, 1)); // outside the mapping
    const dm = new MappedDevice({ targets: [lin(0, 4 * MiB, ram, 2 * MiB)] });
    assert.deepEqual(await dm.blockStatus(0, 4 * MiB), [hole(MiB), data(MiB), hole(2 * MiB)]);
    assert.deepEqual(await dm.blockStatus(4 * MiB - 512, 512), [hole(512)]);
    assert.deepEqual(await dm.blockStatus(MiB + 4096, 4096), [data(4096)]);
  });

  it('concatenates the answers of several targets in order, merging equal neighbours', async () => {
    const a = new RamDevice({ name: 'a', size: 4 * MiB });
    const b = new RamDevice({ name: 'b', size: 4 * MiB });
    const zero = new NullDevice({ name: 'zero', size: 4 * MiB }); // what a zero target maps onto
    await a.write(MiB, Buffer.alloc(512, 1));
    await b.write(4 * MiB - 512, Buffer.alloc(512, 1)); // the last block of the mapping
    const dm = new MappedDevice({
      targets: [lin(0, 2 * MiB, a, 0), lin(2 * MiB, 2 * MiB, zero, 0), lin(4 * MiB, 2 * MiB, b, 2 * MiB)],
    });
    assert.deepEqual(await dm.blockStatus(0, 6 * MiB), [
      hole(MiB),
      data(MiB),
      hole(2 * MiB + MiB),
      data(MiB),
    ]);
    assert.deepEqual(await dm.blockStatus(6 * MiB - 512, 512), [data(512)]);
    // A range starting inside the second target.
    assert.deepEqual(await dm.blockStatus(3 * MiB, 2 * MiB), [hole(2 * MiB)]);
  });

  it('stops at a component that answers a prefix; asking again from there goes on', async () => {
    const short = new ScriptedRam({ name: 'short', size: MiB }, () => [hole(4096)]);
    const ram = new RamDevice({ name: 'ram', size: MiB });
    await ram.write(0, Buffer.alloc(512, 1));
    const dm = new MappedDevice({ targets: [lin(0, MiB, short), lin(MiB, MiB, ram)] });
    assert.deepEqual(await dm.blockStatus(0, 2 * MiB), [hole(4096)]);
    assert.deepEqual(await dm.blockStatus(MiB - 4096, MiB + 4096), [hole(4096), data(MiB)]);
  });

  it('a component with smaller blocks is widened to whole mapping blocks', async () => {
    // 'fine' has 512-byte blocks and reports data in the second 512 bytes only; 'coarse'
    // has 4096-byte blocks, so the mapping does too.
    const fine = new ScriptedRam({ name: 'fine', size: 64 * KiB }, (_o, len) => [
      hole(512),
      data(512),
      hole(len - 1024),
    ]);
    const coarse = new RamDevice({ name: 'coarse', size: 64 * KiB, logicalBlockSize: 4096 });
    const dm = new MappedDevice({ targets: [lin(0, 64 * KiB, fine), lin(64 * KiB, 64 * KiB, coarse)] });
    assert.equal(dm.limits.logicalBlockSize, 4096);
    assert.deepEqual(await dm.blockStatus(0, 128 * KiB), [data(4096), hole(124 * KiB)]);
  });

  it("fails with the component's error", async () => {
    const ram = new RamDevice({ name: 'ram', size: MiB });
    const fault = new FaultDevice(ram);
    const dm = new MappedDevice({ targets: [lin(0, MiB, fault)] });
    fault.down(ErrorCode.EIO);
    await assert.rejects(dm.blockStatus(0, MiB), (err: unknown) => BlockError.is(err) && err.code === 'EIO');
    fault.up();
    assert.deepEqual(await dm.blockStatus(0, MiB), [hole(MiB)]);
  });
});
