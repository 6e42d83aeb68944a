import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NBD_GREETING_SIZE,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_STRING,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPTION_HEADER_SIZE,
  NBD_OPTION_REPLY_HEADER_SIZE,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_UNKNOWN,
} from './protocol.js';
import {
  ClientFlags,
  ExportNameReply,
  Greeting,
  InfoBlockSize,
  InfoExport,
  InfoString,
  OptionHeader,
  OptionPayloadError,
  OptionReplyHeader,
  RepMetaContext,
  RepServer,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeNbdString,
  decodeOptionHeader,
  encodeErrorReply,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeOptionReply,
  encodeRepMetaContext,
  encodeRepServer,
  truncateUtf8,
} from './option-codec.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

function isInvalid(re: RegExp) {
  return (e: unknown): boolean =>
    e instanceof OptionPayloadError && e.reply === NBD_REP_ERR_INVALID && re.test(e.message);
}

// ---- layouts ------------------------------------------------------------------------------

test('layouts: sizes match protocol.ts and the spec, offsets are the spec byte positions', () => {
  assert.deepEqual(Greeting, { SIZE: NBD_GREETING_SIZE, magic: 0, ihaveopt: 8, handshakeFlags: 16 });
  assert.equal(Greeting.SIZE, 18);
  assert.deepEqual(ClientFlags, { SIZE: 4, flags: 0 });
  assert.deepEqual(OptionHeader, { SIZE: NBD_OPTION_HEADER_SIZE, magic: 0, option: 8, length: 12 });
  assert.equal(OptionHeader.SIZE, 16);
  assert.deepEqual(OptionReplyHeader, {
    SIZE: NBD_OPTION_REPLY_HEADER_SIZE,
    magic: 0,
    option: 8,
    type: 12,
    length: 16,
  });
  assert.equal(OptionReplyHeader.SIZE, 20);
  assert.deepEqual(ExportNameReply, { SIZE: 10, size: 0, transmissionFlags: 8 });
  assert.deepEqual(RepServer, { SIZE: 4, nameLength: 0 });
  assert.deepEqual(RepMetaContext, { SIZE: 4, contextId: 0 });
  // NBD_INFO_EXPORT: the spec's header length MUST be 12; BLOCK_SIZE 14; NAME/DESCRIPTION at least 2.
  assert.deepEqual(InfoExport, { SIZE: 12, type: 0, size: 2, transmissionFlags: 10 });
  assert.deepEqual(InfoBlockSize, { SIZE: 14, type: 0, minimum: 2, preferred: 6, maximum: 10 });
  assert.deepEqual(InfoString, { SIZE: 2, type: 0 });
});

// ---- encoders -----------------------------------------------------------------------------

test('greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES', () => {
  assert.deepEqual(encodeGreeting(), hex('4e42444d41474943 49484156454f5054 0003'));
});

test('option reply header: magic, option, type, length, then the data', () => {
  assert.deepEqual(
    encodeOptionReply(NBD_OPT_LIST, NBD_REP_ACK),
    hex('0003e889045565a9 00000003 00000001 00000000'),
  );
  const r = encodeOptionReply(0x01020304, 0x80000006, Buffer.from('xyz'));
  assert.deepEqual(r, hex('0003e889045565a9 01020304 80000006 00000003 78797a'));
  // Every field at its table offset.
  assert.equal(r.readBigUInt64BE(OptionReplyHeader.magic), 0x3e889045565a9n);
  assert.equal(r.readUInt32BE(OptionReplyHeader.option), 0x01020304);
  assert.equal(r.readUInt32BE(OptionReplyHeader.type), NBD_REP_ERR_UNKNOWN);
  assert.equal(r.readUInt32BE(OptionReplyHeader.length), 3);
});

test('error reply carries the message, cut to 4096 bytes on a character boundary', () => {
  assert.deepEqual(
    encodeErrorReply(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, 'no'),
    hex('0003e889045565a9 00000007 80000006 00000002 6e6f'),
  );
  const long = encodeErrorReply(NBD_OPT_GO, NBD_REP_ERR_INVALID, 'é'.repeat(3000)); // 6000 bytes
  assert.equal(long.readUInt32BE(OptionReplyHeader.length), 4096);
  assert.equal(long.length, 20 + 4096);
  assert.equal(long.subarray(20).toString('utf8'), 'é'.repeat(2048));
});

test('truncateUtf8 never splits a multi-byte character', () => {
  assert.equal(truncateUtf8('abc', 10).toString(), 'abc');
  assert.equal(truncateUtf8('a€b', 3).toString(), 'a'); // € is 3 bytes: 1 + 3 > 3
  assert.equal(truncateUtf8('a€b', 4).toString(), 'a€');
  assert.equal(truncateUtf8('😀😀', 7).toString(), '😀');
  assert.equal(truncateUtf8('x'.repeat(5000)).length, NBD_MAX_STRING);
});

