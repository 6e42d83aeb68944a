// Device factories of the property test: each kind builds a fresh "world" — the device under
// test plus a peer device for cross-device copies — and the reference models that describe
// them. Devices are small (64–512 KiB) so a sequence runs in milliseconds; limits are drawn
// small too (transfer size, copy range/request limits) so splitting and grouping happen.
//
// Kinds:
//   ram            RamDevice
//   fault          FaultDevice without rules over a RamDevice (must behave as the RamDevice)
//   linear-ram     MappedDevice of LinearTargets: shuffled segments of one RamDevice, so copy
//                  offload passes through
//   linear-ram2    shuffled segments spread over two RamDevices: pieces crossing components
//                  are emulated below the mapping
//   file           FileDevice over a temp file, with the native addon (copy_file_range)
//   file-fallback  FileDevice with the addon disabled (options.native = null): pread/pwrite
//   linear-file    shuffled segments of one FileDevice (copy_file_range passes through)
//   linear-file2   shuffled segments over two FileDevices: cross-file pieces are offloaded too
//   linear-mixed   shuffled segments over a RamDevice and a FileDevice: cross pieces emulated
//   zoned          ZonedDevice over a RamDevice: conventional zones, capacity < zone size,
//                  sometimes a runt last zone; open/active limits unlimited
//   fault-zoned    FaultDevice without rules over that
//   linear-zoned   MappedDevice with one LinearTarget per zone, zones shuffled over one or two
//                  ZonedDevices (zone operations pass through)
// The peer is a RamDevice, or a second FileDevice for the file kinds (so cross-device copies
// between files are offloaded); its block size may differ from the device's.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { BlockDevice } from '../../src/block/device.js';
import type { CopyLimits } from '../../src/block/limits.js';
import { RamDevice } from '../../src/devices/ram.js';
import { FileDevice } from '../../src/devices/file.js';
import { FaultDevice } from '../../src/devices/fault.js';
import { ZonedDevice } from '../../src/devices/zoned.js';
import { MappedDevice } from '../../src/mapper/mapped-device.js';
import { LinearTarget } from '../../src/mapper/linear.js';
import { ModelDevice, type ModelGeometry, type ZoneLayout } from './reference.js';

export const DEVICE_KINDS = [
  'ram',
  'fault',
  'linear-ram',
  'linear-ram2',
  'file',
  'file-fallback',
  'linear-file',
  'linear-file2',
  'linear-mixed',
  'zoned',
  'fault-zoned',
  'linear-zoned',
] as const;
export type DeviceKind = (typeof DEVICE_KINDS)[number];

const KiB = 1024;

export interface ZoneConfig {
  /** Blocks per zone (a power of two). */
  zoneBlocks: number;
  capBlocks: number;
  conventionalZones: number;
  /** Sequential zones (the device has conventionalZones + seqZones zones, plus maybe a runt). */
  seqZones: number;
  /** Extra blocks forming a smaller last zone (0: none). Not used by linear-zoned. */
  runtBlocks: number;
}

export interface WorldConfig {
  kind: DeviceKind;
  lbs: 512 | 4096;
  /** Size of the device under test in blocks (zoned kinds derive it from the zones). */
  blocks: number;
  maxTransferBytes: number | undefined;
  /** Copy limits of the leaf devices (false: no offload). */
  copy: false | Partial<CopyLimits>;
  zone: ZoneConfig;
  /** Linear kinds: how many segments, and a permutation seed. */
  segments: number;
  shuffle: number;
  /** Linear kinds over two components: which component each segment goes to. */
  split: number;
  peerLbs: 512 | 4096;
  peerBlocks: number;
  /** issueCopy tuning used for every copy of the sequence (both modes). */
  copyOptions: { chunkBytes?: number; concurrency?: number };
}

/** The device under test and its peer, with their models. */
export interface World {
  readonly config: WorldConfig;
  readonly devices: readonly [BlockDevice, BlockDevice];
  readonly models: readonly [ModelDevice, ModelDevice];
  close(): Promise<void>;
}

