// dm-linear: maps the segment [start, start + length) of a mapped device onto `device` at
// `offset`, byte for byte — nbdkit's offset filter, the simplest target.

import type { BlockDevice } from '../block/device.js';
import { BlockError, ErrorCode } from '../block/errors.js';
import type { Extent, Target } from './target.js';

export interface LinearTargetOptions {
  /** First byte of the segment in the mapped device. */
  start: number;
  /** Bytes in the segment. */
  length: number;
  /** The component the segment maps onto. */
  device: BlockDevice;
  /** Byte offset on the component where the segment begins. */
  offset: number;
}

export class LinearTarget implements Target {
  readonly type = 'linear';
  readonly start: number;
  readonly length: number;
  readonly device: BlockDevice;
  readonly offset: number;
  readonly devices: readonly BlockDevice[];

  constructor(options: LinearTargetOptions) {
    const { start, length, device, offset } = options;
    const what = `linear target ${start}+${length} → ${device?.name} at ${offset}`;
    for (const [k, v] of [
      ['start', start],
      ['length', length],
      ['offset', offset],
    ] as const)
      if (!Number.isSafeInteger(v) || v < 0)
        throw new BlockError(ErrorCode.EINVAL, `${what}: ${k} ${v} must be a non-negative integer`);
    if (length === 0) throw new BlockError(ErrorCode.EINVAL, `${what}: length must be positive`);
    const lbs = device.limits.logicalBlockSize;
    if (offset % lbs !== 0 || length % lbs !== 0)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: offset and length must be multiples of ${device.name}'s ${lbs}-byte logical block size`,
      );
    if (offset + length > device.size)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: ends at ${offset + length}, past the end of ${device.name} (${device.size} bytes)`,
      );
    this.start = start;
    this.length = length;
    this.device = device;
    this.offset = offset;
    this.devices = [device];
  }

  map(offset: number): Extent {
    return { device: this.device, offset: this.offset + offset, length: this.length - offset };
  }

  params(): string {
    return `${this.device.name} ${this.offset}`;
  }
}
