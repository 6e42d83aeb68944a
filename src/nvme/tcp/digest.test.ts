import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32c, crc32cImplementation, crc32cTs, crc32cv, NATIVE_MIN_BYTES } from './digest.js';

const incrementing = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const decrementing = Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i));

// The check value of CRC-32C, and the iSCSI vectors of RFC 3720 appendix B.4.
const VECTORS: Array<[string, Buffer, number]> = [
  ['"123456789"', Buffer.from('123456789'), 0xe3069283],
  ['32 zero bytes', Buffer.alloc(32, 0x00), 0x8a9136aa],
  ['32 0xFF bytes', Buffer.alloc(32, 0xff), 0x62a8ab43],
  ['32 incrementing bytes', incrementing, 0x46dd794e],
  ['32 decrementing bytes', decrementing, 0x113fdb5c],
  ['no bytes', Buffer.alloc(0), 0],
];

for (const [what, data, want] of VECTORS) {
  test(`CRC32C of ${what} is 0x${want.toString(16)} in both implementations`, () => {
    assert.equal(crc32cTs(data), want);
    assert.equal(crc32c(data), want);
  });
}

test('the native package is used when it loads (it is a dependency)', () => {
  if (process.env.TSBLK_NO_NATIVE === '1') {
    assert.equal(crc32cImplementation.name, 'typescript');
    assert.match(crc32cImplementation.reason, /TSBLK_NO_NATIVE/);
  } else {
    assert.equal(crc32cImplementation.name, '@node-rs/crc32', crc32cImplementation.reason);
  }
});

test('both implementations agree on every length around the native threshold and on large buffers', () => {
  const big = randomBytes(128 * 1024 + 3);
  const lengths = [
    1,
    7,
    8,
    9,
    63,
    NATIVE_MIN_BYTES - 1,
    NATIVE_MIN_BYTES,
    NATIVE_MIN_BYTES + 1,
    4096,
    big.length,
  ];
  for (const n of lengths) {
    for (const start of [0, 1, 3]) {
      const view = big.subarray(start, Math.min(big.length, start + n));
      assert.equal(crc32c(view), crc32cTs(view), `length ${view.length} at offset ${start}`);
    }
  }
});

test('a CRC continues across pieces, whatever the implementation of each piece', () => {
  const data = randomBytes(5000);
  const whole = crc32cTs(data);
  for (const cut of [0, 1, 100, NATIVE_MIN_BYTES, 2500, 4999, 5000]) {
    const a = data.subarray(0, cut);
    const b = data.subarray(cut);
    assert.equal(crc32c(b, crc32c(a)), whole, `cut at ${cut}`);
    assert.equal(crc32cTs(b, crc32cTs(a)), whole);
    assert.equal(crc32cv([a, b]), whole);
  }
  assert.equal(crc32cv([]), 0);
});

test('a plain Uint8Array view works like a Buffer', () => {
  const buf = Buffer.from('xx123456789yy');
  const view = new Uint8Array(buf.buffer, buf.byteOffset + 2, 9);
  assert.equal(crc32c(view), 0xe3069283);
});
