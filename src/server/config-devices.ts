// The `devices` section of a config file: device entries by name, each checked into a
// DeviceSpec (device-spec.ts) with path-qualified errors, then references between them
// (zoned.backing, fault.inner, linear.targets[].device) resolved and checked for cycles.
// The format is documented in docs/config.md.

import { isAbsolute, resolve } from 'node:path';
import { ErrorCode } from '../block/errors.js';
import { FAULT_OPS, type FaultOp } from '../devices/fault.js';
import { ConfigError } from './config-error.js';
import { Fields, describe, joinPath, suggest } from './config-fields.js';
import {
  checkDeviceName,
  checkLogicalBlockSize,
  checkPhysicalBlockSize,
  isInlineSpec,
  parseDeviceSpec,
  type CopyOverrides,
  type DeviceRef,
  type DeviceSpec,
  type LeafOptions,
} from './device-spec.js';
import { checkNqnAt, checkNsid, parseAddress } from './nvme-tcp-spec.js';
import { NVME_TCP_IO_PORT } from '../target/port.js';

export const DEVICE_TYPES = ['ram', 'null', 'file', 'nvme-tcp', 'zoned', 'fault', 'linear'] as const;
export type DeviceType = (typeof DEVICE_TYPES)[number];

const LEAF_KEYS = ['type', 'logicalBlockSize', 'physicalBlockSize', 'maxTransferBytes', 'readOnly', 'copy'];
const KEYS: Record<DeviceType, readonly string[]> = {
  ram: [...LEAF_KEYS, 'size'],
  null: [...LEAF_KEYS, 'size'],
  file: [...LEAF_KEYS, 'path', 'size', 'create'],
  'nvme-tcp': ['type', 'address', 'subnqn', 'nsid', 'hostnqn', 'headerDigest', 'dataDigest', 'ioQueues'],
  zoned: [
    'type',
    'backing',
    'zoneSize',
    'zoneCapacity',
    'conventionalZones',
    'maxOpenZones',
    'maxActiveZones',
    'maxZoneAppendBytes',
    'readOnly',
  ],
  fault: ['type', 'inner', 'rules', 'delays', 'flakey'],
  linear: ['type', 'targets', 'readOnly'],
};
const COPY_KEYS = ['maxBytes', 'maxHwBytes', 'maxRanges', 'maxRangeBytes'];
const RULE_KEYS = ['ops', 'offset', 'length', 'code', 'afterCount', 'times'];
const TARGET_KEYS = ['device', 'offset', 'length'];

export interface ParseContext {
  /** Directory relative file paths are resolved against (the config file's). */
  baseDir: string;
}

/** Parses the `devices` section into specs by name, in the order they are written. */
export function parseDevicesSection(
  value: unknown,
  path: string,
  ctx: ParseContext,
): Map<string, DeviceSpec> {
  const section = Fields.object(value, path);
  const names = section.keys();
  const specs = new Map<string, DeviceSpec>();
  for (const name of names) {
    checkDeviceName(name, section.at(name));
    specs.set(name, parseDevice(section.object(name)!, name, names, ctx));
  }
  checkCycles(specs, path);
  return specs;
}

