// RamDevice: a memory-backed block device, the userspace brd.
//
// - Sparse: data lives in 1 MiB chunks (SparseStore) allocated on first write; unwritten
//   blocks read as zeroes, so a 1 TiB device costs memory only for what is written.
// - discard and writeZeroes free whole chunks and zero partial ones (discarded blocks read
//   as zeroes: limits.discard.zeroesData). writeZeroes with noUnmap keeps chunks allocated.
//   Both accept the whole device in one request.
// - Copy offload within the device (canCopyFrom(source) only for source === this): sources
//   behave as if all were read before any destination is written, even when ranges of one
//   request overlap; sources that overlap no destination are copied chunk to chunk without
//   a bounce buffer, and a hole copied stays a hole. Every byte is reported as offloaded.
//   (A subclass that widens canCopyFrom gets a correct copy from the other device too: all
//   sources are read through its read() first, then written.)
// - blockStatus: chunks never written (or freed by discard / write zeroes) are holes that read
//   as zeroes; allocated chunks are data, even when they hold zeroes (write zeroes with
//   noUnmap keeps its chunks). The answer covers the whole range in one array and costs
//   O(log n + allocated chunks in the range), so a 1 TiB device answers at once.
// - Defaults: 512-byte logical blocks, 4096-byte physical blocks (a page, as brd),
//   maxTransferBytes 32 MiB, copy limits DEFAULT_COPY_LIMITS.

import type {
  BlockDevice,
  BlockStatusExtent,
  CopyPathBytes,
  CopyRange,
  DeviceCopyOptions,
  DeviceDetails,
  IoOptions,
  ReadLoan,
  WriteOptions,
  WriteZeroesOptions,
} from '../block/device.js';
import { BlockDeviceBase } from '../block/base.js';
import { readFully } from '../block/io.js';
import { DEFAULT_COPY_LIMITS, type CopyLimits, type QueueLimits } from '../block/limits.js';
import { SparseStore, SPARSE_CHUNK_BYTES } from './sparse-store.js';

export interface RamDeviceOptions {
  /** Default: ram0, ram1, ... */
  name?: string;
  /** Bytes, a multiple of logicalBlockSize. */
  size: number;
  /** 512 (default) or 4096. */
  logicalBlockSize?: 512 | 4096;
  /** Default 4096. */
  physicalBlockSize?: number;
  /** Largest read or write; default 32 MiB. */
  maxTransferBytes?: number;
  readOnly?: boolean;
  /** false: no copy offload. Otherwise overrides of DEFAULT_COPY_LIMITS. */
  copy?: false | Partial<CopyLimits>;
}

export const RAM_DEFAULT_MAX_TRANSFER_BYTES = 32 * 1024 * 1024;

let nextIndex = 0;

/** Limits shared by the memory-backed devices (ram, null). */
export function memoryDeviceLimits(options: Omit<RamDeviceOptions, 'name'>): QueueLimits {
  const lbs = options.logicalBlockSize ?? 512;
  const wholeDevice = Math.max(lbs, options.size);
  return {
    logicalBlockSize: lbs,
    physicalBlockSize: options.physicalBlockSize ?? Math.max(lbs, 4096),
    maxTransferBytes: options.maxTransferBytes ?? RAM_DEFAULT_MAX_TRANSFER_BYTES,
    readOnly: options.readOnly ?? false,
    ...(options.copy === false ? {} : { copy: { ...DEFAULT_COPY_LIMITS, ...options.copy } }),
    discard: { granularity: lbs, maxBytes: wholeDevice, zeroesData: true },
    writeZeroes: { maxBytes: wholeDevice, unmaps: true },
  };
}

export class RamDevice extends BlockDeviceBase {
  readonly kind = 'ram';
  readonly #store: SparseStore;

  constructor(options: RamDeviceOptions) {
    super(options.name ?? `ram${nextIndex++}`, options.size, memoryDeviceLimits(options));
    this.#store = new SparseStore(options.size, SPARSE_CHUNK_BYTES);
  }

  /** Bytes of memory holding data (whole chunks). */
  allocatedBytes(): number {
    return this.#store.allocatedBytes;
  }

  /** Chunks lent by readLoan() and not yet released. */
  get lentChunks(): number {
    return this.#store.lentChunks;
  }

  override details(): DeviceDetails {
    return {
      allocatedBytes: this.#store.allocatedBytes,
      chunkBytes: this.#store.chunkBytes,
    };
  }

  /** The store's chunks themselves, copy-on-write while lent (SparseStore.lend). */
  protected override doReadLoan(
    offset: number,
    length: number,
    _options?: IoOptions,
  ): Promise<ReadLoan | undefined> {
    return Promise.resolve(this.#store.lend(offset, length));
  }

  protected async doRead(offset: number, buffer: Uint8Array, _options?: IoOptions): Promise<void> {
    this.#store.read(offset, buffer);
  }

  protected async doWrite(offset: number, data: Uint8Array, _options?: WriteOptions): Promise<void> {
    // Memory is as durable as this device gets, so FUA needs nothing more.
    this.#store.write(offset, data);
  }

  protected async doFlush(_options?: IoOptions): Promise<void> {}

  protected async doClose(): Promise<void> {
    this.#store.clear();
  }

  protected override async doBlockStatus(
    offset: number,
    length: number,
    _options?: IoOptions,
  ): Promise<BlockStatusExtent[]> {
    return this.#store.extents(offset, length);
  }

  protected override async doDiscard(offset: number, length: number, _options?: IoOptions): Promise<void> {
    this.#store.zero(offset, length);
  }

  protected override async doWriteZeroes(
    offset: number,
    length: number,
    options?: WriteZeroesOptions,
  ): Promise<void> {
    this.#store.zero(offset, length, options?.noUnmap === true);
  }

  protected override async doCopy(
    source: BlockDevice,
    ranges: readonly CopyRange[],
    _options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    let total = 0;
    for (const r of ranges) total += r.len;
    if (source === this) {
      // One synchronous pass over the store: it cannot fail part way.
      this.#store.copy(ranges);
      return { offloaded: total, emulated: 0 };
    }
    // Only a subclass that widens canCopyFrom gets here: read every source first, then write.
    const data: Buffer[] = [];
    for (const r of ranges) {
      const buf = Buffer.allocUnsafe(r.len);
      await readFully(source, r.src, buf);
      data.push(buf);
    }
    ranges.forEach((r, i) => this.#store.write(r.dst, data[i]!));
    return { offloaded: total, emulated: 0 };
  }
}
