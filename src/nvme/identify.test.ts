import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildIdCtrl,
  buildIdNs,
  Cns,
  decodeIdCtrl,
  decodeIdentify,
  decodeIdNs,
  decodeLbaFormats,
  decodeNsIdDescs,
  decodeNsList,
  encodeFlbas,
  encodeIdentify,
  encodeIoCommandSets,
  encodeNsIdDescs,
  encodeNsList,
  flbasIndex,
  IdCtrl,
  IdCtrlNvm,
  idNsBlockSize,
  idNsCopyLimits,
  IdNs,
  IdNsCsIndep,
  idNsSize,
  ieeeOui,
  inlineBytesFromIoccsz,
  ioccszFor,
  LbaFormat,
  Nidt,
  nvmeVersion,
  NvmIdNs,
  Oaes,
  Ocfs,
  Oncs,
  PowerStateDescriptor,
} from './identify.js';
import { assertLayout } from './testing/layout.js';

// Offsets: gcc offsetof() on linux-nvme/libnvme src/nvme/types.h.
test('Identify Controller layout matches struct nvme_id_ctrl', () => {
  // prettier-ignore
  assertLayout(IdCtrl, 4096, {
    vid: 0, ssvid: 2, sn: 4, mn: 24, fr: 64, rab: 72, ieee: 73, cmic: 76, mdts: 77, cntlid: 78, ver: 80, rtd3r: 84,
    rtd3e: 88, oaes: 92, ctratt: 96, rrls: 100, bpcap: 102, rsvd103: 103, nssl: 104, rsvd108: 108, plsi: 110,
    cntrltype: 111, fguid: 112, crdt1: 128, crdt2: 130, crdt3: 132, crcap: 134, rsvd135: 135, nvmsr: 253, vwci: 254,
    mec: 255, oacs: 256, acl: 258, aerl: 259, frmw: 260, lpa: 261, elpe: 262, npss: 263, avscc: 264, apsta: 265,
    wctemp: 266, cctemp: 268, mtfa: 270, hmpre: 272, hmmin: 276, tnvmcap: 280, unvmcap: 296, rpmbs: 312, edstt: 316,
    dsto: 318, fwug: 319, kas: 320, hctma: 322, mntmt: 324, mxtmt: 326, sanicap: 328, hmminds: 332, hmmaxd: 336,
    nsetidmax: 338, endgidmax: 340, anatt: 342, anacap: 343, anagrpmax: 344, nanagrpid: 348, pels: 352, domainid: 356,
    kpioc: 358, rsvd359: 359, mptfawr: 360, rsvd362: 362, megcap: 368, tmpthha: 384, rsvd385: 385, cqt: 386,
    rsvd388: 388, sqes: 512, cqes: 513, maxcmd: 514, nn: 516, oncs: 520, fuses: 522, fna: 524, vwc: 525, awun: 526,
    awupf: 528, icsvscc: 530, nwpc: 531, acwu: 532, ocfs: 534, sgls: 536, mnan: 540, maxdna: 544, maxcna: 560,
    oaqd: 564, rhiri: 568, hirt: 569, cmmrtd: 570, nmmrtd: 572, minmrtg: 574, maxmrtg: 575, trattr: 576, rsvd577: 577,
    mcudmq: 578, mnsudmq: 580, mcmr: 582, nmcmr: 584, mcdqpc: 586, rsvd588: 588, subnqn: 768, rsvd1024: 1024,
    ioccsz: 1792, iorcsz: 1796, icdoff: 1800, fcatt: 1802, msdbd: 1803, ofcs: 1804, dctype: 1806, rsvd1807: 1807,
    psd: 2048, vs: 3072,
  });
  assert.equal(IdCtrl.sizeOf('subnqn'), 256);
  assert.equal(IdCtrl.sizeOf('psd'), 32 * 32);
});