function parseDevice(f: Fields, name: string, names: readonly string[], ctx: ParseContext): DeviceSpec {
  const type = f.oneOf('type', DEVICE_TYPES);
  if (type === undefined)
    throw new ConfigError(f.at('type'), `is required; one of ${DEVICE_TYPES.join(', ')}`);
  f.allowOnly(KEYS[type]);
  const ref = (key: string | number, fields: Fields = f) => parseRef(fields, key, names, ctx);
  switch (type) {
    case 'ram':
    case 'null':
      return { type, name, size: f.requiredSize('size'), ...leafOptions(f) };
    case 'file': {
      const path = f.requiredString('path');
      return {
        type,
        name,
        path: isAbsolute(path) ? path : resolve(ctx.baseDir, path),
        ...defined({ size: f.size('size'), create: f.boolean('create') }),
        ...leafOptions(f),
      };
    }
    case 'nvme-tcp': {
      const nsid = f.required('nsid');
      if (typeof nsid !== 'number')
        throw new ConfigError(f.at('nsid'), `expected a namespace ID 1..4294967294, got ${describe(nsid)}`);
      const hostnqn = f.string('hostnqn');
      const ioQueues = f.integer('ioQueues', 1);
      if (ioQueues !== undefined && ioQueues > 65535)
        throw new ConfigError(f.at('ioQueues'), `expected 1..65535 I/O queues, got ${ioQueues}`);
      return {
        type,
        name,
        address: parseAddress(f.requiredString('address'), NVME_TCP_IO_PORT, f.at('address'), {
          bareIpv6: false,
        }),
        subnqn: checkNqnAt(f.requiredString('subnqn'), 'subsystem NQN', f.at('subnqn')),
        nsid: checkNsid(nsid, f.at('nsid')),
        ...defined({
          hostnqn: hostnqn === undefined ? undefined : checkNqnAt(hostnqn, 'host NQN', f.at('hostnqn')),
          headerDigest: f.boolean('headerDigest'),
          dataDigest: f.boolean('dataDigest'),
          ioQueues,
        }),
      };
    }
    case 'zoned':
      return {
        type,
        name,
        backing: ref('backing'),
        zoneSize: f.requiredSize('zoneSize'),
        ...defined({
          zoneCapacity: f.size('zoneCapacity'),
          conventionalZones: f.integer('conventionalZones'),
          maxOpenZones: f.integer('maxOpenZones'),
          maxActiveZones: f.integer('maxActiveZones'),
          maxZoneAppendBytes: f.size('maxZoneAppendBytes'),
          readOnly: f.boolean('readOnly'),
        }),
      };
    case 'fault': {
      const options: Record<string, unknown> = {};
      const delays = f.object('delays');
      if (delays) options.delays = parseDelays(delays);
      const flakey = f.object('flakey');
      if (flakey) options.flakey = parseFlakey(flakey);
      const rules = f.array('rules')?.map((r, i) => parseRule(Fields.object(r, f.at('rules') + `[${i}]`)));
      return { type, name, inner: ref('inner'), ...defined({ rules }), options };
    }
    case 'linear': {
      const list = f.array('targets', { nonEmpty: true });
      if (!list)
        throw new ConfigError(f.at('targets'), 'is required: a list of {"device", "offset", "length"}');
      const targets = list.map((t, i) => {
        const tf = Fields.object(t, f.at('targets') + `[${i}]`);
        tf.allowOnly(TARGET_KEYS);
        const length = tf.requiredSize('length');
        if (length === 0) throw new ConfigError(tf.at('length'), 'must be greater than 0');
        return { device: ref('device', tf), offset: tf.size('offset') ?? 0, length };
      });
      return { type, name, targets, ...defined({ readOnly: f.boolean('readOnly') }) };
    }
  }
}

/** Drops undefined values so optional fields stay absent. */
function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}

function leafOptions(f: Fields): Omit<LeafOptions, 'name'> {
  const lbs = f.size('logicalBlockSize');
  const pbs = f.size('physicalBlockSize');
  const out: Omit<LeafOptions, 'name'> = defined({
    logicalBlockSize: lbs === undefined ? undefined : checkLogicalBlockSize(lbs, f.at('logicalBlockSize')),
    physicalBlockSize: pbs === undefined ? undefined : checkPhysicalBlockSize(pbs, f.at('physicalBlockSize')),
    maxTransferBytes: f.size('maxTransferBytes'),
    readOnly: f.boolean('readOnly'),
  });
  const copy = f.value.copy;
  if (copy === false) out.copy = false;
  else if (copy === true || copy === undefined) {
    /* default copy limits */
  } else {
    const cf = Fields.object(copy, f.at('copy'));
    cf.allowOnly(COPY_KEYS);
    const overrides: CopyOverrides = defined({
      maxHwBytes: cf.size('maxHwBytes'),
      maxRanges: cf.integer('maxRanges', 1),
      maxRangeBytes: cf.size('maxRangeBytes'),
    });
    if (Object.keys(overrides).length) out.copy = overrides;
    const maxBytes = cf.size('maxBytes');
    if (maxBytes !== undefined) out.copyMaxBytes = maxBytes;
  }
  return out;
}

