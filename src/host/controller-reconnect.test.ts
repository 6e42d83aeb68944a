// Error recovery of NvmeController against tsblk's own target over real TCP: connections
// dropped under I/O, the port stopped and restarted on the same TCP port, a command timeout,
// non-retryable commands, AbortSignal while held, and the controller-loss timeout.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlockError } from '../block/errors.js';
import { TcpPort } from '../target/port.js';
import { startTcpTarget, TCP_TEST_NQN, type TcpFixture } from '../target/tcp/testing/fixture.js';
import { NvmeController, type ControllerOptions } from './controller.js';
import { HostError } from './errors.js';
import {
  gate,
  nextEvent,
  ok,
  readCmd,
  SlowRamDevice,
  targetConnections,
  writeCmd,
} from './testing/tcp-target.js';

const MiB = 1024 * 1024;

async function setup(
  extra: Partial<ControllerOptions> = {},
): Promise<{ f: TcpFixture; dev: SlowRamDevice; c: NvmeController; close: () => Promise<void> }> {
  const dev = new SlowRamDevice({ size: 16 * MiB });
  const f = await startTcpTarget({ namespaces: [{ nsid: 1, device: dev }] });
  const c = await NvmeController.connect({
    address: f.address,
    subnqn: TCP_TEST_NQN,
    keepAliveTimeoutMs: 0,
    reconnectDelayMs: 50,
    ctrlLossTimeoutMs: 5000,
    ...extra,
  });
  return {
    f,
    dev,
    c,
    close: async () => {
      await c.disconnect();
      await f.close();
    },
  };
}

/** Drops every target-side connection of the controller (as a network failure would). */
function dropConnections(f: TcpFixture, c: NvmeController): void {
  for (const q of targetConnections(f, c.cntlid)) q.socket.destroy();
}

