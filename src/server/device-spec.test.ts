import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config-error.js';
import { isInlineSpec, parseDeviceSpec } from './device-spec.js';

test('ram, null and file specs', () => {
  assert.deepEqual(parseDeviceSpec('ram:1G'), { type: 'ram', size: 2 ** 30 });
  assert.deepEqual(parseDeviceSpec('null:1T'), { type: 'null', size: 2 ** 40 });
  assert.deepEqual(parseDeviceSpec('file:/path/to/img'), { type: 'file', path: '/path/to/img' });
});

test('file options: size, create, ro, lbs', () => {
  assert.deepEqual(parseDeviceSpec('file:/tmp/a.img,size=1G,create'), {
    type: 'file',
    path: '/tmp/a.img',
    size: 2 ** 30,
    create: true,
  });
  assert.deepEqual(parseDeviceSpec('file:rel.img,ro,lbs=4k,pbs=4096'), {
    type: 'file',
    path: 'rel.img',
    readOnly: true,
    logicalBlockSize: 4096,
    physicalBlockSize: 4096,
  });
});

test('ram options: lbs, copy=off, ro, name, pbs, max-transfer', () => {
  assert.deepEqual(parseDeviceSpec('ram:64M,lbs=4096,copy=off,ro'), {
    type: 'ram',
    size: 64 << 20,
    logicalBlockSize: 4096,
    copy: false,
    readOnly: true,
  });
  assert.deepEqual(parseDeviceSpec('ram:1M,name=fast0,pbs=8k,max-transfer=128k,ro=off,copy=on'), {
    type: 'ram',
    size: 1 << 20,
    name: 'fast0',
    physicalBlockSize: 8192,
    maxTransferBytes: 131072,
    readOnly: false,
  });
});

test('copy tuning options', () => {
  assert.deepEqual(parseDeviceSpec('ram:1G,copy-max=1M'), {
    type: 'ram',
    size: 2 ** 30,
    copyMaxBytes: 1 << 20,
  });
  assert.deepEqual(
    parseDeviceSpec('null:1G,copy-max-hw=2M,copy-max-ranges=4,copy-max-range=64k,copy-max=0'),
    {
      type: 'null',
      size: 2 ** 30,
      copy: { maxHwBytes: 2 << 20, maxRanges: 4, maxRangeBytes: 65536 },
      copyMaxBytes: 0,
    },
  );
});

test('isInlineSpec', () => {
  assert.equal(isInlineSpec('ram:1G'), true);
  assert.equal(isInlineSpec('disk0'), false);
});

const errors: Array<[string, string]> = [
  [
    'disk0',
    'device spec "disk0": not a device spec: expected KIND:ARG with KIND one of ram, null, file, nvme-tcp (e.g. ram:1G, file:/tmp/disk.img, nvme-tcp://HOST:PORT/SUBNQN/NSID), or a device name from --config',
  ],
  ['tape:1G', 'device spec "tape:1G": unknown device kind "tape"; expected one of ram, null, file, nvme-tcp'],
  ['ram:', 'device spec "ram:": missing size after "ram:" (e.g. ram:1G)'],
  ['file:', 'device spec "file:": missing path after "file:"'],
  [
    'ram:1.5G',
    'device spec "ram:1.5G": invalid size "1.5G": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB',
  ],
  [
    'null:-1',
    'device spec "null:-1": invalid size "-1": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB',
  ],
  [
    'ram:10X',
    'device spec "ram:10X": invalid size "10X": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB',
  ],
  [
    'ram:1G,fast',
    'device spec "ram:1G,fast": unknown option "fast" for ram; expected one of name, lbs, pbs, max-transfer, ro, copy, copy-max, copy-max-hw, copy-max-ranges, copy-max-range',
  ],
  [
    'ram:1G,create',
    'device spec "ram:1G,create": unknown option "create" for ram; expected one of name, lbs, pbs, max-transfer, ro, copy, copy-max, copy-max-hw, copy-max-ranges, copy-max-range',
  ],
  [
    'file:/a,zoned',
    'device spec "file:/a,zoned": unknown option "zoned" for file; expected one of name, lbs, pbs, max-transfer, ro, copy, copy-max, copy-max-hw, copy-max-ranges, copy-max-range, size, create',
  ],
  ['ram:1G,,ro', 'device spec "ram:1G,,ro": empty option (two commas in a row, or a trailing comma)'],
  [
    'ram:1G,lbs=1024',
    'device spec "ram:1G,lbs=1024": option "lbs": logical block size must be 512 or 4096, got 1024',
  ],
  ['ram:1G,lbs', 'device spec "ram:1G,lbs": option "lbs": needs a value (lbs=...)'],
  [
    'ram:1G,pbs=3000',
    'device spec "ram:1G,pbs=3000": option "pbs": physical block size must be a power of two of at least 512, got 3000',
  ],
  [
    'ram:1G,ro=maybe',
    'device spec "ram:1G,ro=maybe": option "ro": invalid value "maybe": expected on or off',
  ],
  ['ram:1G,copy', 'device spec "ram:1G,copy": option "copy": needs a value (copy=...)'],
  ['ram:1G,ro,ro', 'device spec "ram:1G,ro,ro": option "ro": given twice'],
  [
    'ram:1G,copy-max=1.5M',
    'device spec "ram:1G,copy-max=1.5M": option "copy-max": invalid size "1.5M": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB',
  ],
  [
    'ram:1G,copy-max-ranges=0',
    'device spec "ram:1G,copy-max-ranges=0": option "copy-max-ranges": invalid count "0": expected a positive whole number',
  ],
  [
    'ram:1G,copy=off,copy-max=1M',
    'device spec "ram:1G,copy=off,copy-max=1M": copy=off cannot be combined with copy-max* options',
  ],
  [
    'ram:1G,copy=off,copy-max-hw=1M',
    'device spec "ram:1G,copy=off,copy-max-hw=1M": option "copy-max-hw": copy=off cannot be combined with copy-max* options',
  ],
  [
    'ram:1G,name=a:b',
    'device spec "ram:1G,name=a:b": option "name": invalid device name "a:b": use letters, digits, ".", "_" and "-", starting with a letter or digit',
  ],
  [
    'file:/a.img,create',
    'device spec "file:/a.img,create": create needs size=SIZE (the size of the new image)',
  ],
];

for (const [spec, message] of errors) {
  test(`rejects ${spec}`, () => {
    assert.throws(
      () => parseDeviceSpec(spec),
      (err: unknown) => ConfigError.is(err) && err.message === message,
      `expected: ${message}`,
    );
  });
}

test('a custom prefix replaces the spec in messages', () => {
  assert.throws(() => parseDeviceSpec('ram:1Q', 'devices.z.backing'), {
    message: /^devices\.z\.backing: invalid size "1Q"/,
  });
});
