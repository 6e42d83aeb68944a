import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bits, defineStruct, field, gaps, lbaToNumber } from './struct.js';

const Demo = defineStruct('demo', 32, [
  { name: 'a', offset: 0, type: 'u8' },
  { name: 'rsvd1', offset: 1, type: 'bytes', length: 1 },
  { name: 'b', offset: 2, type: 'u16' },
  { name: 'c', offset: 4, type: 'u32' },
  { name: 'd', offset: 8, type: 'u64' },
  { name: 'sn', offset: 16, type: 'ascii', length: 8 },
  { name: 'nqn', offset: 24, type: 'ascii', length: 8, pad: 'nul' },
] as const);

test('offsetOf, sizeOf and SIZE come from the table', () => {
  assert.equal(Demo.SIZE, 32);
  assert.equal(Demo.offsetOf('c'), 4);
  assert.equal(Demo.sizeOf('d'), 8);
  assert.equal(Demo.offsetOf('nqn'), 24);
  assert.deepEqual(gaps(Demo), []);
});

test('encode writes little-endian fields and pads ascii with spaces or NULs', () => {
  const buf = Demo.encode({ a: 0x12, b: 0x3456, c: 0x789abcde, d: 0x0102030405060708n, sn: 'AB', nqn: 'xy' });
  assert.equal(buf.toString('hex', 0, 16), '12' + '00' + '5634' + 'debc9a78' + '0807060504030201');
  assert.equal(buf.toString('latin1', 16, 24), 'AB      ');
  assert.deepEqual([...buf.subarray(24, 32)], [0x78, 0x79, 0, 0, 0, 0, 0, 0]);
});

test('decode is the inverse of encode; u64 decodes to bigint, bytes to a copy', () => {
  const input = { a: 255, b: 65535, c: 0xffffffff, d: (1n << 64n) - 1n, sn: 'SERIAL1', nqn: 'nqn.x' };
  const buf = Demo.encode(input);
  const out = Demo.decode(buf);
  assert.deepEqual({ ...out, rsvd1: undefined }, { ...input, rsvd1: undefined });
  out.rsvd1[0] = 9;
  assert.equal(buf[1], 0, 'decoded bytes must not alias the wire buffer');
});

test('u64 accepts safe numbers and rejects unsafe ones', () => {
  assert.equal(Demo.decode(Demo.encode({ d: 2 ** 53 - 1 })).d, 2n ** 53n - 1n);
  assert.throws(() => Demo.encode({ d: 2 ** 53 }), /demo\.d: .* is not a u64/);
  assert.throws(() => Demo.encode({ d: -1 }), RangeError);
  assert.throws(() => Demo.encode({ d: 1n << 64n }), RangeError);
});

test('out of range integers, long or non-ASCII strings and wrong byte lengths are refused', () => {
  assert.throws(() => Demo.encode({ a: 256 }), /demo\.a: 256 is not a u8/);
  assert.throws(() => Demo.encode({ b: 1.5 }), /not a u16/);
  assert.throws(() => Demo.encode({ c: 2 ** 32 }), /not a u32/);
  assert.throws(() => Demo.encode({ sn: '123456789' }), /9 characters, the field holds 8/);
  assert.throws(() => Demo.encode({ sn: 'é' }), /printable ASCII/);
  assert.throws(() => Demo.encode({ rsvd1: Buffer.alloc(2) }), /exactly 1 bytes, got 2 bytes/);
  assert.throws(() => Demo.encode({ nope: 1 } as never), /demo has no field nope/);
});

test('decode refuses a short buffer with the sizes in the message', () => {
  assert.throws(
    () => Demo.decode(Buffer.alloc(31)),
    /decode demo: needs 32 bytes at offset 0, the buffer has 31/,
  );
  assert.throws(() => Demo.decode(Buffer.alloc(40), 9), /needs 32 bytes at offset 9/);
});

test('encode into an existing buffer at an offset clears only that struct', () => {
  const buf = Buffer.alloc(40, 0xee);
  Demo.encode({ a: 1 }, buf, 4);
  assert.equal(buf[3], 0xee);
  assert.equal(buf[4], 1);
  assert.equal(buf[5], 0);
  assert.equal(buf[36], 0xee);
  assert.equal(Demo.decode(buf, 4).a, 1);
});

test('get and set touch one field', () => {
  const buf = Demo.encode({ c: 7, sn: 'X' });
  assert.equal(Demo.get(buf, 'c'), 7);
  Demo.set(buf, 'c', 9);
  assert.equal(buf.readUInt32LE(4), 9);
  assert.equal(Demo.get(buf, 'sn'), 'X');
  assert.equal(Demo.get(new Uint8Array(buf), 'd'), 0n);
});

test('ascii decoding trims trailing spaces (space pad) or stops at NUL', () => {
  const buf = Buffer.alloc(32);
  buf.write('A B  \0\0\0', 16, 'latin1');
  buf.write('ab\0cd', 24, 'latin1');
  const d = Demo.decode(buf);
  assert.equal(d.sn, 'A B');
  assert.equal(d.nqn, 'ab');
});

test('a broken table is refused when it is defined', () => {
  assert.throws(
    () => defineStruct('bad', 8, [{ name: 'x', offset: 6, type: 'u32' }] as const),
    /bad\.x: bytes 6\.\.9 fall outside the 8-byte structure/,
  );
  assert.throws(
    () =>
      defineStruct('bad', 8, [
        { name: 'x', offset: 0, type: 'u32' },
        { name: 'y', offset: 2, type: 'u16' },
      ] as const),
    /bad\.y at 2 overlaps x/,
  );
  assert.throws(
    () => defineStruct('bad', 8, [{ name: 'x', offset: 0, type: 'bytes' }] as const),
    /needs a positive length/,
  );
  assert.deepEqual(gaps(defineStruct('g', 8, [{ name: 'x', offset: 2, type: 'u16' }] as const)), [
    { from: 0, to: 1 },
    { from: 4, to: 7 },
  ]);
});

test('bits and field extract and place bit ranges', () => {
  assert.equal(bits(0xdeadbeef, 31, 0), 0xdeadbeef);
  assert.equal(bits(0xdeadbeef, 31, 28), 0xd);
  assert.equal(bits(0xdeadbeef, 7, 0), 0xef);
  assert.equal(bits(0x80000000, 31, 31), 1);
  assert.equal(field(0xf, 31, 28), 0xf0000000);
  assert.equal(field(1, 31, 31), 0x80000000);
  assert.throws(() => field(16, 3, 0, 'NR'), /NR: 16 does not fit bits 3:0/);
  assert.equal(lbaToNumber(5n), 5);
  assert.equal(lbaToNumber(1n << 60n), Number.MAX_SAFE_INTEGER);
});
