// The storage daemon behind `tsblk serve`: opens the namespace devices, builds the NVMe-oF
// target (subsystems, namespaces), starts the NVMe/TCP listeners, and shuts all of it down
// again in order. docs/serve.md describes it for users.
//
// Without a config it serves DEFAULT_NQN: one namespace (NSID 1) over a 1 GiB sparse RAM
// device with copy offload ("ram0"), on 127.0.0.1:4420, with discovery on 127.0.0.1:8009.
// A config's `subsystems` and `ports` replace that (no `ports` section: the same two
// listeners). `listen` / `discoveryListen` / `discovery: false` override the listeners.
//
// Shutdown (close()), in this order: stop accepting on every listener; delete every
// controller and close every connection (commands still running finish, their responses are
// dropped); wait up to DRAIN_TIMEOUT_MS for them; flush every namespace device (file devices:
// fdatasync); close every device. Each step runs even when an earlier one failed; failures
// are reported, not thrown.

import type { BlockDevice } from '../block/device.js';
import { BlockError } from '../block/errors.js';
import { TcpPort, formatHostPort, NVME_TCP_DISCOVERY_PORT, NVME_TCP_IO_PORT } from '../target/port.js';
import type { NamespaceOptions } from '../target/namespace.js';
import type { Subsystem } from '../target/subsystem.js';
import { Target, type TargetOptions } from '../target/target.js';
import { TcpTransport, type TcpTransportOptions } from '../target/tcp/transport.js';
import type { Config } from './config.js';
import type { SubsystemConfig } from './config-target.js';
import { ConfigError } from './config-error.js';
import { DeviceSet } from './devices.js';

/** The NQN of the subsystem `tsblk serve` exports without a config. */
export const DEFAULT_NQN = 'nqn.2026-11.io.tsblk:default';
/** Its namespace device: 1 GiB of sparse RAM with the default copy offload limits. */
export const DEFAULT_DEVICE = 'ram:1G,name=ram0';
export const DEFAULT_ADDRESS = '127.0.0.1';
/** How long shutdown waits for commands still running on the namespaces. */
export const DRAIN_TIMEOUT_MS = 10_000;

export interface ListenAddress {
  address: string;
  port: number;
}

export interface ServeOptions {
  /** A checked config; undefined serves the default subsystem. */
  config?: Config;
  /** I/O listeners replacing the config's (or the default 127.0.0.1:4420); each exposes every subsystem. */
  listen?: readonly ListenAddress[];
  /** Discovery listeners replacing the config's (or the default 127.0.0.1:8009). */
  discoveryListen?: readonly ListenAddress[];
  /** false: no discovery listener at all. */
  discovery?: boolean;
  target?: TargetOptions;
  transport?: TcpTransportOptions;
}

/** What a listener serves, for the startup report. */
export interface ListenerInfo {
  kind: 'io' | 'discovery';
  address: string;
  port: number;
  portid: number;
  /** NQNs reachable (I/O listeners). */
  subsystems: string[];
}

export interface ShutdownReport {
  /** Devices flushed (names). */
  flushed: string[];
  /** What went wrong on the way (each step still ran). */
  errors: string[];
}

interface PlannedPort {
  address: string;
  port: number;
  discovery: boolean;
  subsystems?: readonly string[];
}

function defaultSubsystem(): SubsystemConfig {
  return {
    nqn: DEFAULT_NQN,
    allowAnyHost: true,
    hosts: [],
    namespaces: [{ nsid: 1, device: DEFAULT_DEVICE, path: 'default namespace' }],
    path: `default subsystem ${DEFAULT_NQN}`,
  };
}

function plan(options: ServeOptions): { subsystems: SubsystemConfig[]; ports: PlannedPort[] } {
  const config = options.config;
  let subsystems: SubsystemConfig[];
  if (config === undefined) subsystems = [defaultSubsystem()];
  else {
    subsystems = [...config.subsystems.values()];
    if (subsystems.length === 0)
      throw new ConfigError(
        config.source ?? '',
        'defines no subsystems: add a "subsystems" section (docs/config.md) or run tsblk serve without a config',
      );
  }
  const fromConfig = config?.ports.length ? config.ports : undefined;
  const io: PlannedPort[] = options.listen?.length
    ? options.listen.map((l) => ({ ...l, discovery: false }))
    : (fromConfig?.filter((p) => !p.discovery) ?? [
        { address: DEFAULT_ADDRESS, port: NVME_TCP_IO_PORT, discovery: false },
      ]);
  let disc: PlannedPort[] = options.discoveryListen?.length
    ? options.discoveryListen.map((l) => ({ ...l, discovery: true }))
    : (fromConfig?.filter((p) => p.discovery) ?? [
        { address: DEFAULT_ADDRESS, port: NVME_TCP_DISCOVERY_PORT, discovery: true },
      ]);
  if (options.discovery === false) disc = [];
  if (io.length === 0)
    throw new ConfigError(
      config?.source ? `${config.source}: ports` : 'ports',
      'lists only discovery listeners; add an I/O listener (e.g. { "address": "127.0.0.1", "port": 4420 }) or use --listen',
    );
  return { subsystems, ports: [...io, ...disc] };
}

/** Errors found while building the target name the config entry (and file). */
function atEntry<T>(config: Config | undefined, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (BlockError.is(err)) {
      const where = config?.source ? `${config.source}: ${path}` : path;
      throw new ConfigError(where, err.message.replace(/^EINVAL: /, ''));
    }
    throw err;
  }
}

