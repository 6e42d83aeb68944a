// Argument checks shared by every device and by the block core, so each rule is written once
// and every caller gets the same actionable message.

import type { BlockDevice, CopyRange } from './device.js';
import { BlockError, ErrorCode } from './errors.js';

function isByteCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** Offset and length are whole, aligned to the logical block size, and inside the device. */
export function checkRange(
  dev: BlockDevice,
  op: string,
  offset: number,
  length: number,
  align?: number,
): void {
  const lbs = align ?? dev.limits.logicalBlockSize;
  if (!isByteCount(offset) || !isByteCount(length))
    throw new BlockError(
      ErrorCode.EINVAL,
      `${op} on ${dev.name}: offset ${offset} and length ${length} must be non-negative integers`,
    );
  if (offset % lbs !== 0 || length % lbs !== 0)
    throw new BlockError(
      ErrorCode.EINVAL,
      `${op} on ${dev.name}: offset ${offset} and length ${length} must be multiples of the ${lbs}-byte block size`,
      { offset },
    );
  if (offset + length > dev.size)
    throw new BlockError(
      ErrorCode.ERANGE,
      `${op} on ${dev.name}: bytes ${offset}..${offset + length} end past the device size ${dev.size}`,
      { offset },
    );
}

export function checkWritable(dev: BlockDevice, op: string): void {
  if (dev.limits.readOnly) throw new BlockError(ErrorCode.EPERM, `${op} on ${dev.name}: device is read-only`);
}

/** One request no larger than the device's maxTransferBytes; split larger I/O with block/io.ts. */
export function checkTransfer(dev: BlockDevice, op: string, length: number): void {
  if (length > dev.limits.maxTransferBytes)
    throw new BlockError(
      ErrorCode.E2BIG,
      `${op} on ${dev.name}: ${length} bytes exceed maxTransferBytes ${dev.limits.maxTransferBytes}; split the request`,
    );
}

/**
 * Checks a request for the device's own copy offload (BlockDevice.copy): the destination can
 * copy from the source, every range is non-empty, aligned and inside both devices, and the
 * request fits limits.copy.
 */
export function checkDeviceCopy(source: BlockDevice, dest: BlockDevice, ranges: readonly CopyRange[]): void {
  const op = 'copy';
  const c = dest.limits.copy;
  if (!c || c.maxBytes === 0)
    throw new BlockError(ErrorCode.EOPNOTSUPP, `${op} on ${dest.name}: copy offload is not available`);
  if (!dest.canCopyFrom(source))
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `${op} on ${dest.name}: cannot offload a copy from ${source.name}`,
    );
  checkWritable(dest, op);
  if (ranges.length === 0) throw new BlockError(ErrorCode.EINVAL, `${op} on ${dest.name}: no ranges`);
  if (ranges.length > c.maxRanges)
    throw new BlockError(
      ErrorCode.E2BIG,
      `${op} on ${dest.name}: ${ranges.length} ranges exceed maxRanges ${c.maxRanges}`,
    );
  const align = Math.max(source.limits.logicalBlockSize, dest.limits.logicalBlockSize);
  let total = 0;
  for (const r of ranges) {
    if (r.len === 0) throw new BlockError(ErrorCode.EINVAL, `${op} on ${dest.name}: zero-length range`);
    checkRange(source, `${op} source`, r.src, r.len, align);
    checkRange(dest, `${op} destination`, r.dst, r.len, align);
    if (r.len > c.maxRangeBytes)
      throw new BlockError(
        ErrorCode.E2BIG,
        `${op} on ${dest.name}: range of ${r.len} bytes exceeds maxRangeBytes ${c.maxRangeBytes}`,
      );
    total += r.len;
  }
  if (total > c.maxBytes)
    throw new BlockError(
      ErrorCode.E2BIG,
      `${op} on ${dest.name}: ${total} bytes exceed copy maxBytes ${c.maxBytes}`,
    );
}

/** True when [a, a+alen) and [b, b+blen) share a byte. */
export function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen;
}
