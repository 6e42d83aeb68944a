// NvmeController against tsblk's own target over real TCP on 127.0.0.1: bring-up and queue
// negotiation, I/O in the capsule / through R2T / through many H2CData PDUs (with and without
// digests, read back and compared), the queue depth limit seen from the target, keep-alive,
// namespace attribute events, disconnect, and refused connections.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlockError } from '../block/errors.js';
import { RamDevice } from '../devices/ram.js';
import { CcShn, CstsShst, decodeCc, decodeCsts } from '../nvme/fabrics.js';
import { Cns, decodeIdCtrl } from '../nvme/identify.js';
import { sameStatus, Status } from '../nvme/status.js';
import { buildICResp } from '../nvme/tcp/builder.js';
import { enabledCopyFormats } from '../target/admin-cmd.js';
import { startTcpTarget, TCP_TEST_NQN, type TcpFixture } from '../target/tcp/testing/fixture.js';
import { NvmeController, type NamespaceChanges } from './controller.js';
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

const KiB = 1024;
const MiB = 1024 * KiB;
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0b9e2c5e-3f1d-4c43-9d2a-6f1f0f3a7b11';

function connect(f: TcpFixture, extra: Partial<Parameters<typeof NvmeController.connect>[0]> = {}) {
  return NvmeController.connect({
    address: f.address,
    subnqn: TCP_TEST_NQN,
    hostnqn: HOSTNQN,
    keepAliveTimeoutMs: 0,
    ...extra,
  });
}

