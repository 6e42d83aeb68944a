// Opens BlockDevices from inline specs (`ram:1G`, `file:/img,create,size=1G`) or from config
// entries by name, and closes all of them again.
//
// - A DeviceSet opens each name or spec text once: asking twice returns the same device, so
//   `tsblk copy disk disk` copies within one device (and can offload), and a device two
//   mappings are built on is shared, not opened twice.
// - Config names win over inline specs; device names cannot contain ':' so the two never clash.
// - closeAll() closes in reverse opening order — stacked devices before what they stand on —
//   flushing file devices on the way, and reports the first error after trying every device.

import type { BlockDevice } from '../block/device.js';
import { BlockError } from '../block/errors.js';
import { DEFAULT_COPY_LIMITS, setCopyMaxBytes, type CopyLimits } from '../block/limits.js';
import { FaultDevice, type FaultDeviceOptions, type FaultRule } from '../devices/fault.js';
import { FILE_DEFAULT_COPY_LIMITS, FileDevice } from '../devices/file.js';
import { NullDevice } from '../devices/null.js';
import { RamDevice } from '../devices/ram.js';
import { ZonedDevice } from '../devices/zoned.js';
import { LinearTarget } from '../mapper/linear.js';
import { MappedDevice } from '../mapper/mapped-device.js';
import type { Config } from './config.js';
import { ConfigError } from './config-error.js';
import { joinPath } from './config-fields.js';
import {
  isInlineSpec,
  parseDeviceSpec,
  type DeviceRef,
  type DeviceSpec,
  type LeafSpec,
} from './device-spec.js';

export class DeviceSet {
  readonly config: Config | undefined;
  readonly #byKey = new Map<string, Promise<BlockDevice>>();
  /** Every device opened, in opening order (components before what is built on them). */
  readonly #opened: BlockDevice[] = [];

  constructor(config?: Config) {
    this.config = config;
  }

  /** The devices opened so far, in opening order. */
  get opened(): readonly BlockDevice[] {
    return this.#opened;
  }

  /** Opens a config device by name, or an inline spec. */
  async open(specOrName: string): Promise<BlockDevice> {
    if (this.config?.devices.has(specOrName)) return this.#openNamed(specOrName);
    if (isInlineSpec(specOrName)) return this.#openInline(parseDeviceSpec(specOrName), specOrName);
    const known = this.config ? [...this.config.devices.keys()] : [];
    const hint = this.config
      ? known.length
        ? `; devices in ${this.config.source ?? 'the config'}: ${known.join(', ')}`
        : `; ${this.config.source ?? 'the config'} defines no devices`
      : '; give an inline spec such as ram:1G, null:1T or file:/path/disk.img, or a name with --config FILE';
    throw new ConfigError('', `unknown device "${specOrName}"${hint}`);
  }

  /** Opens every device of the config, by name. */
  async openAll(): Promise<Map<string, BlockDevice>> {
    const out = new Map<string, BlockDevice>();
    for (const name of this.config?.devices.keys() ?? []) out.set(name, await this.open(name));
    return out;
  }

  /** Closes every device opened, newest first; throws the first failure after trying all. */
  async closeAll(): Promise<void> {
    let first: unknown;
    for (const dev of this.#opened.splice(0).reverse()) {
      try {
        await dev.close();
      } catch (err) {
        first ??= err;
      }
    }
    this.#byKey.clear();
    if (first !== undefined) throw first;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.closeAll();
  }

