// NbdServer: several exports on one port and the default export, exports added and removed
// at run time, graceful close with a request in flight and with a handshake in progress,
// unix sockets (stale and live socket files), listen errors, one connection's failure not
// touching another, and 20 concurrent connections writing and reading back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../../block/device.js';
import { readFully } from '../../block/io.js';
import { FaultDevice } from '../../devices/fault.js';
import { RamDevice } from '../../devices/ram.js';
import type { NbdExport } from './export.js';
import { NBD_EINVAL, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_READ_ONLY, NBD_REP_ERR_UNKNOWN } from './protocol.js';
import { NbdServer, type NbdConnectionEvent } from './server.js';
import { OptionRefused, TestNbdClient } from './testing/client.js';

const MiB = 1024 * 1024;

function exp(name: string, device: RamDevice | FaultDevice, extra: Partial<NbdExport> = {}): NbdExport {
  return { name, device, readOnly: false, multiConn: true, ...extra };
}

async function started(server: NbdServer): Promise<{ host: string; port: number }> {
  const a = await server.listen({ host: '127.0.0.1', port: 0 });
  assert.ok(a.port && a.port > 0, 'port 0 resolves with the bound port');
  return { host: '127.0.0.1', port: a.port };
}

async function readDev(dev: BlockDevice, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  await readFully(dev, offset, buf);
  return buf;
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('two exports on one port: each client gets its own device; "" reaches the default', async () => {
  const a = new RamDevice({ name: 'a', size: 4 * MiB });
  const b = new RamDevice({ name: 'b', size: 8 * MiB });
  const server = new NbdServer({
    exports: [exp('a', a), exp('b', b, { readOnly: true, multiConn: false })],
    defaultExport: 'b',
  });
  const addr = await started(server);
  try {
    const lister = await TestNbdClient.connect(addr);
    assert.deepEqual(await lister.list(), ['a', 'b'], 'LIST names each export once');
    lister.destroy();

    const ca = await TestNbdClient.open(addr, 'a');
    const cb = await TestNbdClient.open(addr, 'b');
    const cd = await TestNbdClient.open(addr, '');
    assert.equal(ca.size, 4 * MiB);
    assert.equal(cb.size, 8 * MiB);
    assert.equal(cd.size, 8 * MiB, "'' is the default export b");
    assert.equal(ca.flags & NBD_FLAG_READ_ONLY, 0);
    assert.ok(ca.flags & NBD_FLAG_CAN_MULTI_CONN);
    assert.ok(cb.flags & NBD_FLAG_READ_ONLY);
    assert.equal(cb.flags & NBD_FLAG_CAN_MULTI_CONN, 0);
    assert.equal(server.connections, 3);

    const data = randomBytes(4096);
    const last = 4 * MiB - 4096;
    assert.equal(await ca.write(last, data), 0);
    assert.deepEqual((await ca.read(last, 4096)).data, data, 'the last block of a');
    assert.deepEqual(await readDev(a, last, 4096), data);
    assert.deepEqual(await readDev(b, 8 * MiB - 4096, 4096), Buffer.alloc(4096), 'b untouched');
    const bl = await cb.read(8 * MiB - 512, 512);
    assert.equal(bl.error, 0, 'the last block of b reads');
    assert.notEqual(await cb.write(0, data), 0, 'b is read-only');

    await Promise.all([ca.disconnect(), cb.disconnect(), cd.disconnect()]);
    await until(() => server.connections === 0, 'connections to end');
  } finally {
    await server.close();
  }
});

test('addExport / removeExport at run time: new handshakes see the change, open connections keep going', async () => {
  const a = new RamDevice({ name: 'a', size: MiB });
  const c = new RamDevice({ name: 'c', size: 2 * MiB });
  const server = new NbdServer({ exports: [exp('a', a)] });
  const addr = await started(server);
  try {
    await assert.rejects(
      TestNbdClient.open(addr, 'c'),
      (e: unknown) => e instanceof OptionRefused && e.reply === NBD_REP_ERR_UNKNOWN,
    );
    server.addExport(exp('c', c));
    assert.throws(() => server.addExport(exp('c', c)), /NBD export "c" already exists/);
    const cc = await TestNbdClient.open(addr, 'c');
    assert.equal(cc.size, 2 * MiB);

    assert.equal(server.removeExport('c'), true);
    assert.equal(server.removeExport('c'), false);
    await assert.rejects(
      TestNbdClient.open(addr, 'c'),
      (e: unknown) => e instanceof OptionRefused && e.reply === NBD_REP_ERR_UNKNOWN,
    );
    const data = randomBytes(512);
    assert.equal(await cc.write(2 * MiB - 512, data), 0, 'the open connection still writes');
    assert.deepEqual(await readDev(c, 2 * MiB - 512, 512), data);

    // Removing the default ('' → first export a) leaves '' unresolved.
    server.removeExport('a');
    await assert.rejects(
      TestNbdClient.open(addr, ''),
      (e: unknown) => e instanceof OptionRefused && e.reply === NBD_REP_ERR_UNKNOWN,
    );
    assert.throws(() => server.setDefaultExport('a'), /no NBD export "a" to make the default/);

    await server.disconnectExport('c', 2000);
    await cc.waitClosed();
    await until(() => server.connections === 0, 'the refused clients to hang up');
  } finally {
    await server.close();
  }
});

test('close() with a write in flight: the write finishes and lands, then everything is closed', async () => {
  const ram = new RamDevice({ name: 'slow-ram', size: 4 * MiB });
  const slow = new FaultDevice(ram, { name: 'slow', delays: { write: { ms: 300 } } });
  const events: NbdConnectionEvent[] = [];
  const server = new NbdServer({ exports: [exp('slow', slow)], onConnection: (e) => events.push(e) });
  const addr = await started(server);
  const client = await TestNbdClient.open(addr, 'slow');
  const idle = await TestNbdClient.connect(addr); // still in the handshake
  const data = randomBytes(64 * 1024);
  const writing = client.write(4 * MiB - data.length, data);
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  await server.close(5000);
  assert.equal(await writing, 0, 'the running write was answered');
  assert.deepEqual(await readDev(ram, 4 * MiB - data.length, data.length), data, 'and its data landed');
  assert.ok(Date.now() - t0 < 4000, 'close did not wait for its timeout');
  await client.waitClosed();
  await idle.waitClosed();
  assert.equal(server.connections, 0);
  assert.deepEqual(events.filter((e) => e.kind === 'close').length, 2, 'both connections reported closed');
  await assert.rejects(TestNbdClient.connect(addr), /ECONNREFUSED/, 'no longer accepting');
});

test('close() gives up on a request that outlives the timeout and destroys its socket', async () => {
  const ram = new RamDevice({ name: 'stuck-ram', size: MiB });
  const stuck = new FaultDevice(ram, { name: 'stuck', delays: { read: { ms: 5000 } } });
  const server = new NbdServer({ exports: [exp('stuck', stuck)] });
  const addr = await started(server);
  const client = await TestNbdClient.open(addr, 'stuck');
  const reading = client.read(0, 512);
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  await server.close(200);
  assert.ok(Date.now() - t0 < 2000, `close took ${Date.now() - t0} ms`);
  assert.equal(server.connections, 0);
  const r = await reading;
  assert.notEqual(r.error, 0, 'no successful reply after the socket was given up');
  await client.waitClosed();
});

test('a unix socket: serves, refuses a live socket file, replaces a stale one, never a regular file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-nbd-unix-'));
  try {
    const path = join(dir, 'nbd.sock');
    const dev = new RamDevice({ name: 'u', size: MiB });
    const server = new NbdServer({ exports: [exp('u', dev)] });
    assert.deepEqual(await server.listen({ path }), { path });
    const c = await TestNbdClient.open({ path }, 'u');
    const data = randomBytes(512);
    assert.equal(await c.write(MiB - 512, data), 0);
    assert.deepEqual((await c.read(MiB - 512, 512)).data, data);

    const other = new NbdServer({ exports: [exp('u', dev)] });
    await assert.rejects(other.listen({ path }), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'EADDRINUSE');
      assert.equal(e.message, `cannot listen on ${path}: address already in use (a server answers on it)`);
      return true;
    });
    await c.disconnect();
    await server.close();

    // A stale socket file (a server that died without unlinking it).
    const stale = join(dir, 'stale.sock');
    // A process killed while listening leaves its socket file behind.
    const child = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    await once(child, 'exit');
    assert.ok((await lstat(stale)).isSocket(), 'the stale socket file is there');
    const revived = new NbdServer({ exports: [exp('u', dev)] });
    await revived.listen({ path: stale });
    const c2 = await TestNbdClient.open({ path: stale }, 'u');
    assert.deepEqual((await c2.read(MiB - 512, 512)).data, data);
    await c2.disconnect();
    await revived.close();

    const regular = join(dir, 'not-a-socket');
    await writeFile(regular, 'keep me');
    await assert.rejects(other.listen({ path: regular }), /a file that is not a socket is in the way/);
    assert.equal(await readFile(regular, 'utf8'), 'keep me');
    await other.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('EADDRINUSE names the address and keeps the code', async () => {
  const server = new NbdServer({ exports: [exp('x', new RamDevice({ name: 'x', size: MiB }))] });
  const { port } = await started(server);
  const second = new NbdServer();
  try {
    await assert.rejects(second.listen({ host: '127.0.0.1', port }), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'EADDRINUSE');
      assert.equal(e.message, `cannot listen on 127.0.0.1:${port}: address already in use`);
      return true;
    });
  } finally {
    await second.close();
    await server.close();
  }
});

