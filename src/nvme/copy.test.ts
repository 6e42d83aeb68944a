import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSqe, encodeSqe } from './command.js';
import {
  COPY_CDW12_OFFSET,
  COPY_MAX_RANGES,
  copyDescriptorSize,
  CopyFormat,
  CopyRangeFormat0,
  CopyRangeFormat1,
  CopyRangeFormat2,
  CopyRangeFormat3,
  CopySopt,
  decodeCopyCdw12,
  decodeCopyCommand,
  decodeCopySourceRanges,
  encodeCopyCdw12,
  encodeCopyCommand,
  encodeCopySourceRanges,
} from './copy.js';
import { IoOpcode } from './opcodes.js';
import { NvmeStatusError } from './status.js';
import { assertLayout } from './testing/layout.js';

// Offsets: gcc offsetof() on libnvme's struct nvme_copy_range{,_f1,_f2,_f3}.
test('source range descriptor layouts, formats 0-3', () => {
  // prettier-ignore
  assertLayout(CopyRangeFormat0, 32, { rsvd0: 0, slba: 8, nlb: 16, rsvd18: 18, eilbrt: 24, elbat: 28, elbatm: 30 });
  // prettier-ignore
  assertLayout(CopyRangeFormat1, 40, { rsvd0: 0, slba: 8, nlb: 16, rsvd18: 18, elbt: 26, elbat: 36, elbatm: 38 });
  // prettier-ignore
  assertLayout(CopyRangeFormat2, 32, {
    snsid: 0, rsvd4: 4, slba: 8, nlb: 16, rsvd18: 18, sopt: 22, eilbrt: 24, elbat: 28, elbatm: 30,
  });
  // prettier-ignore
  assertLayout(CopyRangeFormat3, 40, {
    snsid: 0, rsvd4: 4, slba: 8, nlb: 16, rsvd18: 18, sopt: 22, rsvd24: 24, elbt: 26, elbat: 36, elbatm: 38,
  });
  assert.deepEqual([0, 1, 2, 3, 4].map(copyDescriptorSize), [32, 40, 32, 40, undefined]);
  assert.equal(CopySopt.FCO, 0x8000);
});

test('CDW12: NR 7:0, DF 11:8, PRINFOR 15:12, DTYPE 23:20, STCW 24, PRINFOW 29:26, FUA 30, LR 31', () => {
  assert.equal(encodeCopyCdw12({ nr: 0xff, df: 0 }), 0xff);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 3 }), 0x300);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 0, prinfor: 0xf }), 0xf000);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 0, dtype: 0xf }), 0xf00000);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 0, stcw: true }), 0x1000000);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 0, prinfow: 0xf }), 0x3c000000);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 0, fua: true }), 0x40000000);
  assert.equal(encodeCopyCdw12({ nr: 0, df: 0, lr: true }), 0x80000000);
  const all = { nr: 0x12, df: 2, prinfor: 5, dtype: 2, stcw: true, prinfow: 9, fua: true, lr: true };
  assert.deepEqual(decodeCopyCdw12(encodeCopyCdw12(all)), all);
  assert.deepEqual(decodeCopyCdw12(0xffffffff), {
    nr: 0xff,
    df: 0xf,
    prinfor: 0xf,
    dtype: 0xf,
    stcw: true,
    prinfow: 0xf,
    fua: true,
    lr: true,
  });
  assert.throws(() => encodeCopyCdw12({ nr: 256, df: 0 }), /NR: 256/);
  assert.equal(COPY_CDW12_OFFSET, 48);
});

test('a Copy SQE like `nvme copy --sdlba=1000 --slbs=0,100 --blocks=7,15` decodes to the expected view', () => {
  const b = Buffer.alloc(64);
  b[0] = 0x19;
  b[1] = 0x40;
  b.writeUInt16LE(0x0010, 2);
  b.writeUInt32LE(1, 4);
  b.writeUInt32LE(1000, 40); // SDLBA low
  b.writeUInt32LE(0, 44); // SDLBA high
  b.writeUInt32LE(0x00000001, 48); // NR = 1 (two ranges), format 0
  const cmd = decodeCopyCommand(decodeSqe(b));
  assert.equal(decodeSqe(b).opcode, IoOpcode.COPY);
  assert.equal(cmd.nsid, 1);
  assert.equal(cmd.sdlba, 1000);
  assert.equal(cmd.nr, 1);
  assert.equal(cmd.ranges, 2);
  assert.equal(cmd.format, 0);
  assert.equal(cmd.dataLength, 64);
  assert.equal(cmd.fua, false);
  const dw = encodeCopyCommand({ sdlba: 1000, ranges: 2, format: CopyFormat.FORMAT_0 });
  assert.deepEqual(encodeSqe({ opcode: 0x19, flags: 0x40, cid: 0x10, nsid: 1, ...dw }), b);

  // the data: two 32-byte format-0 descriptors
  const data = encodeCopySourceRanges(
    [
      { slba: 0, blocks: 8 },
      { slba: 100, blocks: 16 },
    ],
    0,
  );
  const expected = Buffer.alloc(64);
  expected.writeBigUInt64LE(0n, 8);
  expected.writeUInt16LE(7, 16);
  expected.writeBigUInt64LE(100n, 32 + 8);
  expected.writeUInt16LE(15, 32 + 16);
  assert.deepEqual(data, expected);
  assert.deepEqual(decodeCopySourceRanges(data, 0, 2), [
    { slba: 0, nlb: 7, blocks: 8, eilbrt: 0, elbat: 0, elbatm: 0 },
    { slba: 100, nlb: 15, blocks: 16, eilbrt: 0, elbat: 0, elbatm: 0 },
  ]);
});

