// blockErrorFromStatus: the host's NVMe status → BlockError mapping (the inverse of
// statusFromBlockError, tested in status.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode, ZoneError } from '../block/errors.js';
import {
  blockErrorFromStatus,
  nvmeStatus,
  Status,
  statusFromBlockError,
  StatusCodeType,
  withDnr,
  type NvmeStatus,
} from './status.js';

test('each status row maps to its errno code', () => {
  const rows: Array<[NvmeStatus, ErrorCode]> = [
    [Status.LBA_RANGE, ErrorCode.ERANGE],
    [Status.INVALID_FIELD, ErrorCode.EINVAL],
    [Status.INVALID_FORMAT, ErrorCode.EINVAL],
    [Status.INCOMPATIBLE_NS, ErrorCode.EINVAL],
    [Status.INVALID_OPCODE, ErrorCode.EOPNOTSUPP],
    [Status.NS_WRITE_PROTECTED, ErrorCode.EPERM],
    [Status.READ_ONLY, ErrorCode.EPERM],
    [Status.CAP_EXCEEDED, ErrorCode.ENOSPC],
    [Status.CMD_SIZE_LIMIT_EXCEEDED, ErrorCode.E2BIG],
    [Status.ABORT_REQ, ErrorCode.ECANCELED],
    [Status.ABORT_QUEUE, ErrorCode.ECANCELED],
    [Status.ABORTED_PREEMPT_ABORT, ErrorCode.ECANCELED],
    [Status.HOST_ABORTED_CMD, ErrorCode.ECANCELED],
    [Status.NS_NOT_READY, ErrorCode.ENODEV],
    [Status.INVALID_NS, ErrorCode.ENODEV],
    [Status.READ_ERROR, ErrorCode.EIO],
    [Status.WRITE_FAULT, ErrorCode.EIO],
    [Status.INTERNAL, ErrorCode.EIO],
    [Status.DATA_XFER_ERROR, ErrorCode.EIO],
    [Status.ANA_INACCESSIBLE, ErrorCode.EIO],
    [Status.INSUFFICIENT_RESOURCES, ErrorCode.EIO],
    [nvmeStatus(StatusCodeType.VENDOR_SPECIFIC, 0x42), ErrorCode.EIO],
  ];
  for (const [status, code] of rows) {
    const e = blockErrorFromStatus(withDnr(status), 'op');
    assert.equal(e.code, code, `sct ${status.sct} sc 0x${status.sc.toString(16)}`);
    assert.equal(e.zone, undefined);
  }
});

test('zone statuses carry the ZoneError kind; open/active resources keep their own codes', () => {
  const zones: Array<[NvmeStatus, ZoneError, ErrorCode]> = [
    [Status.ZONE_BOUNDARY_ERROR, ZoneError.ZONE_BOUNDARY_ERROR, ErrorCode.EIO],
    [Status.ZONE_FULL, ZoneError.ZONE_FULL, ErrorCode.EIO],
    [Status.ZONE_READ_ONLY, ZoneError.ZONE_READ_ONLY, ErrorCode.EIO],
    [Status.ZONE_OFFLINE, ZoneError.ZONE_OFFLINE, ErrorCode.EIO],
    [Status.ZONE_INVALID_WRITE, ZoneError.ZONE_INVALID_WRITE, ErrorCode.EIO],
    [Status.ZONE_INVALID_TRANSITION, ZoneError.INVALID_ZONE_STATE_TRANSITION, ErrorCode.EIO],
    [Status.ZONE_TOO_MANY_OPEN, ZoneError.TOO_MANY_OPEN_ZONES, ErrorCode.ETOOMANYREFS],
    [Status.ZONE_TOO_MANY_ACTIVE, ZoneError.TOO_MANY_ACTIVE_ZONES, ErrorCode.EOVERFLOW],
  ];
  for (const [status, zone, code] of zones) {
    const e = blockErrorFromStatus(withDnr(status), 'zone-append on ns');
    assert.deepEqual([e.code, e.zone], [code, zone]);
  }
  assert.equal(blockErrorFromStatus(Status.ZONE_INVALID_OP_REQUEST, 'x').zone, undefined);
});

test('the message names the operation and the status; offset and cause are kept', () => {
  const cause = new Error('wire');
  const e = blockErrorFromStatus(withDnr(Status.LBA_RANGE), 'read on ctrl/n1', { cause, offset: 4096 });
  assert.ok(BlockError.is(e), 'a BlockError');
  assert.equal(e.message, 'ERANGE: read on ctrl/n1: NVMe status 0x80 LBA_RANGE DNR');
  assert.equal(e.offset, 4096);
  assert.equal(e.cause, cause);
  assert.equal(
    blockErrorFromStatus(Status.CMD_SIZE_LIMIT_EXCEEDED, 'copy on n1').message,
    'E2BIG: copy on n1: NVMe status 0x183 CMD_SIZE_LIMIT_EXCEEDED',
  );
});

test('a BlockError survives the round trip target → wire → host', () => {
  const same = [
    ErrorCode.ERANGE,
    ErrorCode.ENOSPC,
    ErrorCode.EPERM,
    ErrorCode.EINVAL,
    ErrorCode.ENODEV,
    ErrorCode.ECANCELED,
    ErrorCode.EIO,
    ErrorCode.ETOOMANYREFS,
    ErrorCode.EOVERFLOW,
  ];
  for (const code of same) {
    const back = blockErrorFromStatus(statusFromBlockError(new BlockError(code, 'x'), 'write'), 'write');
    assert.equal(back.code, code, code);
  }
  const e2big = new BlockError(ErrorCode.E2BIG, 'x');
  assert.equal(blockErrorFromStatus(statusFromBlockError(e2big, 'copy'), 'copy').code, ErrorCode.E2BIG);
  const unsupported = new BlockError(ErrorCode.EOPNOTSUPP, 'x');
  assert.equal(
    blockErrorFromStatus(statusFromBlockError(unsupported, 'dsm'), 'dsm').code,
    ErrorCode.EOPNOTSUPP,
  );
  const zoned = new BlockError(ErrorCode.EIO, 'x', { zone: ZoneError.ZONE_FULL });
  const back = blockErrorFromStatus(statusFromBlockError(zoned, 'write'), 'write');
  assert.deepEqual([back.code, back.zone], [ErrorCode.EIO, ZoneError.ZONE_FULL]);
});
