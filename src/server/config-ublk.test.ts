import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseConfig } from './config.js';
import { ConfigError } from './config-error.js';

const devices = {
  disk: { type: 'ram', size: '64M' },
  zns: { type: 'zoned', backing: 'ram:64M', zoneSize: '8M' },
};

test('ublk section: defaults, every option, inline specs and config devices', () => {
  const c = parseConfig({
    devices,
    ublk: { exports: [{ device: 'disk' }, { device: 'ram:16M', queues: 2, depth: 128, id: 7 }] },
  });
  assert.deepEqual(c.ublk, {
    exports: [
      { device: 'disk', queues: 1, depth: 64, at: 'ublk.exports[0]' },
      { device: 'ram:16M', queues: 2, depth: 128, id: 7, at: 'ublk.exports[1]' },
    ],
  });
  assert.equal(parseConfig({ devices }).ublk, undefined, 'no section: no ublk');
});

const bad: Array<[string, unknown, RegExp]> = [
  ['not an object', [], /^ublk: expected an object/],
  ['no exports', {}, /^ublk\.exports: is required/],
  ['empty exports', { exports: [] }, /^ublk\.exports/],
  ['unknown key', { exports: [{ device: 'disk', size: 1 }] }, /^ublk\.exports\[0\]/],
  ['no device', { exports: [{}] }, /^ublk\.exports\[0\]\.device: is required/],
  [
    'unknown device',
    { exports: [{ device: 'dsk' }] },
    /^ublk\.exports\[0\]\.device: unknown device "dsk"; devices: disk, zns/,
  ],
  ['bad inline spec', { exports: [{ device: 'ram:' }] }, /^ublk\.exports\[0\]\.device/],
  [
    'zoned',
    { exports: [{ device: 'zns' }] },
    /zoned device; ublk exports of zoned devices are not supported yet/,
  ],
  [
    'queues 0',
    { exports: [{ device: 'disk', queues: 0 }] },
    /^ublk\.exports\[0\]\.queues: expected a whole number 1\.\.4096, got number 0/,
  ],
  [
    'depth too deep',
    { exports: [{ device: 'disk', depth: 4097 }] },
    /^ublk\.exports\[0\]\.depth: expected a whole number 1\.\.4096/,
  ],
  [
    'id not a number',
    { exports: [{ device: 'disk', id: '1' }] },
    /^ublk\.exports\[0\]\.id: expected a whole number 0\.\.1048575/,
  ],
  [
    'same id twice',
    {
      exports: [
        { device: 'disk', id: 3 },
        { device: 'ram:8M', id: 3 },
      ],
    },
    /^ublk\.exports\[1\]\.id: ublk device 3 is already asked for by ublk\.exports\[0\]/,
  ],
];

for (const [name, ublk, message] of bad) {
  test(`ublk section error: ${name}`, () => {
    assert.throws(
      () => parseConfig({ devices, ublk }),
      (e: unknown) => ConfigError.is(e) && message.test(e.message),
    );
  });
}