function parseRef(f: Fields, key: string | number, names: readonly string[], _ctx: ParseContext): DeviceRef {
  const at = f.at(String(key));
  const v = f.value[String(key)];
  if (v === undefined)
    throw new ConfigError(
      at,
      'is required: the name of a device in this config, or an inline spec such as ram:1G',
    );
  if (typeof v !== 'string' || v === '')
    throw new ConfigError(at, `expected a device name or an inline spec, got ${describe(v)}`);
  if (isInlineSpec(v)) return { spec: parseDeviceSpec(v, at), text: v };
  // No "did you mean" here: device names are often numbered (disk0, disk9), where the
  // nearest name is rarely the intended one.
  if (!names.includes(v)) throw new ConfigError(at, `unknown device "${v}"`);
  return { name: v };
}

function parseRule(f: Fields): unknown {
  f.allowOnly(RULE_KEYS);
  const ops = f.array('ops', { nonEmpty: true });
  if (!ops) throw new ConfigError(f.at('ops'), `is required: a list of ${FAULT_OPS.join(', ')}`);
  ops.forEach((op, i) => {
    if (typeof op !== 'string' || !(FAULT_OPS as readonly string[]).includes(op))
      throw new ConfigError(
        `${f.at('ops')}[${i}]`,
        `unknown operation ${describe(op)}${typeof op === 'string' ? suggest(op, FAULT_OPS) : ''}; expected one of ${FAULT_OPS.join(', ')}`,
      );
  });
  const length = f.requiredSize('length');
  if (length === 0) throw new ConfigError(f.at('length'), 'must be greater than 0');
  return {
    ops: ops as FaultOp[],
    offset: f.size('offset') ?? 0,
    length,
    ...defined({
      code: f.oneOf('code', Object.values(ErrorCode)),
      afterCount: f.integer('afterCount'),
      times: f.integer('times', 1),
    }),
  };
}

function parseDelays(f: Fields): Record<string, unknown> {
  f.allowOnly(FAULT_OPS);
  const out: Record<string, unknown> = {};
  for (const op of f.keys()) {
    const d = f.object(op)!;
    d.allowOnly(['ms', 'jitterMs']);
    d.required('ms');
    out[op] = { ms: d.number('ms'), ...defined({ jitterMs: d.number('jitterMs') }) };
  }
  return out;
}

function parseFlakey(f: Fields): Record<string, unknown> {
  f.allowOnly(['upMs', 'downMs', 'code']);
  f.required('upMs');
  f.required('downMs');
  const upMs = f.number('upMs')!;
  const downMs = f.number('downMs')!;
  if (upMs + downMs <= 0) throw new ConfigError(f.path, 'upMs + downMs must be greater than 0');
  return { upMs, downMs, ...defined({ code: f.oneOf('code', Object.values(ErrorCode)) }) };
}

/** The config names a spec refers to, with the path of each reference. */
export function references(spec: DeviceSpec, at: string): Array<{ name: string; at: string }> {
  const named = (ref: DeviceRef, path: string) => ('name' in ref ? [{ name: ref.name, at: path }] : []);
  switch (spec.type) {
    case 'zoned':
      return named(spec.backing, `${at}.backing`);
    case 'fault':
      return named(spec.inner, `${at}.inner`);
    case 'linear':
      return spec.targets.flatMap((t, i) => named(t.device, `${at}.targets[${i}].device`));
    default:
      return [];
  }
}

/** Rejects a device that is (indirectly) built on itself, naming the loop. */
function checkCycles(specs: Map<string, DeviceSpec>, path: string): void {
  const done = new Set<string>();
  // `stack` is the chain of names from the first device visited down to `name` (inclusive).
  const visit = (name: string, stack: string[]): void => {
    if (done.has(name)) return;
    for (const ref of references(specs.get(name)!, joinPath(path, name))) {
      const loop = stack.indexOf(ref.name);
      if (loop >= 0) throw new ConfigError(ref.at, `cycle: ${[...stack.slice(loop), ref.name].join(' → ')}`);
      visit(ref.name, [...stack, ref.name]);
    }
    done.add(name);
  };
  for (const name of specs.keys()) visit(name, [name]);
}
