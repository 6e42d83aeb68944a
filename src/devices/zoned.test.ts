import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import type { BlockDevice, CopyPathBytes, CopyRange, DeviceCopyOptions } from '../block/device.js';
import { BlockError, CopyError, ErrorCode, ZoneError } from '../block/errors.js';
import { ZoneState, ZoneType, type Zone } from '../block/zone.js';
import { issueCopy } from '../block/copy.js';
import { MemDevice, type MemDeviceOptions } from './testing/mem.js';
import { ZonedDevice, type ZonedDeviceOptions } from './zoned.js';

const KiB = 1024;
const ZS = 16 * KiB; // zone size
const CAP = 12 * KiB; // zone capacity
const RUNT = 8 * KiB; // the last zone
const SIZE = 8 * ZS + RUNT; // zones 0-1 conventional, 2-7 sequential, 8 a sequential runt
const Z = (n: number) => n * ZS;

function setup(options: Partial<ZonedDeviceOptions> = {}, mem: Partial<MemDeviceOptions> = {}) {
  const backing = new MemDevice({ name: 'mem', size: SIZE, maxTransferBytes: 64 * KiB, ...mem });
  const dev = new ZonedDevice(backing, {
    name: 'zns',
    zoneSize: ZS,
    zoneCapacity: CAP,
    conventionalZones: 2,
    ...options,
  });
  return { backing, dev };
}

/** Bytes that are never zero, different per seed. */
function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = ((i * 7 + seed * 13) % 251) + 1;
  return b;
}

async function read(dev: ZonedDevice | MemDevice, offset: number, len: number): Promise<Uint8Array> {
  const b = new Uint8Array(len).fill(0xaa); // garbage, so zero-filling is really tested
  await dev.read(offset, b);
  return b;
}

async function zone(dev: ZonedDevice, n: number): Promise<Zone> {
  const [z] = await dev.reportZones(Z(n), 1);
  assert.ok(z);
  return z;
}

async function expectZone(dev: ZonedDevice, n: number, state: ZoneState, writePointer: number) {
  const z = await zone(dev, n);
  assert.deepEqual({ state: z.state, writePointer: z.writePointer }, { state, writePointer }, `zone ${n}`);
}

const zeroes = (len: number) => new Uint8Array(len);

