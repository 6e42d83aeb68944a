// The `subsystems` and `ports` sections of a config file: what `tsblk serve` exports over
// NVMe/TCP (docs/config.md, "Subsystems and ports"). Checked with path-qualified errors like
// the devices section; devices are resolved by name or inline spec when serve opens them.
//
//   "subsystems": { "<nqn>": { "serial", "model", "allowAnyHost", "hosts": [hostnqn],
//                              "namespaces": [{ "nsid", "device", "readOnly", "nguid",
//                                               "eui64", "uuid", "mssrl", "mcl", "msrc" }] } }
//   "ports": [{ "address", "port", "subsystems": [nqn] } | { "address", "port", "discovery": true }]
//
// Decisions:
// - allowAnyHost defaults to true when no `hosts` are listed and to false when they are, so a
//   host list is never silently ignored (the Subsystem default).
// - Namespaces without `nsid` get the lowest NSIDs no other entry of the subsystem claims, in
//   the order listed.
// - Ports get port IDs 1, 2, ... in the order listed. `port` defaults to 4420, or 8009 for a
//   discovery port. An absent `ports` section means serve's defaults (127.0.0.1:4420 and
//   discovery on 127.0.0.1:8009); an empty list is an error.

import { isIP } from 'node:net';
import { BlockError } from '../block/errors.js';
import { MAX_NSID } from '../target/namespace.js';
import { checkNqn, DISCOVERY_NQN } from '../target/subsystem.js';
import { NVME_TCP_DISCOVERY_PORT, NVME_TCP_IO_PORT } from '../target/port.js';
import { ConfigError } from './config-error.js';
import { describe, Fields, joinPath } from './config-fields.js';
import { isInlineSpec, parseDeviceSpec, type DeviceSpec } from './device-spec.js';

export interface NamespaceConfig {
  /** NSID, assigned when the config left it out. */
  readonly nsid: number;
  /** A device name of the config, or an inline spec (`ram:1G`). */
  readonly device: string;
  readonly readOnly?: boolean;
  readonly nguid?: string;
  readonly eui64?: string;
  readonly uuid?: string;
  /** Identify Namespace copy limits overriding the ones derived from the device. */
  readonly copyLimits?: { readonly mssrl?: number; readonly mcl?: number; readonly msrc?: number };
  /** Where the entry sits in the config, for errors found when serving it. */
  readonly path: string;
}

export interface SubsystemConfig {
  readonly nqn: string;
  readonly serial?: string;
  readonly model?: string;
  readonly allowAnyHost: boolean;
  readonly hosts: readonly string[];
  readonly namespaces: readonly NamespaceConfig[];
  readonly path: string;
}

export interface PortConfig {
  readonly portid: number;
  readonly address: string;
  readonly port: number;
  readonly discovery: boolean;
  /** NQNs exposed by an I/O port; absent = all. */
  readonly subsystems?: readonly string[];
  readonly path: string;
}

const SUBSYSTEM_KEYS = ['serial', 'model', 'allowAnyHost', 'hosts', 'namespaces'];
const NAMESPACE_KEYS = ['nsid', 'device', 'readOnly', 'nguid', 'eui64', 'uuid', 'mssrl', 'mcl', 'msrc'];
const PORT_KEYS = ['address', 'port', 'discovery', 'subsystems'];

/** Runs a check of the target's own (which throws BlockError) and re-throws it at `path`. */
function at<T>(path: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (BlockError.is(err)) throw new ConfigError(path, err.message.replace(/^EINVAL: /, ''));
    throw err;
  }
}

function ascii(f: Fields, key: string, max: number): string | undefined {
  const v = f.string(key);
  if (v !== undefined && (v.length > max || !/^[\x20-\x7e]+$/.test(v)))
    throw new ConfigError(f.at(key), `"${v}" must be 1..${max} printable ASCII characters`);
  return v;
}

function identifier(f: Fields, key: string, bytes: number, form: string): string | undefined {
  const v = f.string(key);
  if (v === undefined) return undefined;
  const hex = key === 'uuid' ? v : v.replace(/[-:]/g, '');
  const ok =
    key === 'uuid'
      ? /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(hex)
      : new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(hex);
  if (!ok) throw new ConfigError(f.at(key), `"${v}" is not ${form}`);
  return v;
}

