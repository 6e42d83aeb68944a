// Malformed PDUs and transport-level command errors on the NVMe/TCP target. A fatal error gets
// a C2HTermReq with the FES (and FEI where the spec defines one) and the connection closes —
// and nothing else is affected: the same controller's admin queue and another host's
// controller keep working. Non-fatal errors fail only the command.

import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeSqe } from '../src/nvme/command.js';
import { Cns } from '../src/nvme/identify.js';
import { AdminOpcode, IoOpcode } from '../src/nvme/opcodes.js';
import { inCapsuleSgl, transportSgl } from '../src/nvme/sgl.js';
import { formatStatus, isSuccess, sameStatus, Status, type NvmeStatus } from '../src/nvme/status.js';
import { buildC2HData, buildCapsuleCmd, buildH2CData } from '../src/nvme/tcp/builder.js';
import { H2CDataHeader, TcpFes, type R2TPdu } from '../src/nvme/tcp/pdu.js';
import { startTcpTarget, TCP_TEST_NQN, type TcpFixture } from '../src/target/tcp/testing/fixture.js';
import {
  TcpHostController,
  TcpHostError,
  TcpHostQueue,
  type HostCommandResult,
} from '../src/target/tcp/testing/host.js';

const KiB = 1024;

function assertStatus(r: HostCommandResult, want: NvmeStatus, dnr?: boolean): void {
  assert.ok(sameStatus(r.cqe.status, want), `got ${formatStatus(r.cqe.status)}, want ${formatStatus(want)}`);
  if (dnr !== undefined) assert.equal(r.cqe.status.dnr, dnr, 'DNR');
}

/** A write + read-back round trip that must succeed. */
async function roundTrip(c: TcpHostController, slba: number, q = c.ioQueue()): Promise<void> {
  const data = randomBytes(8 * KiB);
  const w = await c.write(1, slba, data, { queue: q });
  assert.ok(isSuccess(w.cqe.status), formatStatus(w.cqe.status));
  const r = await c.read(1, slba, 16, 512, q);
  assert.deepEqual(r.data, data);
}

/** Writes 128 KiB through R2T but hands the R2T to the test instead of answering it. */
async function openR2T(
  q: TcpHostQueue,
  slba = 0,
): Promise<{ r2t: R2TPdu; done: Promise<HostCommandResult> }> {
  let got: (r: R2TPdu) => void;
  const r2tSeen = new Promise<R2TPdu>((resolve) => (got = resolve));
  const done = q.submit(
    { opcode: IoOpcode.WRITE, nsid: 1, cdw10: slba, cdw12: 255 },
    {
      data: Buffer.alloc(128 * KiB, 0xab),
      interceptR2T: (r) => {
        got(r);
        return true;
      },
    },
  );
  return { r2t: await r2tSeen, done };
}

async function expectTermReq(q: TcpHostQueue, fes: number, fei?: number): Promise<void> {
  await q.closed;
  assert.equal(q.termReqs.length, 1, `one C2HTermReq (error: ${q.error?.message})`);
  assert.equal(q.termReqs[0]!.fes, fes, `FES (${q.error?.message})`);
  if (fei !== undefined) assert.equal(q.termReqs[0]!.fei, fei, 'FEI');
}

