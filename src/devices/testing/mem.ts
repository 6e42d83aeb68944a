// MemDevice: a tiny sparse in-memory BlockDevice for tests of devices stacked on another
// device (zoned, mappings). Deliberately simple and independent of the real RamDevice, with
// two test aids: an async `hook` called before each data operation (to inject delays or
// failures) and a `log` of the operations it received.
//
// - Data lives in 4 KiB chunks allocated on first write; unwritten bytes read as zeroes.
// - discard and writeZeroes zero the range (discarded blocks read as zeroes).
// - copy within the device: all sources are read before any destination is written; the
//   hook runs once per range before that range's destination is written, and a failure
//   there throws a CopyError whose `completed` covers the ranges written before it.

import type { BlockDevice, CopyPathBytes, CopyRange, DeviceCopyOptions } from '../../block/device.js';
import { BlockDeviceBase } from '../../block/base.js';
import { CopyError, throwIfAborted, toBlockError } from '../../block/errors.js';
import { DEFAULT_COPY_LIMITS, type CopyLimits } from '../../block/limits.js';

export type MemOp = 'read' | 'write' | 'flush' | 'discard' | 'write-zeroes' | 'copy';

export interface MemDeviceOptions {
  name?: string;
  size: number;
  logicalBlockSize?: 512 | 4096;
  /** Default 1 MiB. */
  maxTransferBytes?: number;
  readOnly?: boolean;
  /** false: no copy offload; otherwise overrides of DEFAULT_COPY_LIMITS. */
  copy?: false | Partial<CopyLimits>;
  /** Default true. */
  discard?: boolean;
  /** Default true. */
  writeZeroes?: boolean;
}

const CHUNK = 4096;
let nextIndex = 0;

export class MemDevice extends BlockDeviceBase {
  readonly kind = 'mem';
  /** Called (and awaited) before each operation; throw from it to fail the operation. */
  hook: ((op: MemOp, offset: number, length: number) => void | Promise<void>) | undefined;
  /** Every operation received, in arrival order. */
  readonly log: Array<{ op: MemOp; offset: number; length: number }> = [];
  readonly #chunks = new Map<number, Uint8Array>();

  constructor(options: MemDeviceOptions) {
    const lbs = options.logicalBlockSize ?? 512;
    const whole = Math.max(1024 * 1024 * 1024, lbs);
    super(options.name ?? `mem${nextIndex++}`, options.size, {
      logicalBlockSize: lbs,
      physicalBlockSize: lbs,
      maxTransferBytes: options.maxTransferBytes ?? 1024 * 1024,
      readOnly: options.readOnly ?? false,
      ...(options.copy === false ? {} : { copy: { ...DEFAULT_COPY_LIMITS, ...options.copy } }),
      ...(options.discard === false
        ? {}
        : { discard: { granularity: lbs, maxBytes: whole, zeroesData: true } }),
      ...(options.writeZeroes === false ? {} : { writeZeroes: { maxBytes: whole, unmaps: true } }),
    });
  }

  async #enter(op: MemOp, offset: number, length: number): Promise<void> {
    this.log.push({ op, offset, length });
    await this.hook?.(op, offset, length);
  }

  /** Visits [offset, offset+length) chunk by chunk. */
  #each(offset: number, length: number, fn: (chunk: number, from: number, to: number, pos: number) => void) {
    for (let pos = offset; pos < offset + length;) {
      const chunk = Math.floor(pos / CHUNK);
      const from = pos - chunk * CHUNK;
      const to = Math.min(CHUNK, offset + length - chunk * CHUNK);
      fn(chunk, from, to, pos - offset);
      pos += to - from;
    }
  }

  #load(offset: number, into: Uint8Array): void {
    this.#each(offset, into.length, (chunk, from, to, pos) => {
      const c = this.#chunks.get(chunk);
      if (c) into.set(c.subarray(from, to), pos);
      else into.fill(0, pos, pos + to - from);
    });
  }

  #store(offset: number, data: Uint8Array): void {
    this.#each(offset, data.length, (chunk, from, to, pos) => {
      let c = this.#chunks.get(chunk);
      if (!c) this.#chunks.set(chunk, (c = new Uint8Array(CHUNK)));
      c.set(data.subarray(pos, pos + to - from), from);
    });
  }

  #zero(offset: number, length: number): void {
    this.#each(offset, length, (chunk, from, to) => {
      if (from === 0 && to === CHUNK) this.#chunks.delete(chunk);
      else this.#chunks.get(chunk)?.fill(0, from, to);
    });
  }

  /** Chunks holding data (a discard or whole-chunk zeroing frees them). */
  get allocatedChunks(): number {
    return this.#chunks.size;
  }

  protected override async doRead(offset: number, buffer: Uint8Array): Promise<void> {
    await this.#enter('read', offset, buffer.length);
    this.#load(offset, buffer);
  }
  protected override async doWrite(offset: number, data: Uint8Array): Promise<void> {
    await this.#enter('write', offset, data.length);
    this.#store(offset, data);
  }
  protected override async doFlush(): Promise<void> {
    await this.#enter('flush', 0, 0);
  }
  protected override async doClose(): Promise<void> {}
  protected override async doDiscard(offset: number, length: number): Promise<void> {
    await this.#enter('discard', offset, length);
    this.#zero(offset, length);
  }
  protected override async doWriteZeroes(offset: number, length: number): Promise<void> {
    await this.#enter('write-zeroes', offset, length);
    this.#zero(offset, length);
  }

  protected override async doCopy(
    _source: BlockDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    const data = ranges.map((r) => {
      const b = new Uint8Array(r.len);
      this.#load(r.src, b);
      return b;
    });
    const completed = ranges.map(() => 0);
    let i = 0;
    try {
      for (const r of ranges) {
        throwIfAborted(options.signal, 'copy');
        await this.#enter('copy', r.dst, r.len);
        this.#store(r.dst, data[i]!);
        completed[i++] = r.len;
      }
    } catch (err) {
      throw new CopyError(toBlockError(err, `copy on ${this.name}`), completed, {
        offloaded: completed.reduce((a, b) => a + b, 0),
        emulated: 0,
      });
    }
    return { offloaded: completed.reduce((a, b) => a + b, 0), emulated: 0 };
  }
}
