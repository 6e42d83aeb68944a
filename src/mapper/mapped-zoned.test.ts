import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MappedDevice } from './mapped-device.js';
import { LinearTarget } from './linear.js';
import { readAll } from './testing/model.js';
import { RamDevice } from '../devices/ram.js';
import { ZonedDevice } from '../devices/zoned.js';
import type { BlockDevice } from '../block/device.js';
import { BlockError, ZoneError } from '../block/errors.js';
import { ZoneState, ZoneType } from '../block/zone.js';
import { issueCopy } from '../block/copy.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function rejectsWith(p: Promise<unknown>, code: string, check?: (err: BlockError) => void) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    check?.(err);
    return true;
  });
}

const lin = (start: number, length: number, device: BlockDevice, offset = 0) =>
  new LinearTarget({ start, length, device, offset });

/**
 * za: 4 zones of 1 MiB, zone 0 conventional; zb: 4 sequential zones. The mapping takes za's
 * zones 0-2 and all of zb: mapped zones 0 (conventional), 1-2 (za), 3-6 (zb).
 */
function zonedPair() {
  const za = new ZonedDevice(new RamDevice({ name: 'ra', size: 4 * MiB }), {
    name: 'za',
    zoneSize: MiB,
    conventionalZones: 1,
    maxOpenZones: 2,
  });
  const zb = new ZonedDevice(new RamDevice({ name: 'rb', size: 4 * MiB }), {
    name: 'zb',
    zoneSize: MiB,
    maxOpenZones: 4,
  });
  const dm = new MappedDevice({
    name: 'dmz',
    targets: [lin(0, 3 * MiB, za, 0), lin(3 * MiB, 4 * MiB, zb, 0)],
  });
  return { za, zb, dm };
}

