// The `ublk` section of a config file: devices `tsblk serve` exposes as Linux block devices
// /dev/ublkbN (docs/ublk.md, docs/config.md). Devices are opened through the same DeviceSet as
// namespaces and NBD exports, so one device can be a namespace, an NBD export and a ublk
// device at once.
//
//   "ublk": { "exports": [ { "device", "queues", "depth", "id" } ] }
//
// Decisions:
// - `exports` is a non-empty array (ublk devices have numbers, not names); `device` is a
//   config device name or an inline spec, like everywhere else. `queues` 1..UBLK_MAX_NR_QUEUES
//   (default 1), `depth` 1..UBLK_MAX_QUEUE_DEPTH (default 64), `id` 0..2^20-1 (default: the
//   kernel picks a free one); two exports asking for the same id are refused.
// - Zoned devices are refused until ublk exports support UBLK_F_ZONED.
// - Whether this machine has ublk is checked when serve starts (ublkUnavailable()), not here:
//   a config is valid or not whatever machine reads it.

import { ConfigError } from './config-error.js';
import { describe, Fields, joinPath } from './config-fields.js';
import { isInlineSpec, parseDeviceSpec, type DeviceSpec } from './device-spec.js';
import { UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH } from '../export/ublk/uapi.js';

/** The kernel's limit on ublk device ids (UBLK_MAX_UBLKS = 1 << MINORBITS). */
const UBLK_MAX_DEV_ID = (1 << 20) - 1;

export interface UblkExportConfig {
  /** A device name of the config, or an inline spec (`ram:1G`). */
  readonly device: string;
  readonly queues: number;
  readonly depth: number;
  readonly id?: number;
  /** Where the entry sits in the config, for errors found when serving it. */
  readonly at: string;
}

export interface UblkConfig {
  readonly exports: readonly UblkExportConfig[];
}

const EXPORT_KEYS = ['device', 'queues', 'depth', 'id'];

function intIn(f: Fields, key: string, min: number, max: number): number | undefined {
  const v = f.value[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new ConfigError(f.at(key), `expected a whole number ${min}..${max}, got ${describe(v)}`);
  return v;
}

function parseDevice(e: Fields, devices: ReadonlyMap<string, DeviceSpec>): string {
  const where = e.at('device');
  const v = e.value.device;
  if (typeof v !== 'string' || v === '')
    throw new ConfigError(
      where,
      v === undefined
        ? 'is required: the name of a device in this config, or an inline spec such as ram:1G'
        : `expected a device name or an inline spec, got ${describe(v)}`,
    );
  const spec = isInlineSpec(v) ? parseDeviceSpec(v, where) : devices.get(v);
  if (!spec) {
    const known = [...devices.keys()];
    throw new ConfigError(
      where,
      `unknown device "${v}"${known.length ? `; devices: ${known.join(', ')}` : '; the config defines no devices'}`,
    );
  }
  if (spec.type === 'zoned')
    throw new ConfigError(
      where,
      `"${v}" is a zoned device; ublk exports of zoned devices are not supported yet`,
    );
  return v;
}

/** Parses `ublk`; `devices` are the config's own devices (exports may name them). */
export function parseUblkSection(
  value: unknown,
  path: string,
  devices: ReadonlyMap<string, DeviceSpec>,
): UblkConfig {
  const f = Fields.object(value, path);
  f.allowOnly(['exports']);
  const list = f.array('exports', { nonEmpty: true });
  if (!list)
    throw new ConfigError(f.at('exports'), 'is required: at least one export, e.g. [{ "device": "ram:1G" }]');
  const ids = new Map<number, string>();
  const exports = list.map((v, i): UblkExportConfig => {
    const at = joinPath(f.at('exports'), i);
    const e = Fields.object(v, at);
    e.allowOnly(EXPORT_KEYS);
    const device = parseDevice(e, devices);
    const id = intIn(e, 'id', 0, UBLK_MAX_DEV_ID);
    if (id !== undefined) {
      const other = ids.get(id);
      if (other) throw new ConfigError(e.at('id'), `ublk device ${id} is already asked for by ${other}`);
      ids.set(id, at);
    }
    return {
      device,
      queues: intIn(e, 'queues', 1, UBLK_MAX_NR_QUEUES) ?? 1,
      depth: intIn(e, 'depth', 1, UBLK_MAX_QUEUE_DEPTH) ?? 64,
      ...(id === undefined ? {} : { id }),
      at,
    };
  });
  return { exports };
}
