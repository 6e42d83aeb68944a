import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config-error.js';
import { parseDeviceSpec } from './device-spec.js';
import { connectionKey, formatAddress, formatNvmeTcpUrl, parseAddress } from './nvme-tcp-spec.js';

const NQN = 'nqn.2026-11.io.tsblk:default';

test('nvme-tcp URLs: address, port default, NQN, NSID', () => {
  assert.deepEqual(parseDeviceSpec(`nvme-tcp://127.0.0.1:4421/${NQN}/1`), {
    type: 'nvme-tcp',
    address: { host: '127.0.0.1', port: 4421 },
    subnqn: NQN,
    nsid: 1,
  });
  assert.deepEqual(parseDeviceSpec(`nvme-tcp://10.0.0.5/${NQN}/4294967294`), {
    type: 'nvme-tcp',
    address: { host: '10.0.0.5', port: 4420 },
    subnqn: NQN,
    nsid: 4294967294,
  });
  assert.deepEqual(parseDeviceSpec(`nvme-tcp://[::1]:4420/${NQN}/2`), {
    type: 'nvme-tcp',
    address: { host: '::1', port: 4420 },
    subnqn: NQN,
    nsid: 2,
  });
  const address = (text: string) => {
    const s = parseDeviceSpec(text);
    assert.equal(s.type, 'nvme-tcp');
    return s.type === 'nvme-tcp' ? s.address : undefined;
  };
  assert.deepEqual(address(`nvme-tcp://[fe80::1]/${NQN}/3`), { host: 'fe80::1', port: 4420 });
  assert.deepEqual(address(`nvme-tcp://storage-1.example.com/${NQN}/3`), {
    host: 'storage-1.example.com',
    port: 4420,
  });
});

test('nvme-tcp URLs: an NQN may contain "/" and %-escapes', () => {
  const s = parseDeviceSpec('nvme-tcp://h:1/nqn.2026-11.io.tsblk:a/b%3Fc/7');
  assert.equal(s.type, 'nvme-tcp');
  assert.equal(s.type === 'nvme-tcp' && s.subnqn, 'nqn.2026-11.io.tsblk:a/b?c');
  assert.equal(s.type === 'nvme-tcp' && s.nsid, 7);
});

test('nvme-tcp URL options', () => {
  assert.deepEqual(
    parseDeviceSpec(
      `nvme-tcp://127.0.0.1/${NQN}/1?hostnqn=nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427&hdgst&ddgst=off&queues=2&name=remote0`,
    ),
    {
      type: 'nvme-tcp',
      address: { host: '127.0.0.1', port: 4420 },
      subnqn: NQN,
      nsid: 1,
      hostnqn: 'nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427',
      headerDigest: true,
      dataDigest: false,
      ioQueues: 2,
      name: 'remote0',
    },
  );
});

const P = `nvme-tcp://127.0.0.1:4420/${NQN}`;
const FORM =
  'expected nvme-tcp://HOST[:PORT]/SUBNQN/NSID (e.g. nvme-tcp://127.0.0.1:4420/nqn.2026-11.io.tsblk:default/1)';
