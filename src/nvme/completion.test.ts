import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cqe, CQE_SIZE, decodeCqe, encodeCqe, result64 } from './completion.js';
import { Status, withDnr } from './status.js';
import { gaps } from '../util/struct.js';

test('CQE is 16 bytes laid out as struct nvme_completion', () => {
  assert.equal(CQE_SIZE, 16);
  assert.equal(Cqe.offsetOf('dw0'), 0);
  assert.equal(Cqe.offsetOf('dw1'), 4);
  assert.equal(Cqe.offsetOf('sqhd'), 8);
  assert.equal(Cqe.offsetOf('sqid'), 10);
  assert.equal(Cqe.offsetOf('cid'), 12);
  assert.equal(Cqe.offsetOf('status'), 14);
  assert.deepEqual(gaps(Cqe), []);
});

test('known bytes: Connect success with CNTLID 1, and an error with DNR', () => {
  const ok = encodeCqe({ cid: 0x0a, dw0: 1, sqhd: 3 });
  assert.equal(ok.toString('hex'), '01000000' + '00000000' + '0300' + '0000' + '0a00' + '0000');
  const bad = encodeCqe({ cid: 0xbeef, status: withDnr(Status.CMD_SIZE_LIMIT_EXCEEDED), dw0: 2, phase: 1 });
  // status word: DNR 0x8000 | SCT 1 << 9 | SC 0x83 << 1 | P = 0x8307
  assert.equal(bad.readUInt16LE(14), 0x8307);
  assert.equal(bad.toString('hex', 12), 'efbe' + '0783');
});

test('decode is the inverse of encode', () => {
  const buf = encodeCqe({
    cid: 7,
    status: Status.NS_NOT_READY,
    dw0: 0xffffffff,
    dw1: 5,
    sqhd: 9,
    sqid: 2,
    phase: 1,
  });
  const c = decodeCqe(buf);
  assert.deepEqual(c, {
    cid: 7,
    status: Status.NS_NOT_READY,
    dw0: 0xffffffff,
    dw1: 5,
    sqhd: 9,
    sqid: 2,
    phase: 1,
  });
});

test('64-bit results span DW0-DW1 (Property Get of CAP)', () => {
  const buf = encodeCqe({ cid: 1, result64: 0x0000_0020_ff01_007fn });
  assert.equal(buf.readUInt32LE(0), 0xff01007f);
  assert.equal(buf.readUInt32LE(4), 0x20);
  assert.equal(result64(decodeCqe(buf)), 0x0000_0020_ff01_007fn);
  assert.throws(() => encodeCqe({ cid: 1, result64: 1n, dw0: 1 }), /not both/);
  assert.throws(() => encodeCqe({ cid: 1, result64: 1n << 64n }), /not a u64/);
});
