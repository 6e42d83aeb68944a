// The BlockDevice contract: everything above the block core speaks only this; every device,
// mapping and remote namespace implements it. Offsets and lengths are bytes (JavaScript
// numbers, exact to 8 PiB). Capabilities live in `limits`; every operation exists on every
// device and fails with EOPNOTSUPP when the capability is absent, so wrappers (fault
// injection, mappings) can pass operations through without asking first.

import type { QueueLimits } from './limits.js';
import type { Zone } from './zone.js';

/** One byte range to copy: `len` bytes from `src` on the source device to `dst` on the destination. */
export interface CopyRange {
  readonly src: number;
  readonly dst: number;
  readonly len: number;
}

export interface IoOptions {
  signal?: AbortSignal;
}

export interface WriteOptions extends IoOptions {
  /** Force Unit Access: the write is durable when it completes. */
  fua?: boolean;
}

export interface WriteZeroesOptions extends IoOptions {
  /** Write real zeroes; do not deallocate (NBD NO_HOLE, NVMe Write Zeroes with DEAC=0). */
  noUnmap?: boolean;
}

export interface DeviceCopyOptions extends IoOptions {
  /**
   * Whether a stacked device may emulate the parts it cannot offload. issueCopy passes false
   * when the caller forced offload, so a mapping fails with EOPNOTSUPP before doing any I/O
   * instead of quietly reading and writing.
   */
  allowEmulation: boolean;
}

/** How many bytes of a copy took each path. */
export interface CopyPathBytes {
  offloaded: number;
  emulated: number;
}

/**
 * One extent of a block-status answer: `length` bytes, in order from the offset asked about.
 * `hole`: not allocated (reads return zeroes when limits.discard.zeroesData, or when `zero`).
 * `zero`: reads return zeroes. Data that may hold anything is { hole: false, zero: false },
 * which is always a correct answer (NBD base:allocation, qemu's block status, SEEK_HOLE).
 */
export interface BlockStatusExtent {
  readonly length: number;
  readonly hole: boolean;
  readonly zero: boolean;
}

/** What `tsblk dev info` shows beside the limits. */
export type DeviceDetails = Record<string, string | number | boolean>;

/**
 * The bytes of a range lent by a device instead of copied out (SPDK's zcopy read). `buffers`
 * hold the range's bytes in order and do not change until release(), whatever is written to
 * the device meanwhile; the borrower must not modify them and calls release() exactly once,
 * when it no longer refers to them (after the socket sent them).
 */
export interface ReadLoan {
  readonly buffers: readonly Uint8Array[];
  release(): void;
}

export interface BlockDevice {
  readonly name: string;
  /** Kind of device: 'ram', 'file', 'zoned', 'linear', 'fault', ... */
  readonly kind: string;
  /** Size in bytes, a multiple of the logical block size. */
  readonly size: number;
  readonly limits: QueueLimits;

  /** Reads buffer.length bytes at offset into buffer. */
  read(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void>;
  /**
   * The bytes at [offset, offset+length) lent from the device's own memory (ReadLoan), or
   * undefined when it has none to lend: then read() into a buffer of your own. Checked like a
   * read of that length.
   */
  readLoan(offset: number, length: number, options?: IoOptions): Promise<ReadLoan | undefined>;
  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Makes every completed write durable. */
  flush(options?: IoOptions): Promise<void>;
  /** Deallocates; reads return zeroes afterwards when limits.discard.zeroesData. */
  discard(offset: number, length: number, options?: IoOptions): Promise<void>;
  writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void>;

  /**
   * True when this device can copy from `source` by itself (the same device, or a sibling
   * that shares its backing store, such as two namespaces of one controller).
   */
  canCopyFrom(source: BlockDevice): boolean;
  /**
   * The device's own copy offload, this device being the destination. The request must fit
   * limits.copy (maxRanges, maxRangeBytes, maxBytes). Sources are read as if all of them were
   * read before any destination is written. On failure it throws a CopyError whose
   * `completed` gives, per range, the bytes known copied (a prefix).
   */
  copy(source: BlockDevice, ranges: readonly CopyRange[], options: DeviceCopyOptions): Promise<CopyPathBytes>;

  /**
   * Allocation of [offset, offset+length): extents in order, at least one, together covering
   * a prefix of the range (never more than length, never less than one logical block unless
   * the range is shorter). Callers ask again from where the answer ended. Devices that cannot
   * tell answer one data extent.
   */
  blockStatus(offset: number, length: number, options?: IoOptions): Promise<BlockStatusExtent[]>;

  /** Zones from the one containing `offset`, at most maxZones of them. EOPNOTSUPP unless zoned. */
  reportZones(offset: number, maxZones?: number): Promise<Zone[]>;
  openZone(zoneStart: number, options?: IoOptions): Promise<void>;
  closeZone(zoneStart: number, options?: IoOptions): Promise<void>;
  finishZone(zoneStart: number, options?: IoOptions): Promise<void>;
  resetZone(zoneStart: number, options?: IoOptions): Promise<void>;
  resetAllZones(options?: IoOptions): Promise<void>;
  /** Appends data at the zone's write pointer and returns the byte offset it was written at. */
  zoneAppend(zoneStart: number, data: Uint8Array, options?: WriteOptions): Promise<number>;

  /** Kind-specific facts for `tsblk dev info` (backing path, which copy engine is active, ...). */
  details(): DeviceDetails;
  /** Flushes and releases the device. Further operations fail with EBADF. */
  close(): Promise<void>;
}
