// ZonedDevice: a ZNS-style zoned device over any other BlockDevice — the userspace
// counterpart of null_blk's zoned mode or an NVMe ZNS namespace. Offsets map 1:1 onto the
// backing device; zone states and write pointers live in a ZoneTable (zone-table.ts).
//
// What a user must know:
// - Zone state is in memory only. A new ZonedDevice over the same backing starts with every
//   sequential zone EMPTY, and bytes above a write pointer always read as zeroes, so data
//   written to sequential zones before a restart is not visible afterwards.
// - Geometry: the size is the backing's size. When it is not a multiple of zoneSize the last
//   zone is smaller (a runt zone, as null_blk) with capacity min(zoneCapacity, its length).
//   The first `conventionalZones` zones are conventional (NOT_WP: any write, no write
//   pointer); at least one sequential zone must remain.
// - Reads may cross zones. Bytes at or above a sequential zone's write pointer (after finish:
//   above the last written byte) read as zeroes without reading the backing. Reading an
//   OFFLINE zone fails ZONE_OFFLINE.
// - Writes, write zeroes and copy destinations in a sequential zone start at the write
//   pointer and stay inside the zone and its capacity. A write starting in conventional zones
//   may span conventional zones only. Zone errors are EIO, except TOO_MANY_OPEN_ZONES
//   (ETOOMANYREFS), TOO_MANY_ACTIVE_ZONES (EOVERFLOW), and management or zone append on a
//   conventional zone (EINVAL). A write to a READ_ONLY zone is EIO / ZONE_READ_ONLY.
// - Transitions (ZNS 1.1, as null_blk): open from EMPTY/IMPLICIT_OPEN/CLOSED, no-op when
//   EXPLICIT_OPEN; close an open zone → CLOSED (EMPTY when it holds no data), no-op when
//   CLOSED, invalid from EMPTY/FULL; finish from EMPTY/open/CLOSED → FULL, no-op when FULL,
//   and never needs open/active resources; reset from anything but READ_ONLY/OFFLINE.
//   Reaching the open limit closes the least recently written implicitly open zone; explicitly
//   open zones are never closed for room.
// - Concurrency: every operation that changes a sequential zone (write, write zeroes, zone
//   append, copy, management, setZoneCondition) joins a per-zone FIFO in submission order and
//   is checked when it reaches the head — at once when nothing is queued before it. So
//   ascending writes issued without awaiting all succeed, concurrent appends get consecutive
//   offsets, and a write queued behind a failing one fails ZONE_INVALID_WRITE. The write
//   pointer advances only after the backing write completes; a zone a failed write opened
//   while empty goes back to EMPTY.
// - Discard: offered when the backing offers it, on conventional zones only; a range reaching
//   a sequential zone is EINVAL (free those with reset-zone). Write zeroes: offered when the
//   backing offers it; on a sequential zone it is a write at the write pointer.
// - Reset discards the zone's written bytes on the backing when the backing supports discard
//   (to free space); the zone reads as zeroes either way. As null_blk, the zone is EMPTY even
//   when that discard fails, and the reset then reports the failure.
// - Copy: offered when the backing can copy within itself; the source must be this device.
//   Destinations follow the write-pointer rules range by range in request order; the first
//   violation ends the request with a CopyError whose `completed` covers the ranges before
//   it. Source bytes above a write pointer are copied as zeroes (written with write zeroes).
//   The copied pieces go down to the backing in one request when they fit its limits, and the
//   zero-filled pieces (sources above a write pointer) are written after them, so every source
//   is read before any destination is written. When the copied pieces need several backing
//   requests and one writes what another reads, their sources are read into memory first
//   (counted as emulated bytes; EOPNOTSUPP when offload was forced).
// - blockStatus: bytes at or above a sequential zone's write pointer (the same bound reads
//   use) are holes that read as zeroes; below it, and in conventional zones, the backing is
//   asked (a RAM backing reports written-then-zeroed chunks as holes). An OFFLINE zone is
//   reported as data rather than failing: "data" is always correct, and a read then fails
//   with ZONE_OFFLINE where the caller can see it. An answer stops where the backing's
//   answer falls short or after ZONED_MAX_STATUS_EXTENTS extents; the caller asks again.
// - close() flushes but leaves the backing device open: its owner closes it.

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
import { readFully, writeFully } from '../block/io.js';
import {
  BlockError,
  CopyError,
  ErrorCode,
  ZoneError,
  throwIfAborted,
  toBlockError,
} from '../block/errors.js';
import { copyOffloadEnabled, isPowerOfTwo, type QueueLimits } from '../block/limits.js';
import { ZoneState, type Zone } from '../block/zone.js';
import { ZoneTable, type ForcedZoneCondition, type ZoneTableGeometry } from './zone-table.js';
import { ExtentList } from '../util/extent-list.js';

