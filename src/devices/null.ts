// NullDevice: a device that stores nothing, like null_blk with memory_backed=0. Reads return
// zeroes, writes are accepted and dropped, discard / write zeroes / flush succeed, and copy
// offload (within the device) succeeds without moving a byte while reporting every byte as
// offloaded. It measures the stack above a device, and lets memory-budget tests run at any
// size. blockStatus answers one hole that reads as zeroes: nothing is ever stored. Options
// and defaults are the RAM device's (see ram.ts).

import type {
  BlockDevice,
  BlockStatusExtent,
  CopyPathBytes,
  CopyRange,
  DeviceCopyOptions,
  DeviceDetails,
  IoOptions,
  WriteOptions,
  WriteZeroesOptions,
} from '../block/device.js';
import { BlockDeviceBase } from '../block/base.js';
import { memoryDeviceLimits, type RamDeviceOptions } from './ram.js';

/** The same options as RamDevice; the default name is null0, null1, ... */
export type NullDeviceOptions = RamDeviceOptions;

let nextIndex = 0;

export class NullDevice extends BlockDeviceBase {
  readonly kind = 'null';

  constructor(options: NullDeviceOptions) {
    super(options.name ?? `null${nextIndex++}`, options.size, memoryDeviceLimits(options));
  }

  override details(): DeviceDetails {
    return { memoryBacked: false };
  }

  protected async doRead(_offset: number, buffer: Uint8Array, _options?: IoOptions): Promise<void> {
    buffer.fill(0);
  }

  protected async doWrite(_offset: number, _data: Uint8Array, _options?: WriteOptions): Promise<void> {}
  protected async doFlush(_options?: IoOptions): Promise<void> {}
  protected async doClose(): Promise<void> {}
  protected override async doBlockStatus(
    _offset: number,
    length: number,
    _options?: IoOptions,
  ): Promise<BlockStatusExtent[]> {
    return [{ length, hole: true, zero: true }];
  }
  protected override async doDiscard(_offset: number, _length: number, _options?: IoOptions): Promise<void> {}
  protected override async doWriteZeroes(
    _offset: number,
    _len: number,
    _o?: WriteZeroesOptions,
  ): Promise<void> {}

  protected override async doCopy(
    _source: BlockDevice,
    ranges: readonly CopyRange[],
    _options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    let total = 0;
    for (const r of ranges) total += r.len;
    return { offloaded: total, emulated: 0 };
  }
}
