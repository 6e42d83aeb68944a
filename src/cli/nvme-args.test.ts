import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../server/config.js';
import { ConfigError } from '../server/config-error.js';
import { UsageError } from './errors.js';
import { resolveNvmeTarget } from './nvme-args.js';

const NQN = 'nqn.2026-11.io.tsblk:default';

test('a namespace URL, a controller URL, an address with --nqn', () => {
  assert.deepEqual(resolveNvmeTarget(`nvme-tcp://10.0.0.1:4421/${NQN}/3?hdgst`, {}, undefined, 'id-ns'), {
    connection: { address: { host: '10.0.0.1', port: 4421 }, subnqn: NQN, headerDigest: true },
    nsid: 3,
  });
  assert.deepEqual(resolveNvmeTarget(`nvme-tcp://[::1]/${NQN}?queues=2`, {}, undefined, 'id-ctrl'), {
    connection: { address: { host: '::1', port: 4420 }, subnqn: NQN, ioQueues: 2 },
  });
  assert.deepEqual(
    resolveNvmeTarget(
      '127.0.0.1:4430',
      { nqn: NQN, hostnqn: 'nqn.2026-11.io.tsblk:me', hdrDigest: true, nrIoQueues: 1 },
      undefined,
      'connect',
    ),
    {
      connection: {
        address: { host: '127.0.0.1', port: 4430 },
        subnqn: NQN,
        hostnqn: 'nqn.2026-11.io.tsblk:me',
        headerDigest: true,
        ioQueues: 1,
      },
    },
  );
});

test('an nvme-tcp config device; command-line options override it', () => {
  const config = parseConfig({
    devices: {
      r: { type: 'nvme-tcp', address: '10.0.0.2', subnqn: NQN, nsid: 2, dataDigest: false },
      m: { type: 'ram', size: '1M' },
    },
  });
  assert.deepEqual(resolveNvmeTarget('r', { dataDigest: true }, config, 'id-ns'), {
    connection: { address: { host: '10.0.0.2', port: 4420 }, subnqn: NQN, dataDigest: true },
    nsid: 2,
  });
  assert.throws(
    () => resolveNvmeTarget('m', {}, config, 'id-ctrl'),
    (err: unknown) =>
      UsageError.is(err) &&
      err.message ===
        'id-ctrl: "m" is a ram device, not an NVMe/TCP namespace; give HOST[:PORT] --nqn SUBNQN, nvme-tcp://HOST[:PORT]/SUBNQN[/NSID] or an nvme-tcp device from --config',
  );
  assert.throws(() => resolveNvmeTarget('disk9', {}, config, 'id-ctrl'), {
    message: /^id-ctrl: unknown device "disk9"; give /,
  });
});

test('errors: no --nqn, a local device, a bad controller URL, a bad --nqn', () => {
  assert.throws(() => resolveNvmeTarget('127.0.0.1', {}, undefined, 'connect'), {
    message: /^connect: which subsystem\? give --nqn SUBNQN with an address/,
  });
  assert.throws(() => resolveNvmeTarget('null:1G', {}, undefined, 'id-ns'), {
    message: /^id-ns: "null:1G" is a null device, not an NVMe\/TCP controller; /,
  });
  assert.throws(
    () => resolveNvmeTarget('nvme-tcp://127.0.0.1', {}, undefined, 'id-ctrl'),
    (err: unknown) =>
      ConfigError.is(err) &&
      err.message ===
        '"nvme-tcp://127.0.0.1": missing /SUBNQN[/NSID] after the address; expected nvme-tcp://HOST[:PORT]/SUBNQN[/NSID] (e.g. nvme-tcp://127.0.0.1:4420/nqn.2026-11.io.tsblk:default/1)',
  );
  assert.throws(() => resolveNvmeTarget('127.0.0.1', { nqn: 'disk0' }, undefined, 'connect'), {
    message: '--nqn: subsystem NQN "disk0" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)',
  });
});
