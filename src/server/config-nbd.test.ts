// The `nbd` config section: what it parses to (defaults included) and every error, with the
// path of the offending value.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config-error.js';
import { parseConfig } from './config.js';

const EXAMPLE = {
  devices: {
    disk0: { type: 'file', path: 'disk0.img', size: '1G', create: true },
    mem: { type: 'ram', size: '256M' },
  },
  nbd: {
    listen: [
      '127.0.0.1:10809',
      '[::1]:0',
      { address: '0.0.0.0', port: 10900 },
      { path: 'run/nbd.sock' },
      '10.0.0.1',
    ],
    exports: {
      disk0: { device: 'disk0', description: 'the main disk' },
      scratch: { device: 'mem', readOnly: true, multiConn: false },
      '': { device: 'ram:16M' },
    },
    default: 'scratch',
    tls: {
      cert: 'pki/server-cert.pem',
      key: '/etc/pki/server-key.pem',
      ca: 'pki/ca.pem',
      verifyClient: true,
    },
  },
};

test('parses listeners, exports, the default and TLS; relative paths resolve against the config directory', () => {
  const c = parseConfig(EXAMPLE, { baseDir: '/srv/tsblk' });
  const n = c.nbd!;
  assert.deepEqual(n.listen, [
    { address: '127.0.0.1', port: 10809 },
    { address: '::1', port: 0 },
    { address: '0.0.0.0', port: 10900 },
    { path: '/srv/tsblk/run/nbd.sock' },
    { address: '10.0.0.1', port: 10809 },
  ]);
  assert.deepEqual(
    n.exports.map((e) => [e.name, e.device, e.readOnly, e.multiConn, e.description]),
    [
      ['disk0', 'disk0', false, true, 'the main disk'],
      ['scratch', 'mem', true, false, undefined],
      ['', 'ram:16M', false, true, undefined],
    ],
  );
  assert.equal(n.exports[1]!.at, 'nbd.exports.scratch');
  assert.equal(n.defaultExport, 'scratch');
  assert.deepEqual(n.tls, {
    cert: '/srv/tsblk/pki/server-cert.pem',
    key: '/etc/pki/server-key.pem',
    ca: '/srv/tsblk/pki/ca.pem',
    required: true,
    verifyClient: true,
  });
});

test('defaults: listen 127.0.0.1:10809, the first export is the default, no TLS; a single listen string', () => {
  const n = parseConfig({ nbd: { exports: { a: { device: 'ram:1M' }, b: { device: 'ram:1M' } } } }).nbd!;
  assert.deepEqual(n.listen, [{ address: '127.0.0.1', port: 10809 }]);
  assert.equal(n.defaultExport, 'a');
  assert.equal(n.tls, undefined);
  const one = parseConfig({ nbd: { listen: '[::1]:7000', exports: { a: { device: 'ram:1M' } } } }).nbd!;
  assert.deepEqual(one.listen, [{ address: '::1', port: 7000 }]);
  const opt = parseConfig({
    nbd: { exports: { a: { device: 'ram:1M' } }, tls: { cert: '/c', key: '/k', required: false } },
  }).nbd!;
  assert.deepEqual(opt.tls, { cert: '/c', key: '/k', required: false, verifyClient: false });
});

test('no nbd section: no key on the config', () => {
  const c = parseConfig({ devices: {} });
  assert.equal('nbd' in c, false);
});

const ex = (e: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  nbd: { exports: { a: e }, ...extra },
});

