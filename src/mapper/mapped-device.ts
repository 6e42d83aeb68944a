// MappedDevice: the userspace device-mapper. A table of contiguous targets covers the device;
// every request is cut at target (and extent) boundaries and forwarded to the components.
//
// - Limits are stacked over every component with stackLimits (dm_calculate_queue_limits):
//   the smallest transfer and copy limits, the largest block size; a component without copy
//   offload makes the mapping unable to offload (copies then emulate above it). The mapping
//   is read-only when a component is or when asked. The copy limits are the mapping's own
//   object, so tuning its copy.maxBytes does not change the components.
// - read / write / discard / writeZeroes: the pieces of one request run concurrently; when
//   one fails the request fails, and pieces on other components may have completed (as a
//   bio split over dm targets). flush goes to every distinct component.
// - copy (source and destination on this device): passed down piece by piece, offloaded
//   where the components can copy together and emulated elsewhere — see mapped-copy.ts.
// - Zoned when every target maps whole zones of zoned components of one geometry (see
//   zones.ts); zone operations then pass through with translated offsets, and resetAllZones
//   resets only the zones the mapping covers (all of a component only when it is mapped
//   whole).
// - blockStatus: each run of the range asks its component for the mapped bytes, in order,
//   and the answers are concatenated (adjacent equal extents merged) until a component
//   answers a prefix short of its run or MAPPED_MAX_STATUS_EXTENTS extents are collected;
//   no extent crosses a target boundary with flags the next target did not report. A
//   component with smaller blocks than the mapping has its answer widened to whole mapping
//   blocks (a shared block is a hole / zero only when every part is). Whatever a target maps
//   onto answers for it: a zero target's device reports holes that read as zeroes, an error
//   target's device "data" (the default), so the error surfaces on read, not here.
// - close() flushes but leaves the components open: whoever opened them owns them.

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
import { toBlockError, type BlockError } from '../block/errors.js';
import { stackLimits, type QueueLimits } from '../block/limits.js';
import { ZoneState, ZoneType, type Zone } from '../block/zone.js';
import { copyThroughTable } from './mapped-copy.js';
import { Table, type MappedRun } from './table.js';
import type { Target } from './target.js';
import { tableZonedLimits } from './zones.js';
import { ExtentList, alignRuns } from '../util/extent-list.js';

/** Most extents in one blockStatus answer; the caller asks again from where it ended. */
export const MAPPED_MAX_STATUS_EXTENTS = 1024;

export interface MappedDeviceOptions {
  /** Default dm-0, dm-1, ... */
  name?: string;
  /** Targets covering [0, size) in order, or a Table built from them. */
  targets: readonly Target[] | Table;
  /** Make the mapping read-only even when every component is writable. */
  readOnly?: boolean;
}

/** A copy of a component's limits that shares no mutable object with it. */
function ownLimits(l: QueueLimits): QueueLimits {
  const { zoned: _zoned, ...rest } = l;
  return { ...rest, ...(l.copy ? { copy: { ...l.copy } } : {}) };
}

/** The mapping's limits: every component stacked, then the table's own facts. */
export function tableLimits(table: Table, readOnly = false): QueueLimits {
  const [first, ...rest] = table.devices;
  let l = ownLimits(first!.limits);
  for (const d of rest) l = stackLimits(l, d.limits);
  const zoned = tableZonedLimits(table);
  return { ...l, readOnly: l.readOnly || readOnly, ...(zoned ? { zoned } : {}) };
}

