// Malformed PDUs: each one stops the parser with the fatal error status (FES) and the byte
// offset (FEI) a TermReq must report, the lowest offending field first.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildC2HData,
  buildCapsuleCmd,
  buildH2CData,
  buildICReq,
  buildICResp,
  buildR2T,
  buildTermReqFor,
  type TxOptions,
} from './builder.js';
import { TcpFatalError } from './errors.js';
import { PduParser, type PduParserOptions } from './parser.js';
import { PduFlags, PduType, TcpFes, type PduDirection } from './pdu.js';

const PLAIN: TxOptions = { headerDigest: false, dataDigest: false };
const SQE = Buffer.alloc(64, 0x11);

/** A PDU of `size` bytes (at least the common header) with the given common header fields. */
function raw(type: number, flags: number, hlen: number, pdo: number, plen: number, size = 8): Buffer {
  const b = Buffer.alloc(Math.max(8, size));
  b.set([type, flags, hlen, pdo]);
  b.writeUInt32LE(plen, 4);
  return b;
}

function one(list: Buffer[]): Buffer {
  return Buffer.concat(list);
}

interface Want {
  fes: number;
  fei: number;
  sendTermReq?: boolean;
  message?: RegExp;
}

function expectFatal(
  direction: PduDirection,
  bytes: Buffer,
  want: Want,
  options: Omit<PduParserOptions, 'direction'> = {},
): TcpFatalError {
  const p = new PduParser({ direction, established: true, ...options });
  p.push(bytes);
  let caught: unknown;
  try {
    for (let i = 0; i < 100 && p.next() !== undefined; i++);
  } catch (err) {
    caught = err;
  }
  assert.ok(TcpFatalError.is(caught), `expected a TcpFatalError, got ${String(caught)}`);
  const err = caught;
  assert.equal(err.fes, want.fes, err.message);
  assert.equal(err.fei, want.fei, err.message);
  assert.equal(err.sendTermReq, want.sendTermReq ?? true, err.message);
  if (want.message) assert.match(err.message, want.message);
  return err;
}

const INVALID = TcpFes.INVALID_PDU_HDR;

describe('PDU type (byte 0)', () => {
  it('an unknown type is an invalid header field at byte 0', () => {
    for (const t of [0x08, 0x0a, 0x7f, 0xff]) {
      expectFatal('h2c', raw(t, 0, 24, 0, 24), { fes: INVALID, fei: 0, message: /unknown PDU type/ });
    }
  });

  it('a PDU of the other direction is an invalid header field at byte 0', () => {
    expectFatal('h2c', raw(PduType.CapsuleResp, 0, 24, 0, 24), {
      fes: INVALID,
      fei: 0,
      message: /CapsuleResp is not a PDU a host sends/,
    });
    expectFatal('h2c', raw(PduType.R2T, 0, 24, 0, 24), { fes: INVALID, fei: 0 });
    expectFatal(
      'h2c',
      one(buildICResp({ maxh2cdata: 4096 })),
      { fes: INVALID, fei: 0 },
      { established: false },
    );
    expectFatal('c2h', one(buildCapsuleCmd(PLAIN, SQE)), {
      fes: INVALID,
      fei: 0,
      message: /not a PDU a controller sends/,
    });
    expectFatal(
      'c2h',
      one(buildH2CData(PLAIN, { cccid: 1, ttag: 1, datao: 0, last: true }, Buffer.alloc(4))),
      { fes: INVALID, fei: 0 },
    );
  });

  it('a second IC PDU, or anything but a TermReq before it, is a PDU sequence error', () => {
    expectFatal('h2c', one(buildICReq()), {
      fes: TcpFes.PDU_SEQ_ERR,
      fei: 0,
      message: /already initialized/,
    });
    expectFatal('c2h', one(buildICResp({ maxh2cdata: 8192 })), { fes: TcpFes.PDU_SEQ_ERR, fei: 0 });
    expectFatal(
      'h2c',
      one(buildCapsuleCmd(PLAIN, SQE)),
      { fes: TcpFes.PDU_SEQ_ERR, fei: 0, message: /before the ICReq/ },
      { established: false },
    );
    expectFatal(
      'h2c',
      one(buildH2CData(PLAIN, { cccid: 1, ttag: 1, datao: 0, last: true }, Buffer.alloc(4))),
      { fes: TcpFes.PDU_SEQ_ERR, fei: 0 },
      { established: false },
    );
    expectFatal(
      'c2h',
      raw(PduType.CapsuleResp, 0, 24, 0, 24, 24),
      { fes: TcpFes.PDU_SEQ_ERR, fei: 0, message: /before the ICResp/ },
      { established: false },
    );
  });

  it('a TermReq is accepted before the IC exchange (a controller refusing an ICReq sends one)', () => {
    const p = new PduParser({ direction: 'c2h' });
    const term = raw(PduType.C2HTermReq, 0, 24, 0, 24 + 128, 24 + 128);
    term.writeUInt16LE(TcpFes.UNSUPPORTED_PARAM, 8);
    term.writeUInt32LE(8, 10);
    p.push(term);
    const pdu = p.next();
    assert.equal(pdu?.type, PduType.C2HTermReq);
    assert.equal(pdu.type === PduType.C2HTermReq && pdu.fes, TcpFes.UNSUPPORTED_PARAM);
    assert.equal(pdu.type === PduType.C2HTermReq && pdu.data.length, 128);
  });
});