function intRange(f: Fields, key: string, min: number, max: number): number | undefined {
  const v = f.value[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw new ConfigError(f.at(key), `expected a whole number in ${min}..${max}, got ${describe(v)}`);
  return v;
}

/** Parses `subsystems`; `devices` are the config's own devices (namespaces may name them). */
export function parseSubsystemsSection(
  value: unknown,
  path: string,
  devices: ReadonlyMap<string, DeviceSpec>,
): Map<string, SubsystemConfig> {
  const section = Fields.object(value, path);
  const out = new Map<string, SubsystemConfig>();
  for (const nqn of section.keys()) {
    const where = section.at(nqn);
    at(where, () => checkNqn(nqn, 'subsystem NQN'));
    if (nqn === DISCOVERY_NQN)
      throw new ConfigError(where, 'is the discovery subsystem, which every target has; it needs no entry');
    const f = section.object(nqn)!;
    f.allowOnly(SUBSYSTEM_KEYS);
    const hosts = (f.array('hosts') ?? []).map((h, i) => {
      const hp = joinPath(f.at('hosts'), i);
      if (typeof h !== 'string') throw new ConfigError(hp, `expected a host NQN, got ${describe(h)}`);
      return at(hp, () => checkNqn(h, 'host NQN'));
    });
    const dup = hosts.find((h, i) => hosts.indexOf(h) !== i);
    if (dup !== undefined) throw new ConfigError(f.at('hosts'), `lists ${dup} twice`);
    const allowAnyHost = f.boolean('allowAnyHost') ?? hosts.length === 0;
    const serial = ascii(f, 'serial', 20);
    const model = ascii(f, 'model', 40);
    const namespaces = parseNamespaces(f, devices);
    out.set(nqn, {
      nqn,
      ...(serial === undefined ? {} : { serial }),
      ...(model === undefined ? {} : { model }),
      allowAnyHost,
      hosts,
      namespaces,
      path: where,
    });
  }
  return out;
}

function parseNamespaces(f: Fields, devices: ReadonlyMap<string, DeviceSpec>): NamespaceConfig[] {
  const list = f.array('namespaces') ?? [];
  const entries = list.map((v, i) => Fields.object(v, joinPath(f.at('namespaces'), i)));
  // Explicit NSIDs first, so automatic ones never take an NSID a later entry names.
  const claimed = new Map<number, string>();
  for (const e of entries) {
    e.allowOnly(NAMESPACE_KEYS);
    const nsid = intRange(e, 'nsid', 1, MAX_NSID);
    if (nsid === undefined) continue;
    const other = claimed.get(nsid);
    if (other !== undefined) throw new ConfigError(e.at('nsid'), `NSID ${nsid} is already used by ${other}`);
    claimed.set(nsid, e.path);
  }
  let next = 1;
  return entries.map((e) => {
    let nsid = intRange(e, 'nsid', 1, MAX_NSID);
    if (nsid === undefined) {
      while (claimed.has(next)) next++;
      nsid = next;
      claimed.set(nsid, e.path);
    }
    const device = parseDeviceRef(e, devices);
    const mssrl = intRange(e, 'mssrl', 1, 0xffff);
    const mcl = intRange(e, 'mcl', 1, 0xffffffff);
    const msrc = intRange(e, 'msrc', 0, 255);
    if (mssrl !== undefined && mcl !== undefined && mcl < mssrl)
      throw new ConfigError(
        e.at('mcl'),
        `${mcl} is below mssrl ${mssrl}; a single range could never be copied whole`,
      );
    const copyLimits = {
      ...(mssrl === undefined ? {} : { mssrl }),
      ...(mcl === undefined ? {} : { mcl }),
      ...(msrc === undefined ? {} : { msrc }),
    };
    const readOnly = e.boolean('readOnly');
    const nguid = identifier(e, 'nguid', 16, '32 hex digits (dashes allowed)');
    const eui64 = identifier(e, 'eui64', 8, '16 hex digits (dashes or colons allowed)');
    const uuid = identifier(e, 'uuid', 16, 'a UUID (8-4-4-4-12 hex digits)');
    return {
      nsid,
      device,
      ...(readOnly === undefined ? {} : { readOnly }),
      ...(nguid === undefined ? {} : { nguid }),
      ...(eui64 === undefined ? {} : { eui64 }),
      ...(uuid === undefined ? {} : { uuid }),
      ...(Object.keys(copyLimits).length ? { copyLimits } : {}),
      path: e.path,
    };
  });
}

function parseDeviceRef(e: Fields, devices: ReadonlyMap<string, DeviceSpec>): string {
  const where = e.at('device');
  const v = e.value.device;
  if (v === undefined)
    throw new ConfigError(
      where,
      'is required: the name of a device in this config, or an inline spec such as ram:1G',
    );
  if (typeof v !== 'string' || v === '')
    throw new ConfigError(where, `expected a device name or an inline spec, got ${describe(v)}`);
  if (isInlineSpec(v)) {
    parseDeviceSpec(v, where);
    return v;
  }
  const spec = devices.get(v);
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
      `"${v}" is a zoned device; namespaces serve the NVM command set only (no ZNS yet)`,
    );
  return v;
}

/** Parses `ports`; subsystems named there must be in the `subsystems` section. */
export function parsePortsSection(
  value: unknown,
  path: string,
  subsystems: ReadonlyMap<string, SubsystemConfig>,
): PortConfig[] {
  if (!Array.isArray(value))
    throw new ConfigError(path, `expected an array of listeners, got ${describe(value)}`);
  if (value.length === 0)
    throw new ConfigError(path, 'must list at least one listener (leave the section out for the defaults)');
  const seen = new Map<string, string>();
  return value.map((v, i) => {
    const f = Fields.object(v, joinPath(path, i));
    f.allowOnly(PORT_KEYS);
    const address = f.requiredString('address');
    if (isIP(address) === 0)
      throw new ConfigError(
        f.at('address'),
        `"${address}" is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1)`,
      );
    const discovery = f.boolean('discovery') ?? false;
    const port = intRange(f, 'port', 0, 65535) ?? (discovery ? NVME_TCP_DISCOVERY_PORT : NVME_TCP_IO_PORT);
    const key = `${address.toLowerCase()}|${port}`;
    const other = seen.get(key);
    if (other !== undefined && port !== 0)
      throw new ConfigError(f.path, `${address} port ${port} is already listed at ${other}`);
    seen.set(key, f.path);
    const names = f.array('subsystems');
    if (discovery && names !== undefined)
      throw new ConfigError(f.at('subsystems'), 'a discovery port exposes no subsystems; remove this key');
    const list = names?.map((n, j) => {
      const np = joinPath(f.at('subsystems'), j);
      if (typeof n !== 'string' || !subsystems.has(n))
        throw new ConfigError(
          np,
          `${typeof n === 'string' ? `unknown subsystem "${n}"` : `expected a subsystem NQN, got ${describe(n)}`}; subsystems: ${[...subsystems.keys()].join(', ') || '(none)'}`,
        );
      return n;
    });
    return {
      portid: i + 1,
      address,
      port,
      discovery,
      ...(list === undefined ? {} : { subsystems: list }),
      path: f.path,
    };
  });
}
