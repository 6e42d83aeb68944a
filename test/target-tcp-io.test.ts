// I/O over the NVMe/TCP target: in-capsule writes, R2T writes (one and several R2Ts, MAXR2T),
// C2HData (chunking, SUCCESS only without SQ flow control, SQHD otherwise), Copy formats 0 and
// 2, concurrency on several queues, Disconnect. Every transfer is read back and compared.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { RamDevice } from '../src/devices/ram.js';
import { Cns } from '../src/nvme/identify.js';
import { Cdfe, encodeHostBehavior, FeatureId } from '../src/nvme/features.js';
import { formatStatus, isSuccess, sameStatus, Status } from '../src/nvme/status.js';
import { startTcpTarget, TCP_TEST_NQN, type TcpFixture } from '../src/target/tcp/testing/fixture.js';
import { expectSuccess, TcpHostController, type HostCommandResult } from '../src/target/tcp/testing/host.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 64 * MiB;
const BLOCKS = SIZE / 512;

function ok(r: HostCommandResult, what: string): HostCommandResult {
  assert.ok(isSuccess(r.cqe.status), `${what}: ${formatStatus(r.cqe.status)}`);
  return r;
}

for (const digests of [false, true]) {
  describe(`write and read back${digests ? ' with header and data digests' : ''}`, () => {
    let f: TcpFixture;
    let c: TcpHostController;
    before(async () => {
      f = await startTcpTarget();
      c = await TcpHostController.connect(f.address, {
        subnqn: TCP_TEST_NQN,
        headerDigest: digests,
        dataDigest: digests,
      });
    });
    after(async () => {
      await c.close();
      await f.close();
    });

    it('4 KiB goes in the capsule and reads back', async () => {
      const data = randomBytes(4 * KiB);
      const w = ok(await c.write(1, 100, data), 'write');
      assert.equal(w.r2ts.length, 0, 'no R2T for in-capsule data');
      const r = ok(await c.read(1, 100, 8), 'read');
      assert.deepEqual(r.data, data);
      assert.equal(r.c2h.length, 1);
    });

    it('128 KiB goes through one R2T and reads back, at the last blocks of the namespace', async () => {
      const data = randomBytes(128 * KiB);
      const slba = BLOCKS - 256;
      const w = ok(await c.write(1, slba, data), 'write');
      assert.deepEqual(
        w.r2ts.map((r) => [r.r2to, r.r2tl]),
        [[0, 128 * KiB]],
      );
      const r = ok(await c.read(1, slba, 256), 'read');
      assert.deepEqual(r.data, data);
    });

    it('a write past the last block fails with LBA Out of Range and changes nothing', async () => {
      const before = ok(await c.read(1, BLOCKS - 8, 8), 'read').data!;
      const w = await c.write(1, BLOCKS - 7, randomBytes(4 * KiB));
      assert.ok(sameStatus(w.cqe.status, Status.LBA_RANGE), formatStatus(w.cqe.status));
      assert.deepEqual(ok(await c.read(1, BLOCKS - 8, 8), 'read').data, before);
    });

    it('a 1 MiB read comes as 128 KiB C2HData PDUs, LAST_PDU on the last only, then a CapsuleResp', async () => {
      const data = randomBytes(MiB);
      ok(await c.write(1, 4096, data), 'write');
      const r = ok(await c.read(1, 4096, 2048), 'read');
      assert.deepEqual(r.data, data);
      assert.equal(r.completion, 'capsule');
      assert.deepEqual(
        r.c2h.map((p) => [p.datao, p.datal, p.last, p.success]),
        Array.from({ length: 8 }, (_, i) => [i * 128 * KiB, 128 * KiB, i === 7, false]),
      );
    });
  });
}

