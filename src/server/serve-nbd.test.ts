// Server (tsblk serve in-process), NBD side: the default NBD export beside the default
// namespace, a config's nbd section (NBD only, and a device shared by a namespace and an
// export), the overrides, and the errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError } from './config-error.js';
import { parseConfig } from './config.js';
import { Server } from './serve.js';
import { TestNbdClient } from '../export/nbd/testing/client.js';
import { isSuccess } from '../nvme/status.js';
import { TcpHostController } from '../target/tcp/testing/host.js';

const LOCAL0 = [{ address: '127.0.0.1', port: 0 }];

test('without a config: NBD export ram0 (also the default) over the namespace device', async () => {
  const s = await Server.start({ listen: LOCAL0, discovery: false, nbdListen: LOCAL0 });
  try {
    assert.ok(s.nbd);
    const ns = s.subsystems[0]!.namespaces[0]!;
    assert.equal(s.nbd.exports.length, 1);
    assert.equal(s.nbd.exports[0]!.name, 'ram0');
    assert.equal(s.nbd.exports[0]!.device, ns.device, 'the same device object');
    assert.equal(s.nbd.defaultExport, s.nbd.exports[0]);
    const port = s.nbdAddresses[0]!.port!;
    assert.deepEqual(s.nbdListeners, [
      {
        address: { host: '127.0.0.1', port },
        uris: [`nbd://127.0.0.1:${port}`, `nbd://127.0.0.1:${port}/ram0`],
      },
    ]);
    const c = await TestNbdClient.open({ host: '127.0.0.1', port }, '');
    assert.equal(c.size, 2 ** 30);
    const data = randomBytes(4096);
    const nvme = await TcpHostController.connect(
      { host: '127.0.0.1', port: s.listeners[0]!.port },
      { subnqn: s.subsystems[0]!.nqn },
    );
    assert.ok(isSuccess((await nvme.write(1, 2 ** 21 - 8, data)).cqe.status));
    assert.deepEqual((await c.read(2 ** 30 - 4096, 4096)).data, data, 'NVMe write, NBD read');
    await nvme.close();
    // Left open: close() shuts NBD down first.
  } finally {
    const report = await s.close();
    assert.deepEqual(report, { flushed: ['ram0'], errors: [] });
  }
  assert.equal(s.nbd!.connections, 0);
});

test('nbd: false and a config without an nbd section serve no NBD', async () => {
  const a = await Server.start({ listen: LOCAL0, discovery: false, nbd: false });
  assert.equal(a.nbd, undefined);
  assert.deepEqual(a.nbdListeners, []);
  await a.close();
  const json = { subsystems: { 'nqn.2026-11.io.tsblk:x': { namespaces: [{ device: 'ram:1M' }] } } };
  const b = await Server.start({ config: parseConfig(json), listen: LOCAL0, discovery: false });
  assert.equal(b.nbd, undefined);
  await b.close();
  await assert.rejects(
    Server.start({
      config: parseConfig(json, { source: 'site.json' }),
      listen: LOCAL0,
      discovery: false,
      nbdListen: LOCAL0,
    }),
    (e: unknown) => ConfigError.is(e) && /^site\.json: has no "nbd" section/.test(e.message),
  );
});

test('an NBD-only config: file export, no NVMe listeners; shutdown flushes the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-serve-nbd-'));
  try {
    const config = parseConfig(
      {
        devices: { disk0: { type: 'file', path: 'disk0.img', size: '4M', create: true } },
        nbd: {
          listen: [{ address: '127.0.0.1', port: 0 }, { path: 'nbd.sock' }],
          exports: {
            disk0: { device: 'disk0', description: 'file' },
            ro: { device: 'disk0', readOnly: true },
          },
          default: 'ro',
        },
      },
      { baseDir: dir },
    );
    const s = await Server.start({ config });
    assert.deepEqual(s.listeners, []);
    assert.equal(s.nbd!.exports[0]!.device, s.nbd!.exports[1]!.device, 'one device for both exports');
    assert.deepEqual(s.nbdListeners[1]!.uris, [
      `nbd+unix:///?socket=${join(dir, 'nbd.sock')}`,
      `nbd+unix:///disk0?socket=${join(dir, 'nbd.sock')}`,
      `nbd+unix:///ro?socket=${join(dir, 'nbd.sock')}`,
    ]);
    const c = await TestNbdClient.open({ path: join(dir, 'nbd.sock') }, 'disk0');
    const data = randomBytes(512);
    assert.equal(await c.write(4 * 1024 * 1024 - 512, data), 0);
    const ro = await TestNbdClient.open({ host: '127.0.0.1', port: s.nbdAddresses[0]!.port! }, '');
    assert.notEqual(await ro.write(0, data), 0, "'' is the read-only default");
    await Promise.all([c.disconnect(), ro.disconnect()]);
    const report = await s.close();
    assert.deepEqual(report, { flushed: ['disk0'], errors: [] });
    const file = await readFile(join(dir, 'disk0.img'));
    assert.deepEqual(file.subarray(file.length - 512), data);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('errors: an export device that cannot be opened, a TLS file, a taken NBD port; nothing left open', async () => {
  const config = parseConfig(
    { nbd: { listen: ['127.0.0.1:0'], exports: { a: { device: 'file:/nonexistent/dir/x.img' } } } },
    { source: 'site.json' },
  );
  await assert.rejects(Server.start({ config }), /x\.img/);
  const tls = parseConfig(
    {
      nbd: {
        listen: ['127.0.0.1:0'],
        exports: { a: { device: 'ram:1M' } },
        tls: { cert: '/nonexistent/c.pem', key: '/k' },
      },
    },
    { source: 'site.json' },
  );
  await assert.rejects(Server.start({ config: tls }), (e: unknown) => {
    assert.ok(ConfigError.is(e));
    assert.equal(
      e.message,
      'site.json: nbd.tls: TLS certificate /nonexistent/c.pem: cannot read: no such file',
    );
    return true;
  });
  const first = await Server.start({ listen: LOCAL0, discovery: false, nbdListen: LOCAL0 });
  try {
    const port = first.nbdAddresses[0]!.port!;
    await assert.rejects(
      Server.start({ listen: LOCAL0, discovery: false, nbdListen: [{ address: '127.0.0.1', port }] }),
      (e: NodeJS.ErrnoException) =>
        e.code === 'EADDRINUSE' && e.message === `cannot listen on 127.0.0.1:${port}: address already in use`,
    );
  } finally {
    await first.close();
  }
});
