// A base class for devices: it runs the shared checks before every operation and turns
// anything a backend throws into a BlockError, so a device only writes its data path
// (nbdkit's plugin shape: implement what you support, the server checks the rest).

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
  ReadLoan,
} from './device.js';
import { checkDeviceCopy, checkRange, checkTransfer, checkWritable } from './checks.js';
import { BlockError, CopyError, ErrorCode, throwIfAborted, toBlockError } from './errors.js';
import { validateLimits, type QueueLimits } from './limits.js';
import type { Zone } from './zone.js';

export abstract class BlockDeviceBase implements BlockDevice {
  abstract readonly kind: string;
  readonly name: string;
  readonly size: number;
  readonly limits: QueueLimits;
  #closed = false;

  constructor(name: string, size: number, limits: QueueLimits) {
    validateLimits(limits, size);
    this.name = name;
    this.size = size;
    this.limits = limits;
  }

  get closed(): boolean {
    return this.#closed;
  }

  protected checkOpen(op: string): void {
    if (this.#closed) throw new BlockError(ErrorCode.EBADF, `${op} on ${this.name}: device is closed`);
  }

  async read(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void> {
    this.checkOpen('read');
    checkRange(this, 'read', offset, buffer.length);
    checkTransfer(this, 'read', buffer.length);
    throwIfAborted(options?.signal, 'read');
    if (buffer.length === 0) return;
    try {
      await this.doRead(offset, buffer, options);
    } catch (err) {
      throw toBlockError(err, `read on ${this.name}`);
    }
  }

  async readLoan(offset: number, length: number, options?: IoOptions): Promise<ReadLoan | undefined> {
    this.checkOpen('read');
    checkRange(this, 'read', offset, length);
    checkTransfer(this, 'read', length);
    throwIfAborted(options?.signal, 'read');
    try {
      return await this.doReadLoan(offset, length, options);
    } catch (err) {
      throw toBlockError(err, `read on ${this.name}`);
    }
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.checkOpen('write');
    checkWritable(this, 'write');
    checkRange(this, 'write', offset, data.length);
    checkTransfer(this, 'write', data.length);
    throwIfAborted(options?.signal, 'write');
    if (data.length === 0) return;
    try {
      await this.doWrite(offset, data, options);
    } catch (err) {
      throw toBlockError(err, `write on ${this.name}`);
    }
  }

  async flush(options?: IoOptions): Promise<void> {
    this.checkOpen('flush');
    throwIfAborted(options?.signal, 'flush');
    if (this.limits.readOnly) return;
    try {
      await this.doFlush(options);
    } catch (err) {
      throw toBlockError(err, `flush on ${this.name}`);
    }
  }

  async discard(offset: number, length: number, options?: IoOptions): Promise<void> {
    this.checkOpen('discard');
    const d = this.limits.discard;
    if (!d)
      throw new BlockError(ErrorCode.EOPNOTSUPP, `discard on ${this.name}: device does not support discard`);
    checkWritable(this, 'discard');
    checkRange(this, 'discard', offset, length);
    if (length > d.maxBytes)
      throw new BlockError(
        ErrorCode.E2BIG,
        `discard on ${this.name}: ${length} bytes exceed max ${d.maxBytes}`,
      );
    throwIfAborted(options?.signal, 'discard');
    if (length === 0) return;
    try {
      await this.doDiscard(offset, length, options);
    } catch (err) {
      throw toBlockError(err, `discard on ${this.name}`);
    }
  }

  async writeZeroes(offset: number, length: number, options?: WriteZeroesOptions): Promise<void> {
    this.checkOpen('write-zeroes');
    const wz = this.limits.writeZeroes;
    if (!wz)
      throw new BlockError(
        ErrorCode.EOPNOTSUPP,
        `write-zeroes on ${this.name}: device does not support write zeroes`,
      );
    checkWritable(this, 'write-zeroes');
    checkRange(this, 'write-zeroes', offset, length);
    if (length > wz.maxBytes)
      throw new BlockError(
        ErrorCode.E2BIG,
        `write-zeroes on ${this.name}: ${length} bytes exceed max ${wz.maxBytes}`,
      );
    throwIfAborted(options?.signal, 'write-zeroes');
    if (length === 0) return;
    try {
      await this.doWriteZeroes(offset, length, options);
    } catch (err) {
      throw toBlockError(err, `write-zeroes on ${this.name}`);
    }
  }

  async blockStatus(offset: number, length: number, options?: IoOptions): Promise<BlockStatusExtent[]> {
    this.checkOpen('block-status');
    checkRange(this, 'block-status', offset, length);
    throwIfAborted(options?.signal, 'block-status');
    if (length === 0) return [];
    let extents: BlockStatusExtent[];
    try {
      extents = await this.doBlockStatus(offset, length, options);
    } catch (err) {
      throw toBlockError(err, `block-status on ${this.name}`);
    }
    return clampExtents(extents, length);
  }

  canCopyFrom(source: BlockDevice): boolean {
    return this.limits.copy !== undefined && source === this;
  }

  async copy(
    source: BlockDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    this.checkOpen('copy');
    checkDeviceCopy(source, this, ranges);
    throwIfAborted(options.signal, 'copy');
    try {
      return await this.doCopy(source, ranges, options);
    } catch (err) {
      if (CopyError.isCopyError(err)) throw err;
      // A backend that did not say how far it got has copied nothing we can vouch for.
      throw new CopyError(
        toBlockError(err, `copy on ${this.name}`),
        ranges.map(() => 0),
      );
    }
  }

  async reportZones(offset: number, maxZones?: number): Promise<Zone[]> {
    this.checkOpen('report-zones');
    this.checkZoned('report-zones');
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.size)
      throw new BlockError(
        ErrorCode.ERANGE,
        `report-zones on ${this.name}: offset ${offset} is outside the device`,
      );
    if (maxZones !== undefined && (!Number.isSafeInteger(maxZones) || maxZones < 0))
      throw new BlockError(ErrorCode.EINVAL, `report-zones on ${this.name}: maxZones ${maxZones} is invalid`);
    return this.doReportZones(offset, maxZones ?? Number.MAX_SAFE_INTEGER);
  }

  openZone(zoneStart: number, options?: IoOptions): Promise<void> {
    return this.zoneOp('open', zoneStart, options);
  }
  closeZone(zoneStart: number, options?: IoOptions): Promise<void> {
    return this.zoneOp('close', zoneStart, options);
  }
  finishZone(zoneStart: number, options?: IoOptions): Promise<void> {
    return this.zoneOp('finish', zoneStart, options);
  }
  resetZone(zoneStart: number, options?: IoOptions): Promise<void> {
    return this.zoneOp('reset', zoneStart, options);
  }

  async resetAllZones(options?: IoOptions): Promise<void> {
    this.checkOpen('reset-all-zones');
    this.checkZoned('reset-all-zones');
    checkWritable(this, 'reset-all-zones');
    throwIfAborted(options?.signal, 'reset-all-zones');
    await this.doResetAllZones(options);
  }

  async zoneAppend(zoneStart: number, data: Uint8Array, options?: WriteOptions): Promise<number> {
    this.checkOpen('zone-append');
    const z = this.checkZoned('zone-append');
    checkWritable(this, 'zone-append');
    this.checkZoneStart('zone-append', zoneStart);
    // The append lands at the write pointer, not at zoneStart, so only alignment is checked
    // here; the zoned device checks the zone's capacity and boundary.
    if (data.length % this.limits.logicalBlockSize !== 0)
      throw new BlockError(
        ErrorCode.EINVAL,
        `zone-append on ${this.name}: length ${data.length} is not a multiple of the ${this.limits.logicalBlockSize}-byte block size`,
      );
    if (data.length === 0) throw new BlockError(ErrorCode.EINVAL, `zone-append on ${this.name}: no data`);
    if (data.length > z.maxZoneAppendBytes)
      throw new BlockError(
        ErrorCode.E2BIG,
        `zone-append on ${this.name}: ${data.length} bytes exceed maxZoneAppendBytes ${z.maxZoneAppendBytes}`,
      );
    throwIfAborted(options?.signal, 'zone-append');
    return this.doZoneAppend(zoneStart, data, options);
  }

  details(): DeviceDetails {
    return {};
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.limits.readOnly) await this.doFlush();
    } finally {
      this.#closed = true;
      await this.doClose();
    }
  }

  private async zoneOp(
    action: 'open' | 'close' | 'finish' | 'reset',
    zoneStart: number,
    options?: IoOptions,
  ) {
    const op = `${action}-zone`;
    this.checkOpen(op);
    this.checkZoned(op);
    checkWritable(this, op);
    this.checkZoneStart(op, zoneStart);
    throwIfAborted(options?.signal, op);
    await this.doZoneManagement(action, zoneStart, options);
  }

  private checkZoned(op: string) {
    const z = this.limits.zoned;
    if (!z) throw new BlockError(ErrorCode.EOPNOTSUPP, `${op} on ${this.name}: device is not zoned`);
    return z;
  }

  private checkZoneStart(op: string, zoneStart: number): void {
    const z = this.limits.zoned!;
    if (!Number.isSafeInteger(zoneStart) || zoneStart < 0 || zoneStart >= this.size)
      throw new BlockError(
        ErrorCode.ERANGE,
        `${op} on ${this.name}: offset ${zoneStart} is outside the device`,
      );
    if (zoneStart % z.zoneSize !== 0)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${op} on ${this.name}: offset ${zoneStart} is not the start of a zone (zone size ${z.zoneSize})`,
      );
  }

  // The data path. Arguments are already checked: in bounds, aligned, within limits, non-empty.
  protected abstract doRead(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void>;
  protected abstract doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  protected abstract doFlush(options?: IoOptions): Promise<void>;
  protected abstract doClose(): Promise<void>;

  /** Default: nothing to lend (devices whose data sits in their own memory override). */
  protected doReadLoan(
    _offset: number,
    _length: number,
    _options?: IoOptions,
  ): Promise<ReadLoan | undefined> {
    return Promise.resolve(undefined);
  }

  /** Default: everything is data (always correct; devices that know their holes override). */
  protected doBlockStatus(
    _offset: number,
    length: number,
    _options?: IoOptions,
  ): Promise<BlockStatusExtent[]> {
    return Promise.resolve([{ length, hole: false, zero: false }]);
  }

  protected doDiscard(_offset: number, _length: number, _options?: IoOptions): Promise<void> {
    return Promise.reject(new BlockError(ErrorCode.EOPNOTSUPP, `discard on ${this.name}: not implemented`));
  }
  protected doWriteZeroes(_offset: number, _length: number, _options?: WriteZeroesOptions): Promise<void> {
    return Promise.reject(
      new BlockError(ErrorCode.EOPNOTSUPP, `write-zeroes on ${this.name}: not implemented`),
    );
  }
  protected doCopy(
    _source: BlockDevice,
    _ranges: readonly CopyRange[],
    _o: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    return Promise.reject(new BlockError(ErrorCode.EOPNOTSUPP, `copy on ${this.name}: not implemented`));
  }
  protected doReportZones(_offset: number, _maxZones: number): Promise<Zone[]> {
    return Promise.reject(
      new BlockError(ErrorCode.EOPNOTSUPP, `report-zones on ${this.name}: not implemented`),
    );
  }
  protected doZoneManagement(
    action: 'open' | 'close' | 'finish' | 'reset',
    _zoneStart: number,
    _options?: IoOptions,
  ): Promise<void> {
    return Promise.reject(
      new BlockError(ErrorCode.EOPNOTSUPP, `${action}-zone on ${this.name}: not implemented`),
    );
  }
  protected doResetAllZones(_options?: IoOptions): Promise<void> {
    return Promise.reject(
      new BlockError(ErrorCode.EOPNOTSUPP, `reset-all-zones on ${this.name}: not implemented`),
    );
  }
  protected doZoneAppend(_zoneStart: number, _data: Uint8Array, _options?: WriteOptions): Promise<number> {
    return Promise.reject(
      new BlockError(ErrorCode.EOPNOTSUPP, `zone-append on ${this.name}: not implemented`),
    );
  }
}

/**
 * Holds a device's answer to the contract: drops empty extents, cuts the answer at `length`,
 * and never returns nothing (a device that answered nothing gets one data extent).
 */
function clampExtents(extents: readonly BlockStatusExtent[], length: number): BlockStatusExtent[] {
  const out: BlockStatusExtent[] = [];
  let covered = 0;
  for (const e of extents) {
    if (covered >= length) break;
    if (!(e.length > 0)) continue;
    const len = Math.min(e.length, length - covered);
    out.push(len === e.length ? e : { length: len, hole: e.hole, zero: e.zero });
    covered += len;
  }
  if (out.length === 0) out.push({ length, hole: false, zero: false });
  return out;
}
