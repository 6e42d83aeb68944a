// `tsblk dev info <device>`: what a device is and what it can do — size, block sizes, transfer
// and copy limits, which copy path issueCopy will take within the device (offload or
// emulation), discard / write-zeroes, and for zoned devices the zone limits and a summary of
// zone states.

import type { Command } from 'commander';
import type { BlockDevice, DeviceDetails } from '../block/device.js';
import {
  copyOffloadEnabled,
  type CopyLimits,
  type DiscardLimits,
  type WriteZeroesLimits,
  type ZonedLimits,
} from '../block/limits.js';
import { ZONE_STATE_NAMES, ZoneType, type Zone } from '../block/zone.js';
import { withDevices } from './device-args.js';
import { bytesWithSize, formatSize, keyValues, table, writeJson, type CliIo } from './output.js';

/** Zones listed one by one in the summary. */
export const FIRST_ZONES = 8;

export interface ZoneSummary {
  /** Zones per state name ('empty', 'implicit-open', 'full', ...), only states that occur. */
  counts: Record<string, number>;
  /** The first few zones. */
  first: Array<{
    start: number;
    size: number;
    capacity: number;
    writePointer: number;
    type: string;
    state: string;
  }>;
}

export interface CopyPathInfo {
  /** 'offload' when the device can copy within itself, else 'emulation'. */
  path: 'offload' | 'emulation';
  /** A sentence: "offload (device copy) via copy_file_range", "emulation only (...)". */
  description: string;
  engine?: string;
}

export interface DevInfo {
  name: string;
  kind: string;
  size: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  maxTransferBytes: number;
  readOnly: boolean;
  copy: CopyLimits | null;
  copyPath: CopyPathInfo;
  discard: DiscardLimits | null;
  writeZeroes: WriteZeroesLimits | null;
  zoned: ZonedLimits | null;
  zones?: ZoneSummary;
  details: DeviceDetails;
}

/** Which path issueCopy takes for a copy within this device, and why. */
export function copyPathOf(dev: BlockDevice): CopyPathInfo {
  const engine = dev.details().copyEngine;
  if (!dev.limits.copy)
    return { path: 'emulation', description: 'emulation only (the device has no copy offload)' };
  if (!copyOffloadEnabled(dev.limits))
    return { path: 'emulation', description: 'emulation only (offload disabled: copy.maxBytes is 0)' };
  if (!dev.canCopyFrom(dev))
    return { path: 'emulation', description: 'emulation only (the device cannot copy within itself)' };
  return {
    path: 'offload',
    description: `offload (device copy)${engine !== undefined ? ` via ${String(engine)}` : ''}`,
    ...(engine !== undefined ? { engine: String(engine) } : {}),
  };
}

async function zoneSummary(dev: BlockDevice): Promise<ZoneSummary> {
  const zones: Zone[] = await dev.reportZones(0);
  const counts: Record<string, number> = {};
  for (const z of zones) {
    const name = ZONE_STATE_NAMES[z.state];
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return {
    counts,
    first: zones.slice(0, FIRST_ZONES).map((z) => ({
      start: z.start,
      size: z.size,
      capacity: z.capacity,
      writePointer: z.writePointer,
      type: z.type === ZoneType.CONVENTIONAL ? 'conventional' : 'seq-write-required',
      state: ZONE_STATE_NAMES[z.state],
    })),
  };
}

/** Gathers everything `dev info` shows. */
export async function devInfo(dev: BlockDevice): Promise<DevInfo> {
  const l = dev.limits;
  return {
    name: dev.name,
    kind: dev.kind,
    size: dev.size,
    logicalBlockSize: l.logicalBlockSize,
    physicalBlockSize: l.physicalBlockSize,
    maxTransferBytes: l.maxTransferBytes,
    readOnly: l.readOnly,
    copy: l.copy ? { ...l.copy } : null,
    copyPath: copyPathOf(dev),
    discard: l.discard ? { ...l.discard } : null,
    writeZeroes: l.writeZeroes ? { ...l.writeZeroes } : null,
    zoned: l.zoned ? { ...l.zoned } : null,
    ...(l.zoned ? { zones: await zoneSummary(dev) } : {}),
    details: dev.details(),
  };
}

const limit = (n: number) => (n === 0 ? 'no limit' : String(n));

/** The human form of dev info. */
export function renderDevInfo(info: DevInfo): string {
  const rows: Array<[string, string]> = [
    ['device', `${info.name} (${info.kind})`],
    ['size', bytesWithSize(info.size)],
    ['block size', `logical ${info.logicalBlockSize}, physical ${info.physicalBlockSize}`],
    ['max transfer', bytesWithSize(info.maxTransferBytes)],
    ['read-only', info.readOnly ? 'yes' : 'no'],
    ['copy path', info.copyPath.description],
  ];
  const c = info.copy;
  rows.push([
    'copy limits',
    c
      ? `maxBytes ${formatSize(c.maxBytes)}, maxHwBytes ${formatSize(c.maxHwBytes)}, maxRanges ${c.maxRanges}, maxRangeBytes ${formatSize(c.maxRangeBytes)}`
      : 'none (no copy offload)',
  ]);
  const d = info.discard;
  rows.push([
    'discard',
    d
      ? `granularity ${formatSize(d.granularity)}, max ${formatSize(d.maxBytes)}${d.zeroesData ? ', reads zeroes after' : ''}`
      : 'not supported',
  ]);
  const wz = info.writeZeroes;
  rows.push([
    'write zeroes',
    wz ? `max ${formatSize(wz.maxBytes)}${wz.unmaps ? ', unmaps' : ''}` : 'not supported',
  ]);
  const z = info.zoned;
  rows.push([
    'zoned',
    z
      ? `${z.nrZones} zones of ${formatSize(z.zoneSize)} (capacity ${formatSize(z.zoneCapacity)}), ` +
        `max open ${limit(z.maxOpenZones)}, max active ${limit(z.maxActiveZones)}, max append ${formatSize(z.maxZoneAppendBytes)}`
      : 'no',
  ]);
  let out = keyValues(rows);
  if (info.zones) {
    const counts = Object.entries(info.zones.counts)
      .map(([state, n]) => `${state} ${n}`)
      .join(', ');
    out += `\n${keyValues([['zone states', counts]])}\n`;
    out += `first ${info.zones.first.length} zones:\n`;
    out += table(
      [
        ['start', 'size', 'capacity', 'write pointer', 'type', 'state'],
        ...info.zones.first.map((zz) => [
          zz.start,
          formatSize(zz.size),
          formatSize(zz.capacity),
          zz.type === 'conventional' ? '-' : zz.writePointer,
          zz.type,
          zz.state,
        ]),
      ],
      '  ',
    );
  }
  const details = Object.entries(info.details);
  if (details.length)
    out += `\ndetails:\n${keyValues(
      details.map(([k, v]) => [k, String(v)] as const),
      '  ',
    )}`;
  return `${out}\n`;
}

export function registerDevInfo(dev: Command, io: CliIo): void {
  dev
    .command('info')
    .description('show a device: size, block sizes, limits, copy path, zones')
    .argument(
      '<device>',
      'an inline spec (ram:1G, null:1T, file:PATH[,options], nvme-tcp://HOST:PORT/SUBNQN/NSID) or a device name from --config',
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--json', 'print one JSON object')
    .action(async (spec: string, opts: { config?: string; json?: boolean }) => {
      await withDevices(opts.config, async (set) => {
        const info = await devInfo(await set.open(spec));
        if (opts.json) writeJson(io.stdout, info);
        else io.stdout.write(renderDevInfo(info));
      });
    });
}
