// RemoteNamespace: a namespace of a remote NVMe controller as a BlockDevice (the host side of
// Linux's nvme_ns). It never touches a socket: commands go through NamespaceParent.submitIo()
// and Identify through identifyNamespace(), so the same class runs over NVMe/TCP
// (controller.ts) and over the target's loop transport in tests (testing/loop-parent.ts).
//
// What a user must know:
// - kind 'nvme'; name `${parent.name}/n${nsid}` unless given. Limits come from Identify
//   (namespace-limits.ts): metadata / protection-information formats are refused, as are
//   blocks other than 512 and 4096 bytes.
// - read → Read, write → Write (FUA as asked), one command per request (maxTransferBytes
//   is at most MDTS and 65536 blocks). flush → Flush only when the controller has a volatile
//   write cache; otherwise it completes at once (Linux does the same). discard → Dataset
//   Management with Deallocate. writeZeroes → Write Zeroes, DEAC set unless noUnmap, in
//   commands of limits.writeZeroes.maxBytes.
// - copy → NVMe Copy (copy-commands.ts): format 0 (or 1) within the namespace; across two
//   namespaces of one controller format 2 (or 3) with SNSID, only once the controller enabled
//   them (parent.copyFormats; Host Behavior Support CDFE) and both have the same block size.
//   Requests whose ranges overwrite each other's sources across several Copy commands in a
//   cycle are refused with EOPNOTSUPP before anything is sent; issueCopy's auto mode then
//   emulates them (read all, then write).
// - writeZeroes falls back to writing zero buffers once the controller refused Write Zeroes.
// - blockStatus keeps the default (everything is data): NVMe's Get LBA Status is optional
//   and not implemented here.
// - Optional controller facts beyond NamespaceParent are used when present: `idCtrlNvm`
//   (WZSL, DMRL, DMRSL, DMSL) and `cap.mpsmin` (NvmeController has both).
// - Zoned namespaces (the ZNS command set) are not supported yet: zone operations fail with
//   EOPNOTSUPP, and a ZNS namespace's zone errors arrive as EIO with `zone` set.
// - Errors: a completion with an error status becomes a BlockError through
//   blockErrorFromStatus (nvme/status.ts): LBA Out of Range → ERANGE, write protected → EPERM,
//   Capacity Exceeded → ENOSPC, ... A command the controller could not complete (HostError)
//   becomes EIO, ECANCELED when it was aborted before it was sent, ENODEV when the
//   controller is lost or was disconnected; the HostError is the cause. AbortSignals are
//   passed to every command.
// - markRemoved() (the controller saw the namespace go): every later operation fails with
//   ENODEV. refresh() re-reads Identify Namespace: a new size and new capabilities are
//   taken in place (the limits object stays the same, so wrappers sharing it see them; a
//   lowered copy.maxBytes is kept); a namespace that became inactive or unusable is marked
//   removed. close() releases only this handle; the controller stays connected.

import { BlockDeviceBase } from '../block/base.js';
import type {
  BlockDevice,
  CopyPathBytes,
  CopyRange,
  DeviceCopyOptions,
  DeviceDetails,
  IoOptions,
  WriteOptions,
  WriteZeroesOptions,
} from '../block/device.js';
import { BlockError, ErrorCode, throwIfAborted, toBlockError } from '../block/errors.js';
import { encodeDsmRanges, encodeRwCdw12, splitLba, DsmAttribute } from '../nvme/command.js';
import type { IdNsFields } from '../nvme/identify.js';
import { IoOpcode } from '../nvme/opcodes.js';
import { blockErrorFromStatus, isSuccess, NvmeStatusError } from '../nvme/status.js';
import { planCopyCommands, runCopyCommands } from './copy-commands.js';
import { HostError } from './errors.js';
import { namespaceGeometry, type IdCtrlNvmLimits, type NamespaceGeometry } from './namespace-limits.js';
import type { HostCommand, HostCompletion, NamespaceParent } from './types.js';

export interface RemoteNamespaceOptions {
  /** Device name; default `${parent.name}/n${nsid}`. */
  name?: string;
}

/** Facts a controller may offer beyond NamespaceParent (NvmeController has `cap`). */
interface OptionalControllerFacts {
  readonly idCtrlNvm?: IdCtrlNvmLimits;
  readonly cap?: { readonly mpsmin: number };
}

/**
 * A failure to get a completion at all, as a BlockError: HostError ABORTED → ECANCELED,
 * CONTROLLER_LOST / DELETED → ENODEV, any other HostError → EIO; an NvmeStatusError (from
 * Identify) through blockErrorFromStatus. The original error is the cause.
 */
