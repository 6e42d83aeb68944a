// Queue limits: what a device accepts. One plain object per device, combined by one function
// (stackLimits) when devices are stacked — the userspace blk-settings.c. All sizes are bytes.

import { BlockError, ErrorCode } from './errors.js';

/** Copy offload limits. Absent from QueueLimits when the device cannot copy by itself. */
export interface CopyLimits {
  /**
   * Largest copy request the block core sends, in bytes. User-tunable at or below
   * maxHwBytes (the kernel series' `copy_max_bytes`); 0 disables offload.
   */
  maxBytes: number;
  /** What the hardware (or the remote controller) allows per request (`copy_max_hw_bytes`). */
  readonly maxHwBytes: number;
  /** Most source ranges in one request (NVMe MSRC + 1). */
  readonly maxRanges: number;
  /** Largest single source range (NVMe MSSRL × block size). */
  readonly maxRangeBytes: number;
}

export interface DiscardLimits {
  /** Discard works in units of this many bytes; partial units may be ignored. */
  readonly granularity: number;
  /** Largest discard request. */
  readonly maxBytes: number;
  /** True when discarded blocks read back as zeroes (ram, punched files). */
  readonly zeroesData: boolean;
}

export interface WriteZeroesLimits {
  /** Largest write-zeroes request. */
  readonly maxBytes: number;
  /** True when zeroing is done without writing data (unmap, fallocate). */
  readonly unmaps: boolean;
}

export interface ZonedLimits {
  /** Bytes between the starts of two zones; a power-of-two multiple of the block size. */
  readonly zoneSize: number;
  /** Writable bytes of each sequential zone, at most zoneSize. */
  readonly zoneCapacity: number;
  /** Zones in the device (the last one may be smaller, like the kernel's runt zone). */
  readonly nrZones: number;
  /** Most zones open at once (implicitly or explicitly); 0 = no limit. */
  readonly maxOpenZones: number;
  /** Most zones active at once (open or closed); 0 = no limit. */
  readonly maxActiveZones: number;
  /** Largest zone append request. */
  readonly maxZoneAppendBytes: number;
}

export interface QueueLimits {
  readonly logicalBlockSize: number;
  readonly physicalBlockSize: number;
  /** Largest read or write request. */
  readonly maxTransferBytes: number;
  readonly readOnly: boolean;
  readonly copy?: CopyLimits;
  readonly discard?: DiscardLimits;
  readonly writeZeroes?: WriteZeroesLimits;
  readonly zoned?: ZonedLimits;
}

/** Defaults for a plain device; callers override what differs. */
export const DEFAULT_MAX_TRANSFER_BYTES = 8 * 1024 * 1024;
export const DEFAULT_COPY_LIMITS: Readonly<CopyLimits> = Object.freeze({
  maxBytes: 128 * 1024 * 1024,
  maxHwBytes: 128 * 1024 * 1024,
  maxRanges: 256,
  maxRangeBytes: 128 * 1024 * 1024,
});

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

function fail(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, `invalid queue limits: ${msg}`);
}

/**
 * Checks a limits object for internal consistency (the userspace blk_validate_limits).
 * Devices call it once at construction; it throws EINVAL with the offending field.
 */
export function validateLimits(l: QueueLimits, size: number): void {
  const lbs = l.logicalBlockSize;
  if (lbs !== 512 && lbs !== 4096) fail(`logicalBlockSize must be 512 or 4096, got ${lbs}`);
  if (!isPowerOfTwo(l.physicalBlockSize) || l.physicalBlockSize < lbs)
    fail(`physicalBlockSize ${l.physicalBlockSize} must be a power of two ≥ logicalBlockSize ${lbs}`);
  if (!Number.isSafeInteger(size) || size < 0 || size % lbs !== 0)
    fail(`size ${size} must be a non-negative multiple of the logical block size ${lbs}`);
  if (!Number.isSafeInteger(l.maxTransferBytes) || l.maxTransferBytes < lbs || l.maxTransferBytes % lbs)
    fail(`maxTransferBytes ${l.maxTransferBytes} must be a positive multiple of ${lbs}`);
  const c = l.copy;
  if (c) {
    for (const k of ['maxBytes', 'maxHwBytes', 'maxRangeBytes'] as const) {
      if (!Number.isSafeInteger(c[k]) || c[k] < 0 || c[k] % lbs)
        fail(`copy.${k} ${c[k]} must be a non-negative multiple of ${lbs}`);
    }
    if (c.maxHwBytes === 0) fail('copy.maxHwBytes is 0: omit `copy` for a device that cannot copy');
    if (c.maxBytes > c.maxHwBytes)
      fail(`copy.maxBytes ${c.maxBytes} exceeds copy.maxHwBytes ${c.maxHwBytes}`);
    if (c.maxRangeBytes === 0) fail('copy.maxRangeBytes must be positive');
    if (!Number.isSafeInteger(c.maxRanges) || c.maxRanges < 1)
      fail(`copy.maxRanges ${c.maxRanges} must be ≥ 1`);
  }
  const d = l.discard;
  if (d && (d.granularity < lbs || d.granularity % lbs || d.maxBytes < d.granularity))
    fail(`discard granularity ${d.granularity} / maxBytes ${d.maxBytes} must be multiples of ${lbs}`);
  const wz = l.writeZeroes;
  if (wz && (wz.maxBytes < lbs || wz.maxBytes % lbs))
    fail(`writeZeroes.maxBytes ${wz.maxBytes} must be a positive multiple of ${lbs}`);
  const z = l.zoned;
  if (z) {
    if (!isPowerOfTwo(z.zoneSize) || z.zoneSize < lbs)
      fail(`zoneSize ${z.zoneSize} must be a power of two ≥ ${lbs}`);
    if (z.zoneCapacity < lbs || z.zoneCapacity > z.zoneSize || z.zoneCapacity % lbs)
      fail(`zoneCapacity ${z.zoneCapacity} must be a multiple of ${lbs} in (0, zoneSize]`);
    if (z.nrZones !== Math.ceil(size / z.zoneSize))
      fail(`nrZones ${z.nrZones} disagrees with size / zoneSize`);
    if (z.maxActiveZones && z.maxOpenZones > z.maxActiveZones)
      fail(`maxOpenZones ${z.maxOpenZones} exceeds maxActiveZones ${z.maxActiveZones}`);
    if (z.maxZoneAppendBytes % lbs) fail(`maxZoneAppendBytes must be a multiple of ${lbs}`);
  }
}

