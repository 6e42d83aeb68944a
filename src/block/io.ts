// Whole-range reads and writes for callers that hold more than one request's worth: they are
// split at the device's maxTransferBytes, like the kernel's bio splitting.

import type { BlockDevice, IoOptions, WriteOptions } from './device.js';

function chunkSize(dev: BlockDevice): number {
  return dev.limits.maxTransferBytes;
}

/** Reads buffer.length bytes at offset, in as many requests as maxTransferBytes needs. */
export async function readFully(dev: BlockDevice, offset: number, buffer: Uint8Array, options?: IoOptions) {
  const step = chunkSize(dev);
  for (let done = 0; done < buffer.length; done += step) {
    await dev.read(offset + done, buffer.subarray(done, Math.min(buffer.length, done + step)), options);
  }
}

/** Writes all of data at offset, in as many requests as maxTransferBytes needs. */
export async function writeFully(dev: BlockDevice, offset: number, data: Uint8Array, options?: WriteOptions) {
  const step = chunkSize(dev);
  for (let done = 0; done < data.length; done += step) {
    await dev.write(offset + done, data.subarray(done, Math.min(data.length, done + step)), options);
  }
}