test('full CDW10-15 round trip with a 64-bit SDLBA and write-side tags', () => {
  const dw = encodeCopyCommand({
    sdlba: 0x1_0000_0005n,
    ranges: 256,
    format: 3,
    fua: true,
    dspec: 7,
    lbtl: 0xabcdef01,
    lbat: 0x1234,
    lbatm: 0xffff,
    prinfow: 8,
  });
  assert.deepEqual(dw, {
    cdw10: 5,
    cdw11: 1,
    cdw12: 0x600003ff,
    cdw13: 0x00070000,
    cdw14: 0xabcdef01,
    cdw15: 0xffff1234,
  });
  const cmd = decodeCopyCommand({ nsid: 2, ...dw });
  assert.equal(cmd.sdlba, 2 ** 32 + 5);
  assert.equal(cmd.ranges, 256);
  assert.equal(cmd.dataLength, 256 * 40);
  assert.equal(cmd.dspec, 7);
  assert.equal(cmd.lbtl, 0xabcdef01);
  assert.equal(cmd.lbat, 0x1234);
  assert.equal(cmd.lbatm, 0xffff);
  assert.equal(cmd.prinfow, 8);
  assert.equal(decodeCopyCommand({ nsid: 1, ...dw, cdw12: 0x500 }).dataLength, undefined);
  assert.throws(() => encodeCopyCommand({ sdlba: 0, ranges: 0, format: 0 }), /1\.\.256 source ranges, got 0/);
  assert.throws(() => encodeCopyCommand({ sdlba: 0, ranges: COPY_MAX_RANGES + 1, format: 0 }), /got 257/);
});

test('formats 1-3 encode and decode every field', () => {
  const elbt = Buffer.from('0102030405060708090a', 'hex');
  const f1 = encodeCopySourceRanges([{ slba: 5, nlb: 0, elbt, elbat: 0x11, elbatm: 0x22 }], 1);
  assert.equal(f1.length, 40);
  assert.deepEqual(f1.subarray(26, 36), elbt);
  assert.deepEqual(decodeCopySourceRanges(f1, 1, 1), [
    { slba: 5, nlb: 0, blocks: 1, elbt, elbat: 0x11, elbatm: 0x22 },
  ]);

  const f2 = encodeCopySourceRanges(
    [{ snsid: 3, slba: 2 ** 40, blocks: 65536, sopt: CopySopt.FCO, eilbrt: 9 }],
    2,
  );
  assert.equal(f2.length, 32);
  assert.equal(f2.readUInt32LE(0), 3);
  assert.equal(f2.readUInt16LE(16), 0xffff);
  assert.equal(f2.readUInt16LE(22), 0x8000);
  assert.deepEqual(decodeCopySourceRanges(f2, 2, 1), [
    { slba: 2 ** 40, nlb: 0xffff, blocks: 65536, snsid: 3, sopt: 0x8000, eilbrt: 9, elbat: 0, elbatm: 0 },
  ]);

  const f3 = encodeCopySourceRanges(
    [
      { snsid: 1, slba: 0, blocks: 1 },
      { snsid: 2, slba: 7, blocks: 2, elbt },
    ],
    3,
  );
  assert.equal(f3.length, 80);
  const d3 = decodeCopySourceRanges(f3, 3, 2);
  assert.deepEqual(
    d3.map((r) => [r.snsid, r.slba, r.blocks]),
    [
      [1, 0, 1],
      [2, 7, 2],
    ],
  );
  assert.deepEqual(d3[1]!.elbt, elbt);
  assert.throws(() => encodeCopySourceRanges([{ slba: 0, blocks: 1 }], 2), /format 2 needs snsid/);
  assert.throws(
    () => encodeCopySourceRanges([{ slba: 0, blocks: 65537 }], 0),
    /65537 blocks is outside 1\.\.65536/,
  );
  assert.throws(() => encodeCopySourceRanges([{ slba: 0, blocks: 0 }], 0), /0 blocks/);
  assert.throws(() => encodeCopySourceRanges([], 0), /got 0/);
  assert.throws(() => encodeCopySourceRanges([{ slba: 0, blocks: 1 }], 4), /format 4 does not exist/);
});

test('decode rejects a short list with Data SGL Length Invalid and a bad format with Invalid Field', () => {
  const data = encodeCopySourceRanges(
    [
      { slba: 0, blocks: 1 },
      { slba: 1, blocks: 1 },
    ],
    0,
  );
  assert.throws(
    () => decodeCopySourceRanges(data.subarray(0, 63), 0, 2),
    (err: unknown) => {
      assert.ok(NvmeStatusError.is(err));
      assert.equal(err.sct, 0);
      assert.equal(err.sc, 0x0f);
      assert.equal(err.dnr, true);
      assert.equal(
        err.message,
        '0xf SGL_INVALID_DATA: copy source range list: 2 format-0 descriptors need 64 bytes, the command carried 63',
      );
      return true;
    },
  );
  // format 1 is 40 bytes each: 64 bytes do not hold two
  assert.throws(() => decodeCopySourceRanges(data, 1, 2), /need 80 bytes, the command carried 64/);
  assert.throws(
    () => decodeCopySourceRanges(data, 7, 1),
    (err: unknown) => NvmeStatusError.is(err) && err.sc === 0x02 && err.errorLoc === 48 && err.dnr,
  );
  assert.throws(() => decodeCopySourceRanges(data, 0, 0), RangeError);
  // extra bytes after the last descriptor are ignored
  assert.equal(decodeCopySourceRanges(Buffer.concat([data, Buffer.alloc(8)]), 0, 2).length, 2);
});
