import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCqe, encodeCqe, result64 } from './completion.js';
import { decodeSqe, sqeFctype, sqeSgl } from './command.js';
import {
  CcShn,
  CNTLID_DYNAMIC,
  ConnectCommand,
  ConnectData,
  connectInvalidData,
  connectInvalidSqe,
  CstsShst,
  decodeCap,
  decodeCc,
  decodeConnect,
  decodeConnectData,
  decodeConnectInvalid,
  decodeConnectResult,
  decodeCsts,
  decodeDisconnect,
  decodePropertyGet,
  decodePropertySet,
  decodeVs,
  encodeCap,
  encodeCc,
  encodeConnect,
  encodeConnectData,
  encodeConnectInvalid,
  encodeConnectResult,
  encodeCsts,
  encodePropertyGet,
  encodePropertySet,
  encodeVs,
  FabricsCommand,
  Property,
  PropertyGetCommand,
  PropertySetCommand,
} from './fabrics.js';
import { inCapsuleSgl } from './sgl.js';
import { Status } from './status.js';
import { assertLayout } from './testing/layout.js';

// Offsets: gcc offsetof() on the Linux include/linux/nvme.h structs and on libnvme's types.h.
test('fabrics command layouts', () => {
  assertLayout(FabricsCommand, 64, { opcode: 0, resv1: 1, cid: 2, fctype: 4, resv2: 5, ts: 40 });
  // prettier-ignore
  assertLayout(ConnectCommand, 64, {
    opcode: 0, resv1: 1, cid: 2, fctype: 4, resv2: 5, dptr: 24, recfmt: 40, qid: 42, sqsize: 44, cattr: 46, resv3: 47,
    kato: 48, resv4: 52,
  });
  assertLayout(ConnectData, 1024, {
    hostid: 0,
    cntlid: 16,
    rsvd18: 18,
    subnqn: 256,
    hostnqn: 512,
    rsvd768: 768,
  });
  // prettier-ignore
  assertLayout(PropertySetCommand, 64, {
    opcode: 0, resv1: 1, cid: 2, fctype: 4, resv2: 5, attrib: 40, resv3: 41, ofst: 44, value: 48, resv4: 56,
  });
  // prettier-ignore
  assertLayout(PropertyGetCommand, 64, {
    opcode: 0, resv1: 1, cid: 2, fctype: 4, resv2: 5, attrib: 40, resv3: 41, ofst: 44, resv4: 48,
  });
});

const HOSTID = Buffer.from('6d8e0a4e2b0a4a4f9a4b1c2d3e4f5061', 'hex');
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:6d8e0a4e-2b0a-4a4f-9a4b-1c2d3e4f5061';
const SUBNQN = 'nqn.2026-01.io.tsblk:ram0';

test('admin Connect capsule as the Linux TCP host sends it, byte for byte', () => {
  // nvmf_connect_cmd_prep + nvme_tcp_map_data: opcode 7Fh, flags 40h (SGL), fctype 01h,
  // in-capsule SGL (type 01h, addr ICDOFF 0, length 1024), qid 0, sqsize 31, KATO 5000 ms.
  const expected = Buffer.alloc(64);
  expected[0] = 0x7f;
  expected[1] = 0x40;
  expected.writeUInt16LE(0x0001, 2);
  expected[4] = 0x01;
  expected.writeUInt32LE(1024, 24 + 8);
  expected[24 + 15] = 0x01;
  expected.writeUInt16LE(0, 40);
  expected.writeUInt16LE(0, 42);
  expected.writeUInt16LE(31, 44);
  expected.writeUInt32LE(5000, 48);
  const sqe = encodeConnect({ cid: 1, qid: 0, sqsize: 31, kato: 5000, dptr: inCapsuleSgl(1024) });
  assert.deepEqual(sqe, expected);
  const c = decodeConnect(sqe);
  assert.deepEqual(c, {
    cid: 1,
    recfmt: 0,
    qid: 0,
    sqsize: 31,
    queueSize: 32,
    cattr: 0,
    disableSqFlow: false,
    kato: 5000,
  });
  const generic = decodeSqe(sqe);
  assert.equal(generic.opcode, 0x7f);
  assert.equal(sqeFctype(generic), 0x01);
  assert.equal(sqeSgl(generic).length, 1024);

  // nvmf_connect_data_prep: hostid, cntlid FFFFh, NQNs NUL padded.
  const data = encodeConnectData({ hostid: HOSTID, subnqn: SUBNQN, hostnqn: HOSTNQN });
  assert.equal(data.length, 1024);
  assert.deepEqual(data.subarray(0, 16), HOSTID);
  assert.equal(data.readUInt16LE(16), 0xffff);
  assert.equal(data.toString('latin1', 256, 256 + SUBNQN.length), SUBNQN);
  assert.equal(data[256 + SUBNQN.length], 0);
  assert.equal(data.toString('latin1', 512, 512 + HOSTNQN.length), HOSTNQN);
  assert.ok(data.subarray(768).every((b) => b === 0));
  assert.deepEqual(decodeConnectData(data), {
    hostid: HOSTID,
    cntlid: CNTLID_DYNAMIC,
    subnqn: SUBNQN,
    hostnqn: HOSTNQN,
  });
});