/** Most extents in one blockStatus answer. */
export const ZONED_MAX_STATUS_EXTENTS = 1024;

export interface ZonedDeviceOptions {
  /** Default: zoned-<backing name>. */
  name?: string;
  /** Bytes per zone, a power of two of at least the logical block size. */
  zoneSize: number;
  /** Writable bytes per sequential zone, at most zoneSize. Default zoneSize. */
  zoneCapacity?: number;
  /** Conventional zones at the start of the device. Default 0. */
  conventionalZones?: number;
  /** Most zones open at once; 0 (default) = no limit. */
  maxOpenZones?: number;
  /** Most zones open or closed at once; 0 (default) = no limit. */
  maxActiveZones?: number;
  /** Largest zone append; default (and at most) the backing's maxTransferBytes. */
  maxZoneAppendBytes?: number;
  /** Default: the backing's readOnly. */
  readOnly?: boolean;
}

export class ZonedDevice extends BlockDeviceBase {
  readonly kind = 'zoned';
  readonly backing: BlockDevice;
  readonly #table: ZoneTable;
  readonly #queues = new ZoneQueues();

  constructor(backing: BlockDevice, options: ZonedDeviceOptions) {
    const name = options.name ?? `zoned-${backing.name}`;
    const { limits, geometry } = zonedGeometry(name, backing, options);
    super(name, backing.size, limits);
    this.backing = backing;
    this.#table = new ZoneTable(geometry);
  }

  override canCopyFrom(source: BlockDevice): boolean {
    return (
      source === this &&
      this.limits.copy !== undefined &&
      copyOffloadEnabled(this.backing.limits) &&
      this.backing.canCopyFrom(this.backing)
    );
  }