export function blockErrorFromHost(err: unknown, what: string): BlockError {
  if (BlockError.is(err)) return err;
  if (HostError.is(err)) {
    const code = err.code;
    const errno =
      code === 'ABORTED'
        ? ErrorCode.ECANCELED
        : code === 'CONTROLLER_LOST' || code === 'DELETED'
          ? ErrorCode.ENODEV
          : ErrorCode.EIO;
    return new BlockError(errno, `${what}: ${err.message} (${code})`, { cause: err });
  }
  if (NvmeStatusError.is(err)) return blockErrorFromStatus(err.status, what, { cause: err });
  return toBlockError(err, what);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export class RemoteNamespace extends BlockDeviceBase {
  readonly kind = 'nvme';
  readonly parent: NamespaceParent;
  readonly nsid: number;
  #idNs: IdNsFields;
  #geo: NamespaceGeometry;
  /** Why the namespace is unusable (removed, reformatted); undefined while it is usable. */
  #gone: string | undefined;
  /** The controller refused Write Zeroes once: zeroes are written as data from then on. */
  #writeZeroesRefused = false;

  /** Identifies namespace `nsid` of `parent` and opens it. ENODEV when it is not active. */
  static async open(
    parent: NamespaceParent,
    nsid: number,
    options: RemoteNamespaceOptions = {},
  ): Promise<RemoteNamespace> {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > 0xfffffffe)
      throw new BlockError(ErrorCode.EINVAL, `namespace ID ${nsid} of ${parent.name} must be 1..0xFFFFFFFE`);
    const name = options.name ?? `${parent.name}/n${nsid}`;
    const idNs = await identify(parent, nsid, name);
    const geo = geometry(parent, nsid, name, idNs);
    return new RemoteNamespace(parent, nsid, name, idNs, geo);
  }

  private constructor(
    parent: NamespaceParent,
    nsid: number,
    name: string,
    idNs: IdNsFields,
    geo: NamespaceGeometry,
  ) {
    super(name, geo.size, geo.limits);
    this.parent = parent;
    this.nsid = nsid;
    this.#idNs = idNs;
    this.#geo = geo;
  }

  /** The Identify Namespace data the limits were derived from. */
  get idNs(): IdNsFields {
    return this.#idNs;
  }

  /** True once markRemoved() was called (or refresh found the namespace gone). */
  get removed(): boolean {
    return this.#gone !== undefined;
  }

  /** The controller no longer has this namespace: later operations fail with ENODEV. */
  markRemoved(reason = 'namespace was removed from the controller'): void {
    this.#gone ??= reason;
  }

  /**
   * Re-reads Identify Namespace and takes the new size and capabilities. A namespace that is
   * no longer active, or was reformatted to something tsblk cannot use, is marked removed
   * and the error is thrown.
   */
  async refresh(): Promise<void> {
    this.checkOpen('refresh');
    const idNs = await identify(this.parent, this.nsid, this.name);
    let geo: NamespaceGeometry;
    try {
      geo = geometry(this.parent, this.nsid, this.name, idNs);
    } catch (err) {
      const e = toBlockError(err, `refresh of ${this.name}`);
      const why = e.message.replace(/^[A-Z0-9]+: /, '');
      this.markRemoved(
        e.code === ErrorCode.ENODEV ? why : `changed at the controller and cannot be used: ${why}`,
      );
      throw e;
    }
    const old = this.limits.copy;
    const next = geo.limits.copy;
    // A cap the user lowered (setCopyMaxBytes) survives, within the new hardware limit.
    if (old && next && old.maxBytes < old.maxHwBytes) {
      const cap = Math.min(old.maxBytes, next.maxHwBytes);
      next.maxBytes = cap - (cap % geo.limits.logicalBlockSize);
    }
    // In place: the limits object is shared with whoever holds it (wrappers, stacks).
    const live = this.limits as unknown as Record<string, unknown>;
    for (const key of Object.keys(live)) if (!(key in geo.limits)) delete live[key];
    Object.assign(live, geo.limits);
    (this as unknown as { size: number }).size = geo.size;
    this.#idNs = idNs;
    this.#geo = geo;
  }

  protected override checkOpen(op: string): void {
    super.checkOpen(op);
    if (this.#gone !== undefined)
      throw new BlockError(ErrorCode.ENODEV, `${op} on ${this.name}: ${this.#gone}`);
  }

  override canCopyFrom(source: BlockDevice): boolean {
    if (!this.limits.copy || this.#gone !== undefined) return false;
    if (source === this) return this.#copyFormat(false) !== undefined;
    return (
      source instanceof RemoteNamespace &&
      source.parent === this.parent &&
      !source.removed &&
      source.limits.logicalBlockSize === this.limits.logicalBlockSize &&
      this.#copyFormat(true) !== undefined
    );
  }

  override details(): DeviceDetails {
    const id = this.parent.idCtrl;
    const c = this.limits.copy;
    const d: DeviceDetails = {
      nsid: this.nsid,
      controller: this.parent.name,
      subnqn: id.subnqn,
      cntlid: id.cntlid,
      model: id.mn,
      serial: id.sn,
      firmware: id.fr,
      maxDataTransferBytes: this.parent.maxDataTransferBytes,
      blocks: this.#geo.blocks,
      lbaFormat: this.#geo.lbaFormat,
      volatileWriteCache: this.#geo.volatileWriteCache,
      copyFormats: [...this.parent.copyFormats].sort((a, b) => a - b).join(',') || 'none',
      copy: !c ? 'none' : c.maxBytes === 0 ? 'offload disabled (copy.maxBytes 0)' : 'offload (NVMe Copy)',
      removed: this.#gone !== undefined,
      writeZeroes: this.#writeZeroesRefused
        ? 'written as zero buffers (the controller refused Write Zeroes)'
        : this.limits.writeZeroes
          ? 'Write Zeroes command'
          : 'none',
    };
    if (this.#geo.optimalWriteBytes) d.optimalWriteBytes = this.#geo.optimalWriteBytes;
    if (this.#idNs.nguid.some((b) => b !== 0)) d.nguid = hex(this.#idNs.nguid);
    if (this.#idNs.eui64.some((b) => b !== 0)) d.eui64 = hex(this.#idNs.eui64);
    return d;
  }

  // ---- the data path ----

  protected async doRead(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void> {
    const bs = this.limits.logicalBlockSize;
    await this.#io('read', offset, {
      sqe: {
        opcode: IoOpcode.READ,
        nsid: this.nsid,
        ...splitLba(offset / bs),
        cdw12: encodeRwCdw12({ nlb: buffer.length / bs - 1 }),
      },
      into: buffer,
      ...signalOf(options),
    });
  }

  protected async doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const bs = this.limits.logicalBlockSize;
    await this.#io('write', offset, {
      sqe: {
        opcode: IoOpcode.WRITE,
        nsid: this.nsid,
        ...splitLba(offset / bs),
        cdw12: encodeRwCdw12({ nlb: data.length / bs - 1, fua: options?.fua === true }),
      },
      data,
      ...signalOf(options),
    });
  }

  protected async doFlush(options?: IoOptions): Promise<void> {
    // Without a volatile write cache every completed write is durable already; a removed
    // namespace has nothing left to flush (close() still succeeds).
    if (!this.#geo.volatileWriteCache || this.#gone !== undefined) return;
    await this.#io('flush', undefined, {
      sqe: { opcode: IoOpcode.FLUSH, nsid: this.nsid },
      ...signalOf(options),
    });
  }

  protected override async doDiscard(offset: number, length: number, options?: IoOptions): Promise<void> {
    const bs = this.limits.logicalBlockSize;
    const { dsmRangeBlocks, dsmMaxRanges } = this.#geo;
    const ranges: Array<{ slba: number; nlb: number }> = [];
    for (let lba = offset / bs, left = length / bs; left > 0;) {
      const nlb = Math.min(left, dsmRangeBlocks);
      ranges.push({ slba: lba, nlb });
      lba += nlb;
      left -= nlb;
    }
    for (let i = 0; i < ranges.length; i += dsmMaxRanges) {
      throwIfAborted(options?.signal, `discard on ${this.name}`);
      const batch = ranges.slice(i, i + dsmMaxRanges);
      await this.#io('discard', batch[0]!.slba * bs, {
        sqe: {
          opcode: IoOpcode.DSM,
          nsid: this.nsid,
          cdw10: batch.length - 1,
          cdw11: DsmAttribute.AD,
        },
        data: encodeDsmRanges(batch),
        ...signalOf(options),
      });
    }
  }

  protected override async doWriteZeroes(
    offset: number,
    length: number,
    options?: WriteZeroesOptions,
  ): Promise<void> {
    const bs = this.limits.logicalBlockSize;
    const step = this.#geo.writeZeroesBlocks * bs;
    for (let at = offset; at < offset + length; at += step) {
      throwIfAborted(options?.signal, `write-zeroes on ${this.name}`);
      const bytes = Math.min(step, offset + length - at);
      if (this.#writeZeroesRefused) {
        await this.#writeZeroBuffers(at, bytes, options);
        continue;
      }
      try {
        await this.#io('write-zeroes', at, {
          sqe: {
            opcode: IoOpcode.WRITE_ZEROES,
            nsid: this.nsid,
            ...splitLba(at / bs),
            cdw12: encodeRwCdw12({ nlb: bytes / bs - 1, deac: options?.noUnmap !== true }),
          },
          ...signalOf(options),
        });
      } catch (err) {
        // A controller may advertise Write Zeroes and still refuse it (nvmet's file backend on
        // a filesystem without FALLOC_FL_ZERO_RANGE answers Invalid Opcode). Like the kernel
        // (blkdev_issue_zeroout falls back to writing zero pages and the queue stops issuing
        // REQ_OP_WRITE_ZEROES), write zeroes from here on.
        if (!BlockError.is(err) || err.code !== ErrorCode.EOPNOTSUPP) throw err;
        this.#writeZeroesRefused = true;
        await this.#writeZeroBuffers(at, bytes, options);
      }
    }
  }

  /** Writes zero-filled buffers, at most maxTransferBytes per command. */
  async #writeZeroBuffers(offset: number, length: number, options?: IoOptions): Promise<void> {
    const chunk = Math.min(length, this.limits.maxTransferBytes);
    const zeroes = new Uint8Array(chunk);
    for (let at = offset; at < offset + length; at += chunk) {
      const n = Math.min(chunk, offset + length - at);
      await this.doWrite(at, zeroes.subarray(0, n), signalOf(options));
    }
  }

  protected override async doCopy(
    source: BlockDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    const what = this.#what('copy');
    const cross = source !== this;
    const format = this.#copyFormat(cross);
    if (format === undefined)
      throw new BlockError(ErrorCode.EOPNOTSUPP, `${what}: the controller offers no usable Copy format`);
    const c = this.limits.copy!;
    // Across namespaces each range must also fit the source namespace's MSSRL.
    const srcRange = cross ? (source.limits.copy?.maxRangeBytes ?? c.maxRangeBytes) : c.maxRangeBytes;
    const bs = this.limits.logicalBlockSize;
    const schedule = planCopyCommands(
      ranges,
      {
        blockSize: bs,
        maxRanges: c.maxRanges,
        maxBytes: c.maxHwBytes,
        maxRangeBytes: Math.min(c.maxRangeBytes, srcRange),
      },
      !cross,
      what,
    );
    const target = {
      nsid: this.nsid,
      format,
      blockSize: bs,
      ...(cross ? { snsid: (source as RemoteNamespace).nsid } : {}),
    };
    return runCopyCommands(schedule, ranges, target, (cmd) => this.#send(cmd, what), what, options.signal);
  }

  protected async doClose(): Promise<void> {
    // Only this handle goes away: the controller and its other namespaces stay.
  }

  // ---- helpers ----

  /** 0/1 within the namespace, 2/3 across namespaces, as the controller allows them. */
  #copyFormat(cross: boolean): number | undefined {
    const f = this.parent.copyFormats;
    const [a, b] = cross ? [2, 3] : [0, 1];
    return f.has(a) ? a : f.has(b) ? b : undefined;
  }

  #what(op: string): string {
    return this.name.endsWith(`/n${this.nsid}`)
      ? `${op} on ${this.name}`
      : `${op} on ${this.name} (nsid ${this.nsid})`;
  }

  /** Submits; resolves with a completion of any status, rejects only with a BlockError. */
  async #send(command: HostCommand, what: string): Promise<HostCompletion> {
    try {
      return await this.parent.submitIo(command);
    } catch (err) {
      throw blockErrorFromHost(err, what);
    }
  }

  /** Submits and turns an error status into a BlockError naming the operation. */
  async #io(op: string, offset: number | undefined, command: HostCommand): Promise<void> {
    const what = this.#what(op);
    const c = await this.#send(command, what);
    if (!isSuccess(c.status))
      throw blockErrorFromStatus(c.status, what, offset === undefined ? {} : { offset });
  }
}

function signalOf(options?: IoOptions): { signal?: AbortSignal } {
  return options?.signal ? { signal: options.signal } : {};
}

async function identify(parent: NamespaceParent, nsid: number, name: string): Promise<IdNsFields> {
  try {
    return await parent.identifyNamespace(nsid);
  } catch (err) {
    throw blockErrorFromHost(err, `Identify Namespace ${nsid} for ${name}`);
  }
}

function geometry(parent: NamespaceParent, nsid: number, name: string, idNs: IdNsFields): NamespaceGeometry {
  const extra = parent as NamespaceParent & OptionalControllerFacts;
  return namespaceGeometry({
    name,
    nsid,
    idCtrl: parent.idCtrl,
    idNs,
    maxDataTransferBytes: parent.maxDataTransferBytes,
    ...(extra.idCtrlNvm ? { idCtrlNvm: extra.idCtrlNvm } : {}),
    ...(extra.cap ? { minPageBytes: 2 ** (12 + extra.cap.mpsmin) } : {}),
  });
}