test('power state descriptor, Identify Namespace and LBA format layouts', () => {
  // prettier-ignore
  assertLayout(PowerStateDescriptor, 32, {
    mp: 0, rsvd2: 2, flags: 3, enlat: 4, exlat: 8, rrt: 12, rrl: 13, rwt: 14, rwl: 15, idlp: 16, ips: 18, rsvd19: 19,
    actp: 20, apws: 22, epfrt: 23, fqvt: 24, epfvt: 25, epfr_fqv_ts: 26, epfvts: 27, rsvd28: 28,
  });
  // prettier-ignore
  assertLayout(IdNs, 4096, {
    nsze: 0, ncap: 8, nuse: 16, nsfeat: 24, nlbaf: 25, flbas: 26, mc: 27, dpc: 28, dps: 29, nmic: 30, rescap: 31,
    fpi: 32, dlfeat: 33, nawun: 34, nawupf: 36, nacwu: 38, nabsn: 40, nabo: 42, nabspf: 44, noiob: 46, nvmcap: 48,
    npwg: 64, npwa: 66, npdg: 68, npda: 70, nows: 72, mssrl: 74, mcl: 76, msrc: 80, kpios: 81, nulbaf: 82, rsvd83: 83,
    kpiodaag: 84, rsvd88: 88, anagrpid: 92, rsvd96: 96, nsattr: 99, nvmsetid: 100, endgid: 102, nguid: 104, eui64: 120,
    lbaf: 128, vs: 384,
  });
  assert.equal(IdNs.sizeOf('lbaf'), 64 * 4);
  // prettier-ignore
  assertLayout(LbaFormat, 4, { ms: 0, ds: 2, rp: 3 });
  // prettier-ignore
  assertLayout(IdNsCsIndep, 4096, {
    nsfeat: 0, nmic: 1, rescap: 2, fpi: 3, anagrpid: 4, nsattr: 8, rsvd9: 9, nvmsetid: 10, endgid: 12, nstat: 14,
    kpios: 15, maxkt: 16, rsvd18: 18, rgrpid: 20, rsvd24: 24,
  });
  // prettier-ignore
  assertLayout(IdCtrlNvm, 4096, {
    vsl: 0, wzsl: 1, wusl: 2, dmrl: 3, dmrsl: 4, dmsl: 8, kpiocap: 16, wzdsl: 17, aocs: 18, ver: 20, lbamqf: 24,
    rsvd25: 25,
  });
  // prettier-ignore
  assertLayout(NvmIdNs, 4096, {
    lbstm: 0, pic: 8, pifa: 9, rsvd10: 10, elbaf: 12, npdgl: 268, nprg: 272, npra: 276, nors: 280, npdal: 284,
    lbapss: 288, tlbaag: 292, rsvd296: 296,
  });
});

test('bit values match libnvme enums', () => {
  assert.equal(Oncs.COPY, 0x100);
  assert.equal(Oncs.DSM, 0x4);
  assert.equal(Oncs.WRITE_ZEROES, 0x8);
  assert.equal(Ocfs.FORMAT_3, 0x8);
  assert.equal(Oaes.NS_ATTR, 0x100);
  assert.equal(Cns.NS_ACTIVE_LIST, 0x02);
  assert.equal(Cns.NS_DESC_LIST, 0x03);
  assert.equal(Cns.CSI_CTRL, 0x06);
  assert.equal(Cns.COMMAND_SET_STRUCTURE, 0x1c);
  assert.equal(nvmeVersion(1, 4), 0x00010400);
  assert.equal(nvmeVersion(2, 0, 1), 0x00020001);
});

test('Identify command dwords', () => {
  const c = decodeIdentify({ cdw10: 0x00050001, cdw11: 0x02001234, cdw14: 0x7f });
  assert.deepEqual(c, { cns: 1, cntid: 5, cnssid: 0x1234, csi: 2, uuidIndex: 0x7f });
  assert.deepEqual(encodeIdentify(c), { cdw10: 0x00050001, cdw11: 0x02001234, cdw14: 0x7f });
});

