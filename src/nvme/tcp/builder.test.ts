// Byte-exact checks of the builders: plen, hlen, pdo, flags, padding and digests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import {
  buildC2HData,
  buildCapsuleCmd,
  buildCapsuleResp,
  buildH2CData,
  buildICReq,
  buildICResp,
  buildR2T,
  buildTermReq,
  buildTermReqFor,
  writePdu,
  type TxOptions,
} from './builder.js';
import { crc32c } from './digest.js';
import { TcpFatalError } from './errors.js';
import { PduType, TcpFes } from './pdu.js';

const PLAIN: TxOptions = { headerDigest: false, dataDigest: false };
const DIGESTS: TxOptions = { headerDigest: true, dataDigest: true };

function common(buf: Buffer) {
  return { type: buf[0], flags: buf[1], hlen: buf[2], pdo: buf[3], plen: buf.readUInt32LE(4) };
}

function total(list: Buffer[]): number {
  return list.reduce((n, b) => n + b.length, 0);
}

test('ICReq: 128 bytes, no digest or padding, fields at 8..15', () => {
  const list = buildICReq({ hpda: 2, dgst: 3, maxr2t: 7 });
  assert.equal(list.length, 1);
  const b = list[0]!;
  assert.equal(b.length, 128);
  assert.equal(b.toString('hex', 0, 16), '0000800080000000' + '0000' + '02' + '03' + '07000000');
  assert.ok(
    b.subarray(16).every((x) => x === 0),
    'reserved bytes are zero',
  );
});

test('ICResp: type 1, cpda and maxh2cdata', () => {
  const b = buildICResp({ cpda: 1, dgst: 1, maxh2cdata: 0x400000 })[0]!;
  assert.deepEqual(common(b), { type: 1, flags: 0, hlen: 128, pdo: 0, plen: 128 });
  assert.equal(b.toString('hex', 8, 16), '0000' + '01' + '01' + '00004000');
});

test('CapsuleCmd without data: plen is the header (and its digest), pdo 0, no DDGSTF', () => {
  const sqe = randomBytes(64);
  const plain = buildCapsuleCmd(PLAIN, sqe);
  assert.equal(plain.length, 1);
  assert.deepEqual(common(plain[0]!), { type: 4, flags: 0, hlen: 72, pdo: 0, plen: 72 });
  assert.deepEqual(plain[0]!.subarray(8, 72), sqe);

  const dg = buildCapsuleCmd(DIGESTS, sqe)[0]!;
  assert.deepEqual(common(dg), { type: 4, flags: 0x01, hlen: 72, pdo: 0, plen: 76 });
  assert.equal(dg.readUInt32LE(72), crc32c(dg.subarray(0, 72)), 'header digest over the 72 header bytes');
  assert.equal(buildCapsuleCmd(DIGESTS, sqe, Buffer.alloc(0)).length, 1, 'empty data is no data');
});

test('CapsuleCmd with in-capsule data and both digests: the layout the Linux host sends', () => {
  const sqe = randomBytes(64);
  const data = randomBytes(1024);
  const list = buildCapsuleCmd(DIGESTS, sqe, data);
  assert.equal(list.length, 3);
  const [head, body, ddgst] = list as [Buffer, Buffer, Buffer];
  assert.equal(body, data, 'the data buffer is passed through, not copied');
  assert.deepEqual(common(head), { type: 4, flags: 0x03, hlen: 72, pdo: 76, plen: 76 + 1024 + 4 });
  assert.equal(head.length, 76);
  assert.equal(head.readUInt32LE(72), crc32c(head.subarray(0, 72)));
  assert.equal(ddgst.readUInt32LE(0), crc32c(data));
  assert.equal(total(list), 1104);
});

test('PDO pads the header to the receiver alignment with zeros', () => {
  const sqe = Buffer.alloc(64, 0xaa);
  const data = Buffer.alloc(10, 0xbb);
  for (const [pda, hd, pdo] of [
    [0, false, 72],
    [0, true, 76],
    [1, true, 80], // 8-byte alignment
    [3, true, 80], // 16
    [15, false, 128], // 64
    [31, true, 128], // 128
  ] as const) {
    const list = buildCapsuleCmd({ headerDigest: hd, dataDigest: false, pda }, sqe, data);
    const head = list[0]!;
    assert.equal(head[3], pdo, `pda ${pda}, header digest ${hd}`);
    assert.equal(head.length, pdo);
    assert.equal(head.readUInt32LE(4), pdo + 10);
    assert.ok(
      head.subarray(72 + (hd ? 4 : 0)).every((x) => x === 0),
      'padding is zero',
    );
  }
});

test('a scatter list of data buffers goes out as is, with one digest over all of it', () => {
  const parts = [randomBytes(100), randomBytes(0), randomBytes(333), new Uint8Array(randomBytes(5))];
  const list = buildH2CData(DIGESTS, { cccid: 3, ttag: 9, datao: 4096, last: true }, parts);
  assert.equal(list.length, 1 + 3 + 1, 'header, three non-empty parts, digest');
  assert.equal(list[1], parts[0]);
  assert.equal(list[2], parts[2]);
  const all = Buffer.concat(parts);
  assert.equal(list[4]!.readUInt32LE(0), crc32c(all));
  const head = list[0]!;
  assert.deepEqual(common(head), { type: 6, flags: 0x07, hlen: 24, pdo: 28, plen: 28 + 438 + 4 });
  assert.equal(head.toString('hex', 8, 24), '0300' + '0900' + '00100000' + 'b6010000' + '00000000');
});

