// The storage daemon behind `tsblk serve`: opens the namespace devices, builds the NVMe-oF
// target (subsystems, namespaces), starts the NVMe/TCP listeners, and shuts all of it down
// again in order. docs/serve.md describes it for users.
//
// Without a config it serves DEFAULT_NQN: one namespace (NSID 1) over a 1 GiB sparse RAM
// device with copy offload ("ram0"), on 127.0.0.1:4420, with discovery on 127.0.0.1:8009,
// and the same device object as NBD export "ram0" (also the default export '') on
// 127.0.0.1:10809: one store, two protocols.
// A config's `subsystems` and `ports` replace that (no `ports` section: the same two
// listeners); its `nbd` section replaces the NBD default (no `nbd` section: no NBD). A config
// with an `nbd` section and no subsystems serves NBD only. `listen` / `discoveryListen` /
// `discovery: false` / `nbdListen` / `nbd: false` override the listeners. A config's `ublk`
// section starts its devices as /dev/ublkbN (after the listeners; a machine without ublk
// fails the start with the reason before anything is opened).
//
// Shutdown (close()), in this order: ublk devices stopped and deleted (no /dev/ublkb* left),
// the NBD server (stop accepting, end handshakes,
// in-flight NBD requests finish, up to DRAIN_TIMEOUT_MS); then stop accepting on every
// NVMe/TCP listener; delete every
// controller and close every connection (commands still running finish, their responses are
// dropped); wait up to DRAIN_TIMEOUT_MS for them; flush every namespace and NBD export device
// once (file devices: fdatasync); close every device. Each step runs even when an earlier one failed; failures
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
import { NBD_DEFAULT_LISTEN, type NbdConfig, type NbdListenConfig } from './config-nbd.js';
import { DeviceSet } from './devices.js';
import type { NbdExport } from '../export/nbd/export.js';
import { NbdServer, type NbdBoundAddress } from '../export/nbd/server.js';
import { formatNbdUri } from '../export/nbd/uri.js';
import { UblkExport, ublkUnavailable } from '../export/ublk/device.js';
import type { UblkConfig } from './config-ublk.js';

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
  /** NBD listeners replacing the config's (or the default 127.0.0.1:10809). */
  nbdListen?: readonly NbdListenConfig[];
  /** false: no NBD server, whatever the config says. */
  nbd?: boolean;
  /** Log lines of the NBD server (connections, failures). */
  nbdLog?: (line: string) => void;
  target?: TargetOptions;
  transport?: TcpTransportOptions;
}