const errors: Array<[string, unknown, string]> = [
  ['section not an object', { nbd: [] }, 'nbd: expected an object, got an array'],
  [
    'unknown section key',
    { nbd: { export: {} } },
    'nbd.export: unknown key (did you mean "exports"?); expected one of listen, exports, default, tls',
  ],
  [
    'no exports',
    { nbd: {} },
    'nbd.exports: is required: at least one export, e.g. { "disk": { "device": "ram:1G" } }',
  ],
  ['empty exports', { nbd: { exports: {} } }, 'nbd.exports: must define at least one export'],
  [
    'unknown export key',
    ex({ device: 'ram:1M', readonly: true }),
    'nbd.exports.a.readonly: unknown key (did you mean "readOnly"?); expected one of device, readOnly, description, multiConn',
  ],
  [
    'export without device',
    ex({}),
    'nbd.exports.a.device: is required: the name of a device in this config, or an inline spec such as ram:1G',
  ],
  [
    'unknown device',
    { devices: { mem: { type: 'ram', size: '1M' } }, ...ex({ device: 'disk9' }) },
    'nbd.exports.a.device: unknown device "disk9"; devices: mem',
  ],
  ['bad inline spec', ex({ device: 'ram:1X' }), 'nbd.exports.a.device: invalid size "1X"'],
  [
    'zoned device',
    { devices: { z: { type: 'zoned', backing: 'ram:64M', zoneSize: '4M' } }, ...ex({ device: 'z' }) },
    'nbd.exports.a.device: "z" is a zoned device; NBD has no zone commands, so it cannot be exported',
  ],
  [
    'readOnly not boolean',
    ex({ device: 'ram:1M', readOnly: 1 }),
    'nbd.exports.a.readOnly: expected true or false, got number 1',
  ],
  [
    'description not a string',
    ex({ device: 'ram:1M', description: 5 }),
    'nbd.exports.a.description: expected a string, got number 5',
  ],
  [
    'name too long',
    { nbd: { exports: { ['n'.repeat(4097)]: { device: 'ram:1M' } } } },
    `nbd.exports.${'n'.repeat(4097)}: an export name is at most 4096 bytes`,
  ],
  [
    'unknown default',
    ex({ device: 'ram:1M' }, { default: 'b' }),
    'nbd.default: unknown export "b"; exports: "a"',
  ],
  [
    'listen: bare IPv6',
    ex({ device: 'ram:1M' }, { listen: ['::1'] }),
    'nbd.listen[0]: "::1": expected "ADDRESS:PORT" (e.g. "127.0.0.1:10809", "[::1]:10809"), { "address", "port" } or { "path" }; put an IPv6 address in brackets: [::1]:10809',
  ],
  [
    'listen: host name',
    ex({ device: 'ram:1M' }, { listen: ['localhost:10809'] }),
    'nbd.listen[0]: "localhost" is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1)',
  ],
  [
    'listen: port out of range',
    ex({ device: 'ram:1M' }, { listen: ['127.0.0.1:70000'] }),
    'nbd.listen[0]: expected a port 0..65535, got number 70000',
  ],
  [
    'listen: empty list',
    ex({ device: 'ram:1M' }, { listen: [] }),
    'nbd.listen: must list at least one entry',
  ],
  [
    'listen: duplicate',
    ex({ device: 'ram:1M' }, { listen: ['127.0.0.1:10809', { address: '127.0.0.1' }] }),
    'nbd.listen[1]: 127.0.0.1 port 10809 is listed twice',
  ],
  [
    'listen: path with an address',
    ex({ device: 'ram:1M' }, { listen: [{ path: '/x', port: 1 }] }),
    'nbd.listen[0].port: unknown key; expected one of path',
  ],
  [
    'listen: a number',
    ex({ device: 'ram:1M' }, { listen: [10809] }),
    'nbd.listen[0]: expected "ADDRESS:PORT" (e.g. "127.0.0.1:10809", "[::1]:10809"), { "address", "port" } or { "path" }, got number 10809',
  ],
  ['tls: no key', ex({ device: 'ram:1M' }, { tls: { cert: 'c.pem' } }), 'nbd.tls.key: is required'],
  [
    'tls: unknown key',
    ex({ device: 'ram:1M' }, { tls: { cert: 'c', key: 'k', verifyclient: true } }),
    'nbd.tls.verifyclient: unknown key (did you mean "verifyClient"?); expected one of cert, key, ca, required, verifyClient',
  ],
  [
    'tls: verifyClient without ca',
    ex({ device: 'ram:1M' }, { tls: { cert: 'c', key: 'k', verifyClient: true } }),
    'nbd.tls.verifyClient: needs "ca": the CA client certificates must chain to',
  ],
];

for (const [name, json, message] of errors) {
  test(`error: ${name}`, () => {
    assert.throws(
      () => parseConfig(json),
      (e: unknown) => {
        assert.ok(ConfigError.is(e), String(e));
        assert.ok(e.message.startsWith(message), `${e.message}\n  does not start with\n${message}`);
        return true;
      },
    );
  });
}
