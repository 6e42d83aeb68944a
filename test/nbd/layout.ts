// Where data sits on a sparse export, and what a client must see: deterministic pattern bytes,
// the written ranges rounded out to the device's allocation unit (1 MiB chunks for RamDevice,
// src/devices/sparse-store.ts; the filesystem block for a file), and the base:allocation map
// that follows (data = flags 0, hole = NBD_STATE_HOLE | NBD_STATE_ZERO = 3).

import { createHash } from 'node:crypto';
import type { BlockDevice } from '../../src/block/device.js';
import type { Extent } from './libnbd.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** length bytes that depend on seed and position (no two 8-byte words of a block alike). */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seed * 0x9e3779b1 + 0x7f4a7c15) >>> 0;
  for (let i = 0; i + 4 <= length; i += 4) {
    // xorshift32: cheap, deterministic, never zero for a non-zero state
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x || 1, i);
  }
  for (let i = length - (length % 4); i < length; i++) b[i] = (seed + i) & 0xff || 1;
  return b;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export interface Range {
  offset: number;
  length: number;
}

/** Writes pattern(length, offset) at each range (seeded by its offset) straight into the device. */
export async function writePattern(device: BlockDevice, ranges: readonly Range[]): Promise<void> {
  for (const r of ranges) await device.write(r.offset, pattern(r.length, r.offset));
}

/** What a whole sparse device holds after writePattern(ranges): zeroes elsewhere. */
export function expectedImage(size: number, ranges: readonly Range[]): Buffer {
  const b = Buffer.alloc(size);
  for (const r of ranges) pattern(r.length, r.offset).copy(b, r.offset);
  return b;
}

/**
 * The base:allocation map of a sparse device of `size` bytes after writing `ranges`: every
 * allocation unit a range touches is data (0), all others hole+zero (3), adjacent extents of
 * one kind merged. This is exactly what the device knows, so a server must report exactly it.
 */
export function expectedMap(size: number, ranges: readonly Range[], unit: number): Extent[] {
  const data = new Set<number>();
  for (const r of ranges) {
    for (let u = Math.floor(r.offset / unit); u * unit < r.offset + r.length; u++) data.add(u);
  }
  const out: Extent[] = [];
  for (let off = 0; off < size; off += unit) {
    const len = Math.min(unit, size - off);
    const flags = data.has(off / unit) ? 0 : 3;
    const last = out[out.length - 1];
    if (last && last[2] === flags) last[1] += len;
    else out.push([off, len, flags]);
  }
  return out;
}

/** nbdinfo --map --json lines → [offset, length, type]. */
export function parseNbdinfoMap(json: string): Extent[] {
  const rows = JSON.parse(json) as { offset: number; length: number; type: number }[];
  return rows.map((r) => [r.offset, r.length, r.type]);
}
