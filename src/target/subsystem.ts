// An NVM subsystem: an NQN, identity strings, the hosts allowed to connect, namespaces by
// NSID and the live controllers (nvmet's struct nvmet_subsys). The discovery subsystem is a
// Subsystem of kind 'discovery' with no namespaces.
//
// - Host access: with `hosts` listed, only those host NQNs may connect, unless allowAnyHost
//   is true; with no `hosts`, any host may connect. The discovery subsystem admits everyone.
// - Namespaces can be added and removed while hosts are connected: every controller gets the
//   NSID in its Changed Namespace List and, when it enabled namespace-attribute notices, an
//   Asynchronous Event (nvmet_ns_changed). removeNamespace() waits for commands still running
//   on the namespace; it never closes the device (whoever opened it owns it).
// - Controller IDs are dynamic, 1..0xFFEF, handed out round-robin so a reconnecting host
//   does not get the ID of the controller it just lost.

import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { BlockError, ErrorCode } from '../block/errors.js';
import { Namespace, type NamespaceOptions } from './namespace.js';
import type { Controller } from './controller.js';

export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
export const CNTLID_MIN = 1;
export const CNTLID_MAX = 0xffef;
/** NQNs are at most 223 bytes (NVMF_NQN_SIZE). */
export const NQN_MAX_LENGTH = 223;

export const DEFAULT_MODEL = 'tsblk';
export const DEFAULT_MAX_CONTROLLERS = 64;
export const DEFAULT_MAX_IO_QUEUES = 128;
/** OCFS: descriptor formats 0–3 (QEMU advertises the same). */
export const DEFAULT_COPY_FORMATS = 0x0f;

export type SubsystemKind = 'nvm' | 'discovery';

export interface SubsystemOptions {
  nqn: string;
  /** Serial number, ≤ 20 ASCII characters; default derived from the NQN (stable). */
  serial?: string;
  /** Model number, ≤ 40 characters; default "tsblk". */
  model?: string;
  /** Firmware revision, ≤ 8 characters; default the tsblk version. */
  firmware?: string;
  /** Host NQNs allowed to connect. */
  hosts?: readonly string[];
  /** Admit every host even when `hosts` is given. Default: true when `hosts` is empty. */
  allowAnyHost?: boolean;
  /** Most controllers at once (default 64); one more Connect gets Controller Busy. */
  maxControllers?: number;
  /** I/O queues per controller (default 128). */
  maxIoQueues?: number;
  /** OCFS bit mask of Copy descriptor formats (default 0x0F). */
  copyFormats?: number;
  namespaces?: readonly NamespaceOptions[];
}

function invalid(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, msg);
}

function packageVersion(): string {
  const req = createRequire(import.meta.url);
  for (const p of ['../../package.json', '../../../package.json']) {
    try {
      const v = req(p) as { name?: string; version?: string };
      if (v.name === 'tsblk' && v.version) return v.version;
    } catch {
      // try the next layout (src/ vs dist/src/)
    }
  }
  return '0';
}
const TSBLK_VERSION = packageVersion();

/** Checks an NQN: 1..223 printable ASCII characters starting with "nqn.". */
export function checkNqn(nqn: unknown, what: string): string {
  if (
    typeof nqn !== 'string' ||
    nqn.length === 0 ||
    nqn.length > NQN_MAX_LENGTH ||
    !/^[\x21-\x7e]+$/.test(nqn)
  )
    invalid(
      `${what} "${String(nqn)}" must be 1..${NQN_MAX_LENGTH} printable ASCII characters without spaces`,
    );
  if (!nqn.startsWith('nqn.'))
    invalid(`${what} "${nqn}" must start with "nqn." (e.g. nqn.2024-01.io.tsblk:disk0)`);
  return nqn;
}

function checkAscii(what: string, v: string, max: number): string {
  if (v.length === 0 || v.length > max || !/^[\x20-\x7e]+$/.test(v))
    invalid(`${what} "${v}" must be 1..${max} printable ASCII characters`);
  return v;
}

function positiveInt(what: string, v: number | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1 || v > max) invalid(`${what} ${v} must be an integer in 1..${max}`);
  return v;
}

export class Subsystem {
  readonly kind: SubsystemKind;
  readonly nqn: string;
  readonly serial: string;
  readonly model: string;
  readonly firmware: string;
  readonly maxControllers: number;
  readonly maxIoQueues: number;
  /** OCFS: bit n set when Copy descriptor format n is supported. */
  readonly copyFormats: number;
  allowAnyHost: boolean;
  readonly #hosts = new Set<string>();
  readonly #namespaces = new Map<number, Namespace>();
  readonly controllers = new Set<Controller>();
  #nextCntlid = CNTLID_MIN;
  /** Called when what the discovery log shows for this subsystem changes (hosts). */
  onDiscoveryChange: (() => void) | undefined;