function zoneErr(code: ErrorCode, kind: ZoneError) {
  return (err: unknown) => {
    assert.ok(BlockError.is(err), `not a BlockError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.zone, kind, err.message);
    return true;
  };
}
const INVALID_WRITE = zoneErr(ErrorCode.EIO, ZoneError.ZONE_INVALID_WRITE);
const BOUNDARY = zoneErr(ErrorCode.EIO, ZoneError.ZONE_BOUNDARY_ERROR);
const FULL = zoneErr(ErrorCode.EIO, ZoneError.ZONE_FULL);
const READ_ONLY = zoneErr(ErrorCode.EIO, ZoneError.ZONE_READ_ONLY);
const OFFLINE = zoneErr(ErrorCode.EIO, ZoneError.ZONE_OFFLINE);
const TOO_MANY_OPEN = zoneErr(ErrorCode.ETOOMANYREFS, ZoneError.TOO_MANY_OPEN_ZONES);
const TOO_MANY_ACTIVE = zoneErr(ErrorCode.EOVERFLOW, ZoneError.TOO_MANY_ACTIVE_ZONES);
const BAD_TRANSITION = zoneErr(ErrorCode.EIO, ZoneError.INVALID_ZONE_STATE_TRANSITION);
const CONVENTIONAL_MGMT = zoneErr(ErrorCode.EINVAL, ZoneError.INVALID_ZONE_STATE_TRANSITION);

test('limits and geometry: inherited from the backing, zoned filled in, runt last zone', async () => {
  const { backing, dev } = setup({ maxOpenZones: 3, maxActiveZones: 4 });
  assert.equal(dev.kind, 'zoned');
  assert.equal(dev.size, backing.size);
  assert.equal(dev.limits.logicalBlockSize, 512);
  assert.equal(dev.limits.maxTransferBytes, 64 * KiB);
  assert.deepEqual(dev.limits.zoned, {
    zoneSize: ZS,
    zoneCapacity: CAP,
    nrZones: 9,
    maxOpenZones: 3,
    maxActiveZones: 4,
    maxZoneAppendBytes: 64 * KiB,
  });
  assert.ok(dev.limits.copy && dev.limits.discard && dev.limits.writeZeroes);
  assert.notEqual(dev.limits.copy, backing.limits.copy, 'own copy limits, tunable separately');

  const zones = await dev.reportZones(0);
  assert.equal(zones.length, 9);
  assert.deepEqual(zones[0], {
    start: 0,
    size: ZS,
    capacity: ZS,
    writePointer: ZS,
    type: ZoneType.CONVENTIONAL,
    state: ZoneState.NOT_WP,
  });
  assert.deepEqual(zones[2], {
    start: Z(2),
    size: ZS,
    capacity: CAP,
    writePointer: Z(2),
    type: ZoneType.SEQUENTIAL_WRITE_REQUIRED,
    state: ZoneState.EMPTY,
  });
  // The runt: 8 KiB long, capacity min(12 KiB, 8 KiB).
  assert.deepEqual(zones[8], {
    start: Z(8),
    size: RUNT,
    capacity: RUNT,
    writePointer: Z(8),
    type: ZoneType.SEQUENTIAL_WRITE_REQUIRED,
    state: ZoneState.EMPTY,
  });
  // From the zone containing the offset, at most maxZones.
  const some = await dev.reportZones(Z(3) + 4096, 2);
  assert.deepEqual(
    some.map((z) => z.start),
    [Z(3), Z(4)],
  );
  assert.deepEqual(await dev.reportZones(Z(8) + 512, 10), [zones[8]]);
  assert.deepEqual(await dev.reportZones(0, 0), []);
  assert.equal(dev.details().backing, 'mem');
});

test('capabilities follow the backing: no copy, discard or write zeroes when it has none', () => {
  const { dev } = setup({}, { copy: false, discard: false, writeZeroes: false });
  assert.equal(dev.limits.copy, undefined);
  assert.equal(dev.limits.discard, undefined);
  assert.equal(dev.limits.writeZeroes, undefined);
  assert.equal(dev.canCopyFrom(dev), false);
});

test('constructor rejects bad geometry with EINVAL and a message naming the option', () => {
  const backing = new MemDevice({ name: 'mem', size: SIZE });
  const cases: Array<[Partial<ZonedDeviceOptions>, RegExp]> = [
    [{ zoneSize: 3 * 4096 }, /zoneSize 12288 must be a power of two/],
    [{ zoneSize: 256 }, /zoneSize 256 must be a power of two of at least the 512-byte/],
    [{ zoneCapacity: ZS + 512 }, /zoneCapacity/],
    [{ zoneCapacity: 1000 }, /zoneCapacity 1000/],
    [{ zoneCapacity: 0 }, /zoneCapacity 0/],
    [{ conventionalZones: 9 }, /conventionalZones 9 leaves no sequential zone/],
    [{ conventionalZones: -1 }, /conventionalZones -1/],
    [{ maxOpenZones: 5, maxActiveZones: 4 }, /maxOpenZones 5 exceeds maxActiveZones 4/],
    [{ maxOpenZones: 1.5 }, /maxOpenZones 1.5/],
    [{ maxZoneAppendBytes: 2 * 1024 * 1024 }, /maxZoneAppendBytes .* at most maxTransferBytes/],
    [{ maxZoneAppendBytes: 1000 }, /maxZoneAppendBytes 1000/],
  ];
  for (const [o, msg] of cases)
    assert.throws(
      () => new ZonedDevice(backing, { name: 'z', zoneSize: ZS, ...o }),
      (err: unknown) => BlockError.is(err) && err.code === ErrorCode.EINVAL && msg.test(err.message),
      JSON.stringify(o),
    );
  const zoned = new ZonedDevice(backing, { zoneSize: ZS });
  assert.throws(
    () => new ZonedDevice(zoned, { zoneSize: ZS }),
    (err: unknown) =>
      BlockError.is(err) && err.code === ErrorCode.EINVAL && /already zoned/.test(err.message),
  );
});

test('a size that is a multiple of the zone size has no runt; its last block is writable', async () => {
  const backing = new MemDevice({ name: 'mem', size: 4 * ZS });
  const dev = new ZonedDevice(backing, { zoneSize: ZS });
  assert.equal(dev.name, 'zoned-mem');
  assert.equal(dev.limits.zoned?.nrZones, 4);
  const last = await zone(dev, 3);
  assert.equal(last.size, ZS);
  assert.equal(last.capacity, ZS);
  await dev.finishZone(Z(3));
  await dev.resetZone(Z(3));
  await dev.write(Z(3), pattern(ZS - 512, 1));
  await dev.write(dev.size - 512, pattern(512, 2)); // the last block
  await expectZone(dev, 3, ZoneState.FULL, Z(4));
  assert.deepEqual(await read(dev, dev.size - 512, 512), pattern(512, 2));
});

test('sequential write: at the write pointer, opens implicitly, reaches FULL at capacity', async () => {
  const { dev } = setup();
  await dev.write(Z(2), pattern(4096, 1));
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 4096);
  assert.equal(dev.details().openZones, 1);
  await dev.write(Z(2) + 4096, pattern(8192, 2));
  await expectZone(dev, 2, ZoneState.FULL, Z(2) + CAP);
  assert.equal(dev.details().openZones, 0);
  assert.equal(dev.details().activeZones, 0);
  assert.deepEqual(await read(dev, Z(2), 4096), pattern(4096, 1));
  assert.deepEqual(await read(dev, Z(2) + 4096, 8192), pattern(8192, 2));
  await assert.rejects(dev.write(Z(2) + CAP, pattern(512, 3)), FULL);
  await assert.rejects(dev.write(Z(2), pattern(512, 3)), FULL);
});

test('sequential write errors: off the write pointer, across the zone end, past the capacity', async () => {
  const { dev } = setup();
  await assert.rejects(dev.write(Z(3) + 512, pattern(512, 1)), INVALID_WRITE);
  await dev.write(Z(3), pattern(2048, 1));
  await assert.rejects(dev.write(Z(3), pattern(512, 1)), INVALID_WRITE); // behind
  await assert.rejects(dev.write(Z(3) + 4096, pattern(512, 1)), INVALID_WRITE); // ahead
  const err = await dev.write(Z(3) + 4096, pattern(512, 1)).catch((e: BlockError) => e);
  assert.match(String(err), /not at the write pointer 51200/);
  assert.equal((err as BlockError).offset, Z(3) + 4096);
  // Past the capacity inside the zone, and across into the next zone.
  await assert.rejects(dev.write(Z(3) + 2048, pattern(CAP, 1)), BOUNDARY);
  await dev.finishZone(Z(3));
  await dev.resetZone(Z(3));
  await assert.rejects(dev.write(Z(3), pattern(ZS + 512, 1)), BOUNDARY);
  // A rejected write changed nothing.
  await expectZone(dev, 3, ZoneState.EMPTY, Z(3));
  // From a conventional zone into a sequential one.
  await assert.rejects(dev.write(Z(2) - 512, pattern(1024, 1)), BOUNDARY);
  await expectZone(dev, 2, ZoneState.EMPTY, Z(2));
});

test('reads: above the write pointer are zeroes even over stale backing data; reads cross zones', async () => {
  const { backing, dev } = setup();
  await backing.write(Z(2), pattern(ZS * 2, 9)); // stale data under zones 2 and 3
  await backing.write(0, pattern(ZS * 2, 5)); // conventional zones are plain storage
  await dev.write(Z(2), pattern(1024, 1));
  assert.deepEqual(await read(dev, Z(2), 4096), new Uint8Array([...pattern(1024, 1), ...zeroes(3072)]));
  assert.deepEqual(await read(dev, Z(3), ZS), zeroes(ZS));
  // Across conventional → sequential → sequential.
  const all = await read(dev, Z(1), 3 * ZS);
  assert.deepEqual(all.subarray(0, ZS), pattern(ZS * 2, 5).subarray(ZS));
  assert.deepEqual(all.subarray(ZS, ZS + 1024), pattern(1024, 1));
  assert.deepEqual(all.subarray(ZS + 1024), zeroes(2 * ZS - 1024));
  // Reads never change state.
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 1024);
  await expectZone(dev, 3, ZoneState.EMPTY, Z(3));
});

test('conventional zones behave like a plain device', async () => {
  const { backing, dev } = setup();
  await dev.write(4096, pattern(8192, 1));
  await dev.write(0, pattern(512, 2));
  await dev.write(4096, pattern(512, 3)); // overwrite
  await dev.write(ZS - 1024, pattern(2048, 4)); // spans zones 0 and 1
  assert.deepEqual(await read(dev, 0, 512), pattern(512, 2));
  assert.deepEqual(await read(dev, 4096, 512), pattern(512, 3));
  assert.deepEqual(await read(dev, 4608, 512), pattern(8192, 1).subarray(512, 1024));
  assert.deepEqual(await read(dev, ZS - 1024, 2048), pattern(2048, 4));
  await dev.discard(4096, 4096);
  assert.deepEqual(await read(dev, 4096, 4096), zeroes(4096));
  await dev.writeZeroes(ZS - 1024, 2048);
  assert.deepEqual(await read(dev, ZS - 1024, 2048), zeroes(2048));
  assert.deepEqual(
    backing.log.filter((l) => l.op === 'discard' || l.op === 'write-zeroes'),
    [
      { op: 'discard', offset: 4096, length: 4096 },
      { op: 'write-zeroes', offset: ZS - 1024, length: 2048 },
    ],
  );
  await expectZone(dev, 0, ZoneState.NOT_WP, ZS);
  for (const action of ['openZone', 'closeZone', 'finishZone', 'resetZone'] as const)
    await assert.rejects(dev[action](Z(1)), CONVENTIONAL_MGMT, action);
  await assert.rejects(
    dev.zoneAppend(Z(0), pattern(512, 1)),
    zoneErr(ErrorCode.EINVAL, ZoneError.ZONE_INVALID_WRITE),
  );
  await assert.rejects(dev.setZoneCondition(Z(0), 'offline'), { code: ErrorCode.EINVAL });
});

test('discard on a sequential zone is EINVAL and points at zone reset', async () => {
  const { backing, dev } = setup();
  await dev.write(Z(2), pattern(4096, 1));
  await assert.rejects(dev.discard(Z(2), 4096), (err: unknown) => {
    assert.ok(BlockError.is(err));
    assert.equal(err.code, ErrorCode.EINVAL);
    assert.match(err.message, /reset-zone/);
    return true;
  });
  await assert.rejects(dev.discard(Z(1), ZS + 512), { code: ErrorCode.EINVAL });
  assert.equal(backing.log.filter((l) => l.op === 'discard').length, 0);
  assert.deepEqual(await read(dev, Z(2), 4096), pattern(4096, 1));
});

test('write zeroes on a sequential zone is a write at the write pointer', async () => {
  const { backing, dev } = setup();
  await backing.write(Z(2), pattern(ZS, 9)); // stale data must not show through
  await dev.write(Z(2), pattern(1024, 1));
  await dev.writeZeroes(Z(2) + 1024, 2048);
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 3072);
  await dev.write(Z(2) + 3072, pattern(1024, 2));
  assert.deepEqual(
    await read(dev, Z(2), 4096),
    new Uint8Array([...pattern(1024, 1), ...zeroes(2048), ...pattern(1024, 2)]),
  );
  await assert.rejects(dev.writeZeroes(Z(2), 512), INVALID_WRITE);
  await assert.rejects(dev.writeZeroes(Z(2) + 4096, CAP), BOUNDARY);
  await dev.writeZeroes(Z(2) + 4096, CAP - 4096);
  await expectZone(dev, 2, ZoneState.FULL, Z(2) + CAP);
  await assert.rejects(dev.writeZeroes(Z(2) + CAP, 512), FULL);
});

/** Brings zone n of dev into a state for the transition tests. */
async function into(dev: ZonedDevice, n: number, state: string): Promise<void> {
  switch (state) {
    case 'empty':
      return;
    case 'implicit-open':
      return dev.write(Z(n), pattern(1024, n));
    case 'explicit-open':
      return dev.openZone(Z(n));
    case 'explicit-open-written':
      await dev.openZone(Z(n));
      return dev.write(Z(n), pattern(1024, n));
    case 'closed':
      await dev.write(Z(n), pattern(1024, n));
      return dev.closeZone(Z(n));
    case 'full':
      await dev.write(Z(n), pattern(1024, n));
      return dev.finishZone(Z(n));
    case 'read-only':
      await dev.write(Z(n), pattern(1024, n));
      return dev.setZoneCondition(Z(n), 'read-only');
    case 'offline':
      return dev.setZoneCondition(Z(n), 'offline');
  }
  throw new Error(`unknown state ${state}`);
}

const S = ZoneState;
type Outcome = { state: ZoneState; wp: 'start' | 'data' | 'cap' } | ((err: unknown) => boolean);
const transitions: Record<'open' | 'close' | 'finish' | 'reset', Record<string, Outcome>> = {
  open: {
    empty: { state: S.EXPLICIT_OPEN, wp: 'start' },
    'implicit-open': { state: S.EXPLICIT_OPEN, wp: 'data' },
    'explicit-open': { state: S.EXPLICIT_OPEN, wp: 'start' },
    'explicit-open-written': { state: S.EXPLICIT_OPEN, wp: 'data' },
    closed: { state: S.EXPLICIT_OPEN, wp: 'data' },
    full: BAD_TRANSITION,
    'read-only': BAD_TRANSITION,
    offline: BAD_TRANSITION,
  },
  close: {
    empty: BAD_TRANSITION,
    'implicit-open': { state: S.CLOSED, wp: 'data' },
    'explicit-open': { state: S.EMPTY, wp: 'start' }, // no data: back to EMPTY
    'explicit-open-written': { state: S.CLOSED, wp: 'data' },
    closed: { state: S.CLOSED, wp: 'data' },
    full: BAD_TRANSITION,
    'read-only': BAD_TRANSITION,
    offline: BAD_TRANSITION,
  },
  finish: {
    empty: { state: S.FULL, wp: 'cap' },
    'implicit-open': { state: S.FULL, wp: 'cap' },
    'explicit-open': { state: S.FULL, wp: 'cap' },
    'explicit-open-written': { state: S.FULL, wp: 'cap' },
    closed: { state: S.FULL, wp: 'cap' },
    full: { state: S.FULL, wp: 'cap' },
    'read-only': BAD_TRANSITION,
    offline: BAD_TRANSITION,
  },
  reset: {
    empty: { state: S.EMPTY, wp: 'start' },
    'implicit-open': { state: S.EMPTY, wp: 'start' },
    'explicit-open': { state: S.EMPTY, wp: 'start' },
    'explicit-open-written': { state: S.EMPTY, wp: 'start' },
    closed: { state: S.EMPTY, wp: 'start' },
    full: { state: S.EMPTY, wp: 'start' },
    'read-only': BAD_TRANSITION,
    offline: BAD_TRANSITION,
  },
};

for (const [action, table] of Object.entries(transitions)) {
  test(`zone management: ${action} from every state`, async () => {
    for (const [from, outcome] of Object.entries(table)) {
      const { dev } = setup();
      await into(dev, 4, from);
      const before = await zone(dev, 4);
      const run = dev[`${action as 'open'}Zone`](Z(4));
      if (typeof outcome === 'function') {
        await assert.rejects(run, outcome, `${action} from ${from}`);
        assert.deepEqual(await zone(dev, 4), before, `${action} from ${from} changed the zone`);
        continue;
      }
      await run;
      const wp = { start: Z(4), data: Z(4) + 1024, cap: Z(4) + CAP }[outcome.wp];
      const z = await zone(dev, 4);
      assert.deepEqual(
        { state: z.state, wp: z.writePointer },
        { state: outcome.state, wp },
        `${action} from ${from}`,
      );
      const open = z.state === S.EXPLICIT_OPEN || z.state === S.IMPLICIT_OPEN ? 1 : 0;
      const active = open + (z.state === S.CLOSED ? 1 : 0);
      assert.deepEqual(
        [dev.details().openZones, dev.details().activeZones],
        [open, active],
        `${action} from ${from}: resource counts`,
      );
    }
  });
}

test('finish: data written before stays, the rest reads zeroes, then writes fail ZONE_FULL', async () => {
  const { backing, dev } = setup();
  await backing.write(Z(5), pattern(ZS, 9));
  await dev.write(Z(5), pattern(2048, 1));
  await dev.finishZone(Z(5));
  await expectZone(dev, 5, ZoneState.FULL, Z(5) + CAP);
  assert.deepEqual(await read(dev, Z(5), ZS), new Uint8Array([...pattern(2048, 1), ...zeroes(ZS - 2048)]));
  await assert.rejects(dev.write(Z(5) + 2048, pattern(512, 1)), FULL);
  await assert.rejects(dev.write(Z(5) + CAP, pattern(512, 1)), FULL);
  await assert.rejects(dev.zoneAppend(Z(5), pattern(512, 1)), FULL);
});

test('reset: data reads back as zeroes and the backing range is discarded', async () => {
  const { backing, dev } = setup();
  await dev.write(Z(6), pattern(CAP, 1));
  await dev.resetZone(Z(6));
  await expectZone(dev, 6, ZoneState.EMPTY, Z(6));
  assert.deepEqual(await read(dev, Z(6), ZS), zeroes(ZS));
  assert.deepEqual(await read(backing, Z(6), CAP), zeroes(CAP), 'backing freed');
  assert.deepEqual(backing.log.at(-2), { op: 'discard', offset: Z(6), length: CAP });
  // Writable again from the start.
  await dev.write(Z(6), pattern(512, 2));
  assert.deepEqual(await read(dev, Z(6), 1024), new Uint8Array([...pattern(512, 2), ...zeroes(512)]));
});

test('reset without backing discard still reads back zeroes', async () => {
  const { backing, dev } = setup({}, { discard: false });
  await dev.write(Z(6), pattern(CAP, 1));
  await dev.resetZone(Z(6));
  assert.deepEqual(await read(dev, Z(6), ZS), zeroes(ZS));
  assert.deepEqual(await read(backing, Z(6), 512), pattern(512, 1), 'the backing keeps the old bytes');
});

test('reset reports a failed backing discard, but the zone is empty', async () => {
  const { backing, dev } = setup();
  await dev.write(Z(6), pattern(4096, 1));
  backing.hook = (op) => {
    if (op === 'discard') throw new BlockError(ErrorCode.EIO, 'injected discard failure');
  };
  await assert.rejects(dev.resetZone(Z(6)), (err: unknown) => {
    assert.ok(BlockError.is(err));
    assert.equal(err.code, ErrorCode.EIO);
    assert.match(err.message, /now empty, but freeing .* failed: .*injected/);
    return true;
  });
  await expectZone(dev, 6, ZoneState.EMPTY, Z(6));
  assert.deepEqual(await read(dev, Z(6), 4096), zeroes(4096));
});

test('resetAllZones resets every sequential zone but READ_ONLY and OFFLINE ones', async () => {
  const { dev } = setup({ maxActiveZones: 4 });
  await dev.write(Z(2), pattern(1024, 1));
  await into(dev, 3, 'closed');
  await into(dev, 4, 'full');
  await dev.openZone(Z(5));
  await into(dev, 6, 'read-only');
  await into(dev, 7, 'offline');
  await dev.write(0, pattern(512, 1));
  await dev.resetAllZones();
  for (const n of [2, 3, 4, 5]) await expectZone(dev, n, ZoneState.EMPTY, Z(n));
  assert.equal((await zone(dev, 6)).state, ZoneState.READ_ONLY);
  assert.equal((await zone(dev, 7)).state, ZoneState.OFFLINE);
  assert.deepEqual(await read(dev, Z(2), ZS), zeroes(ZS));
  assert.deepEqual(await read(dev, 0, 512), pattern(512, 1), 'conventional zones untouched');
  assert.equal(dev.details().activeZones, 0);
});

test('resetAllZones waits for writes submitted before it', async () => {
  const { backing, dev } = setup();
  backing.hook = () => sleep(2);
  const w = dev.write(Z(3), pattern(1024, 1)); // zone 3 is EMPTY when reset-all is submitted
  await dev.resetAllZones();
  await w;
  await expectZone(dev, 3, ZoneState.EMPTY, Z(3));
});

test('read-only zone: reads return its data, writes fail ZONE_READ_ONLY, resources are freed', async () => {
  const { dev } = setup();
  await dev.write(Z(2), pattern(2048, 1));
  assert.equal(dev.details().activeZones, 1);
  await dev.setZoneCondition(Z(2), 'read-only');
  assert.equal(dev.details().activeZones, 0);
  const z = await zone(dev, 2);
  assert.equal(z.state, ZoneState.READ_ONLY);
  assert.equal(z.writePointer, Z(2) + CAP);
  assert.deepEqual(await read(dev, Z(2), 4096), new Uint8Array([...pattern(2048, 1), ...zeroes(2048)]));
  await assert.rejects(dev.write(Z(2) + 2048, pattern(512, 1)), READ_ONLY);
  await assert.rejects(dev.zoneAppend(Z(2), pattern(512, 1)), READ_ONLY);
  await assert.rejects(dev.writeZeroes(Z(2) + 2048, 512), READ_ONLY);
  await dev.setZoneCondition(Z(2), 'empty');
  await expectZone(dev, 2, ZoneState.EMPTY, Z(2));
  assert.deepEqual(await read(dev, Z(2), 2048), zeroes(2048));
});

test('offline zone: reads and writes fail ZONE_OFFLINE, also a read that only crosses it', async () => {
  const { dev } = setup();
  await dev.write(Z(3), pattern(2048, 1));
  await dev.setZoneCondition(Z(3), 'offline');
  assert.equal((await zone(dev, 3)).state, ZoneState.OFFLINE);
  await assert.rejects(read(dev, Z(3), 512), OFFLINE);
  await assert.rejects(read(dev, Z(3) - 512, 1024), OFFLINE);
  await assert.rejects(dev.write(Z(3) + 2048, pattern(512, 1)), OFFLINE);
  await assert.rejects(dev.zoneAppend(Z(3), pattern(512, 1)), OFFLINE);
  assert.deepEqual(await read(dev, Z(2), 512), zeroes(512), 'neighbours still readable');
});

test('setZoneCondition checks its zone start', async () => {
  const { dev } = setup();
  await assert.rejects(dev.setZoneCondition(Z(2) + 512, 'offline'), { code: ErrorCode.EINVAL });
  await assert.rejects(dev.setZoneCondition(SIZE, 'offline'), { code: ErrorCode.ERANGE });
  await assert.rejects(dev.setZoneCondition(Z(2), 'broken' as 'offline'), { code: ErrorCode.EINVAL });
});

test('open limit: writing a new zone closes the least recently written implicitly open zone', async () => {
  const { dev } = setup({ maxOpenZones: 2 });
  await dev.write(Z(2), pattern(512, 1));
  await dev.write(Z(3), pattern(512, 1));
  await dev.write(Z(2) + 512, pattern(512, 1)); // zone 2 is now the most recently written
  await dev.write(Z(4), pattern(512, 1));
  await expectZone(dev, 3, ZoneState.CLOSED, Z(3) + 512);
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 1024);
  await expectZone(dev, 4, ZoneState.IMPLICIT_OPEN, Z(4) + 512);
  // Writing the closed zone reopens it and closes the LRU one (zone 2).
  await dev.write(Z(3) + 512, pattern(512, 1));
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 1024);
  await expectZone(dev, 2, ZoneState.CLOSED, Z(2) + 1024);
  assert.equal(dev.details().openZones, 2);
  assert.equal(dev.details().activeZones, 3);
});

test('open limit: explicitly open zones are never closed for room', async () => {
  const { dev } = setup({ maxOpenZones: 2 });
  await dev.openZone(Z(2));
  await dev.write(Z(3), pattern(512, 1)); // implicit
  await dev.openZone(Z(4)); // closes implicitly open zone 3
  await expectZone(dev, 3, ZoneState.CLOSED, Z(3) + 512);
  await expectZone(dev, 4, ZoneState.EXPLICIT_OPEN, Z(4));
  await assert.rejects(dev.write(Z(5), pattern(512, 1)), TOO_MANY_OPEN);
  await assert.rejects(dev.openZone(Z(5)), TOO_MANY_OPEN);
  await assert.rejects(dev.write(Z(3) + 512, pattern(512, 1)), TOO_MANY_OPEN); // reopening needs a slot too
  await expectZone(dev, 5, ZoneState.EMPTY, Z(5));
  // Writes to already open zones need no new slot.
  await dev.write(Z(2), pattern(512, 1));
  await dev.closeZone(Z(4)); // no data → EMPTY, frees a slot
  await dev.write(Z(5), pattern(512, 1));
  await expectZone(dev, 5, ZoneState.IMPLICIT_OPEN, Z(5) + 512);
});

test('active limit: TOO_MANY_ACTIVE_ZONES from EMPTY; closed zones count; finish and reset free', async () => {
  const { dev } = setup({ maxActiveZones: 2 });
  await dev.write(Z(2), pattern(512, 1));
  await into(dev, 3, 'closed');
  assert.equal(dev.details().activeZones, 2);
  await assert.rejects(dev.write(Z(4), pattern(512, 1)), TOO_MANY_ACTIVE);
  await assert.rejects(dev.openZone(Z(4)), TOO_MANY_ACTIVE);
  await assert.rejects(dev.zoneAppend(Z(4), pattern(512, 1)), TOO_MANY_ACTIVE);
  await expectZone(dev, 4, ZoneState.EMPTY, Z(4));
  // A closed zone is already active: it can be written.
  await dev.write(Z(3) + 1024, pattern(512, 1));
  // Finishing an EMPTY zone needs no resources.
  await dev.finishZone(Z(5));
  await dev.finishZone(Z(2));
  await dev.write(Z(4), pattern(512, 1));
  await dev.resetZone(Z(3));
  await dev.openZone(Z(6));
  assert.equal(dev.details().activeZones, 2);
});

test('zone append returns the offset written, in submission order when issued concurrently', async () => {
  const { backing, dev } = setup();
  // Random backing latency, so completions would reorder if nothing serialized them.
  backing.hook = () => sleep(Math.floor(Math.random() * 3));
  assert.equal(await dev.zoneAppend(Z(2), pattern(1024, 0)), Z(2));
  const appends = Array.from({ length: 8 }, (_, i) => dev.zoneAppend(Z(2), pattern(1024, i + 1)));
  const other = Array.from({ length: 4 }, (_, i) => dev.zoneAppend(Z(3), pattern(512, 20 + i)));
  const offsets = await Promise.all(appends);
  assert.deepEqual(
    offsets,
    Array.from({ length: 8 }, (_, i) => Z(2) + 1024 * (i + 1)),
  );
  assert.deepEqual(
    await Promise.all(other),
    [0, 1, 2, 3].map((i) => Z(3) + 512 * i),
  );
  for (const [i, at] of offsets.entries()) assert.deepEqual(await read(dev, at, 1024), pattern(1024, i + 1));
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 9 * 1024);
  // Fill to capacity exactly, then one more.
  assert.equal(await dev.zoneAppend(Z(2), pattern(CAP - 9 * 1024, 1)), Z(2) + 9 * 1024);
  await expectZone(dev, 2, ZoneState.FULL, Z(2) + CAP);
  await assert.rejects(dev.zoneAppend(Z(2), pattern(512, 1)), FULL);
  await assert.rejects(dev.zoneAppend(Z(3), pattern(CAP, 1)), BOUNDARY);
  await assert.rejects(dev.zoneAppend(Z(3) + 512, pattern(512, 1)), { code: ErrorCode.EINVAL });
});

test('zone append larger than maxZoneAppendBytes is E2BIG', async () => {
  const { dev } = setup({ maxZoneAppendBytes: 4096 });
  assert.equal(dev.limits.zoned?.maxZoneAppendBytes, 4096);
  await assert.rejects(dev.zoneAppend(Z(2), pattern(8192, 1)), { code: ErrorCode.E2BIG });
  assert.equal(await dev.zoneAppend(Z(2), pattern(4096, 1)), Z(2));
});

test('the runt zone: capacity is its length; last block written by write and by append', async () => {
  const { dev } = setup();
  await dev.write(Z(8), pattern(RUNT - 1024, 1));
  assert.equal(await dev.zoneAppend(Z(8), pattern(512, 2)), SIZE - 1024);
  await dev.write(SIZE - 512, pattern(512, 3)); // the device's last block
  await expectZone(dev, 8, ZoneState.FULL, SIZE);
  assert.deepEqual(
    await read(dev, SIZE - 1024, 1024),
    new Uint8Array([...pattern(512, 2), ...pattern(512, 3)]),
  );
  await assert.rejects(dev.write(SIZE - 512, pattern(512, 1)), FULL);
  await assert.rejects(dev.write(SIZE, pattern(512, 1)), { code: ErrorCode.ERANGE });
  await dev.resetZone(Z(8));
  assert.deepEqual(await read(dev, SIZE - 512, 512), zeroes(512));
});

test('concurrent writes at successive write pointers all succeed, in submission order', async () => {
  const { backing, dev } = setup();
  backing.hook = () => sleep(Math.floor(Math.random() * 3));
  const writes = Array.from({ length: 12 }, (_, i) => dev.write(Z(4) + i * 1024, pattern(1024, i)));
  await Promise.all(writes);
  await expectZone(dev, 4, ZoneState.FULL, Z(4) + CAP);
  for (let i = 0; i < 12; i++) assert.deepEqual(await read(dev, Z(4) + i * 1024, 1024), pattern(1024, i));
  // Out of order without awaiting: the second is checked against the pointer the first leaves.
  const a = dev.write(Z(5) + 1024, pattern(1024, 1));
  const b = dev.write(Z(5), pattern(1024, 2));
  await assert.rejects(a, INVALID_WRITE);
  await b;
  await expectZone(dev, 5, ZoneState.IMPLICIT_OPEN, Z(5) + 1024);
});

test('a failed backing write leaves the write pointer before it, and what queued behind it fails', async () => {
  const { backing, dev } = setup();
  let fail = true;
  backing.hook = async (op) => {
    await sleep(1);
    if (op === 'write' && fail) {
      fail = false;
      throw new BlockError(ErrorCode.EIO, 'injected media error');
    }
  };
  const first = dev.write(Z(3), pattern(1024, 1));
  const second = dev.write(Z(3) + 1024, pattern(1024, 2));
  await assert.rejects(first, { code: ErrorCode.EIO, message: /injected/ });
  await assert.rejects(second, INVALID_WRITE);
  // The zone the failed write opened holds nothing: EMPTY again, resources free.
  await expectZone(dev, 3, ZoneState.EMPTY, Z(3));
  assert.equal(dev.details().activeZones, 0);
  await dev.write(Z(3), pattern(1024, 3));
  // A failure in a zone that holds data keeps the data and the write pointer.
  fail = true;
  await assert.rejects(dev.zoneAppend(Z(3), pattern(1024, 4)), { code: ErrorCode.EIO });
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 1024);
  assert.deepEqual(await read(dev, Z(3), 2048), new Uint8Array([...pattern(1024, 3), ...zeroes(1024)]));
});

test('the open limit may close a zone with a write in flight: the write still lands, the zone stays CLOSED', async () => {
  const { backing, dev } = setup({ maxOpenZones: 1 });
  let failZone2 = false;
  backing.hook = async (op, offset) => {
    await sleep(5);
    if (failZone2 && op === 'write' && offset === Z(2)) throw new BlockError(ErrorCode.EIO, 'injected');
  };
  const a = dev.write(Z(2), pattern(512, 1)); // in flight...
  await dev.write(Z(3), pattern(512, 2)); // ...when this one takes the only open slot
  await a;
  await expectZone(dev, 2, ZoneState.CLOSED, Z(2) + 512);
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 512);
  assert.deepEqual([dev.details().openZones, dev.details().activeZones], [1, 2]);
  assert.deepEqual(await read(dev, Z(2), 512), pattern(512, 1));
  // The same race where the in-flight write fails: the zone holds nothing and is EMPTY again.
  await dev.resetAllZones();
  failZone2 = true;
  const b = assert.rejects(dev.write(Z(2), pattern(512, 1)), { code: ErrorCode.EIO });
  await dev.write(Z(3), pattern(512, 2));
  await b;
  await expectZone(dev, 2, ZoneState.EMPTY, Z(2));
  assert.deepEqual([dev.details().openZones, dev.details().activeZones], [1, 1]);
});

test('an operation aborted while queued behind another on its zone does nothing', async () => {
  const { backing, dev } = setup();
  backing.hook = () => sleep(5);
  const ac = new AbortController();
  const a = dev.write(Z(2), pattern(512, 1));
  const b = assert.rejects(dev.write(Z(2) + 512, pattern(512, 2), { signal: ac.signal }), {
    code: ErrorCode.ECANCELED,
  });
  ac.abort();
  await a;
  await b;
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 512);
});

test('copy into a sequential zone in order advances the write pointer; offloaded by the backing', async () => {
  const { backing, dev } = setup();
  await dev.write(0, pattern(8192, 1));
  const result = await dev.copy(
    dev,
    [
      { src: 0, dst: Z(2), len: 4096 },
      { src: 4096, dst: Z(2) + 4096, len: 2048 },
      { src: 0, dst: Z(3), len: 1024 },
    ],
    { allowEmulation: false },
  );
  assert.deepEqual(result, { offloaded: 7168, emulated: 0 });
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 6144);
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 1024);
  assert.deepEqual(await read(dev, Z(2), 6144), pattern(8192, 1).subarray(0, 6144));
  assert.deepEqual(await read(dev, Z(3), 1024), pattern(8192, 1).subarray(0, 1024));
  assert.equal(backing.log.filter((l) => l.op === 'copy').length, 3);
  assert.equal(backing.log.filter((l) => l.op === 'write').length, 1, 'only the setup write');
});

test('copy out of write-pointer order fails at the first violation with the completed prefix', async () => {
  const { dev } = setup();
  await dev.write(0, pattern(8192, 1));
  const err = await dev
    .copy(
      dev,
      [
        { src: 0, dst: Z(2), len: 2048 },
        { src: 2048, dst: Z(2) + 4096, len: 2048 }, // skips ahead of the write pointer
        { src: 4096, dst: Z(2) + 2048, len: 2048 },
      ],
      { allowEmulation: false },
    )
    .then(
      () => assert.fail('copy succeeded'),
      (e: unknown) => e,
    );
  assert.ok(CopyError.isCopyError(err));
  assert.equal(err.code, ErrorCode.EIO);
  assert.equal(err.zone, ZoneError.ZONE_INVALID_WRITE);
  assert.deepEqual(err.completed, [2048, 0, 0]);
  assert.equal(err.offloaded, 2048);
  assert.match(err.message, /copy range 1 .* not at the write pointer/);
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 2048);
  assert.deepEqual(await read(dev, Z(2), 4096), new Uint8Array([...pattern(2048, 1), ...zeroes(2048)]));
});

test('copy destination errors: full zone, crossing into a sequential zone, offline source', async () => {
  const { dev } = setup();
  await dev.write(0, pattern(4096, 1));
  await dev.finishZone(Z(2));
  await assert.rejects(
    dev.copy(dev, [{ src: 0, dst: Z(2), len: 512 }], { allowEmulation: false }),
    (e: unknown) => {
      assert.ok(CopyError.isCopyError(e));
      assert.equal(e.zone, ZoneError.ZONE_FULL);
      assert.deepEqual(e.completed, [0]);
      return true;
    },
  );
  await assert.rejects(
    dev.copy(dev, [{ src: 0, dst: Z(2) - 512, len: 1024 }], { allowEmulation: false }),
    (e: unknown) => CopyError.isCopyError(e) && e.zone === ZoneError.ZONE_BOUNDARY_ERROR,
  );
  await assert.rejects(
    dev.copy(dev, [{ src: 0, dst: Z(3), len: CAP + 512 }], { allowEmulation: false }),
    (e: unknown) => CopyError.isCopyError(e) && e.zone === ZoneError.ZONE_BOUNDARY_ERROR,
  );
  await dev.setZoneCondition(Z(4), 'offline');
  await assert.rejects(
    dev.copy(
      dev,
      [
        { src: 0, dst: Z(3), len: 1024 },
        { src: Z(4), dst: Z(3) + 1024, len: 1024 },
      ],
      { allowEmulation: false },
    ),
    (e: unknown) => {
      assert.ok(CopyError.isCopyError(e));
      assert.equal(e.code, ErrorCode.EIO);
      assert.equal(e.zone, ZoneError.ZONE_OFFLINE);
      assert.deepEqual(e.completed, [1024, 0]);
      return true;
    },
  );
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 1024);
});

test('copy from above a write pointer writes zeroes, never the stale backing bytes', async () => {
  const { backing, dev } = setup();
  await backing.write(Z(3), pattern(ZS, 9)); // stale
  await dev.write(Z(3), pattern(2048, 1));
  await dev.copy(dev, [{ src: Z(3), dst: Z(2), len: 4096 }], { allowEmulation: false });
  assert.deepEqual(await read(dev, Z(2), 4096), new Uint8Array([...pattern(2048, 1), ...zeroes(2048)]));
  assert.deepEqual(await read(backing, Z(2) + 2048, 2048), zeroes(2048));
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 4096);
  // Within one zone: its own data below the pointer, copied to the pointer.
  await dev.copy(dev, [{ src: Z(2), dst: Z(2) + 4096, len: 2048 }], { allowEmulation: false });
  assert.deepEqual(await read(dev, Z(2) + 4096, 2048), pattern(2048, 1));
  // Sources read as they were before the request: range 1 reads what range 0 writes, as zeroes.
  await dev.copy(
    dev,
    [
      { src: 0, dst: Z(5), len: 512 },
      { src: Z(5), dst: Z(5) + 512, len: 512 },
    ],
    { allowEmulation: false },
  );
  assert.deepEqual(await read(dev, Z(5) + 512, 512), zeroes(512));
});

test('a backing copy failure reports the prefix; the write pointer covers only what was copied', async () => {
  const { backing, dev } = setup();
  await dev.write(0, pattern(8192, 1));
  let copies = 0;
  backing.hook = (op) => {
    if (op === 'copy' && ++copies === 2) throw new BlockError(ErrorCode.EIO, 'injected copy failure');
  };
  const ranges = [
    { src: 0, dst: Z(2), len: 2048 },
    { src: 2048, dst: Z(2) + 2048, len: 2048 },
    { src: 4096, dst: 4096 * 3, len: 1024 }, // conventional destination
  ];
  await assert.rejects(dev.copy(dev, ranges, { allowEmulation: false }), (e: unknown) => {
    assert.ok(CopyError.isCopyError(e));
    assert.equal(e.code, ErrorCode.EIO);
    assert.deepEqual(e.completed, [2048, 0, 0]);
    return true;
  });
  await expectZone(dev, 2, ZoneState.IMPLICIT_OPEN, Z(2) + 2048);
  await dev.write(Z(2) + 2048, pattern(512, 2));
});

test('a range the backing copied past a short one in the same zone counts as not copied', async () => {
  // A backing that writes every range but the first, then reports the first as failed.
  class SkipsFirst extends MemDevice {
    protected override async doCopy(
      src: BlockDevice,
      ranges: readonly CopyRange[],
      o: DeviceCopyOptions,
    ): Promise<CopyPathBytes> {
      await super.doCopy(src, ranges.slice(1), o);
      throw new CopyError(new BlockError(ErrorCode.EIO, 'injected'), [
        0,
        ...ranges.slice(1).map((r) => r.len),
      ]);
    }
  }
  const backing = new SkipsFirst({ name: 'mem', size: SIZE });
  const dev = new ZonedDevice(backing, { zoneSize: ZS, conventionalZones: 2 });
  await dev.write(0, pattern(4096, 1));
  const ranges = [
    { src: 0, dst: Z(2), len: 1024 },
    { src: 1024, dst: Z(2) + 1024, len: 1024 },
    { src: 2048, dst: Z(3), len: 1024 },
  ];
  await assert.rejects(dev.copy(dev, ranges, { allowEmulation: false }), (e: unknown) => {
    assert.ok(CopyError.isCopyError(e));
    assert.deepEqual(e.completed, [0, 0, 1024]);
    return true;
  });
  await expectZone(dev, 2, ZoneState.EMPTY, Z(2));
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 1024);
  assert.deepEqual(await read(dev, Z(2) + 1024, 1024), zeroes(1024), 'bytes above the write pointer');
  assert.deepEqual(await read(dev, Z(3), 1024), pattern(4096, 1).subarray(2048, 3072));
});

test('copy cuts a source that spans zones into copy and zero pieces; zero fills run after the copies', async () => {
  const { backing, dev } = setup({}, { copy: { maxRanges: 1 } });
  await dev.write(Z(2), pattern(CAP, 1)); // zone 2 full: 12 KiB data, then 4 KiB beyond capacity
  await dev.write(Z(3), pattern(2048, 2));
  backing.log.length = 0;
  const len = ZS + 2048;
  await dev.copy(dev, [{ src: Z(2), dst: 0, len }], { allowEmulation: false });
  assert.deepEqual(
    backing.log.map((l) => l.op),
    ['copy', 'copy', 'write-zeroes'],
  );
  const expected = new Uint8Array([...pattern(CAP, 1), ...zeroes(ZS - CAP), ...pattern(2048, 2)]);
  assert.deepEqual(await read(dev, 0, len), expected);
});

test('copy splits pieces by the backing copy maxBytes tuned after construction', async () => {
  const { backing, dev } = setup();
  await dev.write(0, pattern(4096, 1));
  backing.limits.copy!.maxBytes = 1024;
  backing.log.length = 0;
  const r = await dev.copy(dev, [{ src: 0, dst: Z(6), len: 4096 }], { allowEmulation: false });
  assert.equal(r.offloaded, 4096);
  assert.deepEqual(
    backing.log.map((l) => [l.op, l.offset - Z(6), l.length]),
    [0, 1, 2, 3].map((i) => ['copy', i * 1024, 1024]),
  );
  assert.deepEqual(await read(dev, Z(6), 4096), pattern(4096, 1));
  await expectZone(dev, 6, ZoneState.IMPLICIT_OPEN, Z(6) + 4096);
});

test('copy is offered only from this device and only while the backing can offload', async () => {
  const { backing, dev } = setup();
  const other = setup().dev;
  assert.equal(dev.canCopyFrom(dev), true);
  assert.equal(dev.canCopyFrom(other), false);
  assert.equal(dev.canCopyFrom(backing), false);
  await assert.rejects(dev.copy(backing, [{ src: 0, dst: 0, len: 512 }], { allowEmulation: false }), {
    code: ErrorCode.EOPNOTSUPP,
  });
  backing.limits.copy!.maxBytes = 0; // the backing's offload turned off
  assert.equal(dev.canCopyFrom(dev), false);
});

test('issueCopy into the zoned device: offloaded within it, emulated from elsewhere, zone order kept', async () => {
  const { dev } = setup();
  await dev.write(0, pattern(8192, 1));
  const offload = await issueCopy(dev, dev, [{ src: 0, dst: Z(2), len: 8192 }]);
  assert.equal(offload.offloaded, 8192);
  const src = new MemDevice({ name: 'src', size: 64 * KiB });
  await src.write(0, pattern(8192, 2));
  // Ranges listed in descending destination order: issueCopy writes each zone ascending.
  const em = await issueCopy(src, dev, [
    { src: 4096, dst: Z(3) + 4096, len: 4096 },
    { src: 0, dst: Z(3), len: 4096 },
  ]);
  assert.equal(em.emulated, 8192);
  assert.deepEqual(await read(dev, Z(3), 8192), pattern(8192, 2));
  await expectZone(dev, 3, ZoneState.IMPLICIT_OPEN, Z(3) + 8192);
});

test('read-only device: writes and zone management are EPERM, reports still work', async () => {
  const { dev } = setup({ readOnly: true });
  assert.equal(dev.limits.readOnly, true);
  await assert.rejects(dev.write(Z(2), pattern(512, 1)), { code: ErrorCode.EPERM });
  await assert.rejects(dev.resetZone(Z(2)), { code: ErrorCode.EPERM });
  await assert.rejects(dev.zoneAppend(Z(2), pattern(512, 1)), { code: ErrorCode.EPERM });
  assert.equal((await zone(dev, 2)).state, ZoneState.EMPTY);
  const ro = new ZonedDevice(new MemDevice({ size: SIZE, readOnly: true }), { zoneSize: ZS });
  assert.equal(ro.limits.readOnly, true);
});

test('flush passes through; close leaves the backing open', async () => {
  const { backing, dev } = setup();
  await dev.flush();
  assert.ok(backing.log.some((l) => l.op === 'flush'));
  await dev.close();
  await assert.rejects(dev.read(0, new Uint8Array(512)), { code: ErrorCode.EBADF });
  assert.equal(backing.closed, false);
  await backing.write(0, pattern(512, 1));
});

test('a cut copy whose ranges overwrite each other keeps read-everything-first (buffered), or refuses forced offload', async () => {
  // Found by the property test: range A's source runs from conventional zone 1 into empty
  // zone 2 (a copy piece and a zero piece) and its destination is range B's source; with the
  // backing taking 2 KiB per request, A was written before B was read.
  for (const allowEmulation of [true, false]) {
    const { backing, dev } = setup();
    const a = pattern(Z(2), 3);
    await dev.write(0, a);
    backing.limits.copy!.maxBytes = 2048;
    const ranges = [
      { src: Z(2) - 2048, dst: 0, len: 4096 }, // A: 2 KiB of data, then 2 KiB above zone 2's write pointer
      { src: 0, dst: Z(2) - 4096, len: 4096 }, // B: writes A's source
    ];
    if (!allowEmulation) {
      await assert.rejects(dev.copy(dev, ranges, { allowEmulation }), { code: ErrorCode.EOPNOTSUPP });
      assert.deepEqual(await read(dev, 0, Z(2)), a, 'nothing written');
      continue;
    }
    const r = await dev.copy(dev, ranges, { allowEmulation });
    assert.deepEqual(r, { offloaded: 2048, emulated: 6144 });
    assert.deepEqual(await read(dev, 0, 4096), new Uint8Array([...a.subarray(Z(2) - 2048), ...zeroes(2048)]));
    assert.deepEqual(await read(dev, Z(2) - 4096, 4096), a.subarray(0, 4096));
  }
});
