import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeAbortCdw10,
  decodeDsmCommand,
  decodeDsmRanges,
  decodeRwCdw12,
  decodeRwCommand,
  decodeSqe,
  decodeSqeFlags,
  DsmRange,
  encodeDsmRanges,
  encodeRwCdw12,
  encodeSqe,
  slbaOf,
  splitLba,
  Sqe,
  SQE_SIZE,
  sqeFctype,
  sqeSgl,
} from './command.js';
import { IoOpcode } from './opcodes.js';
import { transportSgl } from './sgl.js';
import { gaps } from '../util/struct.js';

test('SQE is 64 bytes laid out as struct nvme_common_command', () => {
  assert.equal(SQE_SIZE, 64);
  const want = {
    opcode: 0,
    flags: 1,
    cid: 2,
    nsid: 4,
    cdw2: 8,
    cdw3: 12,
    mptr: 16,
    dptr: 24,
    cdw10: 40,
    cdw11: 44,
    cdw12: 48,
    cdw13: 52,
    cdw14: 56,
    cdw15: 60,
  };
  for (const [name, off] of Object.entries(want))
    assert.equal(Sqe.offsetOf(name as keyof typeof want), off, name);
  assert.equal(Sqe.sizeOf('dptr'), 16);
  assert.deepEqual(gaps(Sqe), []);
});

test('a Read SQE as the Linux TCP host builds it decodes to the expected view', () => {
  // Read, SGL (PSDT 01b), CID 0x1234, NSID 1, SLBA 0x12_3456_7890, 8 blocks, FUA, transport SGL 4096.
  const b = Buffer.alloc(64);
  b[0] = 0x02;
  b[1] = 0x40;
  b.writeUInt16LE(0x1234, 2);
  b.writeUInt32LE(1, 4);
  transportSgl(4096).copy(b, 24);
  b.writeUInt32LE(0x34567890, 40);
  b.writeUInt32LE(0x12, 44);
  b.writeUInt32LE((1 << 30) | 7, 48);
  b.writeUInt32LE(0x00050003, 52);
  const sqe = decodeSqe(b);
  assert.equal(sqe.opcode, IoOpcode.READ);
  assert.deepEqual(decodeSqeFlags(sqe.flags), { fuse: 0, psdt: 1 });
  assert.equal(sqe.cid, 0x1234);
  const rw = decodeRwCommand(sqe);
  assert.equal(rw.slba, 0x1234567890);
  assert.equal(rw.nlb, 7);
  assert.equal(rw.blocks, 8);
  assert.equal(rw.fua, true);
  assert.equal(rw.lr, false);
  assert.equal(rw.dsm, 3);
  assert.equal(rw.dspec, 5);
  const sgl = sqeSgl(sqe);
  assert.deepEqual(
    [sgl.type, sgl.descriptorType, sgl.subtype, sgl.addr, sgl.length],
    [0x5a, 5, 0xa, 0n, 4096],
  );
  assert.deepEqual(encodeSqe(sqe), b, 'encode(decode(x)) === x');
});

test('RW cdw12: NLB 15:0, DTYPE 23:20, STC 24, DEAC 25, PRINFO 29:26, FUA 30, LR 31', () => {
  assert.equal(encodeRwCdw12({ nlb: 0xffff }), 0xffff);
  assert.equal(encodeRwCdw12({ nlb: 0, dtype: 0xf }), 0xf << 20);
  assert.equal(encodeRwCdw12({ nlb: 0, stc: true }), 1 << 24);
  assert.equal(encodeRwCdw12({ nlb: 0, deac: true }), 1 << 25);
  assert.equal(encodeRwCdw12({ nlb: 0, prinfo: 0xf }), 0x3c000000);
  assert.equal(encodeRwCdw12({ nlb: 0, fua: true }), 0x40000000);
  assert.equal(encodeRwCdw12({ nlb: 0, lr: true }), 0x80000000);
  const all = { nlb: 0x1234, dtype: 1, stc: true, deac: true, prinfo: 9, fua: true, lr: true };
  assert.deepEqual(decodeRwCdw12(encodeRwCdw12(all)), all);
  assert.throws(() => encodeRwCdw12({ nlb: 0x10000 }), /NLB/);
});

test('SLBA splits into cdw10/cdw11 and back, and saturates beyond 2^53', () => {
  assert.deepEqual(splitLba(0x1_0000_0002), { cdw10: 2, cdw11: 1 });
  assert.equal(slbaOf({ cdw10: 0xffffffff, cdw11: 0xffffffff }), (1n << 64n) - 1n);
  assert.throws(() => splitLba(-1), /not a u64/);
  const huge = decodeRwCommand(decodeSqe(encodeSqe({ opcode: 2, cdw10: 0, cdw11: 0xffffffff })));
  assert.equal(huge.slba, Number.MAX_SAFE_INTEGER);
});

test('fabrics fctype sits in byte 4', () => {
  const sqe = decodeSqe(encodeSqe({ opcode: 0x7f, nsid: 0x01 }));
  assert.equal(sqeFctype(sqe), 1);
});

test('DSM: NR 0s based, attributes, 16-byte ranges', () => {
  assert.equal(DsmRange.SIZE, 16);
  assert.equal(DsmRange.offsetOf('cattr'), 0);
  assert.equal(DsmRange.offsetOf('nlb'), 4);
  assert.equal(DsmRange.offsetOf('slba'), 8);
  const cmd = decodeDsmCommand(decodeSqe(encodeSqe({ opcode: IoOpcode.DSM, nsid: 3, cdw10: 1, cdw11: 4 })));
  assert.deepEqual(cmd, { nsid: 3, ranges: 2, idr: false, idw: false, ad: true });
  const buf = encodeDsmRanges([
    { nlb: 8, slba: 0 },
    { cattr: 1, nlb: 16, slba: 1000 },
  ]);
  assert.equal(buf.toString('hex', 16, 32), '01000000' + '10000000' + 'e803000000000000');
  assert.deepEqual(decodeDsmRanges(buf, 2), [
    { cattr: 0, nlb: 8, slba: 0 },
    { cattr: 1, nlb: 16, slba: 1000 },
  ]);
  assert.throws(() => decodeDsmRanges(buf, 3), /3 ranges need 48 bytes, got 32/);
});

test('Abort cdw10: SQID 15:0, CID 31:16', () => {
  assert.deepEqual(decodeAbortCdw10(0x00070002), { sqid: 2, cid: 7 });
});
