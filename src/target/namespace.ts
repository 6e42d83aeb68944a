// A namespace of a subsystem: an NSID over any BlockDevice (nvmet's struct nvmet_ns).
//
// - Identifiers: NGUID, EUI-64 and UUID are taken from the options, or derived from
//   SHA-256/SHA-1 of (subsystem NQN, NSID), so the same config gives the same identifiers on
//   every start (hosts key multipath and udev names on them). Generated EUI-64s have the
//   locally-administered bit set (byte 0 = xxxxxx10b), as QEMU's 52:54:00 prefix does, so
//   they cannot collide with an IEEE-assigned identifier; UUIDs are name-based (version 5).
// - Read-only when the option says so or the device is read-only (NSATTR bit 0 in Identify).
// - Copy limits (Identify MSSRL/MCL/MSRC) come from the device's `limits.copy` when the device
//   offloads; otherwise Copy is still served (emulated by issueCopy) within EMULATED_COPY_LIMITS.
//   Both can be overridden per namespace (QEMU's mssrl/mcl/msrc namespace properties).
// - Zoned devices are refused: they need the ZNS command set, which the target does not serve.

import { createHash } from 'node:crypto';
import type { BlockDevice } from '../block/device.js';
import { BlockError, ErrorCode } from '../block/errors.js';
import { copyOffloadEnabled } from '../block/limits.js';

/** Copy limits in Identify Namespace terms: MSSRL and MCL in blocks, MSRC 0's based. */
export interface NvmeCopyLimits {
  /** Maximum Single Source Range Length, blocks (1..0xFFFF). */
  readonly mssrl: number;
  /** Maximum Copy Length, blocks (1..0xFFFFFFFF). */
  readonly mcl: number;
  /** Maximum Source Range Count, 0's based (0..255). */
  readonly msrc: number;
}

/**
 * Limits for namespaces whose device cannot offload: ranges up to 65535 blocks, at most 256
 * ranges, and MCL so that one command never moves more than 128 MiB through memory.
 */
export const EMULATED_COPY_LIMITS = Object.freeze({
  maxBytes: 128 * 1024 * 1024,
  maxRanges: 256,
  maxRangeBlocks: 0xffff,
});

export interface NamespaceOptions {
  nsid: number;
  device: BlockDevice;
  /** Refuse writes even when the device accepts them. */
  readOnly?: boolean;
  /** 16 bytes, or 32 hex digits (dashes allowed). */
  nguid?: Uint8Array | string;
  /** 8 bytes, or 16 hex digits (dashes or colons allowed). */
  eui64?: Uint8Array | string;
  /** 16 bytes, or the canonical 8-4-4-4-12 text form. */
  uuid?: Uint8Array | string;
  /** Overrides of the derived copy limits (each one optional). */
  copyLimits?: Partial<NvmeCopyLimits>;
}

/** Per-namespace counters (SMART / Health and `tsblk` metrics). */
export interface NamespaceStats {
  /** Read and Compare commands completed successfully. */
  readCommands: number;
  /** Write and Copy commands completed successfully. */
  writeCommands: number;
  bytesRead: number;
  /** Bytes written by Write commands and by Copy (destination bytes). */
  bytesWritten: number;
  copies: number;
  copyRanges: number;
  copyBytesOffloaded: number;
  copyBytesEmulated: number;
  copyFailures: number;
}

export const MAX_NSID = 0xfffffffe;
export const BROADCAST_NSID = 0xffffffff;

/** Fixed namespace UUID of tsblk's name-based (v5) namespace UUIDs. */
const TSBLK_UUID_NAMESPACE = Buffer.from('6f2a8c1e3b7d4e599a0c5d1e8f2b4c73', 'hex');

function invalid(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, msg);
}

function idBytes(what: string, v: Uint8Array | string, len: number): Buffer {
  if (typeof v !== 'string') {
    if (v.byteLength !== len) invalid(`${what} must be ${len} bytes, got ${v.byteLength}`);
    return Buffer.from(v);
  }
  const hex = v.replace(/[-:]/g, '');
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length !== len * 2)
    invalid(`${what} "${v}" must be ${len * 2} hex digits`);
  return Buffer.from(hex, 'hex');
}