describe('malformed PDUs end only their own connection', () => {
  let f: TcpFixture;
  let bystander: TcpHostController;
  let victim: TcpHostController;
  before(async () => {
    f = await startTcpTarget();
    bystander = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN });
  });
  after(async () => {
    await bystander.close();
    await f.close();
  });
  beforeEach(async () => {
    victim = await TcpHostController.connect(f.address, {
      subnqn: TCP_TEST_NQN,
      headerDigest: true,
      dataDigest: true,
    });
  });
  afterEach(async () => {
    // The victim's controller lost one I/O queue only: its admin queue still answers.
    const id = await victim.identify(Cns.CTRL);
    assert.ok(isSuccess(id.cqe.status));
    // And another host's controller was not touched.
    await roundTrip(bystander, 50_000);
    await victim.close();
  });

  it('bad hlen → FES 1 (Invalid PDU Header Field), FEI 2', async () => {
    const q = victim.ioQueue();
    const p = q.submit({ opcode: IoOpcode.FLUSH, nsid: 1 }, { mangle: (b) => ((b[2] = 80), b) });
    await assert.rejects(p, (e: TcpHostError) => e.code === 'TERM_REQ');
    await expectTermReq(q, TcpFes.INVALID_PDU_HDR, 2);
  });

  it('bad header digest → FES 3 (Header Digest Error)', async () => {
    const q = victim.ioQueue();
    const p = q.submit({ opcode: IoOpcode.FLUSH, nsid: 1 }, { mangle: (b) => ((b[72]! ^= 0xff), b) });
    await assert.rejects(p, (e: TcpHostError) => e.code === 'TERM_REQ');
    await expectTermReq(q, TcpFes.HDR_DIGEST_ERR);
  });

  it('in-capsule data beyond the I/O queue in-capsule size → FES 5 (Data Transfer Limit Exceeded)', async () => {
    const q = victim.ioQueue();
    const p = q.submit(
      { opcode: IoOpcode.WRITE, nsid: 1, cdw12: 39 },
      { data: randomBytes(20 * KiB), inCapsule: true },
    );
    await assert.rejects(p, (e: TcpHostError) => e.code === 'TERM_REQ');
    await expectTermReq(q, TcpFes.DATA_LIMIT_EXCEEDED);
  });

  it('H2CData with a TTAG no R2T gave → FES 1 at the TTAG (10)', async () => {
    const q = victim.ioQueue();
    const { r2t, done } = await openR2T(q);
    q.sendRaw(
      buildH2CData(
        q.tx,
        { cccid: r2t.cccid, ttag: r2t.ttag ^ 0x5a5a, datao: 0, last: true },
        Buffer.alloc(r2t.r2tl),
      ),
    );
    await assert.rejects(done, (e: TcpHostError) => e.code === 'TERM_REQ');
    await expectTermReq(q, TcpFes.INVALID_PDU_HDR, H2CDataHeader.offsetOf('ttag'));
  });

  it('H2CData without any R2T (unsolicited) → FES 1 at the TTAG', async () => {
    const q = victim.ioQueue();
    q.sendRaw(buildH2CData(q.tx, { cccid: 1, ttag: 0, datao: 0, last: true }, Buffer.alloc(4096)));
    await expectTermReq(q, TcpFes.INVALID_PDU_HDR, 10);
  });

  it('H2CData with the CCCID of another command → FES 1 at the CCCID (8)', async () => {
    const q = victim.ioQueue();
    const { r2t, done } = await openR2T(q);
    q.sendRaw(
      buildH2CData(
        q.tx,
        { cccid: r2t.cccid + 1, ttag: r2t.ttag, datao: 0, last: true },
        Buffer.alloc(r2t.r2tl),
      ),
    );
    await assert.rejects(done);
    await expectTermReq(q, TcpFes.INVALID_PDU_HDR, H2CDataHeader.offsetOf('cccid'));
  });

  it('H2CData outside the R2T → FES 4 (Data Transfer Out Of Range)', async () => {
    const q = victim.ioQueue();
    const { r2t, done } = await openR2T(q);
    q.sendRaw(
      buildH2CData(
        q.tx,
        { cccid: r2t.cccid, ttag: r2t.ttag, datao: r2t.r2tl - 512, last: true },
        Buffer.alloc(1024),
      ),
    );
    await assert.rejects(done);
    await expectTermReq(q, TcpFes.DATA_OUT_OF_RANGE);
  });

  it('H2CData that skips ahead inside the R2T → FES 2 (PDU Sequence Error)', async () => {
    const q = victim.ioQueue();
    const { r2t, done } = await openR2T(q);
    q.sendRaw(
      buildH2CData(q.tx, { cccid: r2t.cccid, ttag: r2t.ttag, datao: 4096, last: false }, Buffer.alloc(4096)),
    );
    await assert.rejects(done);
    await expectTermReq(q, TcpFes.PDU_SEQ_ERR);
  });

  it('the last H2CData of an R2T without LAST_PDU → FES 2', async () => {
    const q = victim.ioQueue();
    const { r2t, done } = await openR2T(q);
    q.sendRaw(
      buildH2CData(q.tx, { cccid: r2t.cccid, ttag: r2t.ttag, datao: 0, last: false }, Buffer.alloc(r2t.r2tl)),
    );
    await assert.rejects(done);
    await expectTermReq(q, TcpFes.PDU_SEQ_ERR);
  });

  it('LAST_PDU before the R2T is complete → FES 2', async () => {
    const q = victim.ioQueue();
    const { r2t, done } = await openR2T(q);
    q.sendRaw(
      buildH2CData(q.tx, { cccid: r2t.cccid, ttag: r2t.ttag, datao: 0, last: true }, Buffer.alloc(4096)),
    );
    await assert.rejects(done);
    await expectTermReq(q, TcpFes.PDU_SEQ_ERR);
  });

  it('a controller→host PDU type from the host → FES 1 at the type byte', async () => {
    const q = victim.ioQueue();
    q.sendRaw(buildC2HData(q.tx, { cccid: 1, datao: 0, last: true }, Buffer.alloc(512)));
    await expectTermReq(q, TcpFes.INVALID_PDU_HDR, 0);
  });

  it('H2CTermReq from the host closes the connection without an answer', async () => {
    const q = victim.ioQueue();
    q.sendRaw(TcpHostQueue.termReq(TcpFes.INVALID_PDU_HDR, 2));
    await q.closed;
    assert.equal(q.termReqs.length, 0);
  });
});

