import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NBD_EIO,
  NBD_EXTENDED_REPLY_MAGIC,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NBD_STRUCTURED_REPLY_MAGIC,
} from './protocol.js';
import {
  BlockStatusExtPayload,
  BlockStatusPayload,
  encodeBlockStatus,
  encodeBlockStatusExt,
  encodeChunk,
  encodeErrorPayload,
  encodeExtendedHeader,
  encodeOffsetDataPrefix,
  encodeOffsetHole,
  encodeSimpleReply,
  encodeStructuredHeader,
  ErrorPayload,
  ExtendedReplyHeader,
  OffsetDataPayload,
  OffsetHolePayload,
  SimpleReply,
  StructuredReplyHeader,
  truncateUtf8,
} from './reply-codec.js';

const COOKIE = 0x8899aabbccddeeffn;

test('field tables: sizes and offsets as the spec lays them out', () => {
  assert.deepEqual({ ...SimpleReply }, { SIZE: 16, magic: 0, error: 4, cookie: 8 });
  assert.deepEqual(
    { ...StructuredReplyHeader },
    { SIZE: 20, magic: 0, flags: 4, type: 6, cookie: 8, length: 16 },
  );
  assert.deepEqual(
    { ...ExtendedReplyHeader },
    { SIZE: 32, magic: 0, flags: 4, type: 6, cookie: 8, offset: 16, length: 24 },
  );
  assert.deepEqual({ ...OffsetDataPayload }, { SIZE: 8, offset: 0 });
  assert.deepEqual({ ...OffsetHolePayload }, { SIZE: 12, offset: 0, length: 8 });
  assert.deepEqual(
    { ...BlockStatusPayload },
    { SIZE: 4, contextId: 0, DESCRIPTOR: 8, descLength: 0, descFlags: 4 },
  );
  assert.deepEqual(
    { ...BlockStatusExtPayload },
    { SIZE: 8, contextId: 0, count: 4, DESCRIPTOR: 16, descLength: 0, descFlags: 8 },
  );
  assert.deepEqual({ ...ErrorPayload }, { SIZE: 6, error: 0, messageLength: 4 });
});

test('simple reply: magic, error, cookie at 0, 4, 8', () => {
  const b = encodeSimpleReply(22, COOKIE);
  assert.equal(b.length, 16);
  assert.equal(b.readUInt32BE(0), NBD_SIMPLE_REPLY_MAGIC);
  assert.equal(b.readUInt32BE(4), 22);
  assert.equal(b.readBigUInt64BE(8), COOKIE);
  assert.equal(b.toString('hex'), '67446698' + '00000016' + '8899aabbccddeeff');
});

test('structured chunk header: magic, flags, type, cookie, 32-bit length', () => {
  const b = encodeStructuredHeader({ flags: 1, type: 0x8001, cookie: COOKIE, offset: 123n }, 70000);
  assert.equal(b.length, 20);
  assert.equal(b.readUInt32BE(0), NBD_STRUCTURED_REPLY_MAGIC);
  assert.equal(b.readUInt16BE(4), 1);
  assert.equal(b.readUInt16BE(6), 0x8001);
  assert.equal(b.readBigUInt64BE(8), COOKIE);
  assert.equal(b.readUInt32BE(16), 70000);
  assert.throws(
    () => encodeStructuredHeader({ flags: 0, type: 1, cookie: 1n, offset: 0n }, 2 ** 32),
    RangeError,
  );
});

test('extended chunk header: the request offset at 16, a 64-bit length at 24', () => {
  const off = (1n << 62n) + 5n;
  const b = encodeExtendedHeader({ flags: 1, type: 6, cookie: COOKIE, offset: off }, 2 ** 33);
  assert.equal(b.length, 32);
  assert.equal(b.readUInt32BE(0), NBD_EXTENDED_REPLY_MAGIC);
  assert.equal(b.readUInt16BE(4), 1);
  assert.equal(b.readUInt16BE(6), 6);
  assert.equal(b.readBigUInt64BE(8), COOKIE);
  assert.equal(b.readBigUInt64BE(16), off);
  assert.equal(b.readBigUInt64BE(24), 1n << 33n);
});

