// The `subsystems` and `ports` config sections: what they parse to and every error, with the
// path of the offending value.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config-error.js';
import { parseConfig } from './config.js';

const NQN = 'nqn.2026-11.io.tsblk:disk0';
const NQN2 = 'nqn.2026-11.io.tsblk:scratch';
const HOST = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555';

const EXAMPLE = {
  devices: {
    disk0: { type: 'file', path: 'disk0.img', size: '1G', create: true },
    mem: { type: 'ram', size: '256M' },
  },
  subsystems: {
    [NQN]: {
      serial: 'TSBLK0001',
      model: 'tsblk disk0',
      hosts: [HOST],
      namespaces: [
        { device: 'disk0' },
        { nsid: 1, device: 'mem', readOnly: true, nguid: '0123456789abcdef0123456789abcdef' },
        { device: 'ram:64M', eui64: '02:00:00:00:00:00:00:01', uuid: '6f2a8c1e-3b7d-4e59-9a0c-5d1e8f2b4c73' },
      ],
    },
    [NQN2]: { namespaces: [{ device: 'mem', mssrl: 128, mcl: 128, msrc: 127 }] },
  },
  ports: [
    { address: '127.0.0.1', port: 4420, subsystems: [NQN] },
    { address: '::1' },
    { address: '127.0.0.1', discovery: true },
  ],
};

test('parses subsystems, namespaces and ports with their defaults', () => {
  const c = parseConfig(EXAMPLE, { baseDir: '/srv' });
  assert.deepEqual([...c.subsystems.keys()], [NQN, NQN2]);
  const s = c.subsystems.get(NQN)!;
  assert.equal(s.serial, 'TSBLK0001');
  assert.equal(s.model, 'tsblk disk0');
  assert.deepEqual(s.hosts, [HOST]);
  assert.equal(s.allowAnyHost, false, 'a host list restricts access unless allowAnyHost says otherwise');
  // NSID 1 is claimed explicitly, so the others get 2 and 3 in order.
  assert.deepEqual(
    s.namespaces.map((n) => [n.nsid, n.device]),
    [
      [2, 'disk0'],
      [1, 'mem'],
      [3, 'ram:64M'],
    ],
  );
  assert.equal(s.namespaces[1]!.readOnly, true);
  assert.equal(s.namespaces[1]!.nguid, '0123456789abcdef0123456789abcdef');
  assert.equal(s.namespaces[2]!.eui64, '02:00:00:00:00:00:00:01');
  assert.equal(s.namespaces[2]!.path, `subsystems["${NQN}"].namespaces[2]`);
  const s2 = c.subsystems.get(NQN2)!;
  assert.equal(s2.allowAnyHost, true);
  assert.deepEqual(s2.namespaces[0]!.copyLimits, { mssrl: 128, mcl: 128, msrc: 127 });
  assert.deepEqual(
    c.ports.map((p) => [p.portid, p.address, p.port, p.discovery, p.subsystems]),
    [
      [1, '127.0.0.1', 4420, false, [NQN]],
      [2, '::1', 4420, false, undefined],
      [3, '127.0.0.1', 8009, true, undefined],
    ],
  );
});

test('sections are optional', () => {
  const c = parseConfig({ devices: { mem: { type: 'ram', size: '1M' } } });
  assert.equal(c.subsystems.size, 0);
  assert.deepEqual(c.ports, []);
});

const ns = (e: Record<string, unknown>) => ({ subsystems: { [NQN]: { namespaces: [e] } } });

