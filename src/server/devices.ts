// Opens BlockDevices from inline specs (`ram:1G`, `file:/img,create,size=1G`,
// `nvme-tcp://HOST:PORT/SUBNQN/NSID`) or from config entries by name, and closes all of them
// again.
//
// - A DeviceSet opens each config name, file spec, `name=`d spec and nvme-tcp spec once:
//   asking twice returns the same device, so `tsblk copy disk disk` copies within one device
//   (and can offload), and a device two mappings are built on is shared, not opened twice.
// - An unnamed `ram:` or `null:` spec is a new device at each use: `tsblk copy ram:16M ram:16M`
//   copies between two RAM disks, and two namespaces with `"device": "ram:1G"` get one each.
//   (Add `name=` to share one.) Repeating the same text meaning "the same storage" only made
//   sense for things that have an identity outside the process: files and remote namespaces.
// - Remote namespaces share one controller association per (address, subsystem NQN, host
//   NQN) (remote-controllers.ts), so namespaces of one controller can copy between each other;
//   closeAll() disconnects the associations after closing the devices on them.
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
import type { NvmeController } from '../host/controller.js';
import { LinearTarget } from '../mapper/linear.js';
import { MappedDevice } from '../mapper/mapped-device.js';
import type { Config } from './config.js';
import { ControllerPool, type ExtraControllerOptions } from './remote-controllers.js';
import { ConfigError } from './config-error.js';
import { joinPath } from './config-fields.js';
import {
  isInlineSpec,
  parseDeviceSpec,
  type DeviceRef,
  type DeviceSpec,
  type InlineSpec,
  type LeafSpec,
  type NvmeTcpSpec,
} from './device-spec.js';
import { connectionKey } from './nvme-tcp-spec.js';

export interface DeviceSetOptions {
  /** Controller options for the NVMe/TCP associations the set opens (timeouts, keep-alive). */
  controller?: ExtraControllerOptions;
}

export class DeviceSet {
  readonly config: Config | undefined;
  readonly #byKey = new Map<string, Promise<BlockDevice>>();
  /** Every device opened, in opening order (components before what is built on them). */
  readonly #opened: BlockDevice[] = [];
  readonly #controllers: ControllerPool;

  constructor(config?: Config, options: DeviceSetOptions = {}) {
    this.config = config;
    this.#controllers = new ControllerPool(options.controller);
  }

  /** The NVMe/TCP associations this set opened (for `tsblk id-ctrl` and tests). */
  get controllers(): ControllerPool {
    return this.#controllers;
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

  /**
   * Closes every device opened, newest first, then disconnects the NVMe/TCP associations;
   * throws the first failure after trying all.
   */
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
    try {
      await this.#controllers.disconnectAll();
    } catch (err) {
      first ??= err;
    }
    if (first !== undefined) throw first;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.closeAll();
  }

  #once(key: string, make: () => Promise<BlockDevice>): Promise<BlockDevice> {
    let p = this.#byKey.get(key);
    if (!p) {
      p = this.#track(make());
      this.#byKey.set(key, p);
    }
    return p;
  }

  /** Records a device for closeAll (once, also when two keys lead to one device). */
  #track(p: Promise<BlockDevice>): Promise<BlockDevice> {
    return p.then((dev) => {
      if (!this.#opened.includes(dev)) this.#opened.push(dev);
      return dev;
    });
  }

  #openNamed(name: string): Promise<BlockDevice> {
    const spec = this.config!.devices.get(name)!;
    // Errors found while opening name the entry, and the file it is in.
    const where = joinPath('devices', name);
    const source = this.config!.source;
    return this.#once(`name:${name}`, () => this.#build(spec, source ? `${source}: ${where}` : where, name));
  }

  #openInline(spec: InlineSpec, text: string): Promise<BlockDevice> {
    const where = `device spec "${text}"`;
    // An unnamed RAM or null device is new at each use (see the top of this file).
    if ((spec.type === 'ram' || spec.type === 'null') && spec.name === undefined)
      return this.#track(this.#build(spec, where));
    return this.#once(`spec:${text}`, () => this.#build(spec, where));
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
      case 'nvme-tcp':
        return this.#buildRemote(spec, where, name);
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

  /**
   * A namespace of a remote controller. Specs that differ only in their options (or a config
   * entry and an inline spec) reach the same namespace object through the shared association.
   */
  #buildRemote(spec: NvmeTcpSpec, where: string, name?: string): Promise<BlockDevice> {
    const devName = spec.name ?? name;
    const key = `nvme-tcp:${connectionKey(spec)}/${spec.nsid}${devName !== undefined ? `#${devName}` : ''}`;
    return this.#once(key, async () => {
      const controller = await this.#controllers.get(spec, where);
      return openRemoteNamespace(controller, spec.nsid, devName);
    });
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
 * The namespace as a device: the controller's own namespace object (kept current by its
 * namespace-change events), or, for a device with its own name, a handle opened beside it.
 */
async function openRemoteNamespace(
  controller: NvmeController,
  nsid: number,
  name: string | undefined,
): Promise<BlockDevice> {
  controller.namespace(nsid); // ENODEV naming the controller when it has no such namespace
  if (name === undefined) return controller.namespace(nsid);
  const { RemoteNamespace } = await import('../host/remote-namespace.js');
  return RemoteNamespace.open(controller, nsid, { name });
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