export class Server {
  readonly target: Target;
  readonly transport: TcpTransport;
  readonly ports: readonly TcpPort[];
  readonly devices: DeviceSet;
  #closing: Promise<ShutdownReport> | undefined;

  private constructor(target: Target, transport: TcpTransport, ports: TcpPort[], devices: DeviceSet) {
    this.target = target;
    this.transport = transport;
    this.ports = ports;
    this.devices = devices;
  }

  /** Opens devices, builds the target and listens. On failure nothing is left open. */
  static async start(options: ServeOptions = {}): Promise<Server> {
    const { subsystems, ports } = plan(options);
    const config = options.config;
    const devices = new DeviceSet(config);
    const listening: TcpPort[] = [];
    try {
      const target = new Target(options.target);
      for (const s of subsystems) {
        const namespaces: NamespaceOptions[] = [];
        for (const ns of s.namespaces) {
          let device: BlockDevice;
          try {
            device = await devices.open(ns.device);
          } catch (err) {
            throw ConfigError.is(err) && err.path === ''
              ? new ConfigError(`${ns.path}.device`, err.detail)
              : err;
          }
          namespaces.push({
            nsid: ns.nsid,
            device,
            ...(ns.readOnly === undefined ? {} : { readOnly: ns.readOnly }),
            ...(ns.nguid === undefined ? {} : { nguid: ns.nguid }),
            ...(ns.eui64 === undefined ? {} : { eui64: ns.eui64 }),
            ...(ns.uuid === undefined ? {} : { uuid: ns.uuid }),
            ...(ns.copyLimits === undefined ? {} : { copyLimits: ns.copyLimits }),
          });
        }
        atEntry(config, s.path, () =>
          target.addSubsystem({
            nqn: s.nqn,
            ...(s.serial === undefined ? {} : { serial: s.serial }),
            ...(s.model === undefined ? {} : { model: s.model }),
            hosts: s.hosts,
            allowAnyHost: s.allowAnyHost,
            namespaces,
          }),
        );
      }
      const transport = new TcpTransport(target, options.transport);
      for (const p of ports) {
        listening.push(
          await TcpPort.listen(transport, {
            address: p.address,
            port: p.port,
            ...(p.discovery ? { discovery: true } : {}),
            ...(p.subsystems ? { subsystems: p.subsystems } : {}),
          }),
        );
      }
      return new Server(target, transport, listening, devices);
    } catch (err) {
      await Promise.allSettled(listening.map((p) => p.close()));
      await devices.closeAll().catch(() => {});
      throw err;
    }
  }

  get subsystems(): Subsystem[] {
    return this.target.subsystems;
  }

  get listeners(): ListenerInfo[] {
    return this.ports.map((p) => ({
      kind: p.kind,
      address: p.address,
      port: p.port,
      portid: p.portid,
      subsystems:
        p.kind === 'discovery'
          ? []
          : this.subsystems.filter((s) => this.target.exposes(p.portid, s)).map((s) => s.nqn),
    }));
  }

  /** The nvme-cli lines a Linux host uses: `nvme discover` per discovery listener, `nvme connect` per I/O listener and subsystem. */
  connectCommands(): string[] {
    const out: string[] = [];
    for (const l of this.listeners.filter((x) => x.kind === 'discovery'))
      out.push(`nvme discover -t tcp -a ${l.address} -s ${l.port}`);
    for (const l of this.listeners.filter((x) => x.kind === 'io'))
      for (const nqn of l.subsystems) out.push(`nvme connect -t tcp -a ${l.address} -s ${l.port} -n ${nqn}`);
    return out;
  }

  /** Where a listener is, as "addr:port". */
  static formatListener(l: ListenerInfo): string {
    return formatHostPort(l.address, l.port);
  }

  /** Graceful shutdown (see the top of this file); idempotent. */
  close(): Promise<ShutdownReport> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<ShutdownReport> {
    const report: ShutdownReport = { flushed: [], errors: [] };
    const step = async (what: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        report.errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    // 1. stop accepting, 2. controllers and connections
    await step('closing listeners', () =>
      Promise.all(this.ports.map((p) => p.close('tsblk serve shutting down'))),
    );
    await step('deleting controllers', () => this.target.shutdown('tsblk serve shutting down'));
    await step('closing connections', () => this.transport.closeAll('tsblk serve shutting down'));
    // 3. commands still running on the namespaces
    const namespaces = this.subsystems.flatMap((s) => s.namespaces);
    await step('waiting for running commands', async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), DRAIN_TIMEOUT_MS);
        timer.unref();
      });
      const r = await Promise.race([
        Promise.all(namespaces.map((ns) => ns.drain())).then(() => 'drained'),
        timeout,
      ]);
      clearTimeout(timer);
      if (r === 'timeout')
        throw new Error(`commands still running after ${DRAIN_TIMEOUT_MS / 1000} s; flushing anyway`);
    });
    // 4. flush each device once
    const seen = new Set<BlockDevice>();
    for (const ns of namespaces) {
      const dev = ns.device;
      if (seen.has(dev)) continue;
      seen.add(dev);
      if (dev.limits.readOnly) continue;
      await step(`flushing ${dev.name}`, async () => {
        await dev.flush();
        report.flushed.push(dev.name);
      });
    }
    // 5. close the devices (and what they are built on)
    await step('closing devices', () => this.devices.closeAll());
    return report;
  }
}
