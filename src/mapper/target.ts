// A target is one segment of a mapped device, [start, start + length) in the mapped device's
// byte space, as a line of a device-mapper table is. It says where each of its bytes lives;
// the mapped device does the I/O, splitting requests at target and extent boundaries. New
// target types (error, zero, striped, ...) implement this interface and nothing else: an
// error or zero target maps onto a small internal device that fails or reads zeroes.

import type { BlockDevice } from '../block/device.js';

/** A run of bytes that lives contiguously on one component device. */
export interface Extent {
  readonly device: BlockDevice;
  /** Byte offset on the component. */
  readonly offset: number;
  /** Bytes from there that stay on this component, contiguous (at least 1). */
  readonly length: number;
}

export interface Target {
  /** Target type as dmsetup names it: 'linear', 'striped', 'error', 'zero', ... */
  readonly type: string;
  /** First byte of the segment in the mapped device. */
  readonly start: number;
  /** Bytes in the segment (> 0). */
  readonly length: number;
  /** Every component device the target uses (for limits stacking, flush and validation). */
  readonly devices: readonly BlockDevice[];
  /**
   * Where the target's byte `offset` (0 ≤ offset < length, relative to `start`) lives, and how
   * many bytes from there are contiguous on that component (never past the target's end).
   */
  map(offset: number): Extent;
  /** The type-specific part of a table line, dmsetup style (linear: "<device> <offset>"). */
  params(): string;
}