describe('NvmeController reconnect', () => {
  it('resubmits commands in flight when the connections drop; every acknowledged write reads back', async () => {
    const { f, dev, c, close } = await setup({ ioQueues: 2, queueSize: 16 });
    try {
      const ns = c.namespace(1);
      const oldCntlid = c.cntlid;
      dev.writeDelayMs = 20;
      dev.readDelayMs = 20;
      const n = 48;
      const blobs = Array.from({ length: n }, () => randomBytes(4096));
      const acked: boolean[] = [];
      const writes = blobs.map((b, i) =>
        c.submitIo(writeCmd(1, i * 8, b)).then((r) => {
          ok(r, `write ${i}`);
          acked[i] = true;
        }),
      );
      const reads = Array.from({ length: 8 }, (_, i) => c.submitIo(readCmd(1, 1000 + i, Buffer.alloc(512))));
      while (dev.inflight < 10) await sleep(2);
      const states: string[] = [];
      c.on('state', (s: string) => states.push(s));
      const reconnected = nextEvent<number>(c, 'reconnected');
      dropConnections(f, c);
      // Submitted while the controller is down: held, then sent on the new association.
      const late = c.submitIo(writeCmd(1, 4000, blobs[0]!));
      assert.equal(await reconnected, 1);
      assert.deepEqual(states, ['resetting', 'connecting', 'live']);
      await Promise.all(writes);
      for (const r of await Promise.all(reads)) ok(r, 'read');
      ok(await late);
      assert.equal(acked.filter(Boolean).length, n);
      dev.writeDelayMs = dev.readDelayMs = 0;
      for (let i = 0; i < n; i++) {
        const back = Buffer.alloc(4096);
        ok(await c.submitIo(readCmd(1, i * 8, back)));
        assert.deepEqual(back, blobs[i], `write ${i}`);
      }
      // The same RemoteNamespace object serves on the new association.
      assert.equal(c.namespace(1), ns);
      const back = Buffer.alloc(4096);
      await ns.read(4000 * 512, back);
      assert.deepEqual(back, blobs[0]);
      assert.ok(f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)?.live);
      assert.equal(f.target.subsystem(TCP_TEST_NQN)!.controller(oldCntlid), undefined);
    } finally {
      await close();
    }
  });

  it('holds I/O while the port is down and completes it once the port is back on the same TCP port', async () => {
    const { f, c, close } = await setup({ ioQueues: 1 });
    try {
      const port = f.address.port;
      const data = randomBytes(8192);
      await f.io.close();
      while (c.state === 'live') await sleep(5);
      const w = c.submitIo(writeCmd(1, 100, data));
      await sleep(300); // a few failed reconnect attempts (connection refused)
      assert.equal(c.state, 'connecting');
      const reconnected = nextEvent<number>(c, 'reconnected');
      const io = await TcpPort.listen(f.transport, { address: '127.0.0.1', port });
      try {
        assert.ok((await reconnected) >= 2, 'more than one attempt');
        ok(await w);
        const back = Buffer.alloc(8192);
        ok(await c.submitIo(readCmd(1, 100, back)));
        assert.deepEqual(back, data);
      } finally {
        await c.disconnect();
        await io.close();
      }
    } finally {
      await close();
    }
  });

  it('treats a command timeout as a connection failure: reset, then the command runs again', async () => {
    const { f, dev, c, close } = await setup({ ioQueues: 1, commandTimeoutMs: 300 });
    try {
      const data = randomBytes(512);
      ok(await c.submitIo(writeCmd(1, 7, data)));
      const g = gate();
      dev.gate = g.promise; // the first read hangs on the target
      const reconnected = nextEvent<number>(c, 'reconnected');
      const into = Buffer.alloc(512);
      const read = c.submitIo(readCmd(1, 7, into));
      while (dev.inflight === 0) await sleep(5);
      dev.gate = undefined; // the resubmitted read goes through
      await reconnected;
      ok(await read);
      assert.deepEqual(into, data);
      g.open();
      assert.equal(f.target.subsystem(TCP_TEST_NQN)!.controllers.size, 1);
    } finally {
      await close();
    }
  });

  it('fails a non-retryable command that was in flight with NOT_RETRYABLE, retries one that was not sent yet', async () => {
    const { f, dev, c, close } = await setup({ ioQueues: 1, queueSize: 2 });
    try {
      const g = gate();
      dev.gate = g.promise;
      const sent = c.submitIo(writeCmd(1, 0, randomBytes(512), { retryable: false }));
      // Queue size 2: one command at a time, so this one waits unsent.
      const waiting = c.submitIo(writeCmd(1, 8, randomBytes(512), { retryable: false }));
      while (dev.inflight === 0) await sleep(5);
      dropConnections(f, c);
      await assert.rejects(sent, (e) => {
        assert.ok(HostError.is(e));
        assert.equal(e.code, 'NOT_RETRYABLE');
        assert.match(e.message, /WRITE \(CID 0\) was in flight/);
        return true;
      });
      dev.gate = undefined;
      ok(await waiting);
      g.open();
    } finally {
      await close();
    }
  });

  it('fails a held command whose AbortSignal fires with ABORTED', async () => {
    const { f, c, close } = await setup({ ioQueues: 1 });
    try {
      await f.io.close();
      while (c.state === 'live') await sleep(5);
      const ac = new AbortController();
      const held = c.submitIo({ ...readCmd(1, 0, Buffer.alloc(512)), signal: ac.signal });
      await sleep(20);
      ac.abort();
      await assert.rejects(held, { name: 'HostError', code: 'ABORTED' });
    } finally {
      await close();
    }
  });

  it('gives up after the controller-loss timeout: held commands fail with CONTROLLER_LOST, namespaces go', async () => {
    const { f, dev, c, close } = await setup({ ioQueues: 1, ctrlLossTimeoutMs: 400, reconnectDelayMs: 100 });
    try {
      const ns = c.namespace(1);
      const g = gate();
      dev.gate = g.promise;
      const inflight = c.submitIo(readCmd(1, 0, Buffer.alloc(512)));
      while (dev.inflight === 0) await sleep(5);
      const lost = nextEvent<HostError>(c, 'lost');
      const t0 = Date.now();
      await f.io.close(); // closes the connections and stops listening
      const held = c.submitIo(readCmd(1, 1, Buffer.alloc(512)));
      const err = await lost;
      assert.ok(Date.now() - t0 >= 390);
      assert.equal(err.code, 'CONTROLLER_LOST');
      assert.match(err.message, /not reconnected within 400 ms/);
      await assert.rejects(inflight, { name: 'HostError', code: 'CONTROLLER_LOST' });
      await assert.rejects(held, { name: 'HostError', code: 'CONTROLLER_LOST' });
      await assert.rejects(c.submitIo(readCmd(1, 2, Buffer.alloc(512))), { code: 'CONTROLLER_LOST' });
      assert.equal(c.state, 'deleted');
      assert.equal(ns.removed, true);
      await assert.rejects(ns.read(0, Buffer.alloc(512)), (e) => BlockError.is(e) && e.code === 'ENODEV');
      g.open();
    } finally {
      await close();
    }
  });
});