  /**
   * Test hook, like null_blk's zone_readonly / zone_offline: forces a sequential zone READ_ONLY
   * or OFFLINE (its open/active resources are freed, its data kept), or back to EMPTY.
   */
  async setZoneCondition(zoneStart: number, condition: ForcedZoneCondition): Promise<void> {
    const op = 'set-zone-condition';
    this.checkOpen(op);
    const t = this.#table;
    if (!Number.isSafeInteger(zoneStart) || zoneStart < 0 || zoneStart >= this.size)
      throw new BlockError(
        ErrorCode.ERANGE,
        `${op} on ${this.name}: offset ${zoneStart} is outside the device`,
      );
    if (zoneStart % t.geometry.zoneSize !== 0)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${op} on ${this.name}: offset ${zoneStart} is not the start of a zone (zone size ${t.geometry.zoneSize})`,
      );
    if (condition !== 'read-only' && condition !== 'offline' && condition !== 'empty')
      throw new BlockError(ErrorCode.EINVAL, `${op} on ${this.name}: unknown condition ${String(condition)}`);
    const z = t.indexOf(zoneStart);
    if (t.isConventional(z))
      throw new BlockError(
        ErrorCode.EINVAL,
        `${op} on ${this.name}: zone ${z} is conventional and has no condition`,
      );
    await this.#queues.run([z], async () => t.force(z, condition));
  }

  override details(): DeviceDetails {
    const g = this.#table.geometry;
    return {
      backing: this.backing.name,
      zoneSize: g.zoneSize,
      zoneCapacity: g.zoneCapacity,
      nrZones: this.#table.nrZones,
      conventionalZones: g.conventionalZones,
      maxOpenZones: g.maxOpenZones,
      maxActiveZones: g.maxActiveZones,
      openZones: this.#table.openZones,
      activeZones: this.#table.activeZones,
    };
  }

  protected override async doRead(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void> {
    const t = this.#table;
    const end = offset + buffer.length;
    // The backing extents holding data; everything else in the buffer reads as zeroes.
    const extents: Array<{ from: number; to: number }> = [];
    for (let z = t.indexOf(offset); z <= t.indexOf(end - 1); z++) {
      const from = Math.max(offset, t.start(z));
      const to = Math.min(end, t.start(z) + t.length(z), t.readableEnd(z, 'read'));
      if (to <= from) continue;
      const last = extents.at(-1);
      if (last && last.to === from) last.to = to;
      else extents.push({ from, to });
    }
    let pos = offset;
    for (const { from, to } of extents) {
      buffer.fill(0, pos - offset, from - offset);
      pos = to;
    }
    buffer.fill(0, pos - offset);
    for (const { from, to } of extents)
      await this.backing.read(from, buffer.subarray(from - offset, to - offset), options);
  }

  protected override async doBlockStatus(
    offset: number,
    length: number,
    options?: IoOptions,
  ): Promise<BlockStatusExtent[]> {
    const out = new ExtentList();
    for (const seg of this.#statusSegments(offset, offset + length)) {
      if (out.count >= ZONED_MAX_STATUS_EXTENTS) break;
      const len = seg.to - seg.from;
      if (seg.kind === 'zero') out.push(len, true, true);
      else if (seg.kind === 'data') out.push(len, false, false);
      else {
        const answer = await this.backing.blockStatus(seg.from, len, options);
        if (out.pushAll(answer, len) < len) break; // the backing answered a prefix: stop there
      }
    }
    return out.toArray().slice(0, ZONED_MAX_STATUS_EXTENTS); // the backing may have answered many
  }

  /**
   * Cuts [offset, end) by what backs it: 'backing' (conventional zones, bytes below a write
   * pointer), 'zero' (at or above a write pointer) and 'data' (offline zones), adjacent
   * pieces of one kind merged, at most ZONED_MAX_STATUS_EXTENTS pieces.
   */
  #statusSegments(offset: number, end: number): StatusSegment[] {
    const t = this.#table;
    const segs: StatusSegment[] = [];
    const add = (kind: StatusSegment['kind'], from: number, to: number) => {
      if (to <= from) return;
      const last = segs.at(-1);
      if (last && last.kind === kind && last.to === from) last.to = to;
      else segs.push({ kind, from, to });
    };
    for (let pos = offset; pos < end && segs.length < ZONED_MAX_STATUS_EXTENTS;) {
      const z = t.indexOf(pos);
      const zoneEnd = Math.min(end, t.start(z) + t.length(z));
      if (t.isConventional(z)) add('backing', pos, zoneEnd);
      else if (t.state(z) === ZoneState.OFFLINE) add('data', pos, zoneEnd);
      else {
        const valid = Math.min(zoneEnd, Math.max(pos, t.readableEnd(z, 'block-status')));
        add('backing', pos, valid);
        add('zero', valid, zoneEnd);
      }
      pos = zoneEnd;
    }
    return segs;
  }

  protected override doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.#write('write', offset, data.length, options, () =>
      this.backing.write(offset, data, options),
    );
  }

  protected override doWriteZeroes(
    offset: number,
    length: number,
    options?: WriteZeroesOptions,
  ): Promise<void> {
    return this.#write('write-zeroes', offset, length, options, () =>
      this.backing.writeZeroes(offset, length, options),
    );
  }

  protected override async doDiscard(offset: number, length: number, options?: IoOptions): Promise<void> {
    const t = this.#table;
    const last = t.indexOf(offset + length - 1);
    if (!t.isConventional(last))
      throw new BlockError(
        ErrorCode.EINVAL,
        `discard on ${this.name}: bytes ${offset}..${offset + length} reach sequential zone ${last} (start ${t.start(last)}); free sequential zones with reset-zone, not discard`,
        { offset },
      );
    await this.backing.discard(offset, length, options);
  }

  protected override doFlush(options?: IoOptions): Promise<void> {
    return this.backing.flush(options);
  }

  protected override async doClose(): Promise<void> {}

  protected override async doReportZones(offset: number, maxZones: number): Promise<Zone[]> {
    const t = this.#table;
    const first = t.indexOf(offset);
    const n = Math.min(maxZones, t.nrZones - first);
    return Array.from({ length: n }, (_, i) => t.zone(first + i));
  }

  protected override doZoneManagement(
    action: 'open' | 'close' | 'finish' | 'reset',
    zoneStart: number,
    options?: IoOptions,
  ): Promise<void> {
    const t = this.#table;
    const z = t.indexOf(zoneStart);
    const op = `${action}-zone`;
    return this.#queues.run([z], async () => {
      throwIfAborted(options?.signal, op);
      if (action === 'open') t.open(z, op);
      else if (action === 'close') t.close(z, op);
      else if (action === 'finish') t.finish(z, op);
      else await this.#reset(z, op, options);
    });
  }

  protected override async doResetAllZones(options?: IoOptions): Promise<void> {
    const t = this.#table;
    // Zones with data, and zones with work queued that may give them data before our turn.
    const zones = new Set(t.usedZones());
    for (const z of this.#queues.busy()) if (!t.isConventional(z)) zones.add(z);
    const results = await Promise.allSettled(
      [...zones].map((z) =>
        this.#queues.run([z], async () => {
          const s = t.state(z);
          if (s === ZoneState.EMPTY || s === ZoneState.READ_ONLY || s === ZoneState.OFFLINE) return;
          await this.#reset(z, 'reset-all-zones', options);
        }),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw toBlockError(failed.reason, `reset-all-zones on ${this.name}`);
  }

  protected override doZoneAppend(
    zoneStart: number,
    data: Uint8Array,
    options?: WriteOptions,
  ): Promise<number> {
    const t = this.#table;
    const z = t.indexOf(zoneStart);
    const op = 'zone-append';
    if (t.isConventional(z))
      return Promise.reject(
        new BlockError(
          ErrorCode.EINVAL,
          `${op} on ${this.name}: zone ${z} (start ${zoneStart}) is conventional; zone append needs a sequential zone`,
          { zone: ZoneError.ZONE_INVALID_WRITE, offset: zoneStart },
        ),
      );
    return this.#queues.run([z], async () => {
      throwIfAborted(options?.signal, op);
      const at = t.writePointer(z);
      t.checkWrite(z, at, data.length, op);
      let written = 0;
      try {
        await this.backing.write(at, data, options);
        written = data.length;
      } catch (err) {
        throw toBlockError(err, `${op} on ${this.name}`);
      } finally {
        t.endWrite(z, written);
      }
      return at;
    });
  }

  protected override doCopy(
    _source: BlockDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    const t = this.#table;
    // Hold every sequential zone a source or destination touches, so the request sees one
    // state of each and no other write slips between its ranges.
    const zones = new Set<number>();
    const hold = (offset: number, len: number) => {
      const last = t.indexOf(offset + len - 1);
      for (let z = Math.max(t.indexOf(offset), t.geometry.conventionalZones); z <= last; z++) zones.add(z);
    };
    for (const r of ranges) {
      hold(r.src, r.len);
      hold(r.dst, r.len);
    }
    return this.#queues.run([...zones], () => this.#copyHeld(ranges, options));
  }

  /** A write-like operation: passed through in conventional zones, at the write pointer in sequential ones. */
  #write(
    op: string,
    offset: number,
    len: number,
    options: IoOptions | undefined,
    io: () => Promise<void>,
  ): Promise<void> {
    const t = this.#table;
    const first = t.indexOf(offset);
    const last = t.indexOf(offset + len - 1);
    if (t.isConventional(last)) return io();
    if (t.isConventional(first)) return Promise.reject(this.#intoSequential(op, offset, len, last));
    return this.#queues.run([first], async () => {
      throwIfAborted(options?.signal, op);
      t.checkWrite(first, offset, len, op);
      let written = 0;
      try {
        await io();
        written = len;
      } finally {
        t.endWrite(first, written);
      }
    });
  }

  #intoSequential(op: string, offset: number, len: number, z: number): BlockError {
    return new BlockError(
      ErrorCode.EIO,
      `${op} on ${this.name}: bytes ${offset}..${offset + len} run from a conventional zone into sequential zone ${z} at ${this.#table.start(z)}; split the request at the zone boundary`,
      { zone: ZoneError.ZONE_BOUNDARY_ERROR, offset },
    );
  }

