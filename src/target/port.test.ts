// TCP listeners: port records registered with the target (IPv4, IPv6, discovery), port IDs,
// refusals with clear errors, and close() ending the connections that came through the port.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { BlockError } from '../block/errors.js';
import { RamDevice } from '../devices/ram.js';
import { TcpPort, formatHostPort } from './port.js';
import { Target } from './target.js';
import { TcpTransport } from './tcp/transport.js';
import { TcpHostController, TcpHostQueue } from './tcp/testing/host.js';

const NQN_A = 'nqn.2026-11.io.tsblk:port-a';
const NQN_B = 'nqn.2026-11.io.tsblk:port-b';

function setup(): { target: Target; transport: TcpTransport } {
  const target = new Target();
  for (const nqn of [NQN_A, NQN_B])
    target.addSubsystem({ nqn, namespaces: [{ nsid: 1, device: new RamDevice({ size: 1 << 20 }) }] });
  return { target, transport: new TcpTransport(target) };
}

test('registers one port record per listener: IPv4, IPv6, discovery', async () => {
  const { target, transport } = setup();
  const v4 = await TcpPort.listen(transport, { address: '127.0.0.1', port: 0 });
  const v6 = await TcpPort.listen(transport, { address: '::1', port: 0, subsystems: [NQN_B] });
  const disc = await TcpPort.listen(transport, { address: '127.0.0.1', port: 0, discovery: true });
  try {
    assert.deepEqual(
      target.ports.map((p) => [p.portid, p.adrfam, p.traddr, p.trsvcid, p.subsystems]),
      [
        [1, 'ipv4', '127.0.0.1', String(v4.port), undefined],
        [2, 'ipv6', '::1', String(v6.port), [NQN_B]],
        [3, 'ipv4', '127.0.0.1', String(disc.port), []],
      ],
    );
    assert.notEqual(v4.port, 0);
    assert.equal(v6.toString(), `[::1]:${v6.port}`);
    assert.equal(disc.kind, 'discovery');
    // The IPv6 listener exposes only NQN_B.
    const b = await TcpHostController.connect({ host: '::1', port: v6.port }, { subnqn: NQN_B });
    await b.close();
    await assert.rejects(
      TcpHostController.connect({ host: '::1', port: v6.port }, { subnqn: NQN_A }),
      /CONNECT_INVALID_PARAM/,
    );
  } finally {
    await Promise.all([v4.close(), v6.close(), disc.close()]);
  }
  assert.deepEqual(target.ports, []);
});

test('close() stops accepting and ends the controllers that came through the port', async () => {
  const { target, transport } = setup();
  const p = await TcpPort.listen(transport, { address: '127.0.0.1', port: 0, portid: 7 });
  const keep = await TcpPort.listen(transport, { address: '127.0.0.1', port: 0 });
  const c = await TcpHostController.connect(
    { host: '127.0.0.1', port: p.port },
    { subnqn: NQN_A, ioQueues: 2 },
  );
  const other = await TcpHostController.connect({ host: '127.0.0.1', port: keep.port }, { subnqn: NQN_A });
  const idle = await TcpHostQueue.open({ host: '127.0.0.1', port: p.port }); // IC done, no Connect
  assert.equal(p.portid, 7);
  assert.equal(keep.portid, 1, 'the lowest free port ID');
  assert.equal(p.connections.length, 4);
  await p.close();
  assert.equal(p.listening, false);
  await Promise.all([c.admin.closed, ...c.io.map((q) => q.closed), idle.closed]);
  assert.equal(target.subsystem(NQN_A)!.controller(c.cntlid), undefined);
  assert.equal(target.port(7), undefined);
  await assert.rejects(TcpHostQueue.open({ host: '127.0.0.1', port: p.port }), /ECONNREFUSED/);
  // The other port and its controller are untouched.
  assert.equal((await other.read(1, 0, 1)).cqe.status.sc, 0);
  await other.close();
  await keep.close();
});

test('refuses what it cannot listen on, with the address in the message', async () => {
  const { transport } = setup();
  const busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  const port = (busy.address() as { port: number }).port;
  try {
    await assert.rejects(
      TcpPort.listen(transport, { address: '127.0.0.1', port }),
      (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'EADDRINUSE');
        assert.match(e.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
        return true;
      },
    );
  } finally {
    busy.close();
  }
  const einval = (e: unknown) => BlockError.is(e) && e.code === 'EINVAL';
  await assert.rejects(TcpPort.listen(transport, { address: 'localhost', port: 0 }), einval);
  await assert.rejects(TcpPort.listen(transport, { address: '127.0.0.1', port: 70000 }), einval);
  await assert.rejects(
    TcpPort.listen(transport, { address: '127.0.0.1', port: 0, discovery: true, subsystems: [NQN_A] }),
    einval,
  );
  // A duplicate port ID: the record is refused and nothing stays listening.
  const p = await TcpPort.listen(transport, { address: '127.0.0.1', port: 0, portid: 3 });
  await assert.rejects(
    TcpPort.listen(transport, { address: '127.0.0.1', port: 0, portid: 3 }),
    /already exists/,
  );
  await p.close();
  assert.deepEqual(transport.target.ports, []);
});

test('formatHostPort brackets IPv6 addresses', () => {
  assert.equal(formatHostPort('127.0.0.1', 4420), '127.0.0.1:4420');
  assert.equal(formatHostPort('::1', 8009), '[::1]:8009');
});