/** Copy limits drawn small, so issueCopy and the devices split and group requests. */
function copyLimitsArb(): fc.Arbitrary<false | Partial<CopyLimits>> {
  const bytes = fc.constantFrom(4 * KiB, 8 * KiB, 16 * KiB, 64 * KiB, 128 * 1024 * KiB);
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(false as const) },
    { weight: 2, arbitrary: fc.constant({}) },
    {
      weight: 5,
      arbitrary: fc
        .record({
          hw: bytes,
          range: bytes,
          maxRanges: fc.constantFrom(1, 2, 3, 4, 256),
        })
        .map(({ hw, range, maxRanges }) => ({
          maxBytes: hw,
          maxHwBytes: hw,
          maxRangeBytes: range,
          maxRanges,
        })),
    },
    // Offload disabled by the user (copy.maxBytes 0): auto must emulate.
    { weight: 1, arbitrary: fc.constant({ maxBytes: 0, maxHwBytes: 64 * KiB }) },
  );
}

export function worldConfigArb(kind: DeviceKind): fc.Arbitrary<WorldConfig> {
  return fc.constantFrom<512 | 4096>(512, 4096).chain((lbs) => {
    const minBlocks = (64 * KiB) / lbs;
    const maxBlocks = (512 * KiB) / lbs;
    const zoneBlocks = fc.constantFrom(
      ...[8, 16, 32, 64, 128].filter((n) => n * lbs >= 16 * KiB && n * lbs <= 64 * KiB),
    );
    return fc.record({
      kind: fc.constant(kind),
      lbs: fc.constant(lbs),
      blocks: fc.integer({ min: minBlocks, max: maxBlocks }),
      maxTransferBytes: fc
        .constantFrom(undefined, undefined, undefined, 4 * KiB, 8 * KiB, 32 * KiB)
        .map((n) => (n === undefined ? n : Math.max(n, lbs))),
      copy: copyLimitsArb(),
      zone: zoneBlocks.chain((zb) =>
        fc.record({
          zoneBlocks: fc.constant(zb),
          capBlocks: fc.oneof(fc.constant(zb), fc.integer({ min: 1, max: zb })),
          conventionalZones: fc.integer({ min: 0, max: 2 }),
          seqZones: fc.integer({ min: 2, max: 6 }),
          runtBlocks: fc.oneof(
            { weight: 3, arbitrary: fc.constant(0) },
            { weight: 1, arbitrary: fc.integer({ min: 1, max: zb - 1 }) },
          ),
        }),
      ),
      segments: fc.integer({ min: 1, max: 8 }),
      shuffle: fc.nat(),
      split: fc.nat(),
      peerLbs: fc.constantFrom<512 | 4096>(512, 4096),
      peerBlocks: fc.integer({ min: 16, max: 128 }),
      copyOptions: fc.record(
        { chunkBytes: fc.constantFrom(4 * KiB, 8 * KiB, 12 * KiB), concurrency: fc.constantFrom(1, 2, 3) },
        { requiredKeys: [] },
      ),
    });
  });
}

