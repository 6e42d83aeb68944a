import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULT_COPY_LIMITS,
  copyOffloadEnabled,
  isPowerOfTwo,
  setCopyMaxBytes,
  stackLimits,
  validateLimits,
  type QueueLimits,
} from './limits.js';

const base: QueueLimits = {
  logicalBlockSize: 512,
  physicalBlockSize: 4096,
  maxTransferBytes: 1 << 20,
  readOnly: false,
  copy: { ...DEFAULT_COPY_LIMITS },
  discard: { granularity: 4096, maxBytes: 1 << 30, zeroesData: true },
  writeZeroes: { maxBytes: 1 << 30, unmaps: true },
};

test('validateLimits accepts a sane device and names the bad field otherwise', () => {
  validateLimits(base, 1 << 20);
  const bad: Array<[Partial<QueueLimits>, number, RegExp]> = [
    [{ logicalBlockSize: 1024 }, 1 << 20, /logicalBlockSize must be 512 or 4096/],
    [{ physicalBlockSize: 256 }, 1 << 20, /physicalBlockSize/],
    [{}, 1000, /size 1000 must be a non-negative multiple/],
    [{ maxTransferBytes: 100 }, 1 << 20, /maxTransferBytes/],
    [
      { copy: { maxBytes: 8192, maxHwBytes: 4096, maxRanges: 1, maxRangeBytes: 4096 } },
      1 << 20,
      /exceeds copy.maxHwBytes/,
    ],
    [{ copy: { maxBytes: 0, maxHwBytes: 0, maxRanges: 1, maxRangeBytes: 4096 } }, 1 << 20, /omit `copy`/],
    [{ copy: { maxBytes: 4096, maxHwBytes: 4096, maxRanges: 0, maxRangeBytes: 4096 } }, 1 << 20, /maxRanges/],
    [
      { copy: { maxBytes: 1000, maxHwBytes: 4096, maxRanges: 1, maxRangeBytes: 4096 } },
      1 << 20,
      /copy.maxBytes 1000/,
    ],
    [
      {
        zoned: {
          zoneSize: 3 << 20,
          zoneCapacity: 1 << 20,
          nrZones: 1,
          maxOpenZones: 0,
          maxActiveZones: 0,
          maxZoneAppendBytes: 4096,
        },
      },
      3 << 20,
      /zoneSize .* power of two/,
    ],
    [
      {
        zoned: {
          zoneSize: 1 << 20,
          zoneCapacity: 2 << 20,
          nrZones: 1,
          maxOpenZones: 0,
          maxActiveZones: 0,
          maxZoneAppendBytes: 4096,
        },
      },
      1 << 20,
      /zoneCapacity/,
    ],
    [
      {
        zoned: {
          zoneSize: 1 << 20,
          zoneCapacity: 1 << 20,
          nrZones: 3,
          maxOpenZones: 0,
          maxActiveZones: 0,
          maxZoneAppendBytes: 4096,
        },
      },
      2 << 20,
      /nrZones 3 disagrees/,
    ],
    [
      {
        zoned: {
          zoneSize: 1 << 20,
          zoneCapacity: 1 << 20,
          nrZones: 2,
          maxOpenZones: 4,
          maxActiveZones: 2,
          maxZoneAppendBytes: 4096,
        },
      },
      2 << 20,
      /maxOpenZones 4 exceeds maxActiveZones 2/,
    ],
  ];
  for (const [patch, size, re] of bad) {
    assert.throws(
      () => validateLimits({ ...base, ...patch }, size),
      (e: Error & { code?: string }) => e.code === 'EINVAL' && re.test(e.message),
      `${JSON.stringify(patch)} should fail with ${re}`,
    );
  }
});

test('setCopyMaxBytes tunes at or below the hardware limit; 0 disables offload', () => {
  const l: QueueLimits = { ...base, copy: { ...DEFAULT_COPY_LIMITS } };
  assert.equal(copyOffloadEnabled(l), true);
  setCopyMaxBytes(l, 1 << 20);
  assert.equal(l.copy!.maxBytes, 1 << 20);
  setCopyMaxBytes(l, 0);
  assert.equal(copyOffloadEnabled(l), false);
  assert.throws(() => setCopyMaxBytes(l, l.copy!.maxHwBytes + 512), /exceeds the hardware limit/);
  assert.throws(() => setCopyMaxBytes(l, 1000), /multiple of 512/);
  assert.throws(
    () => setCopyMaxBytes({ ...base, copy: undefined }, 4096),
    (e: Error & { code?: string }) => e.code === 'EOPNOTSUPP',
  );
});

test('stackLimits: min for copy (0 = unsupported), minNotZero for maxima, max for block sizes', () => {
  const a: QueueLimits = {
    ...base,
    copy: { maxBytes: 1 << 20, maxHwBytes: 2 << 20, maxRanges: 8, maxRangeBytes: 1 << 19 },
  };
  const b: QueueLimits = {
    ...base,
    logicalBlockSize: 4096,
    maxTransferBytes: 1 << 19,
    readOnly: true,
    copy: { maxBytes: 4 << 20, maxHwBytes: 4 << 20, maxRanges: 2, maxRangeBytes: 1 << 20 },
    discard: { granularity: 65536, maxBytes: 0, zeroesData: false },
  };
  const s = stackLimits(a, b);
  assert.equal(s.logicalBlockSize, 4096);
  assert.equal(s.maxTransferBytes, 1 << 19);
  assert.equal(s.readOnly, true);
  assert.deepEqual(s.copy, { maxBytes: 1 << 20, maxHwBytes: 2 << 20, maxRanges: 2, maxRangeBytes: 1 << 19 });
  assert.deepEqual(s.discard, { granularity: 65536, maxBytes: 1 << 30, zeroesData: false });
  const noCopy = stackLimits(a, { ...base, copy: undefined });
  assert.equal(noCopy.copy, undefined);
  const noDiscard = stackLimits(a, { ...base, discard: undefined });
  assert.equal(noDiscard.discard, undefined);
});

test('isPowerOfTwo', () => {
  assert.deepEqual([1, 2, 4096, 2 ** 40].map(isPowerOfTwo), [true, true, true, true]);
  assert.deepEqual([0, 3, -4, 1.5, 2 ** 40 + 1].map(isPowerOfTwo), [false, false, false, false, false]);
});
