import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlockDevice } from '../block/device.js';
import { FaultDevice } from '../devices/fault.js';
import { encodeCopyCommand, encodeCopySourceRanges, CopySopt } from '../nvme/copy.js';
import { encodeHostBehavior, encodeSetFeaturesCdw10, FeatureId } from '../nvme/features.js';
import { AdminOpcode, IoOpcode } from '../nvme/opcodes.js';
import { Status } from '../nvme/status.js';
import type { NamespaceOptions } from './namespace.js';
import type { LoopController } from './testing/loop.js';
import { assertStatus, copy, fillPattern, NQN, ram, readAll, setup } from './testing/fixtures.js';

const MiB = 1024 * 1024;
const BS = 512;

async function enableCrossNamespace(c: LoopController, cdfe = 0x0c): Promise<void> {
  const r = await c.admin.submit(
    { opcode: AdminOpcode.SET_FEATURES, cdw10: encodeSetFeaturesCdw10(FeatureId.HOST_BEHAVIOR) },
    { data: encodeHostBehavior({ cdfe }) },
  );
  assertStatus(r.cqe, Status.SUCCESS);
}

async function start(namespaces: NamespaceOptions[], subsystem = {}) {
  const f = setup({ namespaces, subsystem });
  const c = await f.host.connectController(NQN, { ioQueues: 1 });
  return { ...f, c, q: c.io[0]! };
}

/** The bytes of `blocks` LBAs from `lba` in a snapshot. */
const lbas = (buf: Buffer, lba: number, blocks: number) => buf.subarray(lba * BS, (lba + blocks) * BS);

test('format 0: ranges are copied back to back from SDLBA; offloaded on a RAM device', async () => {
  const dev = ram(MiB);
  await fillPattern(dev);
  const before = await readAll(dev);
  const { q, target } = await start([{ nsid: 1, device: dev }]);
  const r = await copy(q, 1, 1000, [
    { slba: 10, blocks: 4 },
    { slba: 0, blocks: 1 },
    { slba: 2040, blocks: 8 }, // the last LBAs
  ]);
  assertStatus(r.cqe, Status.SUCCESS);
  assert.equal(r.cqe.dw0, 0);
  const after = await readAll(dev);
  assert.deepEqual(lbas(after, 1000, 4), lbas(before, 10, 4));
  assert.deepEqual(lbas(after, 1004, 1), lbas(before, 0, 1));
  assert.deepEqual(lbas(after, 1005, 8), lbas(before, 2040, 8));
  assert.deepEqual(lbas(after, 1013, 100), lbas(before, 1013, 100), 'nothing past the destination changed');
  const st = target.subsystem(NQN)!.namespace(1)!.stats;
  assert.deepEqual(
    [st.copies, st.copyRanges, st.copyBytesOffloaded, st.copyBytesEmulated],
    [1, 3, 13 * BS, 0],
  );
});

test('format 0 into the last LBA of the namespace; one block past it is LBA Out of Range', async () => {
  const dev = ram(MiB);
  await fillPattern(dev);
  const before = await readAll(dev);
  const { q } = await start([{ nsid: 1, device: dev }]);
  assertStatus((await copy(q, 1, 2047, [{ slba: 5, blocks: 1 }])).cqe, Status.SUCCESS);
  assert.deepEqual(lbas(await readAll(dev), 2047, 1), lbas(before, 5, 1));
  const over = await copy(q, 1, 2047, [
    { slba: 5, blocks: 1 },
    { slba: 6, blocks: 1 },
  ]);
  assertStatus(over.cqe, Status.LBA_RANGE, true);
  assert.equal(over.req.errorLba, 2048);
  const src = await copy(q, 1, 0, [{ slba: 2047, blocks: 2 }]);
  assertStatus(src.cqe, Status.LBA_RANGE, true);
  assert.equal(src.cqe.dw0, 0, 'refused before anything was copied');
});

test('no-offload device: Copy is emulated and counted as emulated', async () => {
  const dev = ram(MiB, { copy: false });
  await fillPattern(dev);
  const before = await readAll(dev);
  const { q, target } = await start([{ nsid: 1, device: dev }]);
  assertStatus(
    (
      await copy(q, 1, 512, [
        { slba: 0, blocks: 64 },
        { slba: 100, blocks: 3 },
      ])
    ).cqe,
    Status.SUCCESS,
  );
  const after = await readAll(dev);
  assert.deepEqual(lbas(after, 512, 64), lbas(before, 0, 64));
  assert.deepEqual(lbas(after, 576, 3), lbas(before, 100, 3));
  const st = target.subsystem(NQN)!.namespace(1)!.stats;
  assert.deepEqual([st.copyBytesOffloaded, st.copyBytesEmulated], [0, 67 * BS]);
});