test('a connection that breaks the protocol is closed; another one carries on', async () => {
  const dev = new RamDevice({ name: 'p', size: MiB });
  const server = new NbdServer({ exports: [exp('p', dev)] });
  const addr = await started(server);
  try {
    const good = await TestNbdClient.open(addr, 'p');
    const bad = await TestNbdClient.open(addr, 'p');
    // A request with a wrong magic is a hard disconnect of that connection only.
    bad.sendRaw(Buffer.alloc(28, 0xee));
    await bad.waitClosed();
    const r = await good.read(MiB - 512, 512);
    assert.equal(r.error, 0);
    assert.equal((await good.read(MiB, 512)).error, NBD_EINVAL, 'past the end: EINVAL, connection still up');
    assert.equal(await good.write(0, Buffer.alloc(512, 1)), 0);
    await good.disconnect();
  } finally {
    await server.close();
  }
});

test('a client that stays silent after connecting is closed after handshakeTimeoutMs; others are served', async () => {
  const dev = new RamDevice({ name: 't', size: MiB });
  const reasons: string[] = [];
  const server = new NbdServer({
    exports: [exp('t', dev)],
    handshakeTimeoutMs: 300,
    log: (line) => reasons.push(line),
  });
  const addr = await started(server);
  try {
    const silent = net.connect(addr.port, addr.host);
    silent.on('data', () => {}); // the greeting, then nothing from us
    const started_ = Date.now();
    await once(silent, 'close');
    const elapsed = Date.now() - started_;
    assert.ok(elapsed >= 250 && elapsed < 5000, `closed after ${elapsed} ms`);
    const good = await TestNbdClient.open(addr, 't');
    await new Promise((r) => setTimeout(r, 400)); // past the timeout: transmission is not cut
    assert.equal((await good.read(0, 512)).error, 0);
    await good.disconnect();
  } finally {
    await server.close();
  }
});