function digest(alg: 'sha256' | 'sha1', ...parts: Array<string | Buffer>): Buffer {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Stable identifiers of namespace `nsid` of subsystem `nqn`. */
export function deriveIdentifiers(nqn: string, nsid: number): { nguid: Buffer; eui64: Buffer; uuid: Buffer } {
  const name = `${nqn}\0${nsid}`;
  const nguid = digest('sha256', 'tsblk-nguid\0', name).subarray(0, 16);
  const eui64 = Buffer.from(digest('sha256', 'tsblk-eui64\0', name).subarray(0, 8));
  eui64[0] = (eui64[0]! & 0xfc) | 0x02; // unicast, locally administered
  const uuid = Buffer.from(digest('sha1', TSBLK_UUID_NAMESPACE, name).subarray(0, 16));
  uuid[6] = (uuid[6]! & 0x0f) | 0x50; // version 5
  uuid[8] = (uuid[8]! & 0x3f) | 0x80; // RFC 4122 variant
  return { nguid: Buffer.from(nguid), eui64, uuid };
}

export function formatUuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** MSSRL/MCL/MSRC for a device: from its offload limits, or the emulation defaults. */
export function deriveCopyLimits(device: BlockDevice): NvmeCopyLimits {
  const bs = device.limits.logicalBlockSize;
  const c = device.limits.copy;
  if (c && copyOffloadEnabled(device.limits)) {
    const mcl = Math.max(1, Math.min(Math.floor(c.maxBytes / bs), 0xffffffff));
    const mssrl = Math.max(1, Math.min(Math.floor(c.maxRangeBytes / bs), 0xffff, mcl));
    return { mssrl, mcl, msrc: Math.min(c.maxRanges, 256) - 1 };
  }
  const mcl = Math.floor(EMULATED_COPY_LIMITS.maxBytes / bs);
  return {
    mssrl: Math.min(EMULATED_COPY_LIMITS.maxRangeBlocks, mcl),
    mcl,
    msrc: EMULATED_COPY_LIMITS.maxRanges - 1,
  };
}

function checkCopyLimits(nsid: number, l: NvmeCopyLimits): void {
  const at = `namespace ${nsid}: copy limits`;
  if (!Number.isInteger(l.mssrl) || l.mssrl < 1 || l.mssrl > 0xffff)
    invalid(`${at}: mssrl ${l.mssrl} must be 1..65535`);
  if (!Number.isInteger(l.mcl) || l.mcl < 1 || l.mcl > 0xffffffff)
    invalid(`${at}: mcl ${l.mcl} must be 1..4294967295`);
  if (!Number.isInteger(l.msrc) || l.msrc < 0 || l.msrc > 255)
    invalid(`${at}: msrc ${l.msrc} must be 0..255 (0's based)`);
  if (l.mcl < l.mssrl)
    invalid(`${at}: mcl ${l.mcl} is below mssrl ${l.mssrl}; a single range could never be copied whole`);
}

export class Namespace {
  readonly nsid: number;
  readonly device: BlockDevice;
  readonly nguid: Buffer;
  readonly eui64: Buffer;
  readonly uuid: Buffer;
  readonly copyLimits: NvmeCopyLimits;
  readonly #readOnlyOption: boolean;
  readonly stats: NamespaceStats = {
    readCommands: 0,
    writeCommands: 0,
    bytesRead: 0,
    bytesWritten: 0,
    copies: 0,
    copyRanges: 0,
    copyBytesOffloaded: 0,
    copyBytesEmulated: 0,
    copyFailures: 0,
  };

  constructor(subsystemNqn: string, options: NamespaceOptions) {
    const { nsid, device } = options;
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > MAX_NSID)
      invalid(`namespace ID ${nsid} must be 1..${MAX_NSID} (0 and 0xFFFFFFFF are reserved)`);
    if (device.limits.zoned)
      throw new BlockError(
        ErrorCode.EOPNOTSUPP,
        `namespace ${nsid}: ${device.name} is zoned; the target serves the NVM command set only (no ZNS yet)`,
      );
    this.nsid = nsid;
    this.device = device;
    this.#readOnlyOption = options.readOnly ?? false;
    const gen = deriveIdentifiers(subsystemNqn, nsid);
    this.nguid =
      options.nguid === undefined ? gen.nguid : idBytes(`namespace ${nsid}: nguid`, options.nguid, 16);
    this.eui64 =
      options.eui64 === undefined ? gen.eui64 : idBytes(`namespace ${nsid}: eui64`, options.eui64, 8);
    this.uuid = options.uuid === undefined ? gen.uuid : idBytes(`namespace ${nsid}: uuid`, options.uuid, 16);
    this.copyLimits = { ...deriveCopyLimits(device), ...options.copyLimits };
    checkCopyLimits(nsid, this.copyLimits);
  }

  get readOnly(): boolean {
    return this.#readOnlyOption || this.device.limits.readOnly;
  }

  get blockSize(): number {
    return this.device.limits.logicalBlockSize;
  }

  /** log2 of the block size (LBADS). */
  get lbads(): number {
    return Math.log2(this.blockSize);
  }

  /** Namespace size in logical blocks (NSZE). */
  get blocks(): number {
    return Math.floor(this.device.size / this.blockSize);
  }

  /** True when Copy within this namespace can be offloaded to the device. */
  get copyOffload(): boolean {
    return copyOffloadEnabled(this.device.limits) && this.device.canCopyFrom(this.device);
  }

  // ---- commands in flight, so removal can wait for them ----

  #inflight = 0;
  #drained: Array<() => void> = [];

  /** Marks a command as running on this namespace; call the returned function when it ends. */
  enter(): () => void {
    this.#inflight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#inflight === 0) for (const w of this.#drained.splice(0)) w();
    };
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Resolves when no command is running on the namespace. */
  drain(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }
}
