// The 64-byte submission queue entry (SQE) and the decoded views of the I/O commands the
// target serves (Read, Write, Write Zeroes, Dataset Management, Abort).
// Source: torvalds/linux include/linux/nvme.h (struct nvme_common_command, nvme_rw_command,
// nvme_dsm_cmd, nvme_dsm_range, nvme_write_zeroes_cmd, nvme_abort_cmd, NVME_RW_* bits,
// NVME_CMD_FUSE_* / NVME_CMD_SGL_*); libnvme src/nvme/types.h (struct nvme_dsm_range).
// Copy's cdw words live in copy.ts, Identify / Get Log Page / Features / Fabrics in their files.

import { decodeSgl, type Sgl } from './sgl.js';
import {
  bits,
  defineStruct,
  field,
  lbaToNumber,
  type StructInput,
  type StructValue,
} from '../util/struct.js';

/** struct nvme_common_command: 64 bytes. DPTR is kept raw; `sqeSgl()` decodes it as an SGL. */
export const Sqe = defineStruct('nvme_common_command', 64, [
  { name: 'opcode', offset: 0, type: 'u8' },
  { name: 'flags', offset: 1, type: 'u8' }, // FUSE 1:0, PSDT 7:6
  { name: 'cid', offset: 2, type: 'u16' }, // command_id
  { name: 'nsid', offset: 4, type: 'u32' }, // fabrics commands: fctype at byte 4
  { name: 'cdw2', offset: 8, type: 'u32' },
  { name: 'cdw3', offset: 12, type: 'u32' },
  { name: 'mptr', offset: 16, type: 'u64' }, // metadata pointer
  { name: 'dptr', offset: 24, type: 'bytes', length: 16 }, // data pointer: SGL on fabrics
  { name: 'cdw10', offset: 40, type: 'u32' },
  { name: 'cdw11', offset: 44, type: 'u32' },
  { name: 'cdw12', offset: 48, type: 'u32' },
  { name: 'cdw13', offset: 52, type: 'u32' },
  { name: 'cdw14', offset: 56, type: 'u32' },
  { name: 'cdw15', offset: 60, type: 'u32' },
] as const);

export type SqeFields = StructValue<typeof Sqe.fields>;
export type SqeInput = StructInput<typeof Sqe.fields>;
export const SQE_SIZE = Sqe.SIZE;

export function decodeSqe(buf: Uint8Array, at = 0): SqeFields {
  return Sqe.decode(buf, at);
}

export function encodeSqe(sqe: SqeInput): Buffer {
  return Sqe.encode(sqe);
}

/** The fabrics command type of an SQE (byte 4; meaningful only when opcode is 0x7F). */
export function sqeFctype(sqe: Pick<SqeFields, 'nsid'>): number {
  return sqe.nsid & 0xff;
}

export function sqeSgl(sqe: Pick<SqeFields, 'dptr'>): Sgl {
  return decodeSgl(sqe.dptr);
}

/** Flags byte (CDW0 bits 15:8): FUSE 1:0, PSDT 7:6. */
export const SqeFlags = {
  FUSE_FIRST: 1 << 0,
  FUSE_SECOND: 1 << 1,
  /** PSDT 01b: SGL for data, MPTR is a contiguous buffer (the Linux fabrics hosts set it). */
  SGL_METABUF: 1 << 6,
  /** PSDT 10b: SGL for data, MPTR points to an SGL segment. */
  SGL_METASEG: 1 << 7,
} as const;

export interface DecodedSqeFlags {
  /** 0 normal, 1 first of a fused pair, 2 second. */
  readonly fuse: number;
  /** 0 PRP, 1 SGL + metadata buffer, 2 SGL + metadata segment. */
  readonly psdt: number;
}

export function decodeSqeFlags(flags: number): DecodedSqeFlags {
  return { fuse: flags & 0x3, psdt: (flags >> 6) & 0x3 };
}

// ---- Read / Write / Write Zeroes (struct nvme_rw_command, nvme_write_zeroes_cmd) ----

/** CDW12 of Read / Write / Write Zeroes / Compare / Verify. */
export interface RwCdw12 {
  /** NLB, 0's based as on the wire (blocks = nlb + 1). */
  readonly nlb: number;
  /** Directive Type, bits 23:20. */
  readonly dtype: number;
  /** Storage Tag Check, bit 24. */
  readonly stc: boolean;
  /** Deallocate, bit 25 (Write Zeroes only). */
  readonly deac: boolean;
  /** Protection Information field, bits 29:26 (PRACT 29, PRCHK 28:26). */
  readonly prinfo: number;
  /** Force Unit Access, bit 30. */
  readonly fua: boolean;
  /** Limited Retry, bit 31. */
  readonly lr: boolean;
}

export function decodeRwCdw12(cdw12: number): RwCdw12 {
  return {
    nlb: bits(cdw12, 15, 0),
    dtype: bits(cdw12, 23, 20),
    stc: bits(cdw12, 24, 24) === 1,
    deac: bits(cdw12, 25, 25) === 1,
    prinfo: bits(cdw12, 29, 26),
    fua: bits(cdw12, 30, 30) === 1,
    lr: bits(cdw12, 31, 31) === 1,
  };
}

