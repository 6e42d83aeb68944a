import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode, ZoneError } from '../block/errors.js';
import {
  CommandSpecificStatus,
  decodeStatusField,
  encodeStatusField,
  FabricsStatus,
  formatStatus,
  GenericStatus,
  MediaStatus,
  nvmeErrorFromBlockError,
  NvmeStatusError,
  nvmeStatus,
  NvmCommandStatus,
  PathStatus,
  Status,
  statusFromBlockError,
  statusFromValue,
  statusName,
  statusValue,
  withDnr,
  ZnsStatus,
} from './status.js';

test('codes match libnvme types.h / linux nvme.h', () => {
  assert.equal(GenericStatus.SUCCESS, 0x00);
  assert.equal(GenericStatus.INVALID_OPCODE, 0x01);
  assert.equal(GenericStatus.INVALID_FIELD, 0x02);
  assert.equal(GenericStatus.CMDID_CONFLICT, 0x03);
  assert.equal(GenericStatus.DATA_XFER_ERROR, 0x04);
  assert.equal(GenericStatus.INTERNAL, 0x06);
  assert.equal(GenericStatus.ABORT_REQ, 0x07);
  assert.equal(GenericStatus.INVALID_NS, 0x0b);
  assert.equal(GenericStatus.SGL_INVALID_LAST, 0x0d);
  assert.equal(GenericStatus.SGL_INVALID_DATA, 0x0f);
  assert.equal(GenericStatus.SGL_INVALID_TYPE, 0x11);
  assert.equal(GenericStatus.KA_TIMEOUT_EXPIRED, 0x19);
  assert.equal(GenericStatus.NS_WRITE_PROTECTED, 0x20);
  assert.equal(GenericStatus.CMD_INTERRUPTED, 0x21);
  assert.equal(GenericStatus.LBA_RANGE, 0x80);
  assert.equal(GenericStatus.CAP_EXCEEDED, 0x81);
  assert.equal(GenericStatus.NS_NOT_READY, 0x82);
  assert.equal(CommandSpecificStatus.INVALID_LOG_PAGE, 0x09);
  assert.equal(CommandSpecificStatus.FEATURE_NOT_CHANGEABLE, 0x0e);
  assert.equal(CommandSpecificStatus.ASYNC_LIMIT, 0x05);
  assert.equal(NvmCommandStatus.CMD_SIZE_LIMIT_EXCEEDED, 0x83);
  assert.equal(NvmCommandStatus.INCOMPATIBLE_NS, 0x85);
  assert.equal(NvmCommandStatus.FAST_COPY_NOT_POSSIBLE, 0x86);
  assert.equal(NvmCommandStatus.OVERLAPPING_IO_RANGE, 0x87);
  assert.equal(NvmCommandStatus.INSUFFICIENT_RESOURCES, 0x89);
  assert.deepEqual(Object.values(FabricsStatus).slice(0, 5), [0x80, 0x81, 0x82, 0x83, 0x84]);
  assert.equal(ZnsStatus.ZONE_BOUNDARY_ERROR, 0xb8);
  assert.equal(ZnsStatus.ZONE_INVALID_TRANSITION, 0xbf);
  assert.equal(MediaStatus.WRITE_FAULT, 0x80);
  assert.equal(MediaStatus.READ_ERROR, 0x81);
  assert.equal(PathStatus.HOST_ABORTED_CMD, 0x71);
});

test('Status has one entry per code of every table (no name collides)', () => {
  const total = [
    GenericStatus,
    CommandSpecificStatus,
    NvmCommandStatus,
    FabricsStatus,
    ZnsStatus,
    MediaStatus,
    PathStatus,
  ]
    .map((t) => Object.keys(t).length)
    .reduce((a, b) => a + b, 0);
  assert.equal(Object.keys(Status).length, total);
  assert.deepEqual(Status.CMD_SIZE_LIMIT_EXCEEDED, { sct: 1, sc: 0x83, dnr: false, more: false, crd: 0 });
  assert.deepEqual(Status.WRITE_FAULT, { sct: 2, sc: 0x80, dnr: false, more: false, crd: 0 });
  assert.deepEqual(Status.CONNECT_INVALID_HOST, { sct: 1, sc: 0x84, dnr: false, more: false, crd: 0 });
});