test('20 concurrent connections to one export write distinct blocks; all read back', async () => {
  const dev = new RamDevice({ name: 'shared', size: 16 * MiB });
  const server = new NbdServer({ exports: [exp('shared', dev)] });
  const addr = await started(server);
  try {
    const N = 20;
    const block = 64 * 1024;
    const clients = await Promise.all(Array.from({ length: N }, () => TestNbdClient.open(addr, 'shared')));
    assert.equal(server.connections, N);
    // Connection i writes blocks i, i+N, i+2N, ... up to the last block of the device.
    const blocks = (16 * MiB) / block;
    const expected = Buffer.alloc(16 * MiB);
    await Promise.all(
      clients.map(async (c, i) => {
        const writes: Promise<number>[] = [];
        for (let k = i; k < blocks; k += N) {
          const data = randomBytes(block);
          data.copy(expected, k * block);
          writes.push(c.write(k * block, data));
        }
        assert.deepEqual(
          await Promise.all(writes),
          writes.map(() => 0),
        );
        assert.equal(await c.flush(), 0);
      }),
    );
    // Every connection reads the whole device back (writes of the others included: one device).
    await Promise.all(
      clients.map(async (c, i) => {
        const k = (i * 7) % blocks;
        const r = await c.read(k * block, block);
        assert.deepEqual(r.data, expected.subarray(k * block, (k + 1) * block));
        const lastBlock = await c.read(16 * MiB - block, block);
        assert.deepEqual(lastBlock.data, expected.subarray(16 * MiB - block));
      }),
    );
    assert.deepEqual(await readDev(dev, 0, 16 * MiB), expected);
    await Promise.all(clients.map((c) => c.disconnect()));
    await until(() => server.connections === 0, 'every connection to end');
  } finally {
    await server.close();
  }
});