const errors: Array<[string, string]> = [
  ['nvme-tcp:127.0.0.1', FORM],
  ['nvme-tcp://127.0.0.1', `missing /SUBNQN/NSID after the address; ${FORM}`],
  [`nvme-tcp:///${NQN}/1`, `missing host; ${FORM}`],
  [`nvme-tcp://127.0.0.1/${NQN}`, `missing the namespace ID after the NQN; ${FORM}`],
  [`nvme-tcp://127.0.0.1/${NQN}/`, `missing the namespace ID after the NQN; ${FORM}`],
  ['nvme-tcp://127.0.0.1//1', `missing the subsystem NQN; ${FORM}`],
  [`${P}/0`, 'invalid namespace ID "0": expected 1..4294967294'],
  [`${P}/4294967295`, 'invalid namespace ID "4294967295": expected 1..4294967294'],
  [`${P}/one`, 'invalid namespace ID "one": expected 1..4294967294'],
  [`nvme-tcp://127.0.0.1:0/${NQN}/1`, 'invalid port "0": expected 1..65535'],
  [`nvme-tcp://127.0.0.1:70000/${NQN}/1`, 'invalid port "70000": expected 1..65535'],
  [`nvme-tcp://127.0.0.1:/${NQN}/1`, 'invalid port "": expected 1..65535'],
  [`nvme-tcp://::1/${NQN}/1`, '"::1": put an IPv6 address in brackets, e.g. [::1]:4420'],
  [`nvme-tcp://[::1/${NQN}/1`, 'missing "]" after the IPv6 address in "[::1"'],
  [`nvme-tcp://[::1]x/${NQN}/1`, 'unexpected "x" after "]" in "[::1]x": expected :PORT'],
  [`nvme-tcp://[1.2.3.4]/${NQN}/1`, '"1.2.3.4" in brackets is not an IPv6 address'],
  [`nvme-tcp://bad_host/${NQN}/1`, '"bad_host" is not an IP address or host name'],
  [
    'nvme-tcp://127.0.0.1/disk0/1',
    'subsystem NQN "disk0" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)',
  ],
  ['nvme-tcp://127.0.0.1/nqn.x%2/1', 'subsystem NQN "nqn.x%2" has a malformed %-escape'],
  [`${P}/1?fast`, 'unknown option "fast" for nvme-tcp; expected one of hostnqn, hdgst, ddgst, queues, name'],
  [`${P}/1?hdgst&&ddgst`, 'empty option (two "&" in a row, or a trailing "&" or "?")'],
  [`${P}/1?`, 'empty option (two "&" in a row, or a trailing "&" or "?")'],
  [`${P}/1?hdgst&hdgst=off`, 'option "hdgst": given twice'],
  [`${P}/1?hdgst=maybe`, 'option "hdgst": invalid value "maybe": expected on or off'],
  [`${P}/1?queues=0`, 'option "queues": invalid count "0": expected 1..65535 I/O queues'],
  [`${P}/1?queues`, 'option "queues": needs a value (queues=...)'],
  [
    `${P}/1?hostnqn=host1`,
    'option "hostnqn": host NQN "host1" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)',
  ],
  [
    `${P}/1?name=a/b`,
    'option "name": invalid device name "a/b": use letters, digits, ".", "_" and "-", starting with a letter or digit',
  ],
];

for (const [spec, detail] of errors) {
  test(`rejects ${spec}`, () => {
    const message = `device spec "${spec}": ${detail}`;
    assert.throws(
      () => parseDeviceSpec(spec),
      (err: unknown) => ConfigError.is(err) && err.message === message,
      `expected: ${message}`,
    );
  });
}

test('parseAddress: HOST[:PORT] with a default port', () => {
  assert.deepEqual(parseAddress('127.0.0.1', 8009, 'discover'), { host: '127.0.0.1', port: 8009 });
  assert.deepEqual(parseAddress('127.0.0.1:4420', 8009, 'discover'), { host: '127.0.0.1', port: 4420 });
  assert.deepEqual(parseAddress('[::1]:8010', 8009, 'discover'), { host: '::1', port: 8010 });
  assert.deepEqual(parseAddress('::1', 8009, 'discover'), { host: '::1', port: 8009 });
  assert.deepEqual(parseAddress('localhost', 4420, 'x'), { host: 'localhost', port: 4420 });
  assert.throws(() => parseAddress('127.0.0.1:x', 8009, 'discover'), {
    message: 'discover: invalid port "x": expected 1..65535',
  });
});

test('formatting addresses and URLs; the association key', () => {
  assert.equal(formatAddress({ host: '::1', port: 4420 }), '[::1]:4420');
  assert.equal(formatAddress({ host: '127.0.0.1', port: 4420 }), '127.0.0.1:4420');
  assert.equal(
    formatNvmeTcpUrl({ address: { host: '::1', port: 4420 }, subnqn: NQN }, 3),
    `nvme-tcp://[::1]:4420/${NQN}/3`,
  );
  const a = parseDeviceSpec(`nvme-tcp://127.0.0.1/${NQN}/1?hdgst`);
  const b = parseDeviceSpec(`nvme-tcp://127.0.0.1:4420/${NQN}/2?queues=1`);
  const c = parseDeviceSpec(`nvme-tcp://127.0.0.1:4420/${NQN}/2?hostnqn=nqn.2026-11.io.tsblk:h2`);
  assert.ok(a.type === 'nvme-tcp' && b.type === 'nvme-tcp' && c.type === 'nvme-tcp');
  assert.equal(connectionKey(a), connectionKey(b), 'options do not make another association');
  assert.notEqual(connectionKey(a), connectionKey(c), 'another host NQN does');
});