describe('flags (byte 1)', () => {
  it('bits a type never carries', () => {
    expectFatal('h2c', raw(PduType.CapsuleCmd, PduFlags.DATA_LAST, 72, 0, 72), { fes: INVALID, fei: 1 });
    expectFatal('h2c', raw(PduType.H2CData, 0x08, 24, 24, 28), { fes: INVALID, fei: 1 }, {});
    expectFatal(
      'h2c',
      raw(PduType.ICReq, 0x01, 128, 0, 128),
      { fes: INVALID, fei: 1 },
      { established: false },
    );
    expectFatal('c2h', raw(PduType.R2T, 0x02, 24, 0, 24), { fes: INVALID, fei: 1 });
  });

  it('a header digest flag that does not match the connection', () => {
    expectFatal(
      'h2c',
      one(buildCapsuleCmd(PLAIN, SQE)),
      { fes: INVALID, fei: 1, message: /header digest expected/ },
      { headerDigest: true },
    );
    expectFatal('h2c', one(buildCapsuleCmd({ headerDigest: true, dataDigest: false }, SQE)), {
      fes: INVALID,
      fei: 1,
    });
  });

  it('a data digest flag that does not match the connection or the data', () => {
    expectFatal(
      'h2c',
      one(buildCapsuleCmd(PLAIN, SQE, Buffer.alloc(8))),
      { fes: INVALID, fei: 1, message: /data digest expected/ },
      { dataDigest: true },
    );
    expectFatal(
      'h2c',
      one(buildCapsuleCmd({ headerDigest: false, dataDigest: true }, SQE, Buffer.alloc(8))),
      { fes: INVALID, fei: 1 },
    );
    expectFatal(
      'h2c',
      raw(PduType.CapsuleCmd, 0x02, 72, 0, 72),
      { fes: INVALID, fei: 1, message: /data digest not expected/ },
      { dataDigest: true },
    );
  });

  it('C2HData with SUCCESS but not LAST_PDU', () => {
    expectFatal('c2h', raw(PduType.C2HData, 0x08, 24, 24, 28), {
      fes: INVALID,
      fei: 1,
      message: /SUCCESS without LAST_PDU/,
    });
  });
});

describe('hlen (byte 2), pdo (byte 3), plen (bytes 4..7)', () => {
  it('a header length other than the type has', () => {
    expectFatal('h2c', raw(PduType.CapsuleCmd, 0, 80, 0, 80), {
      fes: INVALID,
      fei: 2,
      message: /hlen 80, must be 72/,
    });
    expectFatal('h2c', raw(PduType.ICReq, 0, 127, 0, 128), { fes: INVALID, fei: 2 }, { established: false });
    expectFatal('c2h', raw(PduType.CapsuleResp, 0, 8, 0, 8), { fes: INVALID, fei: 2 });
  });

  it('a data offset inside the header, past plen, or off the receiver alignment', () => {
    const withData = one(buildCapsuleCmd(PLAIN, SQE, Buffer.alloc(100)));
    const low = Buffer.from(withData);
    low[3] = 68;
    expectFatal('h2c', low, { fes: INVALID, fei: 3, message: /pdo 68/ });
    expectFatal('h2c', raw(PduType.CapsuleCmd, 0, 72, 200, 100), { fes: INVALID, fei: 3 });
    // Built for CPDA 0 (pdo 72), received by a controller that asked for 16-byte alignment.
    expectFatal('h2c', withData, { fes: INVALID, fei: 3, message: /16-byte boundary/ }, { pda: 3 });
    expectFatal('c2h', raw(PduType.R2T, 0, 24, 24, 24), { fes: INVALID, fei: 3 });
    expectFatal('c2h', raw(PduType.CapsuleResp, 0, 24, 4, 24), { fes: INVALID, fei: 3 });
    expectFatal('h2c', raw(PduType.ICReq, 0, 128, 4, 128), { fes: INVALID, fei: 3 }, { established: false });
  });

  it('a PDU length that does not fit the type', () => {
    expectFatal('h2c', raw(PduType.ICReq, 0, 128, 0, 129), { fes: INVALID, fei: 4 }, { established: false });
    expectFatal('c2h', raw(PduType.CapsuleResp, 0, 24, 0, 30), {
      fes: INVALID,
      fei: 4,
      message: /carries no data/,
    });
    expectFatal(
      'c2h',
      raw(PduType.R2T, 0x01, 24, 0, 26),
      { fes: INVALID, fei: 4, message: /shorter than its header/ },
      { headerDigest: true },
    );
    expectFatal('h2c', raw(PduType.CapsuleCmd, 0, 72, 0, 50), {
      fes: INVALID,
      fei: 4,
      message: /plen 50 is shorter/,
    });
    // DDGSTF with pdo = hlen and plen = hlen + 4: no room for any data.
    expectFatal(
      'h2c',
      raw(PduType.CapsuleCmd, 0x02, 72, 72, 76),
      { fes: INVALID, fei: 4, message: /leaves no data/ },
      { dataDigest: true },
    );
  });
});