/** An NBD listener, for the startup report. */
export interface NbdListenerInfo {
  /** TCP: host and port; unix socket: path. */
  address: NbdBoundAddress;
  /** One URI per export, the default export ('') first. */
  uris: string[];
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

/** The NBD export of the default device: 'ram0', also reached as ''. */
function defaultNbd(): NbdConfig {
  return {
    listen: [NBD_DEFAULT_LISTEN],
    exports: [
      {
        name: 'ram0',
        device: DEFAULT_DEVICE,
        readOnly: false,
        multiConn: true,
        at: 'default NBD export ram0',
      },
    ],
    defaultExport: 'ram0',
  };
}

function planNbd(options: ServeOptions): NbdConfig | undefined {
  if (options.nbd === false) return undefined;
  const config = options.config;
  const nbd = config === undefined ? defaultNbd() : config.nbd;
  if (!nbd) {
    if (options.nbdListen?.length)
      throw new ConfigError(
        config?.source ?? '',
        'has no "nbd" section, so there is nothing to serve on the NBD listener; add one (docs/nbd.md) or leave out --nbd-listen',
      );
    return undefined;
  }
  return options.nbdListen?.length ? { ...nbd, listen: options.nbdListen } : nbd;
}

function plan(options: ServeOptions): {
  subsystems: SubsystemConfig[];
  ports: PlannedPort[];
  nbd: NbdConfig | undefined;
} {
  const config = options.config;
  const nbd = planNbd(options);
  let subsystems: SubsystemConfig[];
  if (config === undefined) subsystems = [defaultSubsystem()];
  else {
    subsystems = [...config.subsystems.values()];
    // NBD and/or ublk only: no NVMe/TCP target listeners at all.
    if (subsystems.length === 0 && (nbd || config.ublk)) return { subsystems, ports: [], nbd };
    if (subsystems.length === 0)
      throw new ConfigError(
        config.source ?? '',
        'defines no subsystems: add a "subsystems" section (docs/config.md), an "nbd" section (docs/nbd.md) or a "ublk" section (docs/ublk.md), or run tsblk serve without a config',
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
  return { subsystems, ports: [...io, ...disc], nbd };
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
  /** The NBD server, when NBD is served. */
  readonly nbd: NbdServer | undefined;
  /** Where the NBD server listens (bound ports). */
  readonly nbdAddresses: readonly NbdBoundAddress[];
  /** The config's ublk devices (/dev/ublkbN), live. */
  readonly ublk: readonly UblkExport[];
  #closing: Promise<ShutdownReport> | undefined;

  private constructor(
    target: Target,
    transport: TcpTransport,
    ports: TcpPort[],
    devices: DeviceSet,
    nbd?: { server: NbdServer; addresses: NbdBoundAddress[] },
    ublk: UblkExport[] = [],
  ) {
    this.ublk = ublk;
    this.target = target;
    this.transport = transport;
    this.ports = ports;
    this.devices = devices;
    this.nbd = nbd?.server;
    this.nbdAddresses = nbd?.addresses ?? [];
  }

  /** Opens devices, builds the target and listens. On failure nothing is left open. */
  static async start(options: ServeOptions = {}): Promise<Server> {
    const { subsystems, ports, nbd } = plan(options);
    const config = options.config;
    const devices = new DeviceSet(config);
    const listening: TcpPort[] = [];
    let nbdServer: NbdServer | undefined;
    const ublk: UblkExport[] = [];
    try {
      // A machine without ublk fails here, before anything is opened.
      if (config?.ublk) checkUblk(config);
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
      let nbdInfo: { server: NbdServer; addresses: NbdBoundAddress[] } | undefined;
      if (nbd) {
        nbdServer = await startNbd(nbd, devices, config, options.nbdLog);
        const addresses: NbdBoundAddress[] = [];
        for (const l of nbd.listen)
          addresses.push(
            await nbdServer.listen(
              l.path !== undefined ? { path: l.path } : { host: l.address, port: l.port },
            ),
          );
        nbdInfo = { server: nbdServer, addresses };
      }
      if (config?.ublk) await startUblk(config.ublk, devices, ublk);
      return new Server(target, transport, listening, devices, nbdInfo, ublk);
    } catch (err) {
      await Promise.allSettled(ublk.map((u) => u.stop()));
      await nbdServer?.close(1000).catch(() => {});
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

  /** The NBD listeners and the URI of every export on each (the default export's bare URI first). */
  get nbdListeners(): NbdListenerInfo[] {
    const nbd = this.nbd;
    if (!nbd) return [];
    const tls = nbd.tls?.required ?? false;
    const names = nbd.exports.map((e) => e.name);
    const hasDefault = nbd.defaultExport !== undefined && !names.includes('');
    return this.nbdAddresses.map((a) => {
      const at = a.path !== undefined ? { path: a.path } : { host: a.host!, port: a.port! };
      return {
        address: a,
        uris: [...(hasDefault ? [''] : []), ...names].map((n) => formatNbdUri(at, n, tls)),
      };
    });
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
    // 0. ublk devices and NBD first: their requests run on the devices flushed below. A
    //    stopped ublk device is gone from /dev once its requests in flight finish.
    for (const u of this.ublk) await step(`stopping ${u.blockPath}`, () => u.stop());
    if (this.nbd) await step('closing the NBD server', () => this.nbd!.close(DRAIN_TIMEOUT_MS));
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
    // 4. flush each device once (namespaces and NBD exports may share one)
    const seen = new Set<BlockDevice>();
    for (const dev of [
      ...namespaces.map((ns) => ns.device),
      ...(this.nbd?.exports ?? []).map((e) => e.device),
      ...this.ublk.map((u) => u.device),
    ]) {
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

function checkUblk(config: Config): void {
  const why = ublkUnavailable();
  if (why)
    throw new ConfigError(
      config.source ? `${config.source}: ublk` : 'ublk',
      `cannot serve ublk devices: ${why}`,
    );
}

/** Opens each export's device through the serve's DeviceSet and starts its ublk device, into `out`. */
async function startUblk(ublk: UblkConfig, devices: DeviceSet, out: UblkExport[]): Promise<void> {
  for (const e of ublk.exports) {
    let device: BlockDevice;
    try {
      device = await devices.open(e.device);
    } catch (err) {
      throw ConfigError.is(err) && err.path === '' ? new ConfigError(`${e.at}.device`, err.detail) : err;
    }
    out.push(
      await UblkExport.start(device, {
        queues: e.queues,
        depth: e.depth,
        ...(e.id === undefined ? {} : { devId: e.id }),
      }),
    );
  }
}

/** Opens the export devices through the serve's DeviceSet (shared with the namespaces) and builds the server. */
async function startNbd(
  nbd: NbdConfig,
  devices: DeviceSet,
  config: Config | undefined,
  log: ((line: string) => void) | undefined,
): Promise<NbdServer> {
  const exports: NbdExport[] = [];
  for (const e of nbd.exports) {
    let device: BlockDevice;
    try {
      device = await devices.open(e.device);
    } catch (err) {
      throw ConfigError.is(err) && err.path === '' ? new ConfigError(`${e.at}.device`, err.detail) : err;
    }
    exports.push({
      name: e.name,
      device,
      readOnly: e.readOnly,
      multiConn: e.multiConn,
      ...(e.description === undefined ? {} : { description: e.description }),
    });
  }
  const where = config?.source ? `${config.source}: nbd.tls` : 'nbd.tls';
  try {
    return new NbdServer({
      exports,
      defaultExport: nbd.defaultExport,
      ...(nbd.tls ? { tls: nbd.tls } : {}),
      ...(log ? { log } : {}),
    });
  } catch (err) {
    // TLS files: name the config entry as well as the file.
    if (nbd.tls && err instanceof Error && typeof (err as { code?: unknown }).code === 'string')
      throw new ConfigError(where, err.message);
    throw err;
  }
}
