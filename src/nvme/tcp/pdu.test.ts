// Sizes and offsets of every PDU header, checked against the numbers in
// spdk include/spdk/nvmf_spec.h (SPDK_STATIC_ASSERT lines) and linux include/linux/nvme-tcp.h.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gaps } from '../../util/struct.js';
import {
  C2HDataHeader,
  CapsuleCmdHeader,
  CapsuleRespHeader,
  CommonHeader,
  DigestOption,
  fesName,
  H2CDataHeader,
  ICReqHeader,
  ICRespHeader,
  isPduType,
  NVME_TCP_ADMIN_CCSZ,
  NVME_TCP_DIGEST_LENGTH,
  NVME_TCP_MAX_TERM_PLEN,
  NVME_TCP_MIN_MAXH2CDATA,
  NVME_TCP_MIN_TERM_PLEN,
  NVME_TCP_PDA_MAX,
  NVME_TCP_TERM_REQ_MAX_DATA,
  PDU_HEADER_LENGTH,
  PDU_VALID_FLAGS,
  pdaBytes,
  pduCarriesData,
  pduDirection,
  PduFlags,
  PduType,
  pduTypeName,
  R2THeader,
  TcpFes,
  TermReqHeader,
} from './pdu.js';

const TABLES = [
  CommonHeader,
  ICReqHeader,
  ICRespHeader,
  TermReqHeader,
  CapsuleCmdHeader,
  CapsuleRespHeader,
  H2CDataHeader,
  C2HDataHeader,
  R2THeader,
];

test('PDU type values (enum nvme_tcp_pdu_type)', () => {
  assert.deepEqual(
    { ...PduType },
    {
      ICReq: 0x00,
      ICResp: 0x01,
      H2CTermReq: 0x02,
      C2HTermReq: 0x03,
      CapsuleCmd: 0x04,
      CapsuleResp: 0x05,
      H2CData: 0x06,
      C2HData: 0x07,
      R2T: 0x09,
    },
  );
  assert.equal(isPduType(0x08), false, '0x08 is not a PDU type');
  assert.equal(isPduType(0x0a), false);
  assert.equal(pduTypeName(0x08), 'type 0x08');
  assert.equal(pduTypeName(PduType.R2T), 'R2T');
});

test('bit 0 of the type is the direction', () => {
  for (const t of [PduType.ICReq, PduType.H2CTermReq, PduType.CapsuleCmd, PduType.H2CData]) {
    assert.equal(pduDirection(t), 'h2c', pduTypeName(t));
  }
  for (const t of [PduType.ICResp, PduType.C2HTermReq, PduType.CapsuleResp, PduType.C2HData, PduType.R2T]) {
    assert.equal(pduDirection(t), 'c2h', pduTypeName(t));
  }
});

test('flags, digest options and FES values (enum nvme_tcp_pdu_flags, _digest_option, _fatal_error_status)', () => {
  assert.equal(PduFlags.HDGSTF, 0x01);
  assert.equal(PduFlags.DDGSTF, 0x02);
  assert.equal(PduFlags.DATA_LAST, 0x04);
  assert.equal(PduFlags.DATA_SUCCESS, 0x08);
  assert.equal(DigestOption.HDR_DIGEST_ENABLE, 0x01);
  assert.equal(DigestOption.DATA_DIGEST_ENABLE, 0x02);
  assert.equal(TcpFes.INVALID_PDU_HDR, 0x01);
  assert.equal(TcpFes.PDU_SEQ_ERR, 0x02);
  assert.equal(TcpFes.HDR_DIGEST_ERR, 0x03);
  assert.equal(TcpFes.DATA_OUT_OF_RANGE, 0x04);
  assert.equal(TcpFes.R2T_LIMIT_EXCEEDED, 0x05);
  assert.equal(TcpFes.DATA_LIMIT_EXCEEDED, 0x05);
  assert.equal(TcpFes.UNSUPPORTED_PARAM, 0x06);
  assert.equal(fesName(0x03), 'Header Digest Error');
  assert.match(fesName(0x09), /unknown FES 0x9/);
});

test('limits (nvme-tcp.h, nvmf_spec.h)', () => {
  assert.equal(NVME_TCP_DIGEST_LENGTH, 4);
  assert.equal(NVME_TCP_ADMIN_CCSZ, 8192);
  assert.equal(NVME_TCP_MIN_MAXH2CDATA, 4096);
  assert.equal(NVME_TCP_PDA_MAX, 31);
  assert.equal(pdaBytes(0), 4);
  assert.equal(pdaBytes(NVME_TCP_PDA_MAX), 128);
  assert.equal(NVME_TCP_MIN_TERM_PLEN, 24);
  assert.equal(NVME_TCP_MAX_TERM_PLEN, 152);
  assert.equal(NVME_TCP_MAX_TERM_PLEN, TermReqHeader.SIZE + NVME_TCP_TERM_REQ_MAX_DATA);
});

test('common header: 8 bytes, plen at 4', () => {
  assert.equal(CommonHeader.SIZE, 8);
  assert.deepEqual(
    ['type', 'flags', 'hlen', 'pdo', 'plen'].map((f) => CommonHeader.offsetOf(f as 'type')),
    [0, 1, 2, 3, 4],
  );
  assert.equal(CommonHeader.sizeOf('plen'), 4);
});