describe('data beyond the agreed limits (Data Transfer Limit Exceeded)', () => {
  it('in-capsule data over the limit, refused before the data is buffered', () => {
    expectFatal('h2c', one(buildCapsuleCmd(PLAIN, SQE, Buffer.alloc(8193))), {
      fes: TcpFes.DATA_LIMIT_EXCEEDED,
      fei: 0,
      message: /8193 data bytes; in-capsule data is limited to 8192/,
    });
    const p = new PduParser({ direction: 'h2c', established: true });
    p.push(raw(PduType.CapsuleCmd, 0, 72, 72, 0xfffffff0));
    assert.throws(
      () => p.next(),
      (e: unknown) => TcpFatalError.is(e) && e.fes === TcpFes.DATA_LIMIT_EXCEEDED,
    );
    assert.equal(p.bufferedBytes, 0, 'nothing is kept for a 4 GiB PDU');
  });

  it('H2CData over MAXH2CDATA, C2HData over the host limit', () => {
    const h2c = one(buildH2CData(PLAIN, { cccid: 1, ttag: 1, datao: 0, last: true }, Buffer.alloc(4100)));
    expectFatal(
      'h2c',
      h2c,
      { fes: TcpFes.DATA_LIMIT_EXCEEDED, fei: 0, message: /MAXH2CDATA is 4096/ },
      { maxH2CData: 4096 },
    );
    const c2h = one(buildC2HData(PLAIN, { cccid: 1, datao: 0, last: true }, Buffer.alloc(1025)));
    expectFatal('c2h', c2h, { fes: TcpFes.DATA_LIMIT_EXCEEDED, fei: 0 }, { maxC2HData: 1024 });
  });
});