describe('admin queue limits after Connect', () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget()));
  after(() => f.close());

  it('an admin capsule with more than 8 KiB of data → FES 5, and the controller goes with it', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN });
    const cntlid = c.cntlid;
    const p = c.admin.submit(
      { opcode: AdminOpcode.SET_FEATURES, cdw10: 0x16 },
      { data: Buffer.alloc(12 * KiB), inCapsule: true },
    );
    await assert.rejects(p);
    await expectTermReq(c.admin, TcpFes.DATA_LIMIT_EXCEEDED);
    await c.io[0]!.closed;
    assert.equal(f.target.subsystem(TCP_TEST_NQN)!.controller(cntlid), undefined);
  });
});

describe('transport errors that fail one command', () => {
  let f: TcpFixture;
  let c: TcpHostController;
  before(async () => {
    f = await startTcpTarget();
    c = await TcpHostController.connect(f.address, {
      subnqn: TCP_TEST_NQN,
      dataDigest: true,
      ioQueueSize: 4,
    });
  });
  after(async () => {
    await c.close();
    await f.close();
  });

  it('a data digest mismatch in a capsule → Transient Transport Error (retryable); the queue lives', async () => {
    const q = c.ioQueue();
    const r = await q.submit(
      { opcode: IoOpcode.WRITE, nsid: 1, cdw12: 7 },
      { data: randomBytes(4 * KiB), mangle: (b) => ((b[b.length - 1]! ^= 1), b) },
    );
    assertStatus(r, Status.TRANSIENT_TR_ERR, false);
    await roundTrip(c, 0);
  });

  it('a data digest mismatch in H2CData → Transient Transport Error once the R2T is answered', async () => {
    const q = c.ioQueue();
    const before = (await c.read(1, 100, 256)).data!;
    const { r2t, done } = await openR2T(q, 100);
    const pdu = Buffer.concat(
      buildH2CData(
        q.tx,
        { cccid: r2t.cccid, ttag: r2t.ttag, datao: 0, last: true },
        Buffer.alloc(r2t.r2tl, 7),
      ),
    );
    pdu[pdu.length - 1]! ^= 0xff;
    q.sendRaw(pdu);
    assertStatus(await done, Status.TRANSIENT_TR_ERR, false);
    assert.deepEqual((await c.read(1, 100, 256)).data, before, 'nothing was written');
    await roundTrip(c, 0);
  });

  it('in-capsule data shorter than the SGL → Data SGL Length Invalid (DNR)', async () => {
    const q = c.ioQueue();
    const sqe = encodeSqe({
      opcode: IoOpcode.WRITE,
      flags: 0x40,
      cid: 4000,
      nsid: 1,
      dptr: inCapsuleSgl(4096),
      cdw12: 7,
    });
    const r = await q.submit(sqe, { raw: true, data: randomBytes(2048) });
    assertStatus(r, Status.SGL_INVALID_DATA, true);
  });

  it('capsule data with a Transport Data Block SGL → SGL Descriptor Type Invalid (DNR)', async () => {
    const q = c.ioQueue();
    const sqe = encodeSqe({
      opcode: IoOpcode.WRITE,
      flags: 0x40,
      cid: 4001,
      nsid: 1,
      dptr: transportSgl(4096),
      cdw12: 7,
    });
    const r = await q.submit(sqe, { raw: true, data: randomBytes(4096) });
    assertStatus(r, Status.SGL_INVALID_TYPE, true);
  });

  it('a CID already outstanding → Command ID Conflict; the first command is unaffected', async () => {
    const cid = c.admin.allocateCid();
    const aer = c.admin.submit({ opcode: AdminOpcode.ASYNC_EVENT_REQUEST, cid }, { timeoutMs: 0 });
    aer.catch(() => {}); // it stays pending until the connection closes
    const dup = encodeSqe({
      opcode: AdminOpcode.IDENTIFY,
      flags: 0x40,
      cid,
      cdw10: Cns.CTRL,
      dptr: transportSgl(4096),
    });
    const r = await c.admin.submit(dup, { raw: true, length: 4096 });
    assertStatus(r, Status.CMDID_CONFLICT, true);
    const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
    assert.equal(ctrl.outstandingAers, 1);
  });

  it('more commands than the SQ holds → Command Sequence Error for the excess; the rest complete', async () => {
    const q = c.ioQueue(); // 4 entries
    const held: Array<{ r2t: R2TPdu; done: Promise<HostCommandResult> }> = [];
    for (let i = 0; i < 4; i++) held.push(await openR2T(q, 1000 + i * 256));
    const excess = await c.read(1, 0, 1);
    assertStatus(excess, Status.CMD_SEQ_ERROR, true);
    const data = Buffer.alloc(128 * KiB, 0xab);
    for (const h of held) q.sendRaw(q.h2cData(h.r2t, data));
    for (const h of held) assert.ok(isSuccess((await h.done).cqe.status));
    assert.deepEqual((await c.read(1, 1000, 256)).data, data);
  });
});

describe("dataDigestError: 'close' (Linux nvmet's behaviour)", () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget({ transport: { dataDigestError: 'close' } })));
  after(() => f.close());

  it('closes the connection without a TermReq', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, dataDigest: true });
    const q = c.ioQueue();
    const p = q.submit(
      { opcode: IoOpcode.WRITE, nsid: 1, cdw12: 7 },
      { data: randomBytes(4 * KiB), mangle: (b) => ((b[b.length - 1]! ^= 1), b) },
    );
    await assert.rejects(p, (e: TcpHostError) => e.code === 'CLOSED');
    await q.closed;
    assert.equal(q.termReqs.length, 0);
    await c.close();
  });
});

it('a capsule built by hand with the wrong digest flags is refused (FES 1 at the flags)', async () => {
  const f = await startTcpTarget();
  try {
    const q = await TcpHostQueue.open(f.address, { headerDigest: true });
    // Header digests were negotiated; this capsule comes without one.
    q.sendRaw(buildCapsuleCmd({ headerDigest: false, dataDigest: false }, Buffer.alloc(64)));
    await expectTermReq(q, TcpFes.INVALID_PDU_HDR, 1);
  } finally {
    await f.close();
  }
});
