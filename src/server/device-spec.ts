// Device descriptions: what a device is before it is opened. They come from two places — an
// inline spec on the command line (`ram:1G`, `file:/tmp/a.img,size=1G,create`) or a device
// entry of a config file (config.ts) — and both produce the same DeviceSpec, which devices.ts
// opens. Sizes are already bytes here.
//
// Inline grammar:  KIND:ARG[,OPTION[=VALUE]]...
//   ram:SIZE / null:SIZE    memory-backed (sparse) / data-discarding device of SIZE bytes
//   file:PATH               a file (or block device) image; PATH may not contain a comma
// Options (all kinds): name=NAME, lbs=512|4096, pbs=SIZE, max-transfer=SIZE, ro, copy=on|off,
//   copy-max=SIZE (the tunable copy_max_bytes, set after opening like the sysfs knob),
//   copy-max-hw=SIZE, copy-max-ranges=N, copy-max-range=SIZE (what the "hardware" allows);
//   file also size=SIZE and create (make a sparse file of that size when it is missing).
//   nvme-tcp://HOST[:PORT]/SUBNQN/NSID[?options]  a namespace of a remote NVMe/TCP controller
//                           (grammar and options in nvme-tcp-spec.ts)

import type { CopyLimits } from '../block/limits.js';
import { ConfigError } from './config-error.js';
import { parseNvmeTcpUrl, type NvmeTcpSpec } from './nvme-tcp-spec.js';
import { parseSize } from './size.js';

export type { NvmeTcpSpec } from './nvme-tcp-spec.js';

/** Copy limits a user may set when creating a device; maxBytes is applied afterwards. */
export type CopyOverrides = Partial<Omit<CopyLimits, 'maxBytes'>>;

/** Options every leaf device (ram, null, file) takes. */
export interface LeafOptions {
  name?: string;
  logicalBlockSize?: 512 | 4096;
  physicalBlockSize?: number;
  maxTransferBytes?: number;
  readOnly?: boolean;
  /** false: the device has no copy offload; otherwise overrides of the default copy limits. */
  copy?: false | CopyOverrides;
  /** The user-tunable copy cap (copy_max_bytes), applied with setCopyMaxBytes after opening. */
  copyMaxBytes?: number;
}

export interface RamSpec extends LeafOptions {
  type: 'ram';
  size: number;
}
export interface NullSpec extends LeafOptions {
  type: 'null';
  size: number;
}
export interface FileSpec extends LeafOptions {
  type: 'file';
  path: string;
  /** Size of the image; required with create, else the file's size. */
  size?: number;
  /** Create the file (sparse) when it does not exist. */
  create?: boolean;
}

/** Another device a stacked device is built on: a config name, or an inline spec. */
export type DeviceRef = { name: string } | { spec: InlineSpec; text: string };

export interface ZonedSpec {
  type: 'zoned';
  name?: string;
  backing: DeviceRef;
  zoneSize: number;
  zoneCapacity?: number;
  conventionalZones?: number;
  maxOpenZones?: number;
  maxActiveZones?: number;
  maxZoneAppendBytes?: number;
  readOnly?: boolean;
}

export interface FaultSpec {
  type: 'fault';
  name?: string;
  inner: DeviceRef;
  /** Fault rules, checked by config.ts and passed to FaultDevice as they are. */
  rules?: unknown[];
  /** Other FaultDevice options (delays, flakey intervals), passed as they are. */
  options?: Record<string, unknown>;
}

export interface LinearTargetSpec {
  device: DeviceRef;
  /** Where the target starts on its device. */
  offset: number;
  length: number;
}

export interface LinearSpec {
  type: 'linear';
  name?: string;
  /** Laid out contiguously in order: target i starts where target i-1 ends. */
  targets: LinearTargetSpec[];
  readOnly?: boolean;
}

export type LeafSpec = RamSpec | NullSpec | FileSpec;
/** What an inline spec can describe. */
export type InlineSpec = LeafSpec | NvmeTcpSpec;
export type DeviceSpec = LeafSpec | NvmeTcpSpec | ZonedSpec | FaultSpec | LinearSpec;

export const INLINE_KINDS = ['ram', 'null', 'file'] as const;
/** Every kind an inline spec may start with, for messages. */
const ALL_INLINE_KINDS = [...INLINE_KINDS, 'nvme-tcp'] as const;

/** True when text looks like an inline spec rather than a config device name. */
export function isInlineSpec(text: string): boolean {
  return text.includes(':');
}

const COMMON_OPTIONS = [
  'name',
  'lbs',
  'pbs',
  'max-transfer',
  'ro',
  'copy',
  'copy-max',
  'copy-max-hw',
  'copy-max-ranges',
  'copy-max-range',
];
const KIND_OPTIONS: Record<(typeof INLINE_KINDS)[number], string[]> = {
  ram: COMMON_OPTIONS,
  null: COMMON_OPTIONS,
  file: [...COMMON_OPTIONS, 'size', 'create'],
};

function parseFlag(value: string | undefined, where: string): boolean {
  if (value === undefined) return true;
  const v = value.toLowerCase();
  if (['on', 'yes', 'true', '1'].includes(v)) return true;
  if (['off', 'no', 'false', '0'].includes(v)) return false;
  throw new ConfigError(where, `invalid value "${value}": expected on or off`);
}