test('overlapping source and destination: memmove semantics, never Overlapping I/O Range', async () => {
  for (const device of [ram(MiB), ram(MiB, { copy: false })]) {
    await fillPattern(device);
    const before = await readAll(device);
    const { q } = await start([{ nsid: 1, device }]);
    // Move 16 blocks up by 4, and make range 2 read what range 1 overwrites.
    const r = await copy(q, 1, 104, [
      { slba: 100, blocks: 16 },
      { slba: 110, blocks: 4 },
    ]);
    assertStatus(r.cqe, Status.SUCCESS);
    const after = await readAll(device);
    assert.deepEqual(
      lbas(after, 104, 16),
      lbas(before, 100, 16),
      `${device.limits.copy ? 'offload' : 'emulate'}: moved up`,
    );
    assert.deepEqual(lbas(after, 120, 4), lbas(before, 110, 4), 'sources read as before any write');
    assert.deepEqual(lbas(after, 100, 4), lbas(before, 100, 4));
  }
});

test('format 2: cross-namespace on two RAM devices is emulated, same-namespace ranges offloaded', async () => {
  const a = ram(MiB);
  const b = ram(MiB);
  await fillPattern(a, 1);
  await fillPattern(b, 2);
  const [ba, bb] = [await readAll(a), await readAll(b)];
  const { q, c, target } = await start([
    { nsid: 1, device: a },
    { nsid: 2, device: b },
  ]);
  await enableCrossNamespace(c);
  const r = await copy(
    q,
    1,
    1500,
    [
      { snsid: 2, slba: 7, blocks: 3 },
      { snsid: 1, slba: 20, blocks: 2 },
      { snsid: 2, slba: 2040, blocks: 8 },
    ],
    2,
  );
  assertStatus(r.cqe, Status.SUCCESS);
  const after = await readAll(a);
  assert.deepEqual(lbas(after, 1500, 3), lbas(bb, 7, 3));
  assert.deepEqual(lbas(after, 1503, 2), lbas(ba, 20, 2));
  assert.deepEqual(lbas(after, 1505, 8), lbas(bb, 2040, 8));
  assert.deepEqual(await readAll(b), bb, 'the source namespace is untouched');
  const st = target.subsystem(NQN)!.namespace(1)!.stats;
  assert.deepEqual([st.copyBytesOffloaded, st.copyBytesEmulated], [2 * BS, 11 * BS]);
});

test('format 2: two namespaces on one device copy between each other by offload', async () => {
  const dev = ram(MiB);
  await fillPattern(dev);
  const before = await readAll(dev);
  const { q, c, target } = await start([
    { nsid: 1, device: dev },
    { nsid: 2, device: dev },
  ]);
  await enableCrossNamespace(c);
  const r = await copy(q, 2, 300, [{ snsid: 1, slba: 0, blocks: 16 }], 2);
  assertStatus(r.cqe, Status.SUCCESS);
  assert.deepEqual(lbas(await readAll(dev), 300, 16), lbas(before, 0, 16));
  const st = target.subsystem(NQN)!.namespace(2)!.stats;
  assert.deepEqual([st.copyBytesOffloaded, st.copyBytesEmulated], [16 * BS, 0]);
});

test('format 2 needs Host Behavior Support CDFE and OCFS; formats 1/3 and unknown formats are Invalid Field', async () => {
  const { q, c } = await start([{ nsid: 1, device: ram(MiB) }], { copyFormats: 0x07 });
  const off = await copy(q, 1, 0, [{ snsid: 1, slba: 8, blocks: 1 }], 2);
  assertStatus(off.cqe, Status.INVALID_FIELD, true);
  assert.equal(off.req.errorLoc, 48);
  await enableCrossNamespace(c, 0x04);
  assertStatus((await copy(q, 1, 0, [{ snsid: 1, slba: 8, blocks: 1 }], 2)).cqe, Status.SUCCESS);
  assertStatus((await copy(q, 1, 0, [{ snsid: 1, slba: 8, blocks: 1 }], 3)).cqe, Status.INVALID_FIELD, true);
  const f1 = await copy(q, 1, 0, [{ slba: 8, blocks: 1 }], 1);
  assertStatus(f1.cqe, Status.INVALID_FIELD, true);
  assert.match(f1.req.message!, /no protection information/);
  const dw = encodeCopyCommand({ sdlba: 0, ranges: 1, format: 0 });
  const bad = await q.submit(
    { opcode: IoOpcode.COPY, nsid: 1, ...dw, cdw12: dw.cdw12 | (5 << 8) },
    { data: Buffer.alloc(32) },
  );
  assertStatus(bad.cqe, Status.INVALID_FIELD, true);
  // OCFS without format 0
  const g = await start([{ nsid: 1, device: ram(MiB) }], { copyFormats: 0x04 });
  assertStatus((await copy(g.q, 1, 0, [{ slba: 8, blocks: 1 }], 0)).cqe, Status.INVALID_FIELD, true);
});