describe('NvmeController bring-up', () => {
  let f: TcpFixture;
  before(async () => {
    f = await startTcpTarget({
      target: { maxQueueSize: 64 },
      subsystem: { maxIoQueues: 2, serial: 'HOST-A-1' },
      namespaces: [
        { nsid: 1, device: new RamDevice({ size: 8 * MiB }) },
        { nsid: 5, device: new RamDevice({ size: 4 * MiB, logicalBlockSize: 4096 }) },
      ],
    });
  });
  after(() => f.close());

  it('connects, identifies, negotiates queues and opens the active namespaces', async () => {
    const c = await connect(f, { ioQueues: 3, queueSize: 1000 });
    try {
      assert.equal(c.state, 'live');
      assert.equal(c.name, `${TCP_TEST_NQN}@127.0.0.1:${f.address.port}`);
      const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
      assert.ok(ctrl.ready, 'CC.EN set and CSTS.RDY reported');
      assert.equal(ctrl.hostnqn, HOSTNQN);
      assert.equal(decodeCc(ctrl.cc).css, 6, 'CC.CSS 110b: the target offers I/O command sets');
      assert.equal(c.idCtrl.sn, 'HOST-A-1');
      assert.equal(c.idCtrl.cntlid, c.cntlid);
      assert.deepEqual(c.version, { major: 2, minor: 1, tertiary: 0 });
      assert.equal(c.cap.mqes, 63);
      // Asked 3 I/O queues of 1000 entries: the subsystem grants 2, CAP.MQES caps the size at 64.
      assert.equal(c.ioQueueCount, 2);
      assert.equal(ctrl.ioQueueCount, 2);
      assert.equal(c.queueSize, 64);
      assert.equal(c.maxDataTransferBytes, MiB);
      assert.deepEqual([...c.copyFormats].sort(), [0, 1, 2, 3]);
      assert.equal(enabledCopyFormats(ctrl), 0x0c, 'Host Behavior Support CDFE enables formats 2 and 3');
      assert.deepEqual([...c.namespaces.keys()], [1, 5]);
      assert.equal(c.namespace(5).size, 4 * MiB);
      assert.equal(c.namespace(5).limits.logicalBlockSize, 4096);
      assert.equal(c.namespace(1).nsid, 1);
      assert.throws(
        () => c.namespace(2),
        (e) => BlockError.is(e) && e.code === 'ENODEV' && /active: 1, 5/.test(e.message),
      );
      const id = decodeIdCtrl(await c.identify(Cns.CTRL));
      assert.equal(id.subnqn, TCP_TEST_NQN);
      assert.equal((await c.identifyNamespace(1)).nsze, BigInt((8 * MiB) / 512));
    } finally {
      await c.disconnect();
    }
  });

  it('sends a whole MDTS write through one R2T and reads it back', async () => {
    const c = await connect(f, { ioQueues: 1 });
    try {
      const data = randomBytes(MiB);
      const conn = targetConnections(f, c.cntlid).find((q) => q.queue.qid === 1)!;
      ok(await c.submitIo(writeCmd(1, (8 * MiB - MiB) / 512, data)));
      assert.equal(conn.stats.r2ts, 1);
      assert.equal(conn.stats.h2cDataPdus, 1);
      const into = Buffer.alloc(MiB);
      ok(await c.submitIo(readCmd(1, (8 * MiB - MiB) / 512, into)));
      assert.deepEqual(into, data);
    } finally {
      await c.disconnect();
    }
  });

  it('asks for the queue size given when the controller allows it, and one I/O queue when told', async () => {
    const c = await connect(f, { ioQueues: 1, queueSize: 16 });
    try {
      assert.equal(c.ioQueueCount, 1);
      assert.equal(c.queueSize, 16);
      const conns = targetConnections(f, c.cntlid);
      assert.deepEqual(conns.map((q) => [q.queue.qid, q.queue.size]).sort(), [
        [0, 32],
        [1, 16],
      ]);
    } finally {
      await c.disconnect();
    }
  });

  it('refuses an unknown subsystem NQN with HostError CONNECT naming the status and the field', async () => {
    await assert.rejects(connect(f, { subnqn: 'nqn.2026-11.io.tsblk:nope' }), (e) => {
      assert.ok(HostError.is(e));
      assert.equal(e.code, 'CONNECT');
      assert.match(
        e.message,
        /refused: 0x182 CONNECT_INVALID_PARAM DNR \(invalid subnqn in the Connect data\)/,
      );
      assert.ok(e.status && sameStatus(e.status, Status.CONNECT_INVALID_PARAM));
      return true;
    });
  });

  it('fails with CONNECT when nothing listens', async () => {
    const g = await startTcpTarget();
    const address = g.address;
    await g.close();
    await assert.rejects(
      NvmeController.connect({ address, subnqn: TCP_TEST_NQN, connectTimeoutMs: 2000 }),
      (e) => HostError.is(e) && e.code === 'CONNECT' && /cannot connect/.test(e.message),
    );
  });

  it('fails with IC when the ICResp enables other digests than asked', async () => {
    // A listener that answers every ICReq with digests off.
    const server = createServer((s) => {
      s.once('data', () => s.write(Buffer.concat(buildICResp({ dgst: 0, maxh2cdata: 4096 }))));
      s.on('error', () => {});
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const port = (server.address() as { port: number }).port;
      await assert.rejects(
        NvmeController.connect({
          address: { host: '127.0.0.1', port },
          subnqn: TCP_TEST_NQN,
          headerDigest: true,
        }),
        (e) => HostError.is(e) && e.code === 'IC' && /digests 0x0, the host asked for 0x1/.test(e.message),
      );
    } finally {
      server.close();
    }
  });

  it('refuses bad options before connecting', async () => {
    await assert.rejects(connect(f, { queueSize: 1 }), RangeError);
    await assert.rejects(connect(f, { hostid: new Uint8Array(8) }), /hostid must be 16 bytes/);
  });
});

describe('NvmeController host access', () => {
  it('reports a host the subsystem does not allow as CONNECT_INVALID_HOST', async () => {
    const f = await startTcpTarget({ subsystem: { hosts: ['nqn.2014-08.org.nvmexpress:uuid:1-other'] } });
    try {
      await assert.rejects(
        connect(f),
        (e) => HostError.is(e) && e.code === 'CONNECT' && /CONNECT_INVALID_HOST/.test(e.message),
      );
    } finally {
      await f.close();
    }
  });
});

for (const digests of [false, true]) {
  describe(`NvmeController I/O${digests ? ' with header and data digests' : ''}`, () => {
    let f: TcpFixture;
    let c: NvmeController;
    const SIZE = 8 * MiB;
    before(async () => {
      // MAXH2CDATA 4 KiB: a 64 KiB write takes 16 R2Ts answered by as many H2CData PDUs.
      f = await startTcpTarget({
        transport: { maxH2CDataBytes: 4096, inlineDataSize: 16 * KiB, c2hDataChunkBytes: 16 * KiB },
        namespaces: [{ nsid: 1, device: new RamDevice({ size: SIZE }) }],
      });
      c = await connect(f, { ioQueues: 1, headerDigest: digests, dataDigest: digests });
    });
    after(async () => {
      await c.disconnect();
      await f.close();
    });

    const ioConn = () => targetConnections(f, c.cntlid).find((q) => q.queue.qid === 1)!;

    for (const [what, len, r2ts] of [
      ['512 bytes in the capsule', 512, 0],
      ['16 KiB in the capsule', 16 * KiB, 0],
      ['16 KiB + 512 through 5 R2Ts', 16 * KiB + 512, 5],
      ['64 KiB through 16 R2Ts', 64 * KiB, 16],
    ] as const) {
      it(`writes ${what} and reads it back from the last blocks`, async () => {
        const data = randomBytes(len);
        const lba = (SIZE - len) / 512;
        const before = { ...ioConn().stats };
        ok(await c.submitIo(writeCmd(1, lba, data)), 'write');
        const mid = { ...ioConn().stats };
        assert.equal(mid.r2ts - before.r2ts, r2ts);
        assert.equal(mid.h2cDataPdus - before.h2cDataPdus, r2ts);
        const into = Buffer.alloc(len);
        ok(await c.submitIo(readCmd(1, lba, into)), 'read');
        assert.deepEqual(into, data);
        assert.equal(ioConn().stats.c2hDataPdus - mid.c2hDataPdus, Math.ceil(len / (16 * KiB)));
        assert.equal(ioConn().stats.dataDigestErrors, 0);
      });
    }

    it('keeps many concurrent commands apart', async () => {
      const n = 64;
      const blobs = Array.from({ length: n }, () => randomBytes(8 * KiB));
      await Promise.all(blobs.map((b, i) => c.submitIo(writeCmd(1, i * 16, b)).then((r) => ok(r))));
      const back = Array.from({ length: n }, () => Buffer.alloc(8 * KiB));
      await Promise.all(back.map((b, i) => c.submitIo(readCmd(1, i * 16, b)).then((r) => ok(r))));
      back.forEach((b, i) => assert.deepEqual(b, blobs[i]));
    });

    it('returns error statuses as completions', async () => {
      const r = await c.submitIo(readCmd(1, SIZE / 512, Buffer.alloc(512)));
      assert.ok(sameStatus(r.status, Status.LBA_RANGE));
    });
  });
}

describe('NvmeController queue depth', () => {
  it('never has more than queueSize − 1 commands at the target, and spreads I/O over its queues', async () => {
    const dev = new SlowRamDevice({ size: 4 * MiB });
    dev.readDelayMs = 5;
    const f = await startTcpTarget({ namespaces: [{ nsid: 1, device: dev }] });
    const c = await connect(f, { ioQueues: 1, queueSize: 4 });
    try {
      assert.equal(c.queueSize, 4);
      const reads = Array.from({ length: 24 }, (_, i) => c.submitIo(readCmd(1, i, Buffer.alloc(512))));
      assert.deepEqual(c.ioQueueLoad, [24]);
      for (const r of await Promise.all(reads)) ok(r, 'read'); // an excess command would get Command Sequence Error
      assert.equal(dev.maxInflight, 3);
    } finally {
      await c.disconnect();
    }
    const c2 = await connect(f, { ioQueues: 2, queueSize: 8 });
    try {
      dev.maxInflight = 0;
      const reads = Array.from({ length: 20 }, (_, i) => c2.submitIo(readCmd(1, i, Buffer.alloc(512))));
      assert.deepEqual(c2.ioQueueLoad, [10, 10], 'least outstanding first');
      await Promise.all(reads);
      assert.equal(dev.maxInflight, 14, 'two queues of 7 commands each');
    } finally {
      await c2.disconnect();
      await f.close();
    }
  });
});

describe('NvmeController keep-alive', () => {
  it('keeps a KATO 1 s association alive through 3 s of idleness', async () => {
    const f = await startTcpTarget();
    const c = await connect(f, { keepAliveTimeoutMs: 1000, ioQueues: 1 });
    try {
      const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
      assert.equal(ctrl.kato, 1);
      const states: string[] = [];
      c.on('state', (s: string) => states.push(s));
      await sleep(3000);
      assert.equal(ctrl.live, true, 'the target did not expire the controller');
      assert.equal(c.state, 'live');
      assert.deepEqual(states, []);
      ok(await c.submitIo(readCmd(1, 0, Buffer.alloc(512))));
    } finally {
      await c.disconnect();
      await f.close();
    }
  });
});

describe('NvmeController namespace events', () => {
  it('follows namespaces added and removed on the target (AER, Changed Namespace List)', async () => {
    const f = await startTcpTarget({ namespaces: [{ nsid: 1, device: new RamDevice({ size: MiB }) }] });
    const c = await connect(f, { ioQueues: 1 });
    try {
      const ns1 = c.namespace(1);
      let ev = nextEvent<NamespaceChanges>(c, 'namespaces');
      f.target.addNamespace(TCP_TEST_NQN, { nsid: 3, device: new RamDevice({ size: 2 * MiB }) });
      assert.deepEqual(await ev, { added: [3], removed: [], changed: [] });
      assert.deepEqual([...c.namespaces.keys()], [1, 3]);
      assert.equal(c.namespace(3).size, 2 * MiB);
      const data = randomBytes(4096);
      await c.namespace(3).write(2 * MiB - 4096, data);
      const back = Buffer.alloc(4096);
      await c.namespace(3).read(2 * MiB - 4096, back);
      assert.deepEqual(back, data);

      ev = nextEvent<NamespaceChanges>(c, 'namespaces');
      await f.target.removeNamespace(TCP_TEST_NQN, 1);
      assert.deepEqual(await ev, { added: [], removed: [1], changed: [] });
      assert.deepEqual([...c.namespaces.keys()], [3]);
      await assert.rejects(ns1.read(0, Buffer.alloc(512)), (e) => BlockError.is(e) && e.code === 'ENODEV');

      // The event is re-armed: a second change is seen too.
      ev = nextEvent<NamespaceChanges>(c, 'namespaces');
      f.target.addNamespace(TCP_TEST_NQN, { nsid: 1, device: new RamDevice({ size: MiB }) });
      assert.deepEqual(await ev, { added: [1], removed: [], changed: [] });
      assert.notEqual(c.namespace(1), ns1, 'a namespace that came back is a new object');
    } finally {
      await c.disconnect();
      await f.close();
    }
  });
});

describe('NvmeController disconnect', () => {
  it('shuts down (CC.SHN), fails pending commands with DELETED, closes every connection; idempotent', async () => {
    const dev = new SlowRamDevice({ size: MiB });
    const g = gate();
    const f = await startTcpTarget({ namespaces: [{ nsid: 1, device: dev }] });
    const c = await connect(f, { ioQueues: 1 });
    const ns = c.namespace(1);
    const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
    const conns = targetConnections(f, c.cntlid);
    try {
      dev.gate = g.promise;
      const pending = c.submitIo(readCmd(1, 0, Buffer.alloc(512)));
      while (dev.inflight === 0) await sleep(5);
      const states: string[] = [];
      c.on('state', (s: string) => states.push(s));
      const d1 = c.disconnect();
      const d2 = c.disconnect();
      assert.equal(d1, d2);
      await assert.rejects(pending, (e) => HostError.is(e) && e.code === 'DELETED');
      await d1;
      assert.deepEqual(states, ['deleting', 'deleted']);
      assert.equal(decodeCc(ctrl.cc).shn, CcShn.NORMAL);
      assert.equal(decodeCsts(ctrl.csts).shst, CstsShst.COMPLETE);
      assert.equal(ctrl.live, false);
      await Promise.all(conns.map((q) => q.closed));
      assert.equal(f.transport.connections.size, 0);
      assert.equal(ns.removed, true);
      assert.equal(c.namespaces.size, 0);
      await assert.rejects(c.submitIo(readCmd(1, 0, Buffer.alloc(512))), {
        name: 'HostError',
        code: 'DELETED',
      });
      await c.disconnect();
    } finally {
      g.open();
      await f.close();
    }
  });
});