  #once(key: string, make: () => Promise<BlockDevice>): Promise<BlockDevice> {
    let p = this.#byKey.get(key);
    if (!p) {
      p = make().then((dev) => {
        this.#opened.push(dev);
        return dev;
      });
      this.#byKey.set(key, p);
    }
    return p;
  }

  #openNamed(name: string): Promise<BlockDevice> {
    const spec = this.config!.devices.get(name)!;
    // Errors found while opening name the entry, and the file it is in.
    const where = joinPath('devices', name);
    const source = this.config!.source;
    return this.#once(`name:${name}`, () => this.#build(spec, source ? `${source}: ${where}` : where, name));
  }

  #openInline(spec: LeafSpec, text: string): Promise<BlockDevice> {
    return this.#once(`spec:${text}`, () => this.#build(spec, `device spec "${text}"`));
  }

  #ref(ref: DeviceRef): Promise<BlockDevice> {
    return 'name' in ref ? this.#openNamed(ref.name) : this.#openInline(ref.spec, ref.text);
  }

  async #build(spec: DeviceSpec, where: string, name?: string): Promise<BlockDevice> {
    const withName = <T extends object>(o: T) => ({
      ...o,
      ...((spec.name ?? name) ? { name: spec.name ?? name } : {}),
    });
    switch (spec.type) {
      case 'ram':
      case 'null':
      case 'file':
        return this.#buildLeaf(spec, where, name);
      case 'zoned': {
        const backing = await this.#ref(spec.backing);
        const { type: _t, backing: _b, name: _n, ...options } = spec;
        return construct(where, () => new ZonedDevice(backing, withName(options)));
      }
      case 'fault': {
        const inner = await this.#ref(spec.inner);
        const options: FaultDeviceOptions = withName({
          ...(spec.options as Omit<FaultDeviceOptions, 'rules'>),
          ...(spec.rules ? { rules: spec.rules as FaultRule[] } : {}),
        });
        return construct(where, () => new FaultDevice(inner, options));
      }
      case 'linear': {
        const targets: LinearTarget[] = [];
        let start = 0;
        for (const [i, t] of spec.targets.entries()) {
          const device = await this.#ref(t.device);
          const at = `${where}.targets[${i}]`;
          const lbs = device.limits.logicalBlockSize;
          if (t.offset % lbs || t.length % lbs)
            throw new ConfigError(
              at,
              `offset ${t.offset} and length ${t.length} must be multiples of ${device.name}'s ${lbs}-byte logical block size`,
            );
          if (t.offset + t.length > device.size)
            throw new ConfigError(
              at,
              `offset ${t.offset} + length ${t.length} ends at ${t.offset + t.length}, past the end of ${device.name} (${device.size} bytes)`,
            );
          targets.push(
            await construct(
              at,
              () => new LinearTarget({ start, length: t.length, device, offset: t.offset }),
            ),
          );
          start += t.length;
        }
        const mapping = {
          name: spec.name ?? name ?? 'linear',
          targets,
          ...(spec.readOnly ? { readOnly: true } : {}),
        };
        return construct(where, () => new MappedDevice(mapping));
      }
    }
  }

  async #buildLeaf(spec: LeafSpec, where: string, name?: string): Promise<BlockDevice> {
    const defaults = spec.type === 'file' ? FILE_DEFAULT_COPY_LIMITS : DEFAULT_COPY_LIMITS;
    const common = {
      ...((spec.name ?? name) ? { name: spec.name ?? name } : {}),
      ...(spec.logicalBlockSize ? { logicalBlockSize: spec.logicalBlockSize } : {}),
      ...(spec.physicalBlockSize ? { physicalBlockSize: spec.physicalBlockSize } : {}),
      ...(spec.maxTransferBytes ? { maxTransferBytes: spec.maxTransferBytes } : {}),
      ...(spec.readOnly !== undefined ? { readOnly: spec.readOnly } : {}),
      ...(spec.copy !== undefined ? { copy: copyOption(spec.copy, defaults) } : {}),
    };
    const dev = await construct<BlockDevice>(where, () =>
      spec.type === 'file'
        ? FileDevice.open({
            path: spec.path,
            ...common,
            ...(spec.size !== undefined ? { size: spec.size } : {}),
            ...(spec.create ? { create: true } : {}),
          })
        : spec.type === 'ram'
          ? new RamDevice({ size: spec.size, ...common })
          : new NullDevice({ size: spec.size, ...common }),
    );
    if (spec.copyMaxBytes !== undefined) {
      try {
        setCopyMaxBytes(dev.limits, spec.copyMaxBytes);
      } catch (err) {
        await dev.close();
        throw BlockError.is(err) ? new ConfigError(where, `copy max bytes: ${err.message}`) : err;
      }
    }
    return dev;
  }
}

/**
 * Runs a device constructor; an argument it rejects (EINVAL: a zone size that is not a power
 * of two, limits that do not fit together) becomes a ConfigError naming the spec or config
 * entry. Errors of other kinds pass through with their code.
 */
async function construct<T>(where: string, make: () => T | Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (err) {
    if (BlockError.is(err) && err.code === 'EINVAL') throw new ConfigError(where, err.message);
    throw err;
  }
}

/**
 * The copy option a leaf constructor takes. Lowering maxHwBytes below the default cap also
 * lowers maxBytes (which must stay at or below it); the user's own cap is set afterwards.
 */
function copyOption(
  copy: false | Partial<Omit<CopyLimits, 'maxBytes'>>,
  defaults: Readonly<CopyLimits>,
): false | Partial<CopyLimits> {
  if (copy === false) return false;
  if (copy.maxHwBytes === undefined) return copy;
  return { ...copy, maxBytes: Math.min(defaults.maxBytes, copy.maxHwBytes) };
}

/** A device together with the means to close it and everything it is built on. */
export interface OpenedDevice {
  readonly device: BlockDevice;
  close(): Promise<void>;
}

/** Opens one device from an inline spec or a config name. */
export async function openDevice(specOrName: string, config?: Config): Promise<OpenedDevice> {
  const set = new DeviceSet(config);
  try {
    return { device: await set.open(specOrName), close: () => set.closeAll() };
  } catch (err) {
    await set.closeAll().catch(() => {});
    throw err;
  }
}

/** Opens every device of a config; close() closes them all. */
export async function openConfigDevices(
  config: Config,
): Promise<{ devices: Map<string, BlockDevice>; close(): Promise<void> }> {
  const set = new DeviceSet(config);
  try {
    return { devices: await set.openAll(), close: () => set.closeAll() };
  } catch (err) {
    await set.closeAll().catch(() => {});
    throw err;
  }
}