test('Linux status values (status word >> 1) come out as nvme.h defines them', () => {
  assert.equal(statusValue(Status.CONNECT_INVALID_HOST), 0x184); // NVME_SC_CONNECT_INVALID_HOST
  assert.equal(statusValue(Status.CONNECT_INVALID_PARAM), 0x182);
  assert.equal(statusValue(Status.ZONE_FULL), 0x1b9); // NVME_SC_ZONE_FULL
  assert.equal(statusValue(Status.READ_ERROR), 0x281); // NVME_SC_READ_ERROR
  assert.equal(statusValue(withDnr(Status.INVALID_FIELD)), 0x4002); // INVALID_FIELD | NVME_SC_DNR
  assert.equal(statusValue(nvmeStatus(0, 0, { more: true })), 0x2000); // NVME_SC_MORE
  assert.equal(statusValue(nvmeStatus(0, 0, { crd: 3 })), 0x1800); // NVME_SC_CRD
  assert.deepEqual(statusFromValue(0x4183), withDnr(Status.CMD_SIZE_LIMIT_EXCEEDED));
});

test('CQE status word: P bit 0, SC 8:1, SCT 11:9, CRD 13:12, M 14, DNR 15', () => {
  assert.equal(encodeStatusField(Status.SUCCESS, 1), 0x0001);
  assert.equal(encodeStatusField(Status.INVALID_FIELD, 0), 0x0004);
  assert.equal(
    encodeStatusField(withDnr(Status.CMD_SIZE_LIMIT_EXCEEDED), 1),
    0x8000 | (1 << 9) | (0x83 << 1) | 1,
  );
  assert.equal(encodeStatusField(nvmeStatus(7, 0xff, { crd: 3, more: true, dnr: true }), 1), 0xffff);
  assert.equal(encodeStatusField(nvmeStatus(0, 0, { crd: 2 })), 0x2000);
  const d = decodeStatusField(0xffff);
  assert.equal(d.phase, 1);
  assert.deepEqual(d.status, { sct: 7, sc: 0xff, dnr: true, more: true, crd: 3 });
  for (const s of [
    Status.SUCCESS,
    withDnr(Status.WRITE_FAULT),
    nvmeStatus(3, 0x70, { crd: 1, more: true }),
  ]) {
    for (const p of [0, 1] as const) {
      assert.deepEqual(decodeStatusField(encodeStatusField(s, p)), { status: s, phase: p });
    }
  }
  assert.throws(() => nvmeStatus(8, 0), /SCT 8/);
  assert.throws(() => nvmeStatus(0, 0x100), /SC 256/);
  assert.throws(() => nvmeStatus(0, 0, { crd: 4 }), /CRD 4/);
});

test('names: SCT 1 codes 0x80.. read as NVM or fabrics', () => {
  assert.equal(statusName(Status.CMD_SIZE_LIMIT_EXCEEDED), 'CMD_SIZE_LIMIT_EXCEEDED');
  assert.equal(statusName(Status.CMD_SIZE_LIMIT_EXCEEDED, 'fabrics'), 'CONNECT_RESTART_DISC');
  assert.equal(statusName(Status.CONNECT_INVALID_HOST, 'fabrics'), 'CONNECT_INVALID_HOST');
  assert.equal(statusName(Status.ZONE_FULL, 'fabrics'), 'ZONE_FULL');
  assert.equal(statusName(Status.READ_ERROR), 'READ_ERROR');
  assert.equal(statusName(nvmeStatus(0, 0x7f)), 'UNKNOWN');
  assert.equal(formatStatus(withDnr(Status.INVALID_FIELD)), '0x2 INVALID_FIELD DNR');
  assert.equal(formatStatus(Status.WRITE_FAULT), '0x280 WRITE_FAULT');
});

test('NvmeStatusError carries status, errorLoc and errorLba, message "0x2 INVALID_FIELD: …"', () => {
  const e = new NvmeStatusError(withDnr(Status.INVALID_FIELD), 'CNS 0x42 is not supported', { errorLoc: 40 });
  assert.ok(e instanceof Error);
  assert.equal(e.message, '0x2 INVALID_FIELD: CNS 0x42 is not supported');
  assert.equal(e.sct, 0);
  assert.equal(e.sc, 2);
  assert.equal(e.dnr, true);
  assert.equal(e.errorLoc, 40);
  assert.equal(e.errorLba, undefined);
  assert.equal(e.code, 'ERR_NVME_STATUS');
  assert.ok(NvmeStatusError.is(e));
  assert.ok(!NvmeStatusError.is(new Error('x')));
  const f = new NvmeStatusError(Status.CONNECT_INVALID_HOST, 'host not allowed', { commandSet: 'fabrics' });
  assert.equal(f.message, '0x184 CONNECT_INVALID_HOST: host not allowed');
  assert.equal(
    new NvmeStatusError(Status.CMD_SIZE_LIMIT_EXCEEDED, 'NR 9 > MSRC').message,
    '0x183 CMD_SIZE_LIMIT_EXCEEDED: NR 9 > MSRC',
  );
});

