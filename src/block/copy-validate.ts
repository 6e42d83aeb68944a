// Checks a copy before any byte moves (the rules of DESIGN.md's issueCopy, step 1). Each
// failure names the rule and the range, so a caller can fix the request.

import type { BlockDevice, CopyRange } from './device.js';
import { BlockError, ErrorCode } from './errors.js';

export const DEFAULT_COPY_MAX_RANGES = 4096;
export const DEFAULT_COPY_MAX_TOTAL_BYTES = 128 * 1024 * 1024;

export interface CopyValidationLimits {
  maxRanges: number;
  maxTotalBytes: number;
}

/** Returns the total byte count of a valid copy; throws a BlockError otherwise. */
export function validateCopy(
  src: BlockDevice,
  dst: BlockDevice,
  ranges: readonly CopyRange[],
  limits: CopyValidationLimits,
): number {
  const what = `copy ${src.name} → ${dst.name}`;
  if (dst.limits.readOnly)
    throw new BlockError(ErrorCode.EPERM, `${what}: destination ${dst.name} is read-only`);
  if (!Array.isArray(ranges) || ranges.length === 0)
    throw new BlockError(ErrorCode.EINVAL, `${what}: no ranges given; pass at least one {src, dst, len}`);
  if (ranges.length > limits.maxRanges)
    throw new BlockError(
      ErrorCode.E2BIG,
      `${what}: ${ranges.length} ranges exceed the limit of ${limits.maxRanges} per call; split the list`,
    );
  const align = Math.max(src.limits.logicalBlockSize, dst.limits.logicalBlockSize);
  let total = 0;
  ranges.forEach((r, i) => {
    const at = `${what}: range ${i} {src: ${r?.src}, dst: ${r?.dst}, len: ${r?.len}}`;
    if (
      typeof r !== 'object' ||
      r === null ||
      ![r.src, r.dst, r.len].every((n) => Number.isSafeInteger(n) && n >= 0)
    )
      throw new BlockError(ErrorCode.EINVAL, `${at}: src, dst and len must be non-negative integers`);
    if (r.len === 0) throw new BlockError(ErrorCode.EINVAL, `${at}: zero-length range`);
    if (r.src % align || r.dst % align || r.len % align)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${at}: offsets and length must be multiples of ${align} bytes (the larger logical block size of the two devices)`,
      );
    if (r.src + r.len > src.size)
      throw new BlockError(
        ErrorCode.ERANGE,
        `${at}: source ends at ${r.src + r.len}, past the end of ${src.name} (${src.size} bytes)`,
      );
    if (r.dst + r.len > dst.size)
      throw new BlockError(
        ErrorCode.ERANGE,
        `${at}: destination ends at ${r.dst + r.len}, past the end of ${dst.name} (${dst.size} bytes)`,
      );
    total += r.len;
  });
  if (total > limits.maxTotalBytes)
    throw new BlockError(
      ErrorCode.E2BIG,
      `${what}: ${total} bytes exceed the per-call limit of ${limits.maxTotalBytes}; use a copy job for larger copies`,
    );
  checkDestinationsDisjoint(ranges, what);
  return total;
}

/** Two ranges writing the same destination byte would make the result depend on timing. */
function checkDestinationsDisjoint(ranges: readonly CopyRange[], what: string): void {
  const order = ranges.map((_, i) => i).sort((a, b) => ranges[a]!.dst - ranges[b]!.dst);
  for (let k = 1; k < order.length; k++) {
    const prev = ranges[order[k - 1]!]!;
    const cur = ranges[order[k]!]!;
    if (cur.dst < prev.dst + prev.len)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: destination ranges ${order[k - 1]} and ${order[k]} overlap; each destination byte may be written once`,
      );
  }
}