test('buildIdCtrl places every field tsblk advertises at its offset', () => {
  const buf = buildIdCtrl({
    vid: 0x1b36,
    ssvid: 0x1af4,
    sn: 'TSBLK0001',
    mn: 'tsblk NVMe/TCP target',
    fr: '0.1.0',
    ieee: 0x525400,
    mdts: 5,
    cntlid: 7,
    subnqn: 'nqn.2026-01.io.tsblk:ram0',
    oncs: Oncs.DSM | Oncs.WRITE_ZEROES | Oncs.COPY,
    ocfs: Ocfs.FORMAT_0 | Ocfs.FORMAT_1 | Ocfs.FORMAT_2 | Ocfs.FORMAT_3,
    ioccsz: ioccszFor(8192),
    nn: 32,
  });
  assert.equal(buf.length, 4096);
  assert.equal(buf.readUInt16LE(0), 0x1b36);
  assert.equal(buf.readUInt16LE(2), 0x1af4);
  assert.equal(buf.toString('latin1', 4, 24), 'TSBLK0001           ');
  assert.equal(buf.toString('latin1', 24, 64), 'tsblk NVMe/TCP target'.padEnd(40, ' '));
  assert.equal(buf.toString('latin1', 64, 72), '0.1.0   ');
  assert.deepEqual([...buf.subarray(73, 76)], [0x00, 0x54, 0x52]); // little-endian 24-bit OUI
  assert.equal(buf[72], 6); // RAB
  assert.equal(buf[76], 0x3); // CMIC multi-port + multi-controller
  assert.equal(buf[77], 5); // MDTS
  assert.equal(buf.readUInt16LE(78), 7); // CNTLID
  assert.equal(buf.readUInt32LE(80), 0x00020000); // VER 2.0
  assert.equal(buf.readUInt32LE(92), 0x100); // OAES namespace attribute notices
  assert.equal(buf.readUInt32LE(96), 0x1); // CTRATT 128-bit host id
  assert.equal(buf[111], 1); // CNTRLTYPE I/O
  assert.equal(buf[258], 3); // ACL
  assert.equal(buf[259], 3); // AERL
  assert.equal(buf[260], 3); // FRMW
  assert.equal(buf[262], 63); // ELPE
  assert.equal(buf[263], 0); // NPSS
  assert.equal(buf.readUInt16LE(320), 10); // KAS
  assert.equal(buf[512], 0x66); // SQES
  assert.equal(buf[513], 0x44); // CQES
  assert.equal(buf.readUInt16LE(514), 128); // MAXCMD
  assert.equal(buf.readUInt32LE(516), 32); // NN
  assert.equal(buf.readUInt16LE(520), 0x10c); // ONCS: DSM | WRITE_ZEROES | COPY
  assert.equal(buf[525], 0x7); // VWC present, flush broadcast supported
  assert.equal(buf[531], 1); // NWPC
  assert.equal(buf.readUInt16LE(534), 0xf); // OCFS
  assert.equal(buf.readUInt32LE(536), 0x100001); // SGLS
  assert.equal(buf.readUInt32LE(540), 32); // MNAN defaults to NN
  assert.equal(buf.toString('latin1', 768, 768 + 25), 'nqn.2026-01.io.tsblk:ram0');
  assert.equal(buf[768 + 25], 0, 'SUBNQN is NUL padded');
  assert.equal(buf.readUInt32LE(1792), (64 + 8192) / 16); // IOCCSZ
  assert.equal(buf.readUInt32LE(1796), 1); // IORCSZ
  assert.equal(buf.readUInt16LE(1800), 0); // ICDOFF
  assert.equal(buf[1803], 1); // MSDBD
  assert.equal(buf.readUInt16LE(2048), 0x9c4); // PSD0 max power
  const id = decodeIdCtrl(buf);
  assert.equal(id.sn, 'TSBLK0001');
  assert.equal(id.subnqn, 'nqn.2026-01.io.tsblk:ram0');
  assert.equal(ieeeOui(id), 0x525400);
  assert.equal(inlineBytesFromIoccsz(id.ioccsz), 8192);
});

test('buildIdCtrl refuses values that do not fit', () => {
  assert.throws(() => buildIdCtrl({ sn: 'x'.repeat(21), subnqn: 'n' }), /nvme_id_ctrl\.sn/);
  assert.throws(() => buildIdCtrl({ sn: 's', subnqn: 'n', ieee: 1 << 24 }), /IEEE OUI/);
  assert.throws(() => buildIdCtrl({ sn: 's', subnqn: 'n', psd: [] }), /1\.\.32 power states/);
  assert.throws(() => ioccszFor(100), /multiple of 16/);
});

test('buildIdNs: sizes, LBA format, copy limits, identifiers', () => {
  const nguid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const eui64 = Buffer.from('0011223344556677', 'hex');
  const buf = buildIdNs({
    nsze: 262144,
    blockSize: 4096,
    mssrl: 128,
    mcl: 1024,
    msrc: 127,
    writeProtected: true,
    nguid,
    eui64,
    npwg: 7,
    anagrpid: 1,
  });
  assert.equal(buf.length, 4096);
  assert.equal(buf.readBigUInt64LE(0), 262144n);
  assert.equal(buf.readBigUInt64LE(8), 262144n);
  assert.equal(buf.readBigUInt64LE(16), 262144n);
  assert.equal(buf[24], 0x10); // NSFEAT OPTPERF because NPWG was given
  assert.equal(buf[25], 0); // NLBAF
  assert.equal(buf[26], 0); // FLBAS
  assert.equal(buf[30], 1); // NMIC shared
  assert.equal(buf.readUInt16LE(64), 7); // NPWG
  assert.equal(buf.readUInt16LE(74), 128); // MSSRL
  assert.equal(buf.readUInt32LE(76), 1024); // MCL
  assert.equal(buf[80], 127); // MSRC
  assert.equal(buf.readUInt32LE(92), 1); // ANAGRPID
  assert.equal(buf[99], 1); // NSATTR write protected
  assert.deepEqual(buf.subarray(104, 120), nguid);
  assert.deepEqual(buf.subarray(120, 128), eui64);
  assert.deepEqual([...buf.subarray(128, 132)], [0, 0, 12, 0]); // LBAF0: MS 0, LBADS 12, RP 0
  const id = decodeIdNs(buf);
  assert.equal(idNsSize(id), 262144);
  assert.equal(idNsBlockSize(id), 4096);
  assert.deepEqual(decodeLbaFormats(id), [{ ms: 0, lbads: 12, rp: 0 }]);
  assert.deepEqual(idNsCopyLimits(id), { maxRangeBlocks: 128, maxCopyBlocks: 1024, maxRanges: 128 });
});

