// TcpQueue flow control: no new capsules are read while the host does not read its responses,
// and a queue takes no command while its Connect is still running.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Property } from '../../nvme/fabrics.js';
import { encodePropertyGet } from '../../nvme/fabrics.js';
import { isSuccess } from '../../nvme/status.js';
import { startTcpTarget, TCP_TEST_NQN } from './testing/fixture.js';
import { connectQueue, TcpHostController, TcpHostQueue, type HostCommandResult } from './testing/host.js';
import type { TcpQueue } from './queue.js';

const MiB = 1024 * 1024;

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

test('stops reading capsules while the host does not read responses, and resumes on drain', async () => {
  const f = await startTcpTarget();
  try {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN });
    const q = c.ioQueue();
    const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
    const server = ctrl.queues.get(1)!.context as TcpQueue;
    q.socket.pause(); // the host stops reading
    const wave1: Array<Promise<HostCommandResult>> = [];
    for (let i = 0; i < 48; i++) wave1.push(c.read(1, i * 2048, 2048)); // 48 × 1 MiB
    await until('the target pauses reading', () => server.readPaused);
    const read = server.stats.capsules;
    assert.ok(server.stats.readPauses >= 1);
    const wave2: Array<Promise<HostCommandResult>> = [];
    for (let i = 0; i < 8; i++) wave2.push(c.read(1, i, 1));
    await sleep(200);
    assert.equal(server.stats.capsules, read, 'no capsule read while paused');
    assert.ok(read < 1 + 48, `only part of wave 1 was read (${read - 1} of 48)`);
    assert.equal(server.readPaused, true);

    q.socket.resume();
    const all = await Promise.all([...wave1, ...wave2]);
    assert.ok(all.every((r) => isSuccess(r.cqe.status)));
    assert.equal(all[0]!.data!.length, MiB);
    assert.equal(server.stats.capsules, 1 + 48 + 8, 'Connect and every read');
    assert.equal(server.readPaused, false);
    await c.close();
  } finally {
    await f.close();
  }
});

test('a command pipelined behind Connect waits for it (it would be refused on an unconnected queue)', async () => {
  const f = await startTcpTarget();
  try {
    const q = await TcpHostQueue.open(f.address);
    q.socket.cork(); // both capsules leave in one segment
    const connect = connectQueue(q, { subnqn: TCP_TEST_NQN, qid: 0, size: 32 });
    const get = q.submit(encodePropertyGet({ cid: 0, ofst: Property.VS, size: 4 }));
    q.socket.uncork();
    const [cr, gr] = await Promise.all([connect, get]);
    assert.ok(isSuccess(cr.cqe.status));
    assert.ok(isSuccess(gr.cqe.status), 'Property Get ran after Connect');
    assert.equal(gr.cqe.dw0, 0x00020100, 'VS 2.1');
    q.destroy();
  } finally {
    await f.close();
  }
});

test('a closed connection destroys its core queue and leaves the transport', async () => {
  const f = await startTcpTarget();
  try {
    const q = await TcpHostQueue.open(f.address);
    await until('accepted', () => f.transport.connections.size === 1);
    const server = [...f.transport.connections][0]!;
    assert.equal(server.state, 'live');
    q.destroy();
    await server.closed;
    assert.equal(server.state, 'closed');
    assert.equal(server.queue.closed, true);
    assert.equal(f.transport.connections.size, 0);
    assert.match(server.closeReason ?? '', /closed/);
  } finally {
    await f.close();
  }
});