test('C2HData: LAST and SUCCESS flags, no ttag', () => {
  const data = randomBytes(512);
  const list = buildC2HData(PLAIN, { cccid: 0x1234, datao: 0, last: true, success: true }, data);
  const head = list[0]!;
  assert.deepEqual(common(head), { type: 7, flags: 0x0c, hlen: 24, pdo: 24, plen: 536 });
  assert.equal(head.toString('hex', 8, 20), '3412' + '0000' + '00000000' + '00020000');
  const mid = buildC2HData(PLAIN, { cccid: 1, datao: 512, last: false }, data)[0]!;
  assert.equal(mid[1], 0);
  assert.throws(
    () => buildC2HData(PLAIN, { cccid: 1, datao: 0, last: false, success: true }, data),
    /SUCCESS needs LAST_PDU/,
  );
});

test('R2T and CapsuleResp carry no data: pdo 0, plen = header (+ digest)', () => {
  const r2t = buildR2T(DIGESTS, { cccid: 5, ttag: 6, r2to: 8192, r2tl: 65536 })[0]!;
  assert.deepEqual(common(r2t), { type: 9, flags: 0x01, hlen: 24, pdo: 0, plen: 28 });
  assert.equal(r2t.toString('hex', 8, 24), '0500' + '0600' + '00200000' + '00000100' + '00000000');
  assert.equal(r2t.readUInt32LE(24), crc32c(r2t.subarray(0, 24)));
  const cqe = randomBytes(16);
  const resp = buildCapsuleResp(PLAIN, cqe)[0]!;
  assert.deepEqual(common(resp), { type: 5, flags: 0, hlen: 24, pdo: 0, plen: 24 });
  assert.deepEqual(resp.subarray(8), cqe);
});

test('TermReq: header plus error data, FEI at byte 10, never a digest', () => {
  const hdr = randomBytes(72);
  const b = buildTermReq(PduType.C2HTermReq, { fes: TcpFes.INVALID_PDU_HDR, fei: 2, data: hdr })[0]!;
  assert.deepEqual(common(b), { type: 3, flags: 0, hlen: 24, pdo: 0, plen: 96 });
  assert.equal(b.toString('hex', 8, 24), '0100' + '02000000' + '00000000000000000000');
  assert.deepEqual(b.subarray(24), hdr);
  assert.equal(buildTermReq(PduType.H2CTermReq, { fes: 2 })[0]!.length, 24);
  assert.throws(() => buildTermReq(PduType.C2HTermReq, { fes: 1, data: Buffer.alloc(129) }), /at most 128/);
});

test('buildTermReqFor answers a parser error with its FES, FEI and the offending header', () => {
  const header = Buffer.from('0400500000000000', 'hex');
  const err = new TcpFatalError(
    { fes: TcpFes.INVALID_PDU_HDR, fei: 2, header, termReqType: PduType.C2HTermReq },
    'CapsuleCmd hlen 80',
  );
  const b = buildTermReqFor(err)[0]!;
  assert.equal(b[0], PduType.C2HTermReq);
  assert.equal(b.readUInt16LE(8), 1);
  assert.equal(b.readUInt32LE(10), 2);
  assert.deepEqual(b.subarray(24), header);
  assert.match(err.message, /0x1 Invalid PDU Header Field at byte 2: CapsuleCmd hlen 80/);
  assert.ok(TcpFatalError.is(err));
  assert.equal(TcpFatalError.is(new Error('x')), false);
});

test('caller mistakes are refused with a RangeError that names the field', () => {
  assert.throws(() => buildCapsuleCmd(PLAIN, Buffer.alloc(63)), /64-byte SQE, got 63/);
  assert.throws(() => buildCapsuleResp(PLAIN, Buffer.alloc(17)), /16-byte CQE, got 17/);
  assert.throws(() => buildCapsuleCmd({ ...PLAIN, pda: 32 }, Buffer.alloc(64)), /PDA.*32 is outside 0\.\.31/);
  assert.throws(
    () => buildH2CData(PLAIN, { cccid: 1, ttag: 1, datao: 0, last: true }, []),
    /at least one data byte/,
  );
  assert.throws(
    () => buildH2CData(PLAIN, { cccid: 0x10000, ttag: 1, datao: 0, last: true }, Buffer.alloc(1)),
    /cccid/,
  );
  assert.throws(() => buildR2T(PLAIN, { cccid: 1, ttag: 1, r2to: 0, r2tl: 0 }), /r2tl must not be 0/);
  assert.throws(() => buildICResp({ maxh2cdata: -1 }), RangeError);
});

test('writePdu sends the buffers of a PDU in one corked batch over a real socket', async () => {
  let serverSide: Promise<Buffer> | undefined;
  const server = createServer((s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    serverSide = once(s, 'end').then(() => Buffer.concat(got));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  const list = buildC2HData(DIGESTS, { cccid: 1, datao: 0, last: true, success: true }, randomBytes(3000));
  let writes = 0;
  let singles = 0;
  const orig = sock._writev?.bind(sock);
  const origSingle = sock._write.bind(sock);
  assert.ok(orig, 'net.Socket batches corked writes with _writev');
  sock._writev = (chunks, cb) => {
    writes++;
    orig(chunks, cb);
  };
  sock._write = (chunk, enc, cb) => {
    singles++;
    origSingle(chunk, enc, cb);
  };
  assert.equal(writePdu(sock, list), true);
  sock.end();
  await once(sock, 'close');
  const received = await serverSide!;
  server.close();
  assert.equal(writes, 1, 'one writev for header, data and digest');
  assert.equal(singles, 0, 'no buffer went out on its own');
  assert.deepEqual(received, Buffer.concat(list));
});