describe('R2T flow with MAXH2CDATA below the transfer size', () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget({ transport: { maxH2CDataBytes: 32 * KiB } })));
  after(() => f.close());

  it('announces the MAXH2CDATA it was given', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN });
    assert.equal(c.admin.icresp.maxh2cdata, 32 * KiB);
    await c.close();
  });

  for (const maxr2t of [0, 1, 3]) {
    it(`a 128 KiB write takes four 32 KiB R2Ts, at most MAXR2T + 1 = ${maxr2t + 1} open at once`, async () => {
      const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, maxr2t });
      try {
        const data = randomBytes(128 * KiB);
        // The host holds R2Ts until MAXR2T + 1 are open: a controller sending fewer would stall.
        const w = ok(
          await c.ioQueue().submit(writeSqe(1, 2048, 256), { data, r2tBatch: maxr2t + 1 }),
          'write',
        );
        assert.deepEqual(
          w.r2ts.map((r) => [r.r2to, r.r2tl]),
          [0, 1, 2, 3].map((i) => [i * 32 * KiB, 32 * KiB]),
        );
        assert.equal(w.maxOpenR2ts, maxr2t + 1);
        assert.equal(new Set(w.r2ts.map((r) => r.ttag)).size, 4, 'each R2T has its own TTAG');
        assert.deepEqual(ok(await c.read(1, 2048, 256), 'read').data, data);
      } finally {
        await c.close();
      }
    });
  }
});

function writeSqe(nsid: number, slba: number, blocks: number) {
  return { opcode: 0x01, nsid, cdw10: slba, cdw11: 0, cdw12: blocks - 1 };
}

describe('C2HData SUCCESS and SQ flow control', () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget()));
  after(() => f.close());

  it('with SQ flow control disabled, a successful read ends with SUCCESS and no CapsuleResp', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, disableSqFlow: true });
    try {
      const data = randomBytes(256 * KiB);
      ok(await c.write(1, 0, data), 'write');
      const r = ok(await c.read(1, 0, 512), 'read');
      assert.equal(r.completion, 'c2h-success');
      assert.deepEqual(r.data, data);
      assert.deepEqual(
        r.c2h.map((p) => [p.last, p.success]),
        [
          [false, false],
          [true, true],
        ],
      );
      // A write has no data to carry the flag: it gets a CapsuleResp, SQHD 0xFFFF.
      const w = ok(await c.write(1, 0, data.subarray(0, 4096)), 'write');
      assert.equal(w.completion, 'capsule');
      assert.equal(w.cqe.sqhd, 0xffff);
      // A failed read sends no data, only the CapsuleResp with the status.
      const bad = await c.read(1, BLOCKS, 1);
      assert.equal(bad.completion, 'capsule');
      assert.equal(bad.c2h.length, 0);
      assert.ok(sameStatus(bad.cqe.status, Status.LBA_RANGE));
    } finally {
      await c.close();
    }
  });

  it('with SQ flow control, every read ends with a CapsuleResp carrying the advancing SQHD', async () => {
    const size = 8;
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, ioQueueSize: size });
    try {
      const heads: number[] = [];
      for (let i = 0; i < 10; i++) {
        const r = ok(await c.read(1, i, 1), 'read');
        assert.equal(r.completion, 'capsule');
        assert.ok(r.c2h.every((p) => !p.success));
        heads.push(r.cqe.sqhd);
      }
      // Connect took entry 0 (SQHD 1); then one entry per command, wrapping at the queue size.
      assert.deepEqual(
        heads,
        Array.from({ length: 10 }, (_, i) => (i + 2) % size),
      );
    } finally {
      await c.close();
    }
  });
});