export function encodeRwCdw12(v: Partial<RwCdw12> & { nlb: number }): number {
  return (
    (field(v.nlb, 15, 0, 'NLB') |
      field(v.dtype ?? 0, 23, 20, 'DTYPE') |
      field(v.stc ? 1 : 0, 24, 24) |
      field(v.deac ? 1 : 0, 25, 25) |
      field(v.prinfo ?? 0, 29, 26, 'PRINFO') |
      field(v.fua ? 1 : 0, 30, 30) |
      field(v.lr ? 1 : 0, 31, 31)) >>>
    0
  );
}

export interface RwCommand extends RwCdw12 {
  readonly nsid: number;
  /** Starting LBA (cdw10–11); saturates at 2^53-1, far beyond any namespace. */
  readonly slba: number;
  /** Number of logical blocks, 1's based (nlb + 1). */
  readonly blocks: number;
  /** CDW13 bits 7:0: dataset management hints. */
  readonly dsm: number;
  /** CDW13 bits 31:16: directive specific. */
  readonly dspec: number;
  /** CDW14: expected initial logical block reference tag. */
  readonly reftag: number;
  /** CDW15 bits 15:0 / 31:16: application tag and mask. */
  readonly apptag: number;
  readonly appmask: number;
}

/** SLBA from cdw10 (low) and cdw11 (high). */
export function slbaOf(sqe: Pick<SqeFields, 'cdw10' | 'cdw11'>): bigint {
  return (BigInt(sqe.cdw11) << 32n) | BigInt(sqe.cdw10);
}

/** Splits a 64-bit LBA into cdw10 (low) and cdw11 (high). */
export function splitLba(lba: number | bigint): { cdw10: number; cdw11: number } {
  const v = BigInt(lba);
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`LBA ${lba} is not a u64`);
  return { cdw10: Number(v & 0xffffffffn), cdw11: Number(v >> 32n) };
}

/** Decoded view of Read (0x02), Write (0x01), Write Zeroes (0x08), Compare, Verify. */
export function decodeRwCommand(sqe: SqeFields): RwCommand {
  const c12 = decodeRwCdw12(sqe.cdw12);
  return {
    ...c12,
    nsid: sqe.nsid,
    slba: lbaToNumber(slbaOf(sqe)),
    blocks: c12.nlb + 1,
    dsm: bits(sqe.cdw13, 7, 0),
    dspec: bits(sqe.cdw13, 31, 16),
    reftag: sqe.cdw14,
    apptag: bits(sqe.cdw15, 15, 0),
    appmask: bits(sqe.cdw15, 31, 16),
  };
}

// ---- Dataset Management (struct nvme_dsm_cmd, nvme_dsm_range) ----

/** DSM CDW11 attribute bits. */
export const DsmAttribute = {
  IDR: 1 << 0, // Integral Dataset for Read
  IDW: 1 << 1, // Integral Dataset for Write
  AD: 1 << 2, // Deallocate
} as const;

export const DSM_MAX_RANGES = 256;

export interface DsmCommand {
  readonly nsid: number;
  /** Number of ranges, 1's based (CDW10 NR 7:0 is 0's based). */
  readonly ranges: number;
  readonly idr: boolean;
  readonly idw: boolean;
  readonly ad: boolean;
}

export function decodeDsmCommand(sqe: SqeFields): DsmCommand {
  return {
    nsid: sqe.nsid,
    ranges: bits(sqe.cdw10, 7, 0) + 1,
    idr: (sqe.cdw11 & DsmAttribute.IDR) !== 0,
    idw: (sqe.cdw11 & DsmAttribute.IDW) !== 0,
    ad: (sqe.cdw11 & DsmAttribute.AD) !== 0,
  };
}

/** struct nvme_dsm_range: 16 bytes. NLB here is a count (not 0's based). */
export const DsmRange = defineStruct('nvme_dsm_range', 16, [
  { name: 'cattr', offset: 0, type: 'u32' },
  { name: 'nlb', offset: 4, type: 'u32' },
  { name: 'slba', offset: 8, type: 'u64' },
] as const);

export interface DsmRangeValue {
  readonly cattr: number;
  readonly nlb: number;
  readonly slba: number;
}

/** Decodes `count` DSM ranges; throws RangeError when `buf` holds fewer. */
export function decodeDsmRanges(buf: Uint8Array, count: number): DsmRangeValue[] {
  if (buf.byteLength < count * DsmRange.SIZE) {
    throw new RangeError(
      `dataset management: ${count} ranges need ${count * DsmRange.SIZE} bytes, got ${buf.byteLength}`,
    );
  }
  const out: DsmRangeValue[] = [];
  for (let i = 0; i < count; i++) {
    const r = DsmRange.decode(buf, i * DsmRange.SIZE);
    out.push({ cattr: r.cattr, nlb: r.nlb, slba: lbaToNumber(r.slba) });
  }
  return out;
}

export function encodeDsmRanges(
  ranges: ReadonlyArray<{ cattr?: number; nlb: number; slba: number | bigint }>,
): Buffer {
  const buf = Buffer.alloc(ranges.length * DsmRange.SIZE);
  ranges.forEach((r, i) =>
    DsmRange.encode({ cattr: r.cattr ?? 0, nlb: r.nlb, slba: r.slba }, buf, i * DsmRange.SIZE),
  );
  return buf;
}

// ---- Abort (struct nvme_abort_cmd) ----

/** Abort CDW10: SQID 15:0, CID 31:16. */
export function decodeAbortCdw10(cdw10: number): { sqid: number; cid: number } {
  return { sqid: bits(cdw10, 15, 0), cid: bits(cdw10, 31, 16) };
}