test('I/O queue Connect with SQ flow control disabled', () => {
  const c = decodeConnect(encodeConnect({ cid: 9, qid: 3, sqsize: 127, cattr: 1 << 2 }));
  assert.equal(c.qid, 3);
  assert.equal(c.queueSize, 128);
  assert.equal(c.disableSqFlow, true);
  assert.equal(c.kato, 0);
});

test('Connect data shorter than 1024 bytes is refused', () => {
  assert.throws(
    () => decodeConnectData(Buffer.alloc(512)),
    /nvmf_connect_data: needs 1024 bytes at offset 0, the buffer has 512/,
  );
  assert.throws(
    () => encodeConnectData({ hostid: Buffer.alloc(8), subnqn: 'a', hostnqn: 'b' }),
    /hostid: needs exactly 16 bytes/,
  );
});

test('Connect response DW0: CNTLID, or IPO/IATTR on invalid parameters (nvmet values)', () => {
  assert.equal(encodeConnectResult(1), 1);
  assert.deepEqual(decodeConnectResult(0x00060005), { cntlid: 5, authreq: 0x00060000 });
  // nvmet IPO_IATTR_CONNECT_DATA(subsysnqn) = (1 << 16) | 256, IPO_IATTR_CONNECT_SQE(qid) = 42
  assert.equal(connectInvalidData('subnqn'), 0x10100);
  assert.equal(connectInvalidData('hostnqn'), 0x10200);
  assert.equal(connectInvalidData('cntlid'), 0x10010);
  assert.equal(connectInvalidSqe('qid'), 42);
  assert.equal(connectInvalidSqe('sqsize'), 44);
  assert.deepEqual(decodeConnectInvalid(encodeConnectInvalid('data', 512)), { where: 'data', ipo: 512 });
  assert.deepEqual(decodeConnectInvalid(42), { where: 'sqe', ipo: 42 });
  const cqe = decodeCqe(
    encodeCqe({ cid: 1, status: Status.CONNECT_INVALID_PARAM, dw0: connectInvalidData('hostnqn') }),
  );
  assert.equal(cqe.status.sc, 0x82);
  assert.equal(cqe.dw0, 0x10200);
});

test('Property Get / Set: ATTRIB size bit, OFST, value', () => {
  const get = encodePropertyGet({ cid: 2, ofst: Property.CAP, size: 8 });
  assert.equal(get[0], 0x7f);
  assert.equal(get[4], 0x04);
  assert.equal(get[40], 1);
  assert.equal(get.readUInt32LE(44), 0);
  assert.deepEqual(decodePropertyGet(get), { cid: 2, size: 8, attrib: 1, ofst: 0 });
  const set = encodePropertySet({ cid: 3, ofst: Property.CC, size: 4, value: 0x00460001 });
  assert.equal(set[4], 0x00);
  assert.equal(set[40], 0);
  assert.equal(set.readUInt32LE(44), 0x14);
  assert.equal(set.readBigUInt64LE(48), 0x00460001n);
  assert.deepEqual(decodePropertySet(set), { cid: 3, size: 4, attrib: 0, ofst: 0x14, value: 0x00460001n });
  // a 4-byte set ignores the upper half of VALUE
  set.writeUInt32LE(0xdeadbeef, 52);
  assert.equal(decodePropertySet(set).value, 0x00460001n);
  set[40] = 2;
  assert.equal(decodePropertySet(set).size, undefined);
  // Property Get of CAP returns 8 bytes across DW0-DW1
  const cap = encodeCap({ mqes: 127, cqr: true, to: 15, css: 1, mpsmin: 0, mpsmax: 0 });
  assert.equal(result64(decodeCqe(encodeCqe({ cid: 2, result64: cap }))), cap);
});