test('buildIdNs with several formats and FLBAS above 16', () => {
  const lbaf = Array.from({ length: 20 }, (_, i) => ({
    ms: i % 2 ? 8 : 0,
    lbads: i < 10 ? 9 : 12,
    rp: i % 4,
  }));
  const flbas = encodeFlbas(17);
  assert.equal(flbas, 0x21);
  assert.equal(flbasIndex(flbas), 17);
  const id = decodeIdNs(buildIdNs({ nsze: 10, lbaf, flbas }));
  assert.equal(id.nlbaf, 19);
  assert.deepEqual(decodeLbaFormats(id), lbaf);
  assert.equal(idNsBlockSize(id), 4096);
  assert.equal(id.nsfeat, 0);
  assert.throws(() => buildIdNs({ nsze: 1, flbas: 1 }), /flbas selects format 1 but only 1/);
  assert.throws(() => buildIdNs({ nsze: 1, blockSize: 1000 }), /block size 1000/);
  assert.throws(() => buildIdNs({ nsze: 1, nguid: Buffer.alloc(8) }), /nguid: needs exactly 16 bytes/);
});

test('active namespace list: greater than NSID, ascending, at most 1024', () => {
  const buf = encodeNsList([5, 1, 3, 9], 1);
  assert.equal(buf.length, 4096);
  assert.deepEqual(decodeNsList(buf), [3, 5, 9]);
  assert.equal(buf.readUInt32LE(12), 0);
  const many = encodeNsList(Array.from({ length: 2000 }, (_, i) => i + 1));
  assert.equal(decodeNsList(many).length, 1024);
  assert.equal(many.readUInt32LE(4092), 1024);
  assert.throws(() => encodeNsList([0]), /NSID 0 is not valid/);
  assert.throws(() => encodeNsList([0xffffffff]), /not valid/);
});

test('namespace identification descriptors as nvmet sends them', () => {
  const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
  const nguid = Buffer.alloc(16, 0xab);
  const buf = encodeNsIdDescs([
    { nidt: Nidt.UUID, nid: uuid },
    { nidt: Nidt.NGUID, nid: nguid },
    { nidt: Nidt.CSI, nid: Buffer.from([0]) },
  ]);
  assert.equal(buf.length, 4096);
  assert.deepEqual([...buf.subarray(0, 4)], [3, 16, 0, 0]);
  assert.deepEqual(buf.subarray(4, 20), uuid);
  assert.deepEqual([...buf.subarray(20, 24)], [2, 16, 0, 0]);
  assert.deepEqual([...buf.subarray(40, 45)], [4, 1, 0, 0, 0]);
  assert.equal(buf[45], 0);
  const d = decodeNsIdDescs(buf);
  assert.deepEqual(
    d.map((x) => x.nidt),
    [3, 2, 4],
  );
  assert.deepEqual(d[1]!.nid, nguid);
  assert.throws(() => encodeNsIdDescs([{ nidt: Nidt.EUI64, nid: Buffer.alloc(16) }]), /NIDT 1 needs 8 bytes/);
  const bad = Buffer.alloc(8);
  bad[0] = 2;
  bad[1] = 16;
  assert.throws(() => decodeNsIdDescs(bad), /runs past 8 bytes/);
});

test('I/O command set vectors', () => {
  const buf = encodeIoCommandSets([0b101n]);
  assert.equal(buf.length, 4096);
  assert.equal(buf.readBigUInt64LE(0), 5n);
  assert.throws(() => encodeIoCommandSets(new Array(513).fill(0)), /at most 512/);
});