  async #reset(z: number, op: string, options?: IoOptions): Promise<void> {
    const start = this.#table.start(z);
    const dataEnd = this.#table.reset(z, op);
    const d = this.backing.limits.discard;
    if (!d || dataEnd <= start) return;
    const step = d.maxBytes - (d.maxBytes % this.limits.logicalBlockSize);
    try {
      for (let pos = start; pos < dataEnd; pos += step)
        await this.backing.discard(pos, Math.min(step, dataEnd - pos), options);
    } catch (err) {
      const e = toBlockError(err, 'discard');
      throw new BlockError(
        e.code,
        `${op} on ${this.name} zone ${z}: the zone is now empty, but freeing its ${dataEnd - start} bytes on ${this.backing.name} failed: ${e.message}`,
        { cause: err, offset: start },
      );
    }
  }

  /** The copy itself, with every zone it touches held. */
  async #copyHeld(ranges: readonly CopyRange[], options: DeviceCopyOptions): Promise<CopyPathBytes> {
    const t = this.#table;
    const plans: CopyPlan[] = [];
    // Write pointer of each destination zone after the ranges planned so far.
    const nextWp = new Map<number, number>();
    let violation: BlockError | undefined;
    try {
      throwIfAborted(options.signal, 'copy');
      for (const [i, r] of ranges.entries()) {
        const op = `copy range ${i}`;
        const pieces = this.#sourcePieces(r, op);
        const zone = this.#destinationZone(r, op);
        if (zone !== undefined) {
          const wp = nextWp.get(zone) ?? t.writePointer(zone);
          t.checkWrite(zone, r.dst, r.len, op, wp);
          nextWp.set(zone, wp + r.len);
        }
        plans.push({ pieces, zone });
      }
    } catch (err) {
      violation = toBlockError(err, `copy on ${this.name}`);
    }
    let failure: BlockError | undefined;
    let emulated = 0;
    try {
      emulated = await this.#runPieces(
        plans.flatMap((p) => p.pieces),
        options,
      );
    } catch (err) {
      failure = toBlockError(err, `copy on ${this.name}`);
    }
    const completed = this.#commitCopy(ranges, plans, nextWp);
    const total = completed.reduce((a, b) => a + b, 0);
    const paths = { offloaded: Math.max(0, total - emulated), emulated: Math.min(total, emulated) };
    const error = failure ?? violation;
    if (error) throw new CopyError(error, completed, paths);
    return paths;
  }

  /**
   * Cuts a range into pieces by what its source holds: 'copy' where the backing has data,
   * 'zero' above a sequential zone's write pointer. Fails ZONE_OFFLINE on an offline zone.
   */
  #sourcePieces(r: CopyRange, op: string): CopyPiece[] {
    const t = this.#table;
    const pieces: CopyPiece[] = [];
    const add = (kind: CopyPiece['kind'], src: number, end: number) => {
      const last = pieces.at(-1);
      if (last && last.kind === kind && last.src + last.len === src) last.len += end - src;
      else pieces.push({ kind, src, dst: r.dst + (src - r.src), len: end - src, done: 0 });
    };
    for (let pos = r.src; pos < r.src + r.len;) {
      const z = t.indexOf(pos);
      const zoneEnd = Math.min(r.src + r.len, t.start(z) + t.length(z));
      const valid = Math.min(zoneEnd, Math.max(pos, t.readableEnd(z, `${op} source`)));
      if (valid > pos) add('copy', pos, valid);
      if (zoneEnd > valid) add('zero', valid, zoneEnd);
      pos = zoneEnd;
    }
    return pieces;
  }

  /** The sequential zone a destination lies in, or undefined for conventional zones. */
  #destinationZone(r: CopyRange, op: string): number | undefined {
    const t = this.#table;
    const first = t.indexOf(r.dst);
    const last = t.indexOf(r.dst + r.len - 1);
    if (t.isConventional(last)) return undefined;
    if (t.isConventional(first)) throw this.#intoSequential(op, r.dst, r.len, last);
    return first; // a range crossing into the next sequential zone fails in checkWrite
  }

  /**
   * Runs the pieces: every 'copy' piece first, through the backing's copy in as few requests
   * as its limits allow, then the 'zero' pieces as write zeroes (or zero-filled writes).
   * Zero pieces read nothing, so running them last keeps the request's
   * as-if-all-sources-read-first rule as long as the copy pieces go down in one request.
   * When they need several requests and one writes bytes a later one reads, the sources are
   * read into memory first instead (bounded by copy.maxBytes), which counts as emulation.
   * Each piece's `done` records the prefix known to be written. Returns the emulated bytes.
   */
  async #runPieces(pieces: CopyPiece[], options: DeviceCopyOptions): Promise<number> {
    const lbs = this.limits.logicalBlockSize;
    const bc = this.backing.limits.copy;
    const copies = pieces.filter((p) => p.kind === 'copy');
    const zeroes = pieces.filter((p) => p.kind === 'zero');
    const maxChunk = bc
      ? Math.min(bc.maxBytes, bc.maxRangeBytes) - (Math.min(bc.maxBytes, bc.maxRangeBytes) % lbs)
      : 0;
    if (copies.length > 0 && (!bc || maxChunk === 0))
      throw new BlockError(
        ErrorCode.EOPNOTSUPP,
        `copy on ${this.name}: ${this.backing.name} no longer offers copy`,
      );
    type Chunk = { piece: CopyPiece; at: number; len: number };
    const batches: Chunk[][] = [];
    let batch: Chunk[] = [];
    let batchBytes = 0;
    for (const piece of copies) {
      for (let at = 0; at < piece.len; at += maxChunk) {
        const len = Math.min(maxChunk, piece.len - at);
        if (batch.length > 0 && (batch.length >= bc!.maxRanges || batchBytes + len > bc!.maxBytes)) {
          batches.push(batch);
          batch = [];
          batchBytes = 0;
        }
        batch.push({ piece, at, len });
        batchBytes += len;
      }
    }
    if (batch.length > 0) batches.push(batch);

    let emulated = 0;
    const hazard =
      batches.length > 1 &&
      copies.some((a) => copies.some((b) => a.src < b.dst + b.len && b.dst < a.src + a.len));
    if (hazard) {
      if (!options.allowEmulation)
        throw new BlockError(
          ErrorCode.EOPNOTSUPP,
          `copy on ${this.name}: overlapping ranges need ${batches.length} requests on ${this.backing.name} and ` +
            'would have to be buffered; offload was forced',
        );
      const io = options.signal ? { signal: options.signal } : {};
      const bufs: Buffer[] = [];
      for (const p of copies) {
        const b = Buffer.allocUnsafe(p.len);
        await readFully(this.backing, p.src, b, io);
        bufs.push(b);
      }
      for (const [i, p] of copies.entries()) {
        throwIfAborted(options.signal, 'copy');
        await writeFully(this.backing, p.dst, bufs[i]!, io);
        p.done = p.len;
        emulated += p.len;
      }
    } else {
      for (const b of batches) {
        throwIfAborted(options.signal, 'copy');
        let done: readonly number[] = b.map((c) => c.len);
        let error: unknown;
        try {
          await this.backing.copy(
            this.backing,
            b.map((c) => ({ src: c.piece.src + c.at, dst: c.piece.dst + c.at, len: c.len })),
            { allowEmulation: options.allowEmulation, ...(options.signal ? { signal: options.signal } : {}) },
          );
        } catch (err) {
          error = err;
          done = CopyError.isCopyError(err) ? err.completed : b.map(() => 0);
        }
        // Only a piece's contiguous prefix counts.
        b.forEach((c, i) => {
          const n = done[i] ?? 0;
          if (c.piece.done === c.at) c.piece.done += n - (n % lbs);
        });
        if (error !== undefined) throw error;
      }
    }
    for (const piece of zeroes) await this.#zeroFill(piece, options);
    return emulated;
  }

  /** Writes zeroes over a piece's destination: the copy of source bytes above a write pointer. */
  async #zeroFill(piece: CopyPiece, options: IoOptions): Promise<void> {
    const wz = this.backing.limits.writeZeroes;
    const lbs = this.limits.logicalBlockSize;
    const step = wz ? wz.maxBytes - (wz.maxBytes % lbs) : this.backing.limits.maxTransferBytes;
    const io = options.signal ? { signal: options.signal } : {};
    let zeroes: Uint8Array | undefined;
    while (piece.done < piece.len) {
      throwIfAborted(options.signal, 'copy');
      const n = Math.min(step, piece.len - piece.done);
      const at = piece.dst + piece.done;
      if (wz) await this.backing.writeZeroes(at, n, io);
      else
        await this.backing.write(
          at,
          (zeroes ??= new Uint8Array(Math.min(step, piece.len))).subarray(0, n),
          io,
        );
      piece.done += n;
    }
  }

  /**
   * Turns piece progress into per-range prefixes and advances each destination zone's write
   * pointer over the contiguous bytes written from its old position. A range after a short
   * one in the same zone counts as not copied: the write pointer did not reach it.
   */
  #commitCopy(ranges: readonly CopyRange[], plans: CopyPlan[], nextWp: Map<number, number>): number[] {
    const completed = ranges.map(() => 0);
    const written = new Map<number, number>();
    const short = new Set<number>();
    plans.forEach((p, i) => {
      let c = 0;
      for (const piece of p.pieces) {
        c += piece.done;
        if (piece.done < piece.len) break;
      }
      if (p.zone !== undefined) {
        if (short.has(p.zone)) c = 0;
        else {
          written.set(p.zone, (written.get(p.zone) ?? 0) + c);
          if (c < ranges[i]!.len) short.add(p.zone);
        }
      }
      completed[i] = c;
    });
    for (const z of nextWp.keys()) this.#table.endWrite(z, written.get(z) ?? 0);
    return completed;
  }
}