test('statusFromBlockError follows the plan table', () => {
  const be = (code: ErrorCode, zone?: ZoneError) => new BlockError(code, 'x', zone ? { zone } : {});
  const check = (
    err: unknown,
    op: Parameters<typeof statusFromBlockError>[1],
    sct: number,
    sc: number,
    dnr: boolean,
  ) => {
    const s = statusFromBlockError(err, op);
    assert.deepEqual([s.sct, s.sc, s.dnr], [sct, sc, dnr], `${String(err)} during ${op}`);
  };
  check(be(ErrorCode.ERANGE), 'read', 0, 0x80, true);
  check(be(ErrorCode.EPERM), 'write', 0, 0x20, true);
  check(be(ErrorCode.EIO), 'write', 2, 0x80, true);
  check(be(ErrorCode.EIO), 'read', 2, 0x81, true);
  check(be(ErrorCode.EIO), 'copy-read', 2, 0x81, true);
  check(be(ErrorCode.EIO), 'copy', 2, 0x80, true);
  check(be(ErrorCode.EIO), 'flush', 0, 0x06, true);
  check(be(ErrorCode.EIO, ZoneError.ZONE_FULL), 'write', 1, 0xb9, true);
  check(be(ErrorCode.EINVAL, ZoneError.ZONE_BOUNDARY_ERROR), 'write', 1, 0xb8, true);
  check(be(ErrorCode.EIO, ZoneError.ZONE_INVALID_WRITE), 'zone-append', 1, 0xbc, true);
  check(be(ErrorCode.ENOSPC, ZoneError.ZONE_READ_ONLY), 'write', 1, 0xba, true);
  check(be(ErrorCode.EIO, ZoneError.ZONE_OFFLINE), 'read', 1, 0xbb, true);
  check(be(ErrorCode.EOVERFLOW, ZoneError.TOO_MANY_ACTIVE_ZONES), 'write', 1, 0xbd, true);
  check(be(ErrorCode.ETOOMANYREFS, ZoneError.TOO_MANY_OPEN_ZONES), 'write', 1, 0xbe, true);
  check(be(ErrorCode.EIO, ZoneError.INVALID_ZONE_STATE_TRANSITION), 'zone-mgmt', 1, 0xbf, true);
  check(be(ErrorCode.ETOOMANYREFS), 'write', 1, 0xbe, true);
  check(be(ErrorCode.EOVERFLOW), 'write', 1, 0xbd, true);
  check(be(ErrorCode.EOPNOTSUPP), 'dsm', 0, 0x01, true);
  check(be(ErrorCode.EOPNOTSUPP), 'write', 0, 0x02, true);
  check(be(ErrorCode.E2BIG), 'copy', 1, 0x83, true);
  check(be(ErrorCode.E2BIG), 'read', 0, 0x02, true);
  check(be(ErrorCode.EINVAL), 'write', 0, 0x02, true);
  check(be(ErrorCode.ENOSPC), 'write', 0, 0x81, true);
  check(be(ErrorCode.ENODEV), 'read', 0, 0x82, false);
  check(be(ErrorCode.ECANCELED), 'copy', 0, 0x07, false);
  check(be(ErrorCode.ENOMEM), 'copy', 0, 0x21, false);
  check(be(ErrorCode.EBADF), 'read', 0, 0x0b, true);
  check(new Error('bug'), 'read', 0, 0x06, true);
  check('weird', 'read', 0, 0x06, true);
});

test('nvmeErrorFromBlockError adds errorLoc (nvmet offsets) and errorLba', () => {
  const range = nvmeErrorFromBlockError(
    new BlockError(ErrorCode.ERANGE, 'past end', { offset: 8192 }),
    'read',
    {
      blockSize: 4096,
    },
  );
  assert.equal(range.errorLoc, 40);
  assert.equal(range.errorLba, 2);
  assert.match(range.message, /^0x80 LBA_RANGE: ERANGE: past end$/);
  assert.equal(nvmeErrorFromBlockError(new BlockError(ErrorCode.E2BIG, 'x'), 'copy').errorLoc, 48);
  assert.equal(nvmeErrorFromBlockError(new BlockError(ErrorCode.EOPNOTSUPP, 'x'), 'dsm').errorLoc, 0);
  assert.equal(nvmeErrorFromBlockError(new BlockError(ErrorCode.EPERM, 'x'), 'write').errorLoc, 4);
  const io = nvmeErrorFromBlockError(new BlockError(ErrorCode.EIO, 'x'), 'write', { detail: 'media' });
  assert.equal(io.errorLoc, undefined);
  assert.equal(io.errorLba, undefined);
  assert.equal(io.message, '0x280 WRITE_FAULT: media');
});