test('Command Size Limit Exceeded (0x83) for MSRC, MSSRL and MCL, in that order', async () => {
  const { q } = await start([{ nsid: 1, device: ram(MiB), copyLimits: { msrc: 1, mssrl: 8, mcl: 12 } }]);
  const three = await copy(q, 1, 100, [
    { slba: 0, blocks: 1 },
    { slba: 1, blocks: 1 },
    { slba: 2, blocks: 1 },
  ]);
  assertStatus(three.cqe, Status.CMD_SIZE_LIMIT_EXCEEDED, true);
  assert.equal(three.cqe.status.sct, 1);
  assert.equal(three.cqe.status.sc, 0x83);
  const long = await copy(q, 1, 100, [{ slba: 0, blocks: 9 }]);
  assertStatus(long.cqe, Status.CMD_SIZE_LIMIT_EXCEEDED, true);
  const total = await copy(q, 1, 100, [
    { slba: 0, blocks: 8 },
    { slba: 8, blocks: 5 },
  ]);
  assertStatus(total.cqe, Status.CMD_SIZE_LIMIT_EXCEEDED, true);
  assert.match(total.req.message!, /MCL 12/);
  // MCL is checked before the per-range checks, as QEMU does
  const both = await copy(q, 1, 100, [
    { slba: 0, blocks: 9 },
    { slba: 2047, blocks: 8 },
  ]);
  assert.match(both.req.message!, /MCL/);
  assertStatus(
    (
      await copy(q, 1, 100, [
        { slba: 0, blocks: 8 },
        { slba: 8, blocks: 4 },
      ])
    ).cqe,
    Status.SUCCESS,
  );
});

test('256 ranges (NR 255) are accepted with the default MSRC', async () => {
  const dev = ram(MiB);
  await fillPattern(dev);
  const before = await readAll(dev);
  const { q } = await start([{ nsid: 1, device: dev }]);
  const ranges = Array.from({ length: 256 }, (_, i) => ({ slba: 255 - i, blocks: 1 }));
  const r = await copy(q, 1, 1024, ranges);
  assertStatus(r.cqe, Status.SUCCESS);
  const after = await readAll(dev);
  for (let i = 0; i < 256; i++) assert.deepEqual(lbas(after, 1024 + i, 1), lbas(before, 255 - i, 1));
});

test('cross-namespace checks: inactive or reserved SNSID, different LBA size', async () => {
  const { q, c } = await start([
    { nsid: 1, device: ram(MiB) },
    { nsid: 2, device: ram(MiB, { logicalBlockSize: 4096 }) },
  ]);
  await enableCrossNamespace(c);
  for (const snsid of [0, 3, 0xffffffff]) {
    const r = await copy(q, 1, 0, [{ snsid, slba: 0, blocks: 1 }], 2);
    assertStatus(r.cqe, Status.INVALID_NS, true);
  }
  const inc = await copy(q, 1, 0, [{ snsid: 2, slba: 0, blocks: 1 }], 2);
  assertStatus(inc.cqe, Status.INCOMPATIBLE_NS, true);
  assert.equal(inc.cqe.status.sc, 0x85);
});

test('read-only: the destination is write protected; a read-only source is fine', async () => {
  const src = ram(MiB);
  await fillPattern(src);
  const { q, c } = await start([
    { nsid: 1, device: src, readOnly: true },
    { nsid: 2, device: ram(MiB) },
  ]);
  await enableCrossNamespace(c);
  assertStatus((await copy(q, 1, 100, [{ slba: 0, blocks: 1 }])).cqe, Status.NS_WRITE_PROTECTED, true);
  assertStatus((await copy(q, 2, 100, [{ snsid: 1, slba: 0, blocks: 1 }], 2)).cqe, Status.SUCCESS);
});

test('the range list must be exactly (NR + 1) × descriptor size', async () => {
  const { q } = await start([{ nsid: 1, device: ram(MiB) }]);
  const dw = encodeCopyCommand({ sdlba: 0, ranges: 2, format: 0 });
  const short = await q.submit(
    { opcode: IoOpcode.COPY, nsid: 1, ...dw },
    { data: encodeCopySourceRanges([{ slba: 1, blocks: 1 }], 0) },
  );
  assertStatus(short.cqe, Status.SGL_INVALID_DATA, true);
});