test('NBD_REP_SERVER data: name length, name, description', () => {
  assert.deepEqual(encodeRepServer('ram0', 'disk'), hex('00000004 72616d30 6469736b'));
  assert.deepEqual(encodeRepServer(''), hex('00000000'));
  assert.deepEqual(encodeRepServer('', 'd'), hex('00000000 64'));
  assert.throws(() => encodeRepServer('n'.repeat(4097)), RangeError);
  assert.equal(encodeRepServer('n'.repeat(4096)).length, 4 + 4096);
});

test('NBD_REP_META_CONTEXT data: u32 id then the name', () => {
  assert.deepEqual(
    encodeRepMetaContext(1, 'base:allocation'),
    Buffer.concat([hex('00000001'), Buffer.from('base:allocation')]),
  );
  assert.deepEqual(encodeRepMetaContext(0xfffffffe, 'a:'), hex('fffffffe 613a'));
});

test('NBD_INFO_EXPORT: u16 type 0, u64 size, u16 flags (size beyond 2^32 exact)', () => {
  const size = 2 ** 40 + 512;
  const b = encodeInfoExport(size, 0x0ded);
  assert.deepEqual(b, hex('0000 0000010000000200 0ded'));
  assert.equal(b.readUInt16BE(InfoExport.type), NBD_INFO_EXPORT);
  assert.equal(b.readBigUInt64BE(InfoExport.size), BigInt(size));
  assert.equal(b.readUInt16BE(InfoExport.transmissionFlags), 0x0ded);
  // The largest size a JavaScript number holds exactly.
  assert.deepEqual(encodeInfoExport(Number.MAX_SAFE_INTEGER, 1), hex('0000 001fffffffffffff 0001'));
});

test('NBD_INFO_NAME and NBD_INFO_DESCRIPTION: u16 type, then the string', () => {
  assert.deepEqual(encodeInfoName('ram0'), Buffer.concat([u16(NBD_INFO_NAME), Buffer.from('ram0')]));
  assert.deepEqual(encodeInfoName(''), hex('0001'));
  assert.deepEqual(encodeInfoDescription('€'), Buffer.concat([u16(NBD_INFO_DESCRIPTION), Buffer.from('€')]));
  assert.equal(encodeInfoDescription('d'.repeat(5000)).length, 2 + 4096);
  assert.throws(() => encodeInfoName('n'.repeat(4097)), RangeError);
});

test('NBD_INFO_BLOCK_SIZE: u16 type 3, u32 minimum, preferred, maximum', () => {
  const b = encodeInfoBlockSize({ minimum: 512, preferred: 4096, maximum: 32 * 1024 * 1024 });
  assert.deepEqual(b, hex('0003 00000200 00001000 02000000'));
  assert.equal(b.readUInt16BE(InfoBlockSize.type), NBD_INFO_BLOCK_SIZE);
  assert.equal(b.readUInt32BE(InfoBlockSize.minimum), 512);
  assert.equal(b.readUInt32BE(InfoBlockSize.preferred), 4096);
  assert.equal(b.readUInt32BE(InfoBlockSize.maximum), 0x2000000);
});

test('EXPORT_NAME reply: u64 size, u16 flags, 124 zero bytes unless NO_ZEROES', () => {
  const short = encodeExportNameReply(1 << 20, 0x0d6d, true);
  assert.deepEqual(short, hex('0000000000100000 0d6d'));
  const full = encodeExportNameReply(1 << 20, 0x0d6d, false);
  assert.equal(full.length, 134);
  assert.deepEqual(full.subarray(0, 10), short);
  assert.ok(full.subarray(10).every((x) => x === 0));
});

// ---- decoders -----------------------------------------------------------------------------

test('option header: IHAVEOPT, option, length at offsets 0, 8, 12', () => {
  const h = decodeOptionHeader(hex('49484156454f5054 00000007 0000000a'));
  assert.deepEqual(h, { magic: 0x49484156454f5054n, option: 7, length: 10 });
  assert.deepEqual(decodeOptionHeader(hex('0102030405060708 ffffffff 80000000')), {
    magic: 0x0102030405060708n,
    option: 0xffffffff,
    length: 0x80000000,
  });
  assert.throws(() => decodeOptionHeader(Buffer.alloc(15)), RangeError);
});

function infoPayload(name: Buffer | string, infos: number[], nameLength?: number, count?: number): Buffer {
  const n = typeof name === 'string' ? Buffer.from(name) : name;
  return Buffer.concat([u32(nameLength ?? n.length), n, u16(count ?? infos.length), ...infos.map(u16)]);
}

test('INFO/GO request: name and info types, unknown types kept', () => {
  assert.deepEqual(decodeInfoRequest(infoPayload('ram0', [1, 3, 99])), { name: 'ram0', infos: [1, 3, 99] });
  assert.deepEqual(decodeInfoRequest(infoPayload('', [])), { name: '', infos: [] });
  assert.deepEqual(decodeInfoRequest(infoPayload('ünï', [2])), { name: 'ünï', infos: [2] });
  assert.equal(decodeInfoRequest(infoPayload('n'.repeat(4096), [])).name.length, 4096);
});

