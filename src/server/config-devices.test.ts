// Config devices of type nvme-tcp (the other types are covered by config.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config-error.js';
import { parseConfig } from './config.js';

const NQN = 'nqn.2026-11.io.tsblk:default';

test('an nvme-tcp device: address with and without a port, options', () => {
  const c = parseConfig({
    devices: {
      r1: { type: 'nvme-tcp', address: '10.0.0.5:4421', subnqn: NQN, nsid: 1 },
      r2: {
        type: 'nvme-tcp',
        address: '[::1]',
        subnqn: NQN,
        nsid: 2,
        hostnqn: 'nqn.2026-11.io.tsblk:host-a',
        headerDigest: true,
        dataDigest: false,
        ioQueues: 2,
      },
      z: { type: 'zoned', backing: `nvme-tcp://127.0.0.1/${NQN}/3`, zoneSize: '4M' },
    },
  });
  assert.deepEqual(c.devices.get('r1'), {
    type: 'nvme-tcp',
    name: 'r1',
    address: { host: '10.0.0.5', port: 4421 },
    subnqn: NQN,
    nsid: 1,
  });
  assert.deepEqual(c.devices.get('r2'), {
    type: 'nvme-tcp',
    name: 'r2',
    address: { host: '::1', port: 4420 },
    subnqn: NQN,
    nsid: 2,
    hostnqn: 'nqn.2026-11.io.tsblk:host-a',
    headerDigest: true,
    dataDigest: false,
    ioQueues: 2,
  });
  const z = c.devices.get('z');
  assert.ok(z?.type === 'zoned' && 'spec' in z.backing);
  assert.equal(z.backing.spec.type, 'nvme-tcp');
});

const bad: Array<[Record<string, unknown>, string]> = [
  [{ subnqn: NQN, nsid: 1 }, 'devices.r.address: is required'],
  [{ address: '127.0.0.1', nsid: 1 }, 'devices.r.subnqn: is required'],
  [{ address: '127.0.0.1', subnqn: NQN }, 'devices.r.nsid: is required'],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: '1' },
    'devices.r.nsid: expected a namespace ID 1..4294967294, got the string "1"',
  ],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: 0 },
    'devices.r.nsid: invalid namespace ID "0": expected 1..4294967294',
  ],
  [
    { address: '127.0.0.1:99999', subnqn: NQN, nsid: 1 },
    'devices.r.address: invalid port "99999": expected 1..65535',
  ],
  [
    { address: 'fe80::1:4420', subnqn: NQN, nsid: 1 },
    'devices.r.address: "fe80::1:4420": put an IPv6 address in brackets, e.g. [::1]:4420',
  ],
  [
    { address: '127.0.0.1', subnqn: 'disk0', nsid: 1 },
    'devices.r.subnqn: subsystem NQN "disk0" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)',
  ],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: 1, hostnqn: 'me' },
    'devices.r.hostnqn: host NQN "me" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)',
  ],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: 1, ioQueues: 0 },
    'devices.r.ioQueues: expected a whole number ≥ 1, got number 0',
  ],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: 1, headerDigest: 'yes' },
    'devices.r.headerDigest: expected true or false, got the string "yes"',
  ],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: 1, size: '1G' },
    'devices.r.size: unknown key; expected one of type, address, subnqn, nsid, hostnqn, headerDigest, dataDigest, ioQueues',
  ],
  [
    { address: '127.0.0.1', subnqn: NQN, nsid: 1, hdgst: true },
    'devices.r.hdgst: unknown key; expected one of type, address, subnqn, nsid, hostnqn, headerDigest, dataDigest, ioQueues',
  ],
];

for (const [entry, message] of bad) {
  test(`config error: ${message}`, () => {
    assert.throws(
      () => parseConfig({ devices: { r: { type: 'nvme-tcp', ...entry } } }),
      (err: unknown) => ConfigError.is(err) && err.message === message,
      `expected: ${message}`,
    );
  });
}