function parseCount(value: string, where: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < 1)
    throw new ConfigError(where, `invalid count "${value}": expected a positive whole number`);
  return Number(value);
}

/** Checks a logical block size (config.ts uses it too). */
export function checkLogicalBlockSize(n: number, where: string): 512 | 4096 {
  if (n !== 512 && n !== 4096)
    throw new ConfigError(where, `logical block size must be 512 or 4096, got ${n}`);
  return n;
}

/** Checks a physical block size (config.ts uses it too). */
export function checkPhysicalBlockSize(n: number, where: string): number {
  if (n < 512 || !Number.isInteger(Math.log2(n)))
    throw new ConfigError(where, `physical block size must be a power of two of at least 512, got ${n}`);
  return n;
}

/**
 * Parses an inline device spec. `where` prefixes error messages (default: the spec itself),
 * so a spec used inside a config reports the config path.
 */
export function parseDeviceSpec(text: string, where = `device spec "${text}"`): InlineSpec {
  const colon = text.indexOf(':');
  if (colon < 0)
    throw new ConfigError(
      where,
      `not a device spec: expected KIND:ARG with KIND one of ${ALL_INLINE_KINDS.join(', ')} (e.g. ram:1G, file:/tmp/disk.img, nvme-tcp://HOST:PORT/SUBNQN/NSID), or a device name from --config`,
    );
  const kind = text.slice(0, colon);
  if (kind === 'nvme-tcp') return parseNvmeTcpUrl(text, where, checkDeviceName);
  const [arg = '', ...opts] = text.slice(colon + 1).split(',');
  if (!(INLINE_KINDS as readonly string[]).includes(kind))
    throw new ConfigError(
      where,
      `unknown device kind "${kind}"; expected one of ${ALL_INLINE_KINDS.join(', ')}`,
    );
  const k = kind as (typeof INLINE_KINDS)[number];
  if (arg === '')
    throw new ConfigError(
      where,
      k === 'file' ? 'missing path after "file:"' : `missing size after "${k}:" (e.g. ${k}:1G)`,
    );

  const spec: LeafSpec =
    k === 'file' ? { type: 'file', path: arg } : { type: k, size: parseSize(arg, where) };
  const seen = new Set<string>();
  for (const opt of opts) {
    const eq = opt.indexOf('=');
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? undefined : opt.slice(eq + 1);
    const at = `${where}: option "${key}"`;
    if (key === '') throw new ConfigError(where, 'empty option (two commas in a row, or a trailing comma)');
    if (!KIND_OPTIONS[k].includes(key))
      throw new ConfigError(
        where,
        `unknown option "${key}" for ${k}; expected one of ${KIND_OPTIONS[k].join(', ')}`,
      );
    if (seen.has(key)) throw new ConfigError(at, 'given twice');
    seen.add(key);
    const need = (): string => {
      if (value === undefined || value === '') throw new ConfigError(at, `needs a value (${key}=...)`);
      return value;
    };
    switch (key) {
      case 'name':
        spec.name = checkDeviceName(need(), at);
        break;
      case 'lbs':
        spec.logicalBlockSize = checkLogicalBlockSize(parseSize(need(), at), at);
        break;
      case 'pbs':
        spec.physicalBlockSize = checkPhysicalBlockSize(parseSize(need(), at), at);
        break;
      case 'max-transfer':
        spec.maxTransferBytes = parseSize(need(), at);
        break;
      case 'ro':
        spec.readOnly = parseFlag(value, at);
        break;
      case 'copy':
        if (!parseFlag(need(), at)) spec.copy = false;
        break;
      case 'copy-max':
        spec.copyMaxBytes = parseSize(need(), at);
        break;
      case 'copy-max-hw':
        spec.copy = { ...copyOverrides(spec, at), maxHwBytes: parseSize(need(), at) };
        break;
      case 'copy-max-ranges':
        spec.copy = { ...copyOverrides(spec, at), maxRanges: parseCount(need(), at) };
        break;
      case 'copy-max-range':
        spec.copy = { ...copyOverrides(spec, at), maxRangeBytes: parseSize(need(), at) };
        break;
      case 'size':
        (spec as FileSpec).size = parseSize(need(), at);
        break;
      case 'create':
        (spec as FileSpec).create = parseFlag(value, at);
        break;
    }
  }
  if (
    spec.copy === false &&
    (spec.copyMaxBytes !== undefined ||
      seen.has('copy-max-hw') ||
      seen.has('copy-max-ranges') ||
      seen.has('copy-max-range'))
  )
    throw new ConfigError(where, 'copy=off cannot be combined with copy-max* options');
  if (spec.type === 'file' && spec.create && spec.size === undefined)
    throw new ConfigError(where, 'create needs size=SIZE (the size of the new image)');
  return spec;
}

function copyOverrides(spec: LeafSpec, at: string): CopyOverrides {
  if (spec.copy === false) throw new ConfigError(at, 'copy=off cannot be combined with copy-max* options');
  return spec.copy ?? {};
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Device names are plain words so they never look like an inline spec or a path. */
export function checkDeviceName(name: string, where: string): string {
  if (!NAME_RE.test(name))
    throw new ConfigError(
      where,
      `invalid device name "${name}": use letters, digits, ".", "_" and "-", starting with a letter or digit`,
    );
  return name;
}