test('INFO/GO request: every length is checked against the payload', () => {
  assert.throws(() => decodeInfoRequest(Buffer.alloc(0)), isInvalid(/export name length needs 4 bytes/));
  assert.throws(() => decodeInfoRequest(hex('000000')), isInvalid(/needs 4 bytes/));
  // Name length past the end.
  assert.throws(() => decodeInfoRequest(infoPayload('ab', [], 10)), isInvalid(/export name needs 10 bytes/));
  assert.throws(
    () => decodeInfoRequest(infoPayload('ab', [], 0xffffffff)),
    isInvalid(/longer than the 4096-byte/),
  );
  // Name fits but the count is missing.
  assert.throws(
    () => decodeInfoRequest(Buffer.concat([u32(2), Buffer.from('ab')])),
    isInvalid(/count needs 2 bytes/),
  );
  // Count says 3 but 1 type follows; count says 0 but 1 type follows.
  assert.throws(
    () => decodeInfoRequest(infoPayload('ab', [1], undefined, 3)),
    isInvalid(/3 information requests need 6 bytes/),
  );
  assert.throws(
    () => decodeInfoRequest(infoPayload('ab', [1], undefined, 0)),
    isInvalid(/0 information requests need 0 bytes/),
  );
  // Odd trailing byte.
  assert.throws(
    () => decodeInfoRequest(Buffer.concat([infoPayload('ab', [1]), hex('00')])),
    isInvalid(/need 2 bytes/),
  );
});

test('strings: longer than 4096 bytes, NUL or bad UTF-8 are invalid', () => {
  assert.throws(() => decodeInfoRequest(infoPayload('n'.repeat(4097), [])), isInvalid(/4097.*4096/));
  assert.throws(() => decodeInfoRequest(infoPayload(hex('610062'), [])), isInvalid(/NUL/));
  assert.throws(() => decodeInfoRequest(infoPayload(hex('ff'), [])), isInvalid(/UTF-8/));
  assert.throws(() => decodeInfoRequest(infoPayload(hex('e282'), [])), isInvalid(/UTF-8/)); // cut €
  assert.equal(decodeNbdString(Buffer.from('ok'), 'x'), 'ok');
  assert.throws(
    () => decodeNbdString(Buffer.alloc(4097, 0x61), 'export name'),
    isInvalid(/export name is 4097 bytes/),
  );
});

function metaPayload(name: string, queries: Array<string | Buffer>, count?: number): Buffer {
  const parts = [u32(Buffer.byteLength(name)), Buffer.from(name), u32(count ?? queries.length)];
  for (const q of queries) {
    const b = typeof q === 'string' ? Buffer.from(q) : q;
    parts.push(u32(b.length), b);
  }
  return Buffer.concat(parts);
}

test('META_CONTEXT request: export name and queries', () => {
  assert.deepEqual(decodeMetaContextRequest(metaPayload('ram0', ['base:allocation', 'x-a:b'])), {
    exportName: 'ram0',
    queries: ['base:allocation', 'x-a:b'],
  });
  assert.deepEqual(decodeMetaContextRequest(metaPayload('', [])), { exportName: '', queries: [] });
  assert.deepEqual(decodeMetaContextRequest(metaPayload('', [''])), { exportName: '', queries: [''] });
});

test('META_CONTEXT request: every length is checked against the payload', () => {
  assert.throws(() => decodeMetaContextRequest(Buffer.alloc(0)), isInvalid(/export name length/));
  assert.throws(
    () => decodeMetaContextRequest(Buffer.concat([u32(0)])),
    isInvalid(/query count needs 4 bytes/),
  );
  // Count beyond what the payload could hold.
  assert.throws(
    () => decodeMetaContextRequest(metaPayload('', ['a:'], 2)),
    isInvalid(/2 queries cannot fit/),
  );
  assert.throws(() => decodeMetaContextRequest(metaPayload('', [], 0xffffffff)), isInvalid(/cannot fit/));
  // Query length past the end.
  const cut = metaPayload('', ['base:allocation']).subarray(0, -1);
  assert.throws(() => decodeMetaContextRequest(cut), isInvalid(/query 0 needs 15 bytes/));
  // Trailing bytes after the last query.
  assert.throws(
    () => decodeMetaContextRequest(Buffer.concat([metaPayload('', ['a:']), hex('00')])),
    isInvalid(/1 unexpected bytes/),
  );
  // A query over the string limit, a bad export name.
  assert.throws(() => decodeMetaContextRequest(metaPayload('', ['q'.repeat(4097)])), isInvalid(/4096/));
  assert.throws(
    () => decodeMetaContextRequest(metaPayload('', [hex('c3')])),
    isInvalid(/query 0 is not valid UTF-8/),
  );
});
