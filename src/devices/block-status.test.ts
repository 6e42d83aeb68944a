// blockStatus on the null, fault-injecting and zoned devices (RAM: ram-block-status.test.ts,
// files: file-block-status.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice, BlockStatusExtent } from '../block/device.js';
import { readFully } from '../block/io.js';
import { BlockError, ErrorCode } from '../block/errors.js';
import { FaultDevice } from './fault.js';
import { NullDevice } from './null.js';
import { RamDevice } from './ram.js';
import { ZonedDevice, ZONED_MAX_STATUS_EXTENTS } from './zoned.js';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });

async function rejectsWith(p: Promise<unknown>, code: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** Every extent marked zero reads back as zeroes. */
async function checkZeroExtents(dev: BlockDevice, offset: number, extents: readonly BlockStatusExtent[]) {
  let pos = offset;
  for (const e of extents) {
    if (e.zero) {
      const buf = Buffer.alloc(e.length, 0xee);
      await readFully(dev, pos, buf);
      assert.ok(
        buf.every((b) => b === 0),
        `extent at ${pos}+${e.length} says zero`,
      );
    }
    pos += e.length;
  }
}

/** A RAM device that answers at most `max` bytes per blockStatus call (a device that answers a prefix). */
class ShortAnswerRam extends RamDevice {
  constructor(
    size: number,
    readonly max: number,
  ) {
    super({ size });
  }
  protected override async doBlockStatus(offset: number, length: number) {
    return super.doBlockStatus(offset, Math.min(length, this.max));
  }
}

describe('NullDevice blockStatus', () => {
  it('is one hole that reads as zeroes, also after writes and at the last block of 1 TiB', async () => {
    const dev = new NullDevice({ size: TiB });
    await dev.write(TiB - 512, Buffer.alloc(512, 1));
    assert.deepEqual(await dev.blockStatus(0, TiB), [hole(TiB)]);
    assert.deepEqual(await dev.blockStatus(TiB - 512, 512), [hole(512)]);
    await checkZeroExtents(dev, TiB - 512, await dev.blockStatus(TiB - 512, 512));
  });
});

describe('FaultDevice blockStatus', () => {
  it('passes through to the inner device', async () => {
    const ram = new RamDevice({ size: 4 * MiB });
    await ram.write(4 * MiB - 512, Buffer.alloc(512, 1));
    const dev = new FaultDevice(ram);
    assert.deepEqual(await dev.blockStatus(0, 4 * MiB), [hole(3 * MiB), data(MiB)]);
    assert.deepEqual(await dev.blockStatus(4 * MiB - 512, 512), [data(512)]);
  });

  it('read rules neither fail it nor count it; a down device fails it', async () => {
    const ram = new RamDevice({ size: 4 * MiB });
    const dev = new FaultDevice(ram, { rules: [{ ops: ['read'], offset: 0, length: 4 * MiB }] });
    assert.deepEqual(await dev.blockStatus(0, 4 * MiB), [hole(4 * MiB)]);
    assert.equal(dev.rules[0]!.matched, 0);
    await rejectsWith(dev.read(0, Buffer.alloc(512)), ErrorCode.EIO);
    dev.down();
    await rejectsWith(dev.blockStatus(0, 512), ErrorCode.ENODEV);
    dev.up();
    assert.deepEqual(await dev.blockStatus(0, 512), [hole(512)]);
  });
});

describe('ZonedDevice blockStatus', () => {
  // Zone 0 conventional, 1-4 sequential (capacity 3 MiB), 5 a 2 MiB runt. RAM chunks are 1 MiB.
  const ZS = 4 * MiB;
  const SIZE = 5 * ZS + 2 * MiB;
  function setup(backing: RamDevice = new RamDevice({ size: SIZE })) {
    const dev = new ZonedDevice(backing, { zoneSize: ZS, zoneCapacity: 3 * MiB, conventionalZones: 1 });
    return { backing, dev };
  }

  it('an empty device: conventional zones ask the backing, sequential zones are holes', async () => {
    const { dev } = setup();
    assert.deepEqual(await dev.blockStatus(0, SIZE), [hole(SIZE)]);
    assert.deepEqual(await dev.blockStatus(SIZE - 512, 512), [hole(512)]);
  });

  it('data below write pointers comes from the backing, zeroes above them are holes', async () => {
    const { backing, dev } = setup();
    await dev.write(MiB, Buffer.alloc(512, 1)); // conventional
    await dev.write(ZS, Buffer.alloc(MiB + MiB / 2, 2)); // zone 1: wp 5.5 MiB
    await dev.writeZeroes(2 * ZS, MiB); // zone 2: wp 9 MiB, the backing unmaps it
    await dev.write(2 * ZS + MiB, Buffer.alloc(512, 3)); // zone 2: wp 9 MiB + 512
    await dev.finishZone(3 * ZS); // zone 3: FULL with no data
    await dev.setZoneCondition(4 * ZS, 'offline'); // zone 4: reads fail, reported as data
    await dev.write(SIZE - 2 * MiB, Buffer.alloc(512, 4)); // the runt zone: wp at its start + 512
    // The backing holds data above zone 1's write pointer (its chunk 5 is allocated whole):
    assert.deepEqual(await backing.blockStatus(ZS, ZS), [data(2 * MiB), hole(2 * MiB)]);
    const got = await dev.blockStatus(0, SIZE);
    assert.deepEqual(got, [
      hole(MiB),
      data(MiB), // the conventional chunk, as the backing says
      hole(2 * MiB),
      data(MiB + MiB / 2), // zone 1 below its write pointer
      hole(ZS - MiB - MiB / 2 + MiB), // zone 1 above it, then zone 2's unmapped zeroes
      data(512), // zone 2's written block (the backing is asked only up to the write pointer)
      hole(ZS - MiB - 512 + ZS), // the rest of zone 2, and zone 3 (FULL, nothing written)
      data(ZS + 512), // zone 4 is offline, then the runt zone's first block
      hole(2 * MiB - 512),
    ]);
    assert.deepEqual(await dev.blockStatus(SIZE - 512, 512), [hole(512)]);
    // Zero extents read as zeroes (skipping the offline zone, which cannot be read).
    await checkZeroExtents(dev, 0, got.slice(0, 7));
    await rejectsWith(dev.read(4 * ZS, Buffer.alloc(512)), ErrorCode.EIO);
  });

  it('a reset zone is a hole again', async () => {
    const { dev } = setup();
    await dev.write(ZS, Buffer.alloc(MiB, 2));
    assert.deepEqual(await dev.blockStatus(ZS, ZS), [data(MiB), hole(3 * MiB)]);
    await dev.resetZone(ZS);
    assert.deepEqual(await dev.blockStatus(ZS, ZS), [hole(ZS)]);
  });

  it('stops where the backing answers a prefix, and the caller can ask again from there', async () => {
    const { dev } = setup(new ShortAnswerRam(SIZE, 512));
    await dev.write(0, Buffer.alloc(4096, 1));
    assert.deepEqual(await dev.blockStatus(0, SIZE), [data(512)]);
    // From zone 1 on, the sequential zones need no backing answer.
    assert.deepEqual(await dev.blockStatus(ZS, SIZE - ZS), [hole(SIZE - ZS)]);
  });

  it('answers at most ZONED_MAX_STATUS_EXTENTS extents', async () => {
    // 2048 sequential zones of 512 KiB; every other zone has one block written.
    const zs = 512 * 1024;
    const backing = new RamDevice({ size: 2048 * zs });
    const dev = new ZonedDevice(backing, { zoneSize: zs });
    for (let z = 0; z < 2048; z += 2) await dev.write(z * zs, Buffer.alloc(512, 1));
    const got = await dev.blockStatus(0, dev.size);
    assert.equal(got.length, ZONED_MAX_STATUS_EXTENTS);
    assert.deepEqual(got.slice(0, 3), [data(512), hole(zs - 512 + zs), data(512)]);
    assert.ok(got.reduce((n, e) => n + e.length, 0) < dev.size);
  });
});
