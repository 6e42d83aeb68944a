// Test aids for the mapper: a flat byte model of a device to check copies against, and a
// RAM device that counts flushes.

import { randomBytes } from 'node:crypto';
import type { BlockDevice, CopyRange } from '../../block/device.js';
import { RamDevice, type RamDeviceOptions } from '../../devices/ram.js';
import { readFully, writeFully } from '../../block/io.js';

/** What a copy must do: every source read first, then every destination written. */
export function modelCopy(bytes: Buffer, ranges: readonly CopyRange[]): Buffer {
  const out = Buffer.from(bytes);
  const sources = ranges.map((r) => Buffer.from(bytes.subarray(r.src, r.src + r.len)));
  ranges.forEach((r, i) => sources[i]!.copy(out, r.dst));
  return out;
}

export async function readAll(dev: BlockDevice, offset = 0, length = dev.size): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  await readFully(dev, offset, buf);
  return buf;
}

/** Fills a device with random bytes and returns them. */
export async function fillRandom(dev: BlockDevice): Promise<Buffer> {
  const data = randomBytes(dev.size);
  await writeFully(dev, 0, data);
  return data;
}

/** A RAM device that counts flushes it receives. */
export class CountingRam extends RamDevice {
  flushes = 0;
  constructor(options: RamDeviceOptions) {
    super(options);
  }
  protected override async doFlush(): Promise<void> {
    this.flushes++;
  }
}