/** A deterministic permutation of 0..n-1 from a seed. */
function permutation(n: number, seed: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Cuts `blocks` into `n` segments (as equal as whole blocks allow), returns their lengths in blocks. */
function segmentLengths(blocks: number, n: number): number[] {
  const k = Math.min(n, blocks);
  return Array.from(
    { length: k },
    (_, i) => Math.floor((blocks * (i + 1)) / k) - Math.floor((blocks * i) / k),
  );
}

function plainModel(dev: BlockDevice, zoned?: ZoneLayout): ModelDevice {
  const geometry: ModelGeometry = {
    name: dev.name,
    size: dev.size,
    logicalBlockSize: dev.limits.logicalBlockSize,
    maxTransferBytes: dev.limits.maxTransferBytes,
    discardMaxBytes: dev.limits.discard?.maxBytes ?? 0,
    writeZeroesMaxBytes: dev.limits.writeZeroes?.maxBytes ?? 0,
    ...(zoned ? { zoned } : {}),
  };
  return new ModelDevice(geometry);
}

/** Components of the linear kinds, in order. */
const LINEAR_COMPONENTS: Partial<Record<DeviceKind, ReadonlyArray<'ram' | 'file'>>> = {
  'linear-ram': ['ram'],
  'linear-ram2': ['ram', 'ram'],
  'linear-file': ['file'],
  'linear-file2': ['file', 'file'],
  'linear-mixed': ['ram', 'file'],
};

let fileCounter = 0;

/** Builds the world for a config. Whatever is opened is closed (and removed) by close(). */
export async function createWorld(config: WorldConfig): Promise<World> {
  const closers: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  try {
    const { dut, zoned } = await createDeviceUnderTest(config, closers);
    const peer =
      config.kind.startsWith('file') || LINEAR_COMPONENTS[config.kind]?.includes('file')
        ? await openFile(config, closers, config.peerBlocks * config.peerLbs, config.peerLbs)
        : track(
            closers,
            new RamDevice({
              size: config.peerBlocks * config.peerLbs,
              logicalBlockSize: config.peerLbs,
              copy: config.copy,
            }),
          );
    return {
      config,
      devices: [dut, peer],
      models: [plainModel(dut, zoned), plainModel(peer)],
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

function track<T extends BlockDevice>(closers: Array<() => Promise<unknown>>, dev: T): T {
  closers.push(() => dev.close());
  return dev;
}

async function openFile(
  config: WorldConfig,
  closers: Array<() => Promise<unknown>>,
  size: number,
  lbs: 512 | 4096,
) {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-prop-'));
  closers.push(() => rm(dir, { recursive: true, force: true }));
  const dev = await FileDevice.open({
    path: join(dir, `dev${fileCounter++}.img`),
    size,
    create: true,
    logicalBlockSize: lbs,
    copy: config.copy,
    ...(config.maxTransferBytes ? { maxTransferBytes: config.maxTransferBytes } : {}),
    ...(config.kind === 'file-fallback' ? { native: null } : {}),
  });
  return track(closers, dev);
}

function ram(config: WorldConfig, closers: Array<() => Promise<unknown>>, size: number): RamDevice {
  return track(
    closers,
    new RamDevice({
      size,
      logicalBlockSize: config.lbs,
      copy: config.copy,
      ...(config.maxTransferBytes ? { maxTransferBytes: config.maxTransferBytes } : {}),
    }),
  );
}

function zonedOver(
  config: WorldConfig,
  closers: Array<() => Promise<unknown>>,
  withRunt: boolean,
): ZonedDevice {
  const z = config.zone;
  const lbs = config.lbs;
  const blocks = (z.conventionalZones + z.seqZones) * z.zoneBlocks + (withRunt ? z.runtBlocks : 0);
  const backing = ram(config, closers, blocks * lbs);
  return track(
    closers,
    new ZonedDevice(backing, {
      zoneSize: z.zoneBlocks * lbs,
      zoneCapacity: z.capBlocks * lbs,
      conventionalZones: z.conventionalZones,
    }),
  );
}

/** The zone layout a ZonedDevice of this config must have. */
function zoneLayout(
  config: WorldConfig,
  conventional: boolean[],
  dev: BlockDevice,
  split: boolean,
): ZoneLayout {
  const z = config.zone;
  const limits = dev.limits.zoned;
  if (!limits) throw new Error(`${dev.name} should be zoned`);
  if (limits.zoneSize !== z.zoneBlocks * config.lbs || limits.zoneCapacity !== z.capBlocks * config.lbs)
    throw new Error(
      `${dev.name}: zone geometry ${limits.zoneSize}/${limits.zoneCapacity} is not the configured one`,
    );
  return {
    zoneSize: limits.zoneSize,
    zoneCapacity: limits.zoneCapacity,
    conventional,
    splitAtZones: split,
    maxZoneAppendBytes: limits.maxZoneAppendBytes,
  };
}

async function createDeviceUnderTest(
  config: WorldConfig,
  closers: Array<() => Promise<unknown>>,
): Promise<{ dut: BlockDevice; zoned?: ZoneLayout }> {
  const size = config.blocks * config.lbs;
  const z = config.zone;
  switch (config.kind) {
    case 'ram':
      return { dut: ram(config, closers, size) };
    case 'fault':
      return { dut: track(closers, new FaultDevice(ram(config, closers, size))) };
    case 'file':
    case 'file-fallback':
      return { dut: await openFile(config, closers, size, config.lbs) };
    case 'linear-ram':
    case 'linear-ram2':
    case 'linear-file':
    case 'linear-file2':
    case 'linear-mixed': {
      const kinds = LINEAR_COMPONENTS[config.kind]!;
      const two = kinds.length === 2;
      const lens = segmentLengths(config.blocks, two ? Math.max(2, config.segments) : config.segments);
      const side = lens.map((_, i) => (two ? (config.split >> i) & 1 : 0));
      if (two && !side.includes(1)) side[0] = 1;
      if (two && !side.includes(0)) side[side.length - 1] = 0;
      const order = permutation(lens.length, config.shuffle);
      // Lay each component out in the shuffled order; a segment's component offset is the sum before it.
      const compBlocks = [0, 0];
      const offsets = new Array<number>(lens.length);
      for (const i of order) {
        offsets[i] = compBlocks[side[i]!]!;
        compBlocks[side[i]!]! += lens[i]!;
      }
      const comps: BlockDevice[] = [];
      for (const [c, kind] of kinds.entries()) {
        // A little slack past the mapped bytes: the mapping must never touch it.
        const bytes = (compBlocks[c]! + 4) * config.lbs;
        comps.push(
          kind === 'file' ? await openFile(config, closers, bytes, config.lbs) : ram(config, closers, bytes),
        );
      }
      let start = 0;
      const targets = lens.map((len, i) => {
        const t = new LinearTarget({
          start,
          length: len * config.lbs,
          device: comps[side[i]!]!,
          offset: offsets[i]! * config.lbs,
        });
        start += len * config.lbs;
        return t;
      });
      return { dut: track(closers, new MappedDevice({ targets })) };
    }
    case 'zoned':
    case 'fault-zoned': {
      const zd = zonedOver(config, closers, true);
      const dut = config.kind === 'zoned' ? zd : track(closers, new FaultDevice(zd));
      const nr = Math.ceil(zd.size / (z.zoneBlocks * config.lbs));
      const conventional = Array.from({ length: nr }, (_, i) => i < z.conventionalZones);
      return { dut, zoned: zoneLayout(config, conventional, dut, false) };
    }
    case 'linear-zoned': {
      const two = (config.split & 1) === 1;
      const comps = two
        ? [zonedOver(config, closers, false), zonedOver(config, closers, false)]
        : [zonedOver(config, closers, false)];
      const zoneBytes = z.zoneBlocks * config.lbs;
      const perComp = z.conventionalZones + z.seqZones;
      const all = comps.flatMap((c) => Array.from({ length: perComp }, (_, i) => ({ device: c, index: i })));
      const order = permutation(all.length, config.shuffle);
      const targets = order.map((k, i) => {
        const src = all[k]!;
        return new LinearTarget({
          start: i * zoneBytes,
          length: zoneBytes,
          device: src.device,
          offset: src.index * zoneBytes,
        });
      });
      const conventional = order.map((k) => all[k]!.index < z.conventionalZones);
      const dut = track(closers, new MappedDevice({ targets }));
      return { dut, zoned: zoneLayout(config, conventional, dut, true) };
    }
  }
}