interface CopyPiece {
  readonly kind: 'copy' | 'zero';
  readonly src: number;
  readonly dst: number;
  len: number;
  /** Bytes of the piece's prefix known written. */
  done: number;
}

/** A piece of a blockStatus range: ask the backing, or known without asking. */
interface StatusSegment {
  readonly kind: 'backing' | 'zero' | 'data';
  readonly from: number;
  to: number;
}

interface CopyPlan {
  readonly pieces: CopyPiece[];
  /** The sequential destination zone, undefined for conventional zones. */
  readonly zone: number | undefined;
}

/**
 * Per-zone FIFOs: run(zones, fn) starts fn once every operation submitted earlier on any of
 * those zones has finished. Joining all queues happens synchronously at submission, so the
 * order is the submission order and there are no lock cycles.
 */
class ZoneQueues {
  readonly #tails = new Map<number, Promise<void>>();

  run<T>(zones: readonly number[], fn: () => Promise<T>): Promise<T> {
    const before: Promise<void>[] = [];
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    for (const z of zones) {
      const tail = this.#tails.get(z);
      if (tail) before.push(tail);
      this.#tails.set(z, mine);
    }
    const go = async (): Promise<T> => {
      if (before.length > 0) await Promise.all(before);
      try {
        return await fn();
      } finally {
        for (const z of zones) if (this.#tails.get(z) === mine) this.#tails.delete(z);
        release();
      }
    };
    return go();
  }

  /** Zones with work queued or running. */
  busy(): number[] {
    return [...this.#tails.keys()];
  }
}

/** Checks the options against the backing and derives the limits and zone geometry. */
function zonedGeometry(
  name: string,
  backing: BlockDevice,
  o: ZonedDeviceOptions,
): { limits: QueueLimits; geometry: ZoneTableGeometry } {
  const bad = (msg: string): never => {
    throw new BlockError(ErrorCode.EINVAL, `zoned device ${name}: ${msg}`);
  };
  const b = backing.limits;
  const lbs = b.logicalBlockSize;
  const count = (what: string, n: number | undefined): number => {
    if (n === undefined) return 0;
    if (!Number.isSafeInteger(n) || n < 0) bad(`${what} ${n} must be a non-negative integer`);
    return n;
  };
  if (b.zoned)
    bad(`backing device ${backing.name} is already zoned; stack a zoned device over a conventional one`);
  if (backing.size === 0) bad(`backing device ${backing.name} is empty`);
  const zoneSize = o.zoneSize;
  if (!isPowerOfTwo(zoneSize) || zoneSize < lbs)
    bad(
      `zoneSize ${zoneSize} must be a power of two of at least the ${lbs}-byte logical block size of ${backing.name}`,
    );
  const zoneCapacity = o.zoneCapacity ?? zoneSize;
  if (
    !Number.isSafeInteger(zoneCapacity) ||
    zoneCapacity <= 0 ||
    zoneCapacity > zoneSize ||
    zoneCapacity % lbs
  )
    bad(
      `zoneCapacity ${zoneCapacity} must be a multiple of ${lbs} bytes, more than 0 and at most zoneSize ${zoneSize}`,
    );
  const nrZones = Math.ceil(backing.size / zoneSize);
  const conventionalZones = count('conventionalZones', o.conventionalZones);
  if (conventionalZones >= nrZones)
    bad(
      `conventionalZones ${conventionalZones} leaves no sequential zone: ${backing.name} holds ${nrZones} zones of ${zoneSize} bytes`,
    );
  const maxOpenZones = count('maxOpenZones', o.maxOpenZones);
  const maxActiveZones = count('maxActiveZones', o.maxActiveZones);
  if (maxActiveZones > 0 && maxOpenZones > maxActiveZones)
    bad(`maxOpenZones ${maxOpenZones} exceeds maxActiveZones ${maxActiveZones}: every open zone is active`);
  const maxZoneAppendBytes = o.maxZoneAppendBytes ?? b.maxTransferBytes;
  if (
    !Number.isSafeInteger(maxZoneAppendBytes) ||
    maxZoneAppendBytes <= 0 ||
    maxZoneAppendBytes % lbs ||
    maxZoneAppendBytes > b.maxTransferBytes
  )
    bad(
      `maxZoneAppendBytes ${maxZoneAppendBytes} must be a positive multiple of ${lbs} at most maxTransferBytes ${b.maxTransferBytes}`,
    );
  const copy = b.copy && backing.canCopyFrom(backing) ? { ...b.copy } : undefined;
  const limits: QueueLimits = {
    logicalBlockSize: lbs,
    physicalBlockSize: b.physicalBlockSize,
    maxTransferBytes: b.maxTransferBytes,
    readOnly: (o.readOnly ?? false) || b.readOnly,
    ...(copy ? { copy } : {}),
    ...(b.discard ? { discard: { ...b.discard } } : {}),
    ...(b.writeZeroes ? { writeZeroes: { ...b.writeZeroes } } : {}),
    zoned: { zoneSize, zoneCapacity, nrZones, maxOpenZones, maxActiveZones, maxZoneAppendBytes },
  };
  const geometry = {
    name,
    size: backing.size,
    zoneSize,
    zoneCapacity,
    conventionalZones,
    maxOpenZones,
    maxActiveZones,
  };
  return { limits, geometry };
}
