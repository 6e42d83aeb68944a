// Identify Controller + Identify Namespace → the QueueLimits of a remote namespace (what
// Linux's nvme_update_ns_info_block / nvme_config_discard / nvme_update_disk_info derive).
//
// - Logical block: the LBA format FLBAS selects. Formats with metadata (and so with
//   protection information) are refused with EOPNOTSUPP: tsblk carries no metadata. Only
//   512- and 4096-byte blocks are accepted (the block core's two sizes).
// - Physical block: (NPWG + 1) blocks when NSFEAT.OPTPERF says NPWG/NOWS are valid and that
//   is a power of two, else the logical block. NOWS (optimal write size) is reported apart.
// - maxTransferBytes: the controller's MDTS in bytes, or HOST_DEFAULT_MAX_TRANSFER_BYTES
//   (4 MiB) when it sets no limit, at most 65536 blocks (NLB is 16 bits), whole blocks.
// - readOnly: NSATTR write protected.
// - discard: ONCS Dataset Management. One DSM command carries up to 256 ranges of at most
//   0xFFFFFFFF blocks (fewer when Identify Controller NVM gives DMRL/DMRSL/DMSL); a discard
//   request is one DSM command. zeroesData from DLFEAT "deallocated blocks read as zeroes".
// - writeZeroes: ONCS Write Zeroes. maxBytes is one command: WZSL (Identify Controller NVM)
//   when given, else maxTransferBytes (Linux's default too), at most 65536 blocks. unmaps
//   from DLFEAT bit 3 (Write Zeroes may deallocate).
// - copy: ONCS Copy and OCFS format 0 or 1 and non-zero MSSRL/MCL: maxRangeBytes = MSSRL
//   blocks (≤ 65536, the descriptor's NLB), maxHwBytes = MCL blocks, maxRanges = MSRC + 1
//   (≤ 256), maxBytes = maxHwBytes (lowered later by the user with setCopyMaxBytes).
//   Otherwise no copy limits, and issueCopy emulates.
// - Flush: only when VWC reports a volatile write cache; without one a flush completes at
//   once on the host, as Linux does.
// - Size: NSZE blocks. NSZE 0 means the NSID is not an active namespace (ENODEV).

import { BlockError, ErrorCode } from '../block/errors.js';
import { validateLimits, type CopyLimits, type QueueLimits } from '../block/limits.js';
import { DSM_MAX_RANGES } from '../nvme/command.js';
import { COPY_MAX_RANGES } from '../nvme/copy.js';
import {
  decodeLbaFormats,
  DlFeat,
  flbasIndex,
  NsAttr,
  NsFeat,
  Ocfs,
  Oncs,
  Vwc,
  type IdCtrlFields,
  type IdNsFields,
} from '../nvme/identify.js';

/** maxTransferBytes when the controller reports MDTS 0 (no limit): 4 MiB, a host default. */
export const HOST_DEFAULT_MAX_TRANSFER_BYTES = 4 * 1024 * 1024;
/** Blocks one Read, Write, Write Zeroes or Copy source range can name (16-bit 0's based NLB). */
export const MAX_BLOCKS_PER_COMMAND = 0x10000;
/** Blocks one Dataset Management range can name (32-bit NLB). */
export const DSM_MAX_RANGE_BLOCKS = 0xffffffff;
/** Memory page size when CAP.MPSMIN is not known: 4 KiB (every fabrics controller). */
export const DEFAULT_MIN_PAGE_BYTES = 4096;

/** The Identify Controller NVM (CNS 06h, CSI 0) fields that limit commands; 0 = no limit. */
export interface IdCtrlNvmLimits {
  /** Write Zeroes Size Limit: 2^WZSL minimum pages. */
  readonly wzsl: number;
  /** Dataset Management Ranges Limit. */
  readonly dmrl: number;
  /** Dataset Management Range Size Limit, blocks. */
  readonly dmrsl: number;
  /** Dataset Management Size Limit, blocks in all ranges of a command. */
  readonly dmsl?: number | bigint;
}