test('partial failure (emulated): DW0 = whole ranges copied from the start; their data is there', async () => {
  const fault = new FaultDevice(ram(MiB, { copy: false }));
  await fillPattern(fault);
  const before = await readAll(fault);
  // The destination of range 1 has a bad block.
  fault.addRule({ ops: ['write'], offset: 1005 * BS, length: BS });
  const { q, target } = await start([{ nsid: 1, device: fault }]);
  const r = await copy(q, 1, 1000, [
    { slba: 10, blocks: 4 },
    { slba: 298, blocks: 4 },
    { slba: 500, blocks: 2 },
  ]);
  assertStatus(r.cqe, Status.WRITE_FAULT, true);
  assert.equal(r.cqe.status.sct, 2);
  assert.equal(r.cqe.dw0, 1);
  assert.match(r.req.message!, /1 of 3 source ranges copied/);
  assert.equal(r.req.errorLba, 1005);
  const after = await readAll(fault);
  assert.deepEqual(lbas(after, 1000, 4), lbas(before, 10, 4));
  assert.deepEqual(
    lbas(after, 1004, 4),
    lbas(before, 1004, 4),
    'the failed range left its destination alone',
  );
  const st = target.subsystem(NQN)!.namespace(1)!.stats;
  assert.equal(st.copyFailures, 1);
  assert.equal(st.copies, 0);
});

test('partial failure (offloaded): the device copies the ranges before the bad one; DW0 counts them', async () => {
  const fault = new FaultDevice(ram(MiB));
  await fillPattern(fault);
  const before = await readAll(fault);
  fault.addRule({ ops: ['copy'], offset: 700 * BS, length: BS });
  const { q } = await start([{ nsid: 1, device: fault }]);
  const r = await copy(q, 1, 1000, [
    { slba: 10, blocks: 2 },
    { slba: 20, blocks: 2 },
    { slba: 699, blocks: 4 },
    { slba: 30, blocks: 2 },
  ]);
  assertStatus(r.cqe, Status.WRITE_FAULT, true);
  assert.equal(r.cqe.dw0, 2);
  const after = await readAll(fault);
  assert.deepEqual(lbas(after, 1000, 2), lbas(before, 10, 2));
  assert.deepEqual(lbas(after, 1002, 2), lbas(before, 20, 2));
  assert.deepEqual(lbas(after, 1008, 2), lbas(before, 1008, 2), 'range 3 was not copied');
});

test('partial failure across namespaces: groups run in order, DW0 still counts from range 0', async () => {
  const a = ram(MiB);
  const bFault = new FaultDevice(ram(MiB, { copy: false }));
  await fillPattern(a, 1);
  await fillPattern(bFault, 2);
  const ba = await readAll(a);
  bFault.addRule({ ops: ['read'], offset: 50 * BS, length: BS });
  const { q, c } = await start([
    { nsid: 1, device: a },
    { nsid: 2, device: bFault },
  ]);
  await enableCrossNamespace(c);
  const r = await copy(
    q,
    1,
    1000,
    [
      { snsid: 1, slba: 0, blocks: 2 },
      { snsid: 1, slba: 2, blocks: 2 },
      { snsid: 2, slba: 50, blocks: 1 },
      { snsid: 1, slba: 4, blocks: 2 },
    ],
    2,
  );
  assertStatus(r.cqe, Status.READ_ERROR, true);
  // The namespace-1 group (ranges 0, 1, 3) ran first and completed; range 2 failed.
  assert.equal(r.cqe.dw0, 2);
  const after = await readAll(a);
  assert.deepEqual(lbas(after, 1000, 4), lbas(ba, 0, 4));
  assert.deepEqual(lbas(after, 1005, 2), lbas(ba, 4, 2));
});

test('FUA flushes the destination after the copy', async () => {
  let flushes = 0;
  const spy = new (class extends FaultDevice {
    override async flush(): Promise<void> {
      flushes++;
      return super.flush();
    }
  })(ram(MiB));
  const { q } = await start([{ nsid: 1, device: spy }]);
  assertStatus((await copy(q, 1, 100, [{ slba: 0, blocks: 1 }])).cqe, Status.SUCCESS);
  assert.equal(flushes, 0);
  assertStatus((await copy(q, 1, 100, [{ slba: 0, blocks: 1 }], 0, { fua: true })).cqe, Status.SUCCESS);
  assert.equal(flushes, 1);
});

test('SOPT Fast Copy Only: refused with Fast Copy Not Possible when the range would be emulated', async () => {
  const shared = ram(MiB);
  const other: BlockDevice = ram(MiB);
  const { q, c } = await start([
    { nsid: 1, device: shared },
    { nsid: 2, device: shared },
    { nsid: 3, device: other },
  ]);
  await enableCrossNamespace(c);
  const fco = CopySopt.FCO;
  assertStatus((await copy(q, 1, 0, [{ snsid: 2, slba: 8, blocks: 1, sopt: fco }], 2)).cqe, Status.SUCCESS);
  const r = await copy(q, 1, 0, [{ snsid: 3, slba: 8, blocks: 1, sopt: fco }], 2);
  assertStatus(r.cqe, Status.FAST_COPY_NOT_POSSIBLE, true);
  assert.equal(r.cqe.status.sc, 0x86);
});
