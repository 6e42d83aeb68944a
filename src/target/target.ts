// The NVMe-oF target: subsystems, the discovery subsystem and port records together, and the
// entry points a transport uses (createQueue, initRequest). Subsystems, namespaces and ports
// can be added and removed while hosts are connected.
//
// - Ports are records of where the target listens ({ portid, adrfam, traddr, trsvcid, ... });
//   the listeners themselves (port.ts) come with the TCP transport. A port may list the
//   subsystems it exposes; without a list it exposes all. A queue created for a port only
//   connects to subsystems that port exposes (and always to the discovery subsystem).
// - The discovery log generation counter (GENCTR) changes whenever a subsystem, a port or a
//   subsystem's host list changes, and discovery controllers that enabled discovery-change
//   notices get an Asynchronous Event.
// - MDTS is the smaller of `maxDataTransferBytes` (default 1 MiB) and the transport's own
//   limit; queues hold at most `maxQueueSize` entries (default 1024, CAP.MQES + 1).
//
// docs/nvme-target.md lists the transport API and every specification choice of the core.

import type { Request, TransportOps } from './transport.js';
import { BlockError, ErrorCode } from '../block/errors.js';
import { systemClock, type Clock } from './clock.js';
import type { Controller } from './controller.js';
import { initRequest } from './core.js';
import type { Namespace, NamespaceOptions } from './namespace.js';
import { Queue } from './queue.js';
import { DISCOVERY_NQN, Subsystem, type SubsystemOptions } from './subsystem.js';

export type AddressFamily = 'ipv4' | 'ipv6';

/** A place the target listens, as the discovery log page describes it. */
export interface PortRecord {
  /** Port ID (PORTID, a u16), unique per target. */
  readonly portid: number;
  /** Transport type; only 'tcp'. */
  readonly trtype?: 'tcp';
  readonly adrfam: AddressFamily;
  /** Address as text, e.g. "127.0.0.1". */
  readonly traddr: string;
  /** Service (TCP port) as text, e.g. "4420". */
  readonly trsvcid: string;
  /** Transport requirements (TREQ); default 0 (secure channel not specified). */
  readonly treq?: number;
  /** TCP security type in TSAS; only 'none'. */
  readonly sectype?: 'none';
  /** NQNs of the subsystems this port exposes; default all. */
  readonly subsystems?: readonly string[];
}

export interface TargetOptions {
  clock?: Clock;
  /** Entries per queue, 16..65536 (CAP.MQES + 1). Default 1024. */
  maxQueueSize?: number;
  /** MDTS in bytes: 4096 × 2^n, 4 KiB..1 GiB. Default 1 MiB. */
  maxDataTransferBytes?: number;
  subsystems?: readonly SubsystemOptions[];
  ports?: readonly PortRecord[];
}

export const DEFAULT_MAX_QUEUE_SIZE = 1024;
export const DEFAULT_MAX_DATA_TRANSFER_BYTES = 1024 * 1024;

function invalid(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, msg);
}

function checkPort(p: PortRecord): PortRecord {
  const at = `port ${String(p.portid)}`;
  if (!Number.isInteger(p.portid) || p.portid < 0 || p.portid > 0xffff)
    invalid(`${at}: portid must be 0..65535`);
  if ((p.trtype ?? 'tcp') !== 'tcp') invalid(`${at}: trtype must be tcp`);
  if (p.adrfam !== 'ipv4' && p.adrfam !== 'ipv6') invalid(`${at}: adrfam must be ipv4 or ipv6`);
  if (typeof p.traddr !== 'string' || p.traddr.length === 0 || p.traddr.length > 256)
    invalid(`${at}: traddr must be 1..256 characters`);
  if (typeof p.trsvcid !== 'string' || p.trsvcid.length === 0 || p.trsvcid.length > 32)
    invalid(`${at}: trsvcid must be 1..32 characters`);
  if (p.treq !== undefined && (!Number.isInteger(p.treq) || p.treq < 0 || p.treq > 0xff))
    invalid(`${at}: treq must be a byte`);
  if ((p.sectype ?? 'none') !== 'none') invalid(`${at}: sectype must be none (no TLS yet)`);
  return { ...p, ...(p.subsystems ? { subsystems: [...p.subsystems] } : {}) };
}

export class Target {
  readonly clock: Clock;
  readonly maxQueueSize: number;
  readonly maxDataTransferBytes: number;
  readonly discovery: Subsystem;
  /** clock.now() when the target was created (SMART power-on hours). */
  readonly startedAt: number;
  readonly #subsystems = new Map<string, Subsystem>();
  readonly #ports = new Map<number, PortRecord>();
  #genctr = 0n;