export interface NamespaceLimitsInput {
  /** For messages: the namespace's device name and NSID. */
  readonly name: string;
  readonly nsid: number;
  readonly idCtrl: Pick<IdCtrlFields, 'oncs' | 'ocfs' | 'vwc'>;
  readonly idNs: IdNsFields;
  /** The controller's MDTS in bytes; 0 = no limit. */
  readonly maxDataTransferBytes: number;
  readonly idCtrlNvm?: IdCtrlNvmLimits;
  /** CAP.MPSMIN in bytes; default 4096. */
  readonly minPageBytes?: number;
}

/** Everything the namespace needs from Identify, besides the limits themselves. */
export interface NamespaceGeometry {
  readonly size: number;
  readonly blocks: number;
  readonly limits: QueueLimits;
  /** LBA format index FLBAS selects. */
  readonly lbaFormat: number;
  /** VWC: a Flush must go to the controller. */
  readonly volatileWriteCache: boolean;
  /** Blocks per Dataset Management range and ranges per command. */
  readonly dsmRangeBlocks: number;
  readonly dsmMaxRanges: number;
  /** Blocks per Write Zeroes command. */
  readonly writeZeroesBlocks: number;
  /** NOWS in bytes when NSFEAT.OPTPERF and NOWS is set, else 0. */
  readonly optimalWriteBytes: number;
  /** Copy descriptor formats OCFS offers (0..3). */
  readonly offeredCopyFormats: readonly number[];
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

const floorTo = (n: number, unit: number) => n - (n % unit);

/** Logical block size and LBA format index, refusing what tsblk cannot carry. */
function logicalBlock(input: NamespaceLimitsInput): { lbs: number; index: number } {
  const { idNs, name, nsid } = input;
  const index = flbasIndex(idNs.flbas);
  const formats = decodeLbaFormats(idNs);
  const f = formats[index];
  if (!f)
    throw new BlockError(
      ErrorCode.EIO,
      `namespace ${nsid} (${name}): Identify Namespace selects LBA format ${index} but reports only ${formats.length}`,
    );
  if (f.ms > 0)
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `namespace ${nsid} (${name}): LBA format ${index} has ${f.ms} bytes of metadata per block` +
        `${idNs.dps & 0x7 ? ` with protection information type ${idNs.dps & 0x7}` : ''}; tsblk cannot carry ` +
        `metadata — reformat the namespace with a format without metadata (nvme format --lbaf)`,
    );
  const lbs = 2 ** f.lbads;
  if (lbs !== 512 && lbs !== 4096)
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `namespace ${nsid} (${name}): ${lbs}-byte logical blocks (LBA format ${index}); tsblk supports 512 and 4096`,
    );
  return { lbs, index };
}

function copyLimits(input: NamespaceLimitsInput, lbs: number): CopyLimits | undefined {
  const { idCtrl, idNs } = input;
  if ((idCtrl.oncs & Oncs.COPY) === 0) return undefined;
  if ((idCtrl.ocfs & (Ocfs.FORMAT_0 | Ocfs.FORMAT_1)) === 0) return undefined;
  if (idNs.mssrl === 0 || idNs.mcl === 0) return undefined;
  const rangeBlocks = Math.min(idNs.mssrl, MAX_BLOCKS_PER_COMMAND, idNs.mcl);
  const maxHwBytes = idNs.mcl * lbs;
  return {
    maxBytes: maxHwBytes,
    maxHwBytes,
    maxRanges: Math.min(idNs.msrc + 1, COPY_MAX_RANGES),
    maxRangeBytes: rangeBlocks * lbs,
  };
}

/**
 * Derives a remote namespace's size and QueueLimits from Identify data. Throws BlockError:
 * ENODEV for an inactive NSID (NSZE 0), EOPNOTSUPP for formats tsblk cannot carry.
 */