describe('MappedDevice over zoned components', () => {
  it('is zoned with the components’ geometry and the smallest open limit', () => {
    const { dm } = zonedPair();
    const z = dm.limits.zoned!;
    assert.ok(z);
    assert.equal(z.zoneSize, MiB);
    assert.equal(z.zoneCapacity, MiB);
    assert.equal(z.nrZones, 7);
    assert.equal(z.maxOpenZones, 2);
    assert.equal(dm.kind, 'linear');
  });

  it('reports zones with translated starts and write pointers', async () => {
    const { zb, dm } = zonedPair();
    await zb.write(MiB, randomBytes(8 * KiB)); // zb zone 1 = mapped zone 4
    const zones = await dm.reportZones(0);
    assert.equal(zones.length, 7);
    assert.deepEqual(
      zones.map((z) => z.start),
      [0, 1, 2, 3, 4, 5, 6].map((i) => i * MiB),
    );
    assert.equal(zones[0]!.type, ZoneType.CONVENTIONAL);
    assert.equal(zones[1]!.type, ZoneType.SEQUENTIAL_WRITE_REQUIRED);
    assert.equal(zones[4]!.writePointer, 4 * MiB + 8 * KiB);
    assert.equal(zones[4]!.state, ZoneState.IMPLICIT_OPEN);
    const some = await dm.reportZones(4 * MiB + 4096, 2);
    assert.deepEqual(
      some.map((z) => z.start),
      [4 * MiB, 5 * MiB],
    );
    const last = await dm.reportZones(dm.size - 512);
    assert.deepEqual(
      last.map((z) => z.start),
      [6 * MiB],
    );
  });

  it('writes follow write pointers on the component; a write off the pointer fails with the zone error', async () => {
    const { za, dm } = zonedPair();
    const data = randomBytes(16 * KiB);
    await dm.write(MiB, data);
    assert.equal((await za.reportZones(MiB, 1))[0]!.writePointer, MiB + 16 * KiB);
    assert.deepEqual(await readAll(dm, MiB, 16 * KiB), data);
    await rejectsWith(dm.write(MiB + 64 * KiB, data), 'EIO', (e) =>
      assert.equal(e.zone, ZoneError.ZONE_INVALID_WRITE),
    );
    // The last zone of the mapping is zb's last zone.
    await dm.write(6 * MiB, data.subarray(0, 512));
    assert.deepEqual(await readAll(dm, 6 * MiB, 512), data.subarray(0, 512));
  });

  it('zone append returns the mapped offset; open, close, finish and reset pass through', async () => {
    const { zb, dm } = zonedPair();
    assert.equal(await dm.zoneAppend(5 * MiB, randomBytes(4096)), 5 * MiB);
    assert.equal(await dm.zoneAppend(5 * MiB, randomBytes(4096)), 5 * MiB + 4096);
    await dm.openZone(3 * MiB);
    assert.equal((await zb.reportZones(0, 1))[0]!.state, ZoneState.EXPLICIT_OPEN);
    await dm.closeZone(3 * MiB);
    assert.equal((await zb.reportZones(0, 1))[0]!.state, ZoneState.EMPTY);
    await dm.finishZone(6 * MiB);
    assert.equal((await dm.reportZones(6 * MiB, 1))[0]!.state, ZoneState.FULL);
    await dm.resetZone(6 * MiB);
    assert.equal((await zb.reportZones(3 * MiB, 1))[0]!.state, ZoneState.EMPTY);
    await rejectsWith(dm.openZone(3 * MiB + 4096), 'EINVAL');
    await rejectsWith(dm.zoneAppend(0, Buffer.alloc(512)), 'EINVAL'); // conventional zone
  });

  it('resetAllZones resets the mapped zones only', async () => {
    const { za, zb, dm } = zonedPair();
    await dm.write(MiB, randomBytes(4096));
    await dm.write(4 * MiB, randomBytes(4096));
    await za.write(3 * MiB, randomBytes(4096)); // za zone 3 is not in the mapping
    await dm.resetAllZones();
    const zones = await dm.reportZones(MiB);
    assert.ok(
      zones.every((z) => z.state === ZoneState.EMPTY),
      JSON.stringify(zones),
    );
    assert.equal((await za.reportZones(3 * MiB, 1))[0]!.writePointer, 3 * MiB + 4096, 'unmapped zone kept');
    assert.equal((await zb.reportZones(MiB, 1))[0]!.state, ZoneState.EMPTY);
  });

  it('copies within and across zoned components land at the write pointers', async () => {
    const { za, dm } = zonedPair();
    const data = randomBytes(64 * KiB);
    await dm.write(MiB, data);
    const r = await issueCopy(dm, dm, [
      { src: MiB, dst: 2 * MiB, len: 64 * KiB }, // za → za: offloaded
      { src: MiB, dst: 3 * MiB, len: 64 * KiB }, // za → zb: emulated
    ]);
    assert.equal(r.offloaded, 64 * KiB);
    assert.equal(r.emulated, 64 * KiB);
    assert.deepEqual(await readAll(dm, 2 * MiB, 64 * KiB), data);
    assert.deepEqual(await readAll(dm, 3 * MiB, 64 * KiB), data);
    assert.equal((await za.reportZones(2 * MiB, 1))[0]!.writePointer, 2 * MiB + 64 * KiB);
  });

  it('ranges overwriting each other’s sources across zoned components are read first, or refused when offload is forced', async () => {
    const { za, zb, dm } = zonedPair();
    const conv = randomBytes(256 * KiB);
    await dm.write(0, conv); // mapped zone 0: za's conventional zone
    const ranges = [
      { src: 0, dst: 3 * MiB, len: 64 * KiB }, // za → zb, reads what the next range writes
      { src: 128 * KiB, dst: 0, len: 64 * KiB }, // za → za (conventional zone)
    ];
    await rejectsWith(dm.copy(dm, ranges, { allowEmulation: false }), 'EOPNOTSUPP', (e) =>
      assert.match(e.message, /za → zb\); nothing was copied/),
    );
    assert.deepEqual(await readAll(za, 0, 256 * KiB), conv);
    assert.equal((await zb.reportZones(0, 1))[0]!.state, ZoneState.EMPTY);
    const r = await dm.copy(dm, ranges, { allowEmulation: true });
    assert.deepEqual(r, { offloaded: 0, emulated: 128 * KiB });
    assert.deepEqual(await readAll(dm, 3 * MiB, 64 * KiB), conv.subarray(0, 64 * KiB), 'the old bytes');
    assert.deepEqual(await readAll(dm, 0, 64 * KiB), conv.subarray(128 * KiB, 192 * KiB));
  });

  it('is not zoned when a target is not whole zones, geometries differ, or a component is conventional', () => {
    const za = new ZonedDevice(new RamDevice({ size: 4 * MiB }), { zoneSize: MiB });
    const zSmall = new ZonedDevice(new RamDevice({ size: 4 * MiB }), { zoneSize: 512 * KiB });
    const ram = new RamDevice({ size: 4 * MiB });
    assert.equal(new MappedDevice({ targets: [lin(0, MiB, za, 512 * KiB)] }).limits.zoned, undefined);
    assert.equal(new MappedDevice({ targets: [lin(0, MiB + 512 * KiB, za, 0)] }).limits.zoned, undefined);
    assert.equal(
      new MappedDevice({ targets: [lin(0, MiB, za), lin(MiB, MiB, zSmall)] }).limits.zoned,
      undefined,
    );
    assert.equal(
      new MappedDevice({ targets: [lin(0, MiB, za), lin(MiB, MiB, ram)] }).limits.zoned,
      undefined,
    );
    assert.ok(new MappedDevice({ targets: [lin(0, MiB, za, 3 * MiB)] }).limits.zoned);
  });

  it('a runt last zone may end the mapping', async () => {
    const zr = new ZonedDevice(new RamDevice({ size: 2 * MiB + 512 * KiB }), { zoneSize: MiB });
    const dm = new MappedDevice({ targets: [lin(0, MiB + 512 * KiB, zr, MiB)] });
    assert.equal(dm.limits.zoned?.nrZones, 2);
    const zones = await dm.reportZones(0);
    assert.deepEqual(
      zones.map((z) => [z.start, z.size]),
      [
        [0, MiB],
        [MiB, 512 * KiB],
      ],
    );
  });

  it('a conventional mapping rejects zone operations with EOPNOTSUPP', async () => {
    const dm = new MappedDevice({ targets: [lin(0, MiB, new RamDevice({ size: MiB }))] });
    await rejectsWith(dm.reportZones(0), 'EOPNOTSUPP');
    await rejectsWith(dm.resetAllZones(), 'EOPNOTSUPP');
  });
});