/** Waits for every piece and throws the first failure, so no piece is left running unseen. */
async function settleAll(work: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

let nextIndex = 0;

export class MappedDevice extends BlockDeviceBase {
  readonly kind: string;
  readonly table: Table;

  constructor(options: MappedDeviceOptions) {
    const table = options.targets instanceof Table ? options.targets : new Table(options.targets);
    super(options.name ?? `dm-${nextIndex++}`, table.size, tableLimits(table, options.readOnly ?? false));
    this.table = table;
    this.kind = table.targets.every((t) => t.type === 'linear') ? 'linear' : 'mapped';
  }

  /** The components, distinct, in table order. */
  get devices(): readonly BlockDevice[] {
    return this.table.devices;
  }

  override details(): DeviceDetails {
    return {
      targets: this.table.targets.length,
      components: this.table.devices.map((d) => d.name).join(','),
      table: this.table.toString(),
    };
  }

  protected async doRead(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void> {
    await settleAll(
      this.table
        .runs(offset, buffer.length)
        .map((r) =>
          r.device.read(r.offset, buffer.subarray(r.pos - offset, r.pos - offset + r.length), options),
        ),
    );
  }

  protected async doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await settleAll(
      this.table
        .runs(offset, data.length)
        .map((r) =>
          r.device.write(r.offset, data.subarray(r.pos - offset, r.pos - offset + r.length), options),
        ),
    );
  }

  protected async doFlush(options?: IoOptions): Promise<void> {
    await settleAll(this.table.devices.map((d) => d.flush(options)));
  }

  protected async doClose(): Promise<void> {}

  protected override async doDiscard(offset: number, length: number, options?: IoOptions): Promise<void> {
    await settleAll(
      this.table.runs(offset, length).map((r) => r.device.discard(r.offset, r.length, options)),
    );
  }

  protected override async doWriteZeroes(
    offset: number,
    length: number,
    options?: WriteZeroesOptions,
  ): Promise<void> {
    await settleAll(
      this.table.runs(offset, length).map((r) => r.device.writeZeroes(r.offset, r.length, options)),
    );
  }

  protected override async doBlockStatus(
    offset: number,
    length: number,
    options?: IoOptions,
  ): Promise<BlockStatusExtent[]> {
    const lbs = this.limits.logicalBlockSize;
    const out = new ExtentList();
    for (const r of this.table.runs(offset, length)) {
      if (out.count >= MAPPED_MAX_STATUS_EXTENTS) break;
      const answer = await this.#component('block-status', () =>
        r.device.blockStatus(r.offset, r.length, options),
      );
      const runs = r.device.limits.logicalBlockSize < lbs ? alignRuns(answer, lbs) : answer;
      if (out.pushAll(runs, r.length) < r.length) break; // a prefix: the caller asks again from its end
    }
    return out.toArray().slice(0, MAPPED_MAX_STATUS_EXTENTS); // a component may have answered many
  }

  protected override doCopy(
    _source: BlockDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    // canCopyFrom (the base's) admits only this device, so both ends remap through the table.
    return copyThroughTable(this.name, this.table, ranges, options);
  }

  // Zone operations. The base has checked that the device is zoned and that zoneStart is a
  // zone start; since targets map whole zones, a zone is one run on one component.

  /** Maps a component zone back into this device's offsets. */
  #translate(z: Zone, run: MappedRun): Zone {
    const delta = run.pos - run.offset;
    return { ...z, start: z.start + delta, writePointer: z.writePointer + delta };
  }

  protected override async doReportZones(offset: number, maxZones: number): Promise<Zone[]> {
    const zoneSize = this.limits.zoned!.zoneSize;
    const out: Zone[] = [];
    for (let pos = offset - (offset % zoneSize); pos < this.size && out.length < maxZones;) {
      const run = this.table.runAt(pos);
      const zones = await this.#component('report-zones', () =>
        run.device.reportZones(run.offset, Math.min(maxZones - out.length, Math.ceil(run.length / zoneSize))),
      );
      for (const z of zones) {
        if (z.start >= run.offset + run.length || out.length >= maxZones) break;
        out.push(this.#translate(z, run));
      }
      pos += run.length;
    }
    return out;
  }

  protected override async doZoneManagement(
    action: 'open' | 'close' | 'finish' | 'reset',
    zoneStart: number,
    options?: IoOptions,
  ): Promise<void> {
    const run = this.table.runAt(zoneStart);
    const d = run.device;
    await this.#component(`${action}-zone`, () => {
      switch (action) {
        case 'open':
          return d.openZone(run.offset, options);
        case 'close':
          return d.closeZone(run.offset, options);
        case 'finish':
          return d.finishZone(run.offset, options);
        case 'reset':
          return d.resetZone(run.offset, options);
      }
    });
  }

  protected override async doResetAllZones(options?: IoOptions): Promise<void> {
    const whole = new Set<BlockDevice>();
    const work: Promise<void>[] = [];
    for (const t of this.table.targets) {
      const e = t.map(0);
      if (e.offset === 0 && t.length === e.device.size) {
        if (!whole.has(e.device)) work.push(e.device.resetAllZones(options));
        whole.add(e.device);
      } else work.push(this.#resetZonesOf(t, options));
    }
    await this.#component('reset-all-zones', () => settleAll(work));
  }

  /** Resets every written sequential zone of a target that maps part of its component. */
  async #resetZonesOf(t: Target, options?: IoOptions): Promise<void> {
    const e = t.map(0);
    const zoneSize = this.limits.zoned!.zoneSize;
    const zones = await e.device.reportZones(e.offset, Math.ceil(t.length / zoneSize));
    const resettable = (z: Zone) =>
      z.type !== ZoneType.CONVENTIONAL &&
      z.start < e.offset + t.length &&
      z.state !== ZoneState.EMPTY &&
      z.state !== ZoneState.OFFLINE &&
      z.state !== ZoneState.READ_ONLY;
    for (const z of zones.filter(resettable)) await e.device.resetZone(z.start, options);
  }

  protected override async doZoneAppend(
    zoneStart: number,
    data: Uint8Array,
    options?: WriteOptions,
  ): Promise<number> {
    const run = this.table.runAt(zoneStart);
    const at = await this.#component('zone-append', () => run.device.zoneAppend(run.offset, data, options));
    return at + (run.pos - run.offset);
  }

  /** Runs a component call, naming this device in errors that are not already BlockErrors. */
  async #component<T>(op: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw toBlockError(err, `${op} on ${this.name}`) as BlockError;
    }
  }
}