test('encodeChunk: header length covers every payload part; parts are passed through', () => {
  const data = Buffer.alloc(4096, 7);
  const parts = encodeChunk(
    'structured',
    { flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_OFFSET_DATA, cookie: 5n, offset: 0n },
    [encodeOffsetDataPrefix(8192), data],
  );
  assert.equal(parts.length, 3);
  assert.equal(parts[2], data, 'data is not copied');
  const h = Buffer.from(parts[0]!);
  assert.equal(h.readUInt32BE(16), 8 + 4096);
  assert.equal(Buffer.from(parts[1]!).readBigUInt64BE(0), 8192n);

  const none = encodeChunk('extended', {
    flags: NBD_REPLY_FLAG_DONE,
    type: NBD_REPLY_TYPE_NONE,
    cookie: 5n,
    offset: 77n,
  });
  assert.equal(none.length, 1);
  const n = Buffer.from(none[0]!);
  assert.equal(n.length, 32);
  assert.equal(n.readUInt16BE(6), NBD_REPLY_TYPE_NONE);
  assert.equal(n.readBigUInt64BE(16), 77n);
  assert.equal(n.readBigUInt64BE(24), 0n);
});

test('OFFSET_HOLE: u64 offset, u32 size (also with extended headers)', () => {
  const b = encodeOffsetHole(2 ** 40, 65536);
  assert.equal(b.length, 12);
  assert.equal(b.readBigUInt64BE(0), 1n << 40n);
  assert.equal(b.readUInt32BE(8), 65536);
  assert.throws(() => encodeOffsetHole(0, 0), RangeError);
  assert.throws(() => encodeOffsetHole(0, 2 ** 32), RangeError);
});

test('BLOCK_STATUS: context id then (u32 length, u32 flags) descriptors', () => {
  const b = encodeBlockStatus(1, [
    { length: 4096, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
    { length: 0xfffffe00, flags: 0 },
  ]);
  assert.equal(b.length, 4 + 2 * 8);
  assert.equal(b.readUInt32BE(0), 1);
  assert.equal(b.readUInt32BE(4), 4096);
  assert.equal(b.readUInt32BE(8), 3);
  assert.equal(b.readUInt32BE(12), 0xfffffe00);
  assert.equal(b.readUInt32BE(16), 0);
  assert.throws(() => encodeBlockStatus(1, [{ length: 2 ** 32, flags: 0 }]), RangeError);
  assert.throws(() => encodeBlockStatus(1, [{ length: 0, flags: 0 }]), RangeError);
  assert.equal(NBD_REPLY_TYPE_BLOCK_STATUS, 5);
});

test('BLOCK_STATUS_EXT: context id, count, then (u64 length, u64 flags) descriptors', () => {
  const b = encodeBlockStatusExt(9, [
    { length: 2 ** 45, flags: NBD_STATE_ZERO },
    { length: 512, flags: NBD_STATE_HOLE },
  ]);
  assert.equal(b.length, 8 + 2 * 16);
  assert.equal(b.readUInt32BE(0), 9);
  assert.equal(b.readUInt32BE(4), 2);
  assert.equal(b.readBigUInt64BE(8), 1n << 45n);
  assert.equal(b.readBigUInt64BE(16), 2n);
  assert.equal(b.readBigUInt64BE(24), 512n);
  assert.equal(b.readBigUInt64BE(32), 1n);
});

test('ERROR payload: u32 error, u16 message length, message ≤ 4096 bytes', () => {
  const b = encodeErrorPayload(NBD_EIO, 'read on ram0 failed');
  assert.equal(b.readUInt32BE(0), NBD_EIO);
  assert.equal(b.readUInt16BE(4), 19);
  assert.equal(b.subarray(6).toString(), 'read on ram0 failed');
  assert.equal(encodeErrorPayload(NBD_EIO).length, 6);
  const long = encodeErrorPayload(NBD_EIO, 'x'.repeat(10000));
  assert.equal(long.readUInt16BE(4), 4096);
  assert.equal(long.length, 6 + 4096);
  assert.throws(() => encodeErrorPayload(0, 'no'), RangeError);
  assert.equal(NBD_REPLY_TYPE_ERROR, 0x8001);
});

test('truncateUtf8 never splits a character', () => {
  const s = 'a' + '€'.repeat(2000); // € is 3 bytes
  const t = truncateUtf8(s, 4096);
  assert.ok(t.length <= 4096);
  assert.equal(t.length, 1 + 3 * 1365);
  assert.equal(t.toString('utf8'), 'a' + '€'.repeat(1365));
  assert.equal(truncateUtf8('short', 4096).toString(), 'short');
});