export function namespaceGeometry(input: NamespaceLimitsInput): NamespaceGeometry {
  const { idCtrl, idNs, name, nsid } = input;
  const nsze = BigInt(idNs.nsze);
  if (nsze === 0n)
    throw new BlockError(ErrorCode.ENODEV, `namespace ${nsid} (${name}) is not active (NSZE 0)`);
  const { lbs, index } = logicalBlock(input);
  const sizeBig = nsze * BigInt(lbs);
  if (sizeBig > BigInt(Number.MAX_SAFE_INTEGER))
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `namespace ${nsid} (${name}): ${nsze} blocks of ${lbs} bytes exceed what tsblk addresses (2^53 bytes)`,
    );
  const size = Number(sizeBig);

  const optperf = (idNs.nsfeat & NsFeat.OPTPERF) !== 0;
  const npwgBytes = (idNs.npwg + 1) * lbs;
  const physicalBlockSize = optperf && isPowerOfTwo(npwgBytes) ? npwgBytes : lbs;

  const mdts = input.maxDataTransferBytes > 0 ? input.maxDataTransferBytes : HOST_DEFAULT_MAX_TRANSFER_BYTES;
  const maxTransferBytes = floorTo(Math.min(mdts, MAX_BLOCKS_PER_COMMAND * lbs), lbs);
  if (maxTransferBytes < lbs)
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `namespace ${nsid} (${name}): the controller's transfer limit of ${mdts} bytes is below one ${lbs}-byte block`,
    );

  const nvm = input.idCtrlNvm;
  const dsmRangeBlocks = Math.min(nvm?.dmrsl || DSM_MAX_RANGE_BLOCKS, DSM_MAX_RANGE_BLOCKS);
  const dsmMaxRanges = Math.min(nvm?.dmrl || DSM_MAX_RANGES, DSM_MAX_RANGES);
  const dmsl = nvm?.dmsl !== undefined ? Number(nvm.dmsl) : 0;
  const dsmBlocks = Math.min(dsmRangeBlocks * dsmMaxRanges, dmsl || Infinity);
  const discardMax = floorTo(Math.min(dsmBlocks * lbs, Number.MAX_SAFE_INTEGER), lbs);

  const page = input.minPageBytes ?? DEFAULT_MIN_PAGE_BYTES;
  const wzslBytes = nvm?.wzsl ? 2 ** nvm.wzsl * page : maxTransferBytes;
  const writeZeroesBlocks = Math.max(1, Math.min(Math.floor(wzslBytes / lbs), MAX_BLOCKS_PER_COMMAND));

  const copy = copyLimits(input, lbs);
  const deallocReadsZeroes = (idNs.dlfeat & 0x7) === DlFeat.READ_ZEROES;
  const limits: QueueLimits = {
    logicalBlockSize: lbs,
    physicalBlockSize,
    maxTransferBytes,
    readOnly: (idNs.nsattr & NsAttr.WRITE_PROTECTED) !== 0,
    ...(copy ? { copy } : {}),
    ...((idCtrl.oncs & Oncs.DSM) !== 0 && discardMax >= lbs
      ? { discard: { granularity: lbs, maxBytes: discardMax, zeroesData: deallocReadsZeroes } }
      : {}),
    ...((idCtrl.oncs & Oncs.WRITE_ZEROES) !== 0
      ? {
          writeZeroes: {
            maxBytes: writeZeroesBlocks * lbs,
            unmaps: (idNs.dlfeat & DlFeat.WRITE_ZEROES_DEALLOCATE) !== 0,
          },
        }
      : {}),
  };
  validateLimits(limits, size);
  return {
    size,
    blocks: Number(nsze),
    limits,
    lbaFormat: index,
    volatileWriteCache: (idCtrl.vwc & Vwc.PRESENT) !== 0,
    dsmRangeBlocks,
    dsmMaxRanges,
    writeZeroesBlocks,
    optimalWriteBytes: optperf && idNs.nows > 0 ? (idNs.nows + 1) * lbs : 0,
    offeredCopyFormats: [0, 1, 2, 3].filter((f) => (idCtrl.ocfs & (1 << f)) !== 0),
  };
}