describe('Copy over TCP', () => {
  let f: TcpFixture;
  let c: TcpHostController;
  const ns1 = new RamDevice({ size: 16 * MiB });
  const ns2 = new RamDevice({ size: 16 * MiB });
  before(async () => {
    f = await startTcpTarget({
      namespaces: [
        { nsid: 1, device: ns1 },
        { nsid: 2, device: ns2 },
      ],
      // Descriptor lists travel by R2T too: no in-capsule data on I/O queues.
      transport: { inlineDataSize: 0 },
    });
    c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, dataDigest: true });
  });
  after(async () => {
    await c.close();
    await f.close();
  });

  it('format 0: three ranges within namespace 1, descriptors sent by R2T', async () => {
    const src = randomBytes(64 * KiB);
    ok(await c.write(1, 1000, src), 'write');
    const ranges = [
      { slba: 1000, blocks: 8 },
      { slba: 1064, blocks: 32 },
      { slba: 1120, blocks: 8 },
    ];
    const r = ok(await c.copy(1, 20000, ranges, 0), 'copy');
    assert.equal(r.r2ts.length, 1, 'the 96-byte descriptor list came by R2T');
    const got = ok(await c.read(1, 20000, 48), 'read').data!;
    const want = Buffer.concat(
      ranges.map((x) => src.subarray((x.slba - 1000) * 512, (x.slba - 1000 + x.blocks) * 512)),
    );
    assert.deepEqual(got, want);
  });

  it('format 2: ranges from namespace 2 into namespace 1 once Host Behavior Support enables it', async () => {
    const src = randomBytes(16 * KiB);
    ok(await c.write(2, 500, src), 'write ns 2');
    const ranges = [
      { snsid: 2, slba: 500, blocks: 16 },
      { snsid: 2, slba: 516, blocks: 16 },
    ];
    const refused = await c.copy(1, 30000, ranges, 2);
    assert.ok(sameStatus(refused.cqe.status, Status.INVALID_FIELD), 'format 2 before CDFE');
    expectSuccess(
      await c.setFeatures(FeatureId.HOST_BEHAVIOR, 0, encodeHostBehavior({ cdfe: Cdfe.FORMAT_2 })),
      'Set Features Host Behavior',
    );
    ok(await c.copy(1, 30000, ranges, 2), 'copy');
    assert.deepEqual(ok(await c.read(1, 30000, 32), 'read').data, src);
    // The device holds it too (not just the target's view of it).
    const dev = Buffer.alloc(16 * KiB);
    await ns1.read(30000 * 512, dev);
    assert.deepEqual(dev, src);
  });

  it('an invalid copy (range past the end) fails with LBA Out of Range over TCP', async () => {
    const r = await c.copy(1, 0, [{ slba: (16 * MiB) / 512 - 4, blocks: 8 }], 0);
    assert.ok(sameStatus(r.cqe.status, Status.LBA_RANGE), formatStatus(r.cqe.status));
  });
});

describe('several queues at queue depth 32', () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget()));
  after(() => f.close());

  it('writes and reads 4 KiB and 128 KiB blocks concurrently on two queues and verifies each', async () => {
    const c = await TcpHostController.connect(f.address, {
      subnqn: TCP_TEST_NQN,
      ioQueues: 2,
      dataDigest: true,
    });
    try {
      const jobs: Array<{ slba: number; data: Buffer; queue: number }> = [];
      for (let i = 0; i < 64; i++) {
        const big = i % 4 === 0;
        jobs.push({ slba: i * 512, data: randomBytes(big ? 128 * KiB : 4 * KiB), queue: i % 2 });
      }
      // 32 outstanding per queue.
      const writes = await Promise.all(
        jobs.map((j) => c.write(1, j.slba, j.data, { queue: c.io[j.queue]! })),
      );
      writes.forEach((w) => ok(w, 'write'));
      const reads = await Promise.all(
        jobs.map((j) => c.read(1, j.slba, j.data.length / 512, 512, c.io[1 - j.queue]!)),
      );
      reads.forEach((r, i) => assert.deepEqual(ok(r, 'read').data, jobs[i]!.data, `job ${i}`));
    } finally {
      await c.close();
    }
  });

  it('Disconnect closes that I/O queue only; the admin queue keeps working', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, ioQueues: 2 });
    try {
      const d = await c.disconnect(c.io[0]!);
      assert.ok(isSuccess(d.cqe.status));
      await c.io[0]!.closed;
      ok(await c.identify(Cns.CTRL), 'Identify on the admin queue after Disconnect');
      ok(await c.read(1, 0, 1, 512, c.io[1]!), 'read on the other queue');
      // The queue ID is free again: a host may reconnect it.
      const q = await c.connectIoQueue(1);
      ok(await c.read(1, 0, 1, 512, q), 'read on the reconnected queue');
    } finally {
      await c.close();
    }
  });
});