test('register offsets and CAP bit positions (NVME_REG_*, NVME_CAP_*)', () => {
  assert.deepEqual(
    [Property.CAP, Property.VS, Property.CC, Property.CSTS, Property.NSSR],
    [0x00, 0x08, 0x14, 0x1c, 0x20],
  );
  const cap = encodeCap({
    mqes: 0x7f,
    cqr: true,
    ams: 0,
    to: 0x0f,
    dstrd: 0,
    nssrs: false,
    css: 0x41,
    mpsmin: 0,
    mpsmax: 4,
    crms: 0,
  });
  assert.equal(cap & 0xffffn, 0x7fn);
  assert.equal((cap >> 16n) & 1n, 1n);
  assert.equal((cap >> 24n) & 0xffn, 0x0fn);
  assert.equal((cap >> 37n) & 0xffn, 0x41n);
  assert.equal((cap >> 52n) & 0xfn, 4n);
  const d = decodeCap(cap);
  assert.equal(d.mqes, 0x7f);
  assert.equal(d.cqr, true);
  assert.equal(d.to, 15);
  assert.equal(d.css, 0x41);
  assert.equal(d.mpsmax, 4);
  assert.deepEqual(
    decodeCap(
      encodeCap({
        mqes: 1,
        crms: 3,
        cmbs: true,
        pmrs: true,
        bps: true,
        cps: 2,
        nsss: true,
        nssrs: true,
        dstrd: 15,
        ams: 3,
      }),
    ),
    {
      mqes: 1,
      cqr: false,
      ams: 3,
      to: 0,
      dstrd: 15,
      nssrs: true,
      css: 1,
      bps: true,
      cps: 2,
      mpsmin: 0,
      mpsmax: 0,
      pmrs: true,
      cmbs: true,
      nsss: true,
      crms: 3,
    },
  );
  assert.throws(() => encodeCap({ mqes: 0x10000 }), /MQES/);
});

test('VS, CC and CSTS as the Linux host writes and reads them', () => {
  assert.equal(encodeVs({ major: 1, minor: 3 }), 0x00010300);
  assert.deepEqual(decodeVs(0x00020100), { major: 2, minor: 1, tertiary: 0 });
  // nvme_enable_ctrl: CC = IOSQES 6 | IOCQES 4 | EN (CSS NVM, MPS 0, AMS RR) = 0x00460001
  const cc = encodeCc({ en: true, iosqes: 6, iocqes: 4 });
  assert.equal(cc, 0x00460001);
  assert.deepEqual(decodeCc(cc), {
    en: true,
    css: 0,
    mps: 0,
    ams: 0,
    shn: 0,
    iosqes: 6,
    iocqes: 4,
    crime: false,
  });
  assert.equal(encodeCc({ en: true, iosqes: 6, iocqes: 4, shn: CcShn.NORMAL }), 0x00464001);
  assert.equal(decodeCc(0x00468001).shn, CcShn.ABRUPT);
  assert.equal(decodeCc(6 << 4).css, 6);
  assert.equal(encodeCsts({ rdy: true }), 1);
  assert.equal(encodeCsts({ rdy: true, shst: CstsShst.COMPLETE }), 0x9);
  assert.deepEqual(decodeCsts(0x0b), { rdy: true, cfs: true, shst: 2, nssro: false, pp: false, st: false });
});

test('Disconnect carries RECFMT in CDW10', () => {
  const sqe = FabricsCommand.encode({ opcode: 0x7f, cid: 4, fctype: 0x08 });
  assert.deepEqual(decodeDisconnect(sqe), { cid: 4, recfmt: 0 });
  sqe.writeUInt16LE(1, 40);
  assert.equal(decodeDisconnect(sqe).recfmt, 1);
});