const errors: Array<[string, unknown, string]> = [
  ['subsystems not an object', { subsystems: [] }, 'subsystems: expected an object, got an array'],
  [
    'bad NQN',
    { subsystems: { 'disk 0': {} } },
    'subsystems["disk 0"]: subsystem NQN "disk 0" must be 1..223 printable ASCII characters without spaces',
  ],
  [
    'NQN without nqn.',
    { subsystems: { 'iqn.2026:x': {} } },
    'subsystems["iqn.2026:x"]: subsystem NQN "iqn.2026:x" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)',
  ],
  [
    'discovery NQN',
    { subsystems: { 'nqn.2014-08.org.nvmexpress.discovery': {} } },
    'subsystems["nqn.2014-08.org.nvmexpress.discovery"]: is the discovery subsystem, which every target has; it needs no entry',
  ],
  [
    'unknown subsystem key',
    { subsystems: { [NQN]: { namespace: [] } } },
    `subsystems["${NQN}"].namespace: unknown key (did you mean "namespaces"?); expected one of serial, model, allowAnyHost, hosts, namespaces`,
  ],
  [
    'serial too long',
    { subsystems: { [NQN]: { serial: 'x'.repeat(21) } } },
    `subsystems["${NQN}"].serial: "${'x'.repeat(21)}" must be 1..20 printable ASCII characters`,
  ],
  [
    'bad host NQN',
    { subsystems: { [NQN]: { hosts: ['host1'] } } },
    `subsystems["${NQN}"].hosts[0]: host NQN "host1" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)`,
  ],
  [
    'duplicate host',
    { subsystems: { [NQN]: { hosts: [HOST, HOST] } } },
    `subsystems["${NQN}"].hosts: lists ${HOST} twice`,
  ],
  [
    'allowAnyHost not boolean',
    { subsystems: { [NQN]: { allowAnyHost: 'yes' } } },
    `subsystems["${NQN}"].allowAnyHost: expected true or false, got the string "yes"`,
  ],
  [
    'namespace without device',
    ns({ nsid: 1 }),
    `subsystems["${NQN}"].namespaces[0].device: is required: the name of a device in this config, or an inline spec such as ram:1G`,
  ],
  [
    'unknown device',
    { devices: { mem: { type: 'ram', size: '1M' } }, ...ns({ device: 'disk9' }) },
    `subsystems["${NQN}"].namespaces[0].device: unknown device "disk9"; devices: mem`,
  ],
  [
    'bad inline spec',
    ns({ device: 'ram:1X' }),
    `subsystems["${NQN}"].namespaces[0].device: invalid size "1X": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB`,
  ],
  [
    'zoned device',
    {
      devices: { z: { type: 'zoned', backing: 'ram:64M', zoneSize: '4M' } },
      ...ns({ device: 'z' }),
    },
    `subsystems["${NQN}"].namespaces[0].device: "z" is a zoned device; namespaces serve the NVM command set only (no ZNS yet)`,
  ],
  [
    'nsid 0',
    ns({ nsid: 0, device: 'ram:1M' }),
    `subsystems["${NQN}"].namespaces[0].nsid: expected a whole number in 1..4294967294, got number 0`,
  ],
  [
    'duplicate nsid',
    {
      subsystems: {
        [NQN]: {
          namespaces: [
            { nsid: 4, device: 'ram:1M' },
            { nsid: 4, device: 'ram:2M' },
          ],
        },
      },
    },
    `subsystems["${NQN}"].namespaces[1].nsid: NSID 4 is already used by subsystems["${NQN}"].namespaces[0]`,
  ],
  [
    'unknown namespace key',
    ns({ device: 'ram:1M', readonly: true }),
    `subsystems["${NQN}"].namespaces[0].readonly: unknown key (did you mean "readOnly"?); expected one of nsid, device, readOnly, nguid, eui64, uuid, mssrl, mcl, msrc`,
  ],
  [
    'bad nguid',
    ns({ device: 'ram:1M', nguid: '1234' }),
    `subsystems["${NQN}"].namespaces[0].nguid: "1234" is not 32 hex digits (dashes allowed)`,
  ],
  [
    'bad uuid',
    ns({ device: 'ram:1M', uuid: '6f2a8c1e3b7d4e599a0c5d1e8f2b4c73' }),
    `subsystems["${NQN}"].namespaces[0].uuid: "6f2a8c1e3b7d4e599a0c5d1e8f2b4c73" is not a UUID (8-4-4-4-12 hex digits)`,
  ],
  [
    'mssrl too big',
    ns({ device: 'ram:1M', mssrl: 70000 }),
    `subsystems["${NQN}"].namespaces[0].mssrl: expected a whole number in 1..65535, got number 70000`,
  ],
  [
    'mcl below mssrl',
    ns({ device: 'ram:1M', mssrl: 128, mcl: 64 }),
    `subsystems["${NQN}"].namespaces[0].mcl: 64 is below mssrl 128; a single range could never be copied whole`,
  ],
  ['ports not an array', { ports: {} }, 'ports: expected an array of listeners, got an object'],
  [
    'empty ports',
    { ports: [] },
    'ports: must list at least one listener (leave the section out for the defaults)',
  ],
  ['port without address', { ports: [{ port: 4420 }] }, 'ports[0].address: is required'],
  [
    'hostname address',
    { ports: [{ address: 'localhost' }] },
    'ports[0].address: "localhost" is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1)',
  ],
  [
    'port out of range',
    { ports: [{ address: '127.0.0.1', port: 65536 }] },
    'ports[0].port: expected a whole number in 0..65535, got number 65536',
  ],
  [
    'duplicate listener',
    { ports: [{ address: '127.0.0.1' }, { address: '127.0.0.1', port: 4420 }] },
    'ports[1]: 127.0.0.1 port 4420 is already listed at ports[0]',
  ],
  [
    'unknown port key',
    { ports: [{ address: '127.0.0.1', subsystem: [] }] },
    'ports[0].subsystem: unknown key (did you mean "subsystems"?); expected one of address, port, discovery, subsystems',
  ],
  [
    'discovery with subsystems',
    { ports: [{ address: '127.0.0.1', discovery: true, subsystems: [] }] },
    'ports[0].subsystems: a discovery port exposes no subsystems; remove this key',
  ],
  [
    'unknown subsystem on a port',
    { subsystems: { [NQN]: {} }, ports: [{ address: '127.0.0.1', subsystems: [NQN2] }] },
    `ports[0].subsystems[0]: unknown subsystem "${NQN2}"; subsystems: ${NQN}`,
  ],
];

for (const [name, json, message] of errors) {
  test(`config error: ${name}`, () => {
    assert.throws(
      () => parseConfig(json),
      (e: unknown) => {
        assert.ok(ConfigError.is(e), `not a ConfigError: ${String(e)}`);
        assert.equal(e.message, message);
        return true;
      },
    );
  });
}