/**
 * Sets the user-tunable copy cap (`copy_max_bytes`). 0 disables offload: issueCopy then
 * emulates. Values above maxHwBytes or off the block size are EINVAL, as sysfs would answer.
 */
export function setCopyMaxBytes(limits: QueueLimits, bytes: number): void {
  const c = limits.copy;
  if (!c)
    throw new BlockError(ErrorCode.EOPNOTSUPP, 'device has no copy offload; copy.maxBytes cannot be set');
  if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes % limits.logicalBlockSize)
    throw new BlockError(
      ErrorCode.EINVAL,
      `copy.maxBytes ${bytes} must be a non-negative multiple of ${limits.logicalBlockSize}`,
    );
  if (bytes > c.maxHwBytes)
    throw new BlockError(
      ErrorCode.EINVAL,
      `copy.maxBytes ${bytes} exceeds the hardware limit ${c.maxHwBytes}`,
    );
  c.maxBytes = bytes;
}

/** True when the device offers copy offload and the user has not turned it off. */
export function copyOffloadEnabled(limits: QueueLimits): boolean {
  return limits.copy !== undefined && limits.copy.maxBytes > 0;
}

function minNotZero(a: number, b: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return Math.min(a, b);
}

/**
 * Combines the limits of a stacked device (top) with one of its components (bottom), like
 * the kernel's blk_stack_limits: call it for each component in turn, starting from the
 * first component's limits. Maxima where 0 means "no limit" use minNotZero; block sizes and
 * granularities take the max; copy uses a plain min, because a component that cannot copy
 * makes the stack unable to copy. Zoned limits are not stacked here: the mapper decides
 * whether a table is zoned.
 */
export function stackLimits(top: QueueLimits, bottom: QueueLimits): QueueLimits {
  const lbs = Math.max(top.logicalBlockSize, bottom.logicalBlockSize);
  let copy: CopyLimits | undefined;
  if (top.copy && bottom.copy) {
    const down = (n: number) => n - (n % lbs);
    const maxHwBytes = down(Math.min(top.copy.maxHwBytes, bottom.copy.maxHwBytes));
    const maxRangeBytes = down(Math.min(top.copy.maxRangeBytes, bottom.copy.maxRangeBytes));
    // A stack whose combined limits round to nothing cannot copy.
    if (maxHwBytes > 0 && maxRangeBytes > 0)
      copy = {
        maxHwBytes,
        maxBytes: down(Math.min(top.copy.maxBytes, bottom.copy.maxBytes)),
        maxRanges: Math.min(top.copy.maxRanges, bottom.copy.maxRanges),
        maxRangeBytes,
      };
  }
  let discard: DiscardLimits | undefined;
  if (top.discard && bottom.discard) {
    const granularity = Math.max(top.discard.granularity, bottom.discard.granularity);
    const maxBytes = minNotZero(top.discard.maxBytes, bottom.discard.maxBytes);
    discard = {
      granularity,
      maxBytes: Math.max(granularity, maxBytes - (maxBytes % granularity)),
      zeroesData: top.discard.zeroesData && bottom.discard.zeroesData,
    };
  }
  let writeZeroes: WriteZeroesLimits | undefined;
  if (top.writeZeroes && bottom.writeZeroes) {
    const maxBytes = minNotZero(top.writeZeroes.maxBytes, bottom.writeZeroes.maxBytes);
    writeZeroes = {
      maxBytes: Math.max(lbs, maxBytes - (maxBytes % lbs)),
      unmaps: top.writeZeroes.unmaps && bottom.writeZeroes.unmaps,
    };
  }
  const maxTransfer = minNotZero(top.maxTransferBytes, bottom.maxTransferBytes);
  return {
    logicalBlockSize: lbs,
    physicalBlockSize: Math.max(top.physicalBlockSize, bottom.physicalBlockSize, lbs),
    maxTransferBytes: Math.max(lbs, maxTransfer - (maxTransfer % lbs)),
    readOnly: top.readOnly || bottom.readOnly,
    ...(copy ? { copy } : {}),
    ...(discard ? { discard } : {}),
    ...(writeZeroes ? { writeZeroes } : {}),
  };
}