test('every header repeats the common header at the same offsets and leaves no byte unnamed', () => {
  for (const t of TABLES) {
    assert.deepEqual(gaps(t), [], t.name);
    assert.equal(t.offsetOf('type'), 0, t.name);
    assert.equal(t.offsetOf('hlen'), 2, t.name);
    assert.equal(t.offsetOf('pdo'), 3, t.name);
    assert.equal(t.offsetOf('plen'), 4, t.name);
  }
});

test('ICReq and ICResp: 128 bytes; pfv 8, hpda/cpda 10, dgst 11, maxr2t/maxh2cdata 12', () => {
  assert.equal(ICReqHeader.SIZE, 128);
  assert.equal(ICReqHeader.offsetOf('pfv'), 8);
  assert.equal(ICReqHeader.offsetOf('hpda'), 10);
  assert.equal(ICReqHeader.offsetOf('dgst'), 11);
  assert.equal(ICReqHeader.offsetOf('maxr2t'), 12);
  assert.equal(ICReqHeader.offsetOf('rsvd16'), 16);
  assert.equal(ICReqHeader.sizeOf('rsvd16'), 112);
  assert.equal(ICRespHeader.SIZE, 128);
  assert.equal(ICRespHeader.offsetOf('pfv'), 8);
  assert.equal(ICRespHeader.offsetOf('cpda'), 10);
  assert.equal(ICRespHeader.offsetOf('dgst'), 11);
  assert.equal(ICRespHeader.offsetOf('maxh2cdata'), 12);
  assert.equal(ICRespHeader.sizeOf('rsvd16'), 112);
});

test('TermReq: 24 bytes; fes 8, fei 10 (packed as in SPDK), 10 reserved bytes', () => {
  assert.equal(TermReqHeader.SIZE, 24);
  assert.equal(TermReqHeader.offsetOf('fes'), 8);
  assert.equal(TermReqHeader.sizeOf('fes'), 2);
  assert.equal(TermReqHeader.offsetOf('fei'), 10);
  assert.equal(TermReqHeader.sizeOf('fei'), 4);
  assert.equal(TermReqHeader.offsetOf('rsvd14'), 14);
  assert.equal(TermReqHeader.sizeOf('rsvd14'), 10);
});

test('CapsuleCmd 72 bytes with the SQE at 8; CapsuleResp 24 bytes with the CQE at 8', () => {
  assert.equal(CapsuleCmdHeader.SIZE, 72);
  assert.equal(CapsuleCmdHeader.offsetOf('ccsqe'), 8);
  assert.equal(CapsuleCmdHeader.sizeOf('ccsqe'), 64);
  assert.equal(CapsuleRespHeader.SIZE, 24);
  assert.equal(CapsuleRespHeader.offsetOf('rccqe'), 8);
  assert.equal(CapsuleRespHeader.sizeOf('rccqe'), 16);
});

test('H2CData, C2HData and R2T: 24 bytes; cccid 8, ttag 10, offset 12, length 16', () => {
  for (const t of [H2CDataHeader, C2HDataHeader, R2THeader]) assert.equal(t.SIZE, 24, t.name);
  assert.deepEqual(
    [
      H2CDataHeader.offsetOf('cccid'),
      H2CDataHeader.offsetOf('ttag'),
      H2CDataHeader.offsetOf('datao'),
      H2CDataHeader.offsetOf('datal'),
    ],
    [8, 10, 12, 16],
  );
  assert.deepEqual(
    [
      C2HDataHeader.offsetOf('cccid'),
      C2HDataHeader.offsetOf('rsvd10'),
      C2HDataHeader.offsetOf('datao'),
      C2HDataHeader.offsetOf('datal'),
    ],
    [8, 10, 12, 16],
  );
  assert.deepEqual(
    [
      R2THeader.offsetOf('cccid'),
      R2THeader.offsetOf('ttag'),
      R2THeader.offsetOf('r2to'),
      R2THeader.offsetOf('r2tl'),
    ],
    [8, 10, 12, 16],
  );
  assert.equal(R2THeader.offsetOf('rsvd20'), 20);
});

test('header lengths and valid flags per type', () => {
  assert.deepEqual(
    Object.values(PduType).map((t) => PDU_HEADER_LENGTH[t]),
    [128, 128, 24, 24, 72, 24, 24, 24, 24],
  );
  assert.equal(PDU_VALID_FLAGS[PduType.ICReq], 0);
  assert.equal(PDU_VALID_FLAGS[PduType.C2HTermReq], 0, 'TermReqs carry no digests');
  assert.equal(PDU_VALID_FLAGS[PduType.CapsuleResp], PduFlags.HDGSTF);
  assert.equal(PDU_VALID_FLAGS[PduType.H2CData] & PduFlags.DATA_SUCCESS, 0, 'SUCCESS is C2H only');
  assert.equal(PDU_VALID_FLAGS[PduType.C2HData], 0x0f);
  assert.deepEqual(
    Object.values(PduType).filter((t) => pduCarriesData(t)),
    [PduType.CapsuleCmd, PduType.H2CData, PduType.C2HData],
  );
});

test('encode/decode of an H2CData header puts the fields at the asserted offsets', () => {
  const buf = H2CDataHeader.encode({
    type: 6,
    hlen: 24,
    plen: 0x01020304,
    cccid: 0xa1a2,
    ttag: 0xb1b2,
    datao: 0xc1c2c3c4,
    datal: 7,
  });
  assert.equal(
    buf.toString('hex'),
    '0600180004030201' + 'a2a1' + 'b2b1' + 'c4c3c2c1' + '07000000' + '00000000',
  );
  assert.equal(H2CDataHeader.decode(buf).ttag, 0xb1b2);
});