describe('header digest and the type-specific header fields', () => {
  const hd: TxOptions = { headerDigest: true, dataDigest: false };

  it('a wrong header digest is a Header Digest Error', () => {
    const good = one(buildCapsuleCmd(hd, SQE));
    const badDigest = Buffer.from(good);
    badDigest[73] = badDigest[73]! ^ 0x40;
    expectFatal('h2c', badDigest, { fes: TcpFes.HDR_DIGEST_ERR, fei: 0 }, { headerDigest: true });
    const badSqe = Buffer.from(good);
    badSqe[20] = badSqe[20]! ^ 0x01;
    const err = expectFatal(
      'h2c',
      badSqe,
      { fes: TcpFes.HDR_DIGEST_ERR, fei: 0, message: /header digest 0x/ },
      { headerDigest: true },
    );
    assert.deepEqual(err.header, badSqe.subarray(0, 72), 'the TermReq carries the header as received');
  });

  it('ICReq: unsupported pfv, hpda over 31, reserved digest bits', () => {
    const opts = { established: false };
    expectFatal(
      'h2c',
      one(buildICReq({ pfv: 1 })),
      { fes: TcpFes.UNSUPPORTED_PARAM, fei: 8, message: /pfv 1/ },
      opts,
    );
    expectFatal('h2c', one(buildICReq({ hpda: 32 })), { fes: INVALID, fei: 10 }, opts);
    expectFatal('h2c', one(buildICReq({ dgst: 4 })), { fes: INVALID, fei: 11 }, opts);
  });

  it('ICResp: MAXH2CDATA under 4096 or not a multiple of 4, cpda over 31', () => {
    const opts = { established: false };
    expectFatal('c2h', one(buildICResp({ maxh2cdata: 4095 })), { fes: INVALID, fei: 12 }, opts);
    expectFatal('c2h', one(buildICResp({ maxh2cdata: 4098 })), { fes: INVALID, fei: 12 }, opts);
    expectFatal('c2h', one(buildICResp({ maxh2cdata: 4096, cpda: 40 })), { fes: INVALID, fei: 10 }, opts);
    expectFatal(
      'c2h',
      one(buildICResp({ maxh2cdata: 4096, pfv: 2 })),
      { fes: TcpFes.UNSUPPORTED_PARAM, fei: 8 },
      opts,
    );
  });

  it('H2CData/C2HData whose datal disagrees with the data carried, R2T for 0 bytes', () => {
    const h2c = one(buildH2CData(PLAIN, { cccid: 1, ttag: 1, datao: 0, last: true }, Buffer.alloc(40)));
    h2c.writeUInt32LE(99, 16);
    expectFatal('h2c', h2c, { fes: INVALID, fei: 16, message: /datal 99, but the PDU carries 40/ });
    const c2h = one(buildC2HData(PLAIN, { cccid: 1, datao: 0, last: true }, Buffer.alloc(40)));
    c2h.writeUInt32LE(0, 16);
    expectFatal('c2h', c2h, { fes: INVALID, fei: 16 });
    expectFatal('c2h', raw(PduType.C2HData, 0x04, 24, 0, 24, 24), { fes: INVALID, fei: 16 }, {});
    const r2t = one(buildR2T(PLAIN, { cccid: 1, ttag: 1, r2to: 0, r2tl: 1 }));
    r2t.writeUInt32LE(0, 16);
    expectFatal('c2h', r2t, { fes: INVALID, fei: 16, message: /R2T asks for 0 bytes/ });
  });
});

describe('TermReqs from the peer (NVMe-oF 1.1 section 7.4.7)', () => {
  it('an impossible length closes the connection without a TermReq in reply', () => {
    expectFatal('h2c', raw(PduType.H2CTermReq, 0, 24, 0, 23), { fes: INVALID, fei: 4, sendTermReq: false });
    expectFatal('c2h', raw(PduType.C2HTermReq, 0, 24, 0, 153), { fes: INVALID, fei: 4, sendTermReq: false });
  });

  it('any other defect in a TermReq is not answered either', () => {
    expectFatal('h2c', raw(PduType.H2CTermReq, 0x01, 24, 0, 24), {
      fes: INVALID,
      fei: 1,
      sendTermReq: false,
    });
    expectFatal('h2c', raw(PduType.H2CTermReq, 0, 28, 0, 28), { fes: INVALID, fei: 2, sendTermReq: false });
    expectFatal('h2c', raw(PduType.H2CTermReq, 0, 24, 24, 28), { fes: INVALID, fei: 3, sendTermReq: false });
  });
});

describe('after a fatal error', () => {
  it('the parser stays stopped: the same error again, input dropped', () => {
    const p = new PduParser({ direction: 'h2c', established: true });
    p.push(Buffer.concat([raw(0x08, 0, 24, 0, 24, 24), one(buildCapsuleCmd(PLAIN, SQE))]));
    let first: unknown;
    try {
      p.next();
    } catch (e) {
      first = e;
    }
    assert.ok(TcpFatalError.is(first));
    assert.equal(p.error, first);
    assert.equal(p.bufferedBytes, 0);
    p.push(one(buildCapsuleCmd(PLAIN, SQE)));
    assert.equal(p.bufferedBytes, 0, 'push is ignored');
    assert.throws(
      () => p.next(),
      (e) => e === first,
    );
    assert.throws(
      () => [...p],
      (e) => e === first,
    );
  });

  it('the error holds what the TermReq needs: common header for early errors, and the reply type', () => {
    const bad = raw(PduType.CapsuleCmd, 0, 80, 0, 80, 80);
    const err = expectFatal('h2c', bad, { fes: INVALID, fei: 2 });
    assert.deepEqual(err.header, bad.subarray(0, 8));
    const term = one(buildTermReqFor(err));
    assert.equal(term[0], PduType.C2HTermReq, 'a controller answers with a C2HTermReq');
    assert.equal(term.readUInt32LE(4), 24 + 8);
    assert.equal(term.readUInt16LE(8), INVALID);
    assert.equal(term.readUInt32LE(10), 2);
    const hostErr = expectFatal('c2h', raw(PduType.CapsuleCmd, 0, 72, 0, 72), { fes: INVALID, fei: 0 });
    assert.equal(hostErr.termReqType, PduType.H2CTermReq);
  });
});