  constructor(options: SubsystemOptions, kind: SubsystemKind = 'nvm') {
    this.kind = kind;
    this.nqn = checkNqn(options.nqn, 'subsystem NQN');
    const sn = createHash('sha256').update(this.nqn).digest('hex').slice(0, 20);
    this.serial = checkAscii('serial', options.serial ?? sn, 20);
    this.model = checkAscii('model', options.model ?? DEFAULT_MODEL, 40);
    this.firmware = checkAscii('firmware', options.firmware ?? TSBLK_VERSION.slice(0, 8), 8);
    this.maxControllers = positiveInt(
      'maxControllers',
      options.maxControllers,
      DEFAULT_MAX_CONTROLLERS,
      CNTLID_MAX,
    );
    this.maxIoQueues =
      kind === 'discovery'
        ? 0
        : positiveInt('maxIoQueues', options.maxIoQueues, DEFAULT_MAX_IO_QUEUES, 0xfffe);
    const ocfs = options.copyFormats ?? DEFAULT_COPY_FORMATS;
    if (!Number.isInteger(ocfs) || ocfs < 0 || ocfs > 0x0f)
      invalid(`copyFormats 0x${ocfs.toString(16)} must be a mask of formats 0..3 (0x0..0xF)`);
    this.copyFormats = ocfs;
    for (const h of options.hosts ?? []) this.#hosts.add(checkNqn(h, 'host NQN'));
    this.allowAnyHost = options.allowAnyHost ?? this.#hosts.size === 0;
    for (const ns of options.namespaces ?? []) this.addNamespace(ns);
  }

  get isDiscovery(): boolean {
    return this.kind === 'discovery';
  }

  get hosts(): string[] {
    return [...this.#hosts];
  }

  hostAllowed(hostnqn: string): boolean {
    return this.isDiscovery || this.allowAnyHost || this.#hosts.has(hostnqn);
  }

  addHost(hostnqn: string): void {
    this.#hosts.add(checkNqn(hostnqn, 'host NQN'));
    this.onDiscoveryChange?.();
  }

  /** Removes a host from the allowed list; its live controllers keep running (as nvmet). */
  removeHost(hostnqn: string): boolean {
    const had = this.#hosts.delete(hostnqn);
    if (had) this.onDiscoveryChange?.();
    return had;
  }

  /** Active namespaces in ascending NSID order. */
  get namespaces(): Namespace[] {
    return [...this.#namespaces.values()].sort((a, b) => a.nsid - b.nsid);
  }

  namespace(nsid: number): Namespace | undefined {
    return this.#namespaces.get(nsid);
  }

  addNamespace(options: NamespaceOptions): Namespace {
    if (this.isDiscovery) invalid('the discovery subsystem has no namespaces');
    if (this.#namespaces.has(options.nsid))
      throw new BlockError(ErrorCode.EINVAL, `subsystem ${this.nqn} already has namespace ${options.nsid}`);
    const ns = new Namespace(this.nqn, options);
    this.#namespaces.set(ns.nsid, ns);
    this.#changed(ns.nsid);
    return ns;
  }

  /**
   * Takes a namespace out of service: new commands for it fail with Invalid Namespace at
   * once; the returned promise resolves when its running commands have finished.
   */
  async removeNamespace(nsid: number): Promise<Namespace> {
    const ns = this.#namespaces.get(nsid);
    if (!ns) throw new BlockError(ErrorCode.EINVAL, `subsystem ${this.nqn} has no namespace ${nsid}`);
    this.#namespaces.delete(nsid);
    this.#changed(nsid);
    await ns.drain();
    return ns;
  }

  #changed(nsid: number): void {
    for (const c of this.controllers) c.namespaceChanged(nsid);
  }

  /** The next free controller ID, or undefined when maxControllers are live or IDs ran out. */
  allocateCntlid(): number | undefined {
    if (this.controllers.size >= this.maxControllers) return undefined;
    const used = new Set([...this.controllers].map((c) => c.cntlid));
    for (let i = 0; i <= CNTLID_MAX - CNTLID_MIN; i++) {
      const id = this.#nextCntlid;
      this.#nextCntlid = id >= CNTLID_MAX ? CNTLID_MIN : id + 1;
      if (!used.has(id)) return id;
    }
    return undefined;
  }

  controller(cntlid: number): Controller | undefined {
    for (const c of this.controllers) if (c.cntlid === cntlid) return c;
    return undefined;
  }
}
