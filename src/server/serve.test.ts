// Server (tsblk serve in-process): the default subsystem, a config's subsystems and ports, the
// nvme-cli lines, the listener overrides, errors, and the graceful shutdown that flushes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError } from './config-error.js';
import { parseConfig } from './config.js';
import { DEFAULT_NQN, Server } from './serve.js';
import { isSuccess } from '../nvme/status.js';
import { TcpHostController } from '../target/tcp/testing/host.js';

const LOCAL0 = [{ address: '127.0.0.1', port: 0 }];

test('without a config: the default subsystem over a 1 GiB RAM namespace with copy offload', async () => {
  const s = await Server.start({ listen: LOCAL0, discoveryListen: LOCAL0, nbdListen: LOCAL0 });
  try {
    assert.deepEqual(
      s.subsystems.map((x) => x.nqn),
      [DEFAULT_NQN],
    );
    const ns = s.subsystems[0]!.namespaces;
    assert.equal(ns.length, 1);
    assert.equal(ns[0]!.nsid, 1);
    assert.equal(ns[0]!.device.size, 2 ** 30);
    assert.equal(ns[0]!.device.kind, 'ram');
    assert.equal(ns[0]!.copyOffload, true);
    const [io, disc] = s.listeners;
    assert.equal(io!.kind, 'io');
    assert.equal(disc!.kind, 'discovery');
    assert.deepEqual(s.connectCommands(), [
      `nvme discover -t tcp -a 127.0.0.1 -s ${disc!.port}`,
      `nvme connect -t tcp -a 127.0.0.1 -s ${io!.port} -n ${DEFAULT_NQN}`,
    ]);
    const c = await TcpHostController.connect({ host: '127.0.0.1', port: io!.port }, { subnqn: DEFAULT_NQN });
    const last = 2 ** 30 / 512 - 8;
    const data = randomBytes(4096);
    assert.ok(isSuccess((await c.write(1, last, data)).cqe.status));
    assert.deepEqual((await c.read(1, last, 8)).data, data);
    await c.close();
  } finally {
    const report = await s.close();
    assert.deepEqual(report, { flushed: ['ram0'], errors: [] });
  }
});

test('a config: file namespace, restricted port, no discovery; shutdown flushes and closes the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-serve-'));
  try {
    const nqn = 'nqn.2026-11.io.tsblk:file';
    const other = 'nqn.2026-11.io.tsblk:hidden';
    const config = parseConfig(
      {
        devices: { disk0: { type: 'file', path: 'disk0.img', size: '8M', create: true } },
        subsystems: {
          [nqn]: { namespaces: [{ device: 'disk0' }] },
          [other]: { namespaces: [{ device: 'ram:1M' }] },
        },
        ports: [{ address: '127.0.0.1', port: 0, subsystems: [nqn] }],
      },
      { baseDir: dir },
    );
    const s = await Server.start({ config });
    assert.equal(s.listeners.length, 1, 'the config lists no discovery port');
    assert.deepEqual(s.connectCommands(), [
      `nvme connect -t tcp -a 127.0.0.1 -s ${s.listeners[0]!.port} -n ${nqn}`,
    ]);
    const c = await TcpHostController.connect(
      { host: '127.0.0.1', port: s.listeners[0]!.port },
      { subnqn: nqn },
    );
    const data = randomBytes(64 * 1024);
    assert.ok(isSuccess((await c.write(1, 16384 - 128, data)).cqe.status));
    const report = await s.close();
    assert.deepEqual(report, { flushed: ['disk0', 'ram0'], errors: [] });
    await c.admin.closed;
    const file = await readFile(join(dir, 'disk0.img'));
    assert.equal(file.length, 8 * 1024 * 1024);
    assert.deepEqual(file.subarray(file.length - data.length), data);
    assert.equal(s.target.ports.length, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('refuses a config without subsystems, or with discovery listeners only', async () => {
  await assert.rejects(
    Server.start({ config: parseConfig({ devices: {} }, { source: 'site.json' }) }),
    (e: unknown) => ConfigError.is(e) && /^site\.json: defines no subsystems/.test(e.message),
  );
  const config = parseConfig({
    subsystems: { 'nqn.2026-11.io.tsblk:a': { namespaces: [{ device: 'ram:1M' }] } },
    ports: [{ address: '127.0.0.1', port: 0, discovery: true }],
  });
  await assert.rejects(Server.start({ config }), /ports: lists only discovery listeners/);
});

test('errors building the target name the config entry', async () => {
  const config = parseConfig(
    {
      devices: { mem: { type: 'ram', size: '1M' } },
      subsystems: { 'nqn.2026-11.io.tsblk:a': { namespaces: [{ device: 'mem', mcl: 100 }] } },
    },
    { source: 'site.json' },
  );
  // MCL 100 is below the MSSRL derived from the device (65535 blocks).
  await assert.rejects(
    Server.start({ config, listen: LOCAL0, discovery: false }),
    (e: unknown) =>
      ConfigError.is(e) &&
      e.message.startsWith('site.json: subsystems["nqn.2026-11.io.tsblk:a"]: namespace 1: copy limits: mcl'),
  );
});

test('a listener that cannot bind fails the start and leaves nothing open', async () => {
  const first = await Server.start({ listen: LOCAL0, discovery: false, nbd: false });
  try {
    const port = first.listeners[0]!.port;
    await assert.rejects(
      Server.start({ listen: [{ address: '127.0.0.1', port }], discovery: false, nbd: false }),
      (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE',
    );
  } finally {
    await first.close();
  }
});
