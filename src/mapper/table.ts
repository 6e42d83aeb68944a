// A mapping table: targets that cover [0, size) of a mapped device contiguously, in order,
// like a dmsetup table. Validation happens once, at construction, with EINVAL errors that
// name the target and the rule it breaks (gap, overlap, misalignment, past the end).

import type { BlockDevice } from '../block/device.js';
import { BlockError, ErrorCode } from '../block/errors.js';
import type { Target } from './target.js';

/** One contiguous run of a request: mapped bytes [pos, pos + length) live at device/offset. */
export interface MappedRun {
  /** Offset in the mapped device. */
  readonly pos: number;
  readonly device: BlockDevice;
  /** Offset on the component. */
  readonly offset: number;
  readonly length: number;
}

export class Table {
  readonly targets: readonly Target[];
  readonly size: number;
  /** Distinct component devices, in order of first use. */
  readonly devices: readonly BlockDevice[];
  /** The largest logical block size of the components: every boundary is aligned to it. */
  readonly logicalBlockSize: number;
  readonly #starts: number[];

  constructor(targets: readonly Target[]) {
    if (!Array.isArray(targets) || targets.length === 0)
      throw new BlockError(ErrorCode.EINVAL, 'mapping table has no targets; give at least one');
    const devices: BlockDevice[] = [];
    for (const t of targets) for (const d of t.devices) if (!devices.includes(d)) devices.push(d);
    const lbs = Math.max(...devices.map((d) => d.limits.logicalBlockSize));
    let end = 0;
    targets.forEach((t, i) => {
      const what = `mapping table: target ${i} (${t.type} ${t.start}+${t.length})`;
      if (!Number.isSafeInteger(t.start) || !Number.isSafeInteger(t.length) || t.start < 0 || t.length <= 0)
        throw new BlockError(ErrorCode.EINVAL, `${what}: start and length must be integers, length positive`);
      if (t.start > end)
        throw new BlockError(
          ErrorCode.EINVAL,
          `${what}: gap — bytes ${end}..${t.start} are not mapped; targets must be contiguous from 0`,
        );
      if (t.start < end)
        throw new BlockError(
          ErrorCode.EINVAL,
          `${what}: overlaps the previous target, which ends at ${end}; list targets in order without overlap`,
        );
      if (t.start % lbs !== 0 || t.length % lbs !== 0)
        throw new BlockError(
          ErrorCode.EINVAL,
          `${what}: start and length must be multiples of ${lbs} bytes, the largest logical block size of the components`,
        );
      const e = t.map(0);
      if (e.offset % lbs !== 0)
        throw new BlockError(
          ErrorCode.EINVAL,
          `${what}: offset ${e.offset} on ${e.device.name} must be a multiple of ${lbs} bytes, the largest logical block size of the components`,
        );
      for (let off = 0; off < t.length;) {
        const run = t.map(off);
        if (run.length <= 0 || run.offset + Math.min(run.length, t.length - off) > run.device.size)
          throw new BlockError(
            ErrorCode.EINVAL,
            `${what}: maps past the end of ${run.device.name} (${run.device.size} bytes)`,
          );
        off += run.length;
      }
      end = t.start + t.length;
    });
    this.targets = [...targets];
    this.size = end;
    this.devices = devices;
    this.logicalBlockSize = lbs;
    this.#starts = this.targets.map((t) => t.start);
  }

  /** Index of the target holding mapped byte `pos` (0 ≤ pos < size). */
  indexAt(pos: number): number {
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  targetAt(pos: number): Target {
    return this.targets[this.indexAt(pos)]!;
  }

  /** The component run holding mapped byte `pos`, cut at the target's end. */
  runAt(pos: number): MappedRun {
    const t = this.targetAt(pos);
    const e = t.map(pos - t.start);
    return { pos, device: e.device, offset: e.offset, length: Math.min(e.length, t.start + t.length - pos) };
  }

  /** Splits mapped bytes [offset, offset + length) into component runs, in order. */
  runs(offset: number, length: number): MappedRun[] {
    const out: MappedRun[] = [];
    for (let pos = offset, end = offset + length; pos < end;) {
      const r = this.runAt(pos);
      const n = Math.min(r.length, end - pos);
      out.push({ pos, device: r.device, offset: r.offset, length: n });
      pos += n;
    }
    return out;
  }

  /** The table as dmsetup prints it, one line per target: "<start> <length> <type> <params>". */
  toString(): string {
    return this.targets.map((t) => `${t.start} ${t.length} ${t.type} ${t.params()}`).join('\n');
  }
}