  constructor(options: TargetOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.startedAt = this.clock.now();
    const mqs = options.maxQueueSize ?? DEFAULT_MAX_QUEUE_SIZE;
    if (!Number.isInteger(mqs) || mqs < 16 || mqs > 65536) invalid(`maxQueueSize ${mqs} must be 16..65536`);
    this.maxQueueSize = mqs;
    const mdts = options.maxDataTransferBytes ?? DEFAULT_MAX_DATA_TRANSFER_BYTES;
    const pow = Math.log2(mdts / 4096);
    if (!Number.isInteger(pow) || pow < 0 || pow > 18)
      invalid(`maxDataTransferBytes ${mdts} must be 4096 × 2^n, 4 KiB..1 GiB`);
    this.maxDataTransferBytes = mdts;
    this.discovery = new Subsystem({ nqn: DISCOVERY_NQN, model: 'tsblk discovery' }, 'discovery');
    for (const s of options.subsystems ?? []) this.addSubsystem(s);
    for (const p of options.ports ?? []) this.addPort(p);
  }

  // ---- subsystems ----

  /** NVM subsystems in the order they were added. */
  get subsystems(): Subsystem[] {
    return [...this.#subsystems.values()];
  }

  /** The subsystem with this NQN (the discovery NQN gives the discovery subsystem). */
  subsystem(nqn: string): Subsystem | undefined {
    return nqn === DISCOVERY_NQN ? this.discovery : this.#subsystems.get(nqn);
  }

  addSubsystem(options: SubsystemOptions): Subsystem {
    if (options.nqn === DISCOVERY_NQN) invalid(`${DISCOVERY_NQN} is the discovery subsystem's NQN`);
    if (this.#subsystems.has(options.nqn)) invalid(`subsystem ${options.nqn} already exists`);
    const s = new Subsystem(options);
    s.onDiscoveryChange = () => this.discoveryChanged();
    this.#subsystems.set(s.nqn, s);
    this.discoveryChanged();
    return s;
  }

  /**
   * Removes a subsystem: its controllers are deleted (their connections closed), then its
   * namespaces' running commands are waited for. Devices are not closed.
   */
  async removeSubsystem(nqn: string): Promise<Subsystem> {
    const s = this.#subsystems.get(nqn);
    if (!s) invalid(`no subsystem ${nqn}`);
    this.#subsystems.delete(nqn);
    s.onDiscoveryChange = undefined;
    for (const c of [...s.controllers]) c.delete(`subsystem ${nqn} removed`);
    this.discoveryChanged();
    await Promise.all(s.namespaces.map((ns) => ns.drain()));
    return s;
  }

  addNamespace(nqn: string, options: NamespaceOptions): Namespace {
    const s = this.#subsystems.get(nqn);
    if (!s) invalid(`no subsystem ${nqn}`);
    return s.addNamespace(options);
  }

  removeNamespace(nqn: string, nsid: number): Promise<Namespace> {
    const s = this.#subsystems.get(nqn);
    if (!s) invalid(`no subsystem ${nqn}`);
    return s.removeNamespace(nsid);
  }

  // ---- ports and discovery ----

  get ports(): PortRecord[] {
    return [...this.#ports.values()].sort((a, b) => a.portid - b.portid);
  }

  port(portid: number): PortRecord | undefined {
    return this.#ports.get(portid);
  }

  addPort(port: PortRecord): PortRecord {
    const p = checkPort(port);
    if (this.#ports.has(p.portid)) invalid(`port ${p.portid} already exists`);
    this.#ports.set(p.portid, p);
    this.discoveryChanged();
    return p;
  }

  /** Removes a port record and deletes the controllers that connected through it. */
  removePort(portid: number): boolean {
    if (!this.#ports.delete(portid)) return false;
    for (const c of this.controllers) if (c.portid === portid) c.delete(`port ${portid} removed`);
    this.discoveryChanged();
    return true;
  }

  /** True when a connection on `portid` may reach subsystem `s`. */
  exposes(portid: number | undefined, s: Subsystem): boolean {
    if (s.isDiscovery || portid === undefined) return true;
    const p = this.#ports.get(portid);
    if (!p) return true;
    return !p.subsystems || p.subsystems.includes(s.nqn);
  }

  /** Discovery log page generation counter. */
  get genctr(): bigint {
    return this.#genctr;
  }

  /** Bumps GENCTR and notifies discovery controllers (nvmet_port_disc_changed). */
  discoveryChanged(): void {
    this.#genctr = (this.#genctr + 1n) & 0xffffffffffffffffn;
    for (const c of this.discovery.controllers) c.discoveryChanged();
  }

  // ---- transports ----

  /** Every live controller, discovery controllers included. */
  get controllers(): Controller[] {
    return [this.discovery, ...this.#subsystems.values()].flatMap((s) => [...s.controllers]);
  }

  /** A queue for a new transport connection (arriving on `portid`, when it has one). */
  createQueue(ops: TransportOps, portid?: number): Queue {
    return new Queue(this, ops, portid);
  }

  /** core.initRequest: parse an SQE submitted on `queue`. */
  initRequest(queue: Queue, sqe: Uint8Array): Request {
    return initRequest(queue, sqe);
  }

  /**
   * Deletes every controller (transports close their connections) at once, then resolves
   * when the commands still running on any namespace have finished — after that the
   * devices can be flushed and closed.
   */
  async shutdown(reason = 'target shut down'): Promise<void> {
    for (const c of this.controllers) c.delete(reason);
    await Promise.all(this.subsystems.flatMap((s) => s.namespaces.map((ns) => ns.drain())));
  }
}
