// The Copy command (I/O opcode 0x19): its command dwords and the source range descriptor
// list it carries as data, in the four descriptor formats.
// Source: linux-nvme/libnvme src/nvme/types.h (struct nvme_copy_range, nvme_copy_range_f1,
// nvme_copy_range_f2, nvme_copy_range_f3, enum nvme_copy_range_sopt; offsets checked with
// gcc); QEMU include/block/nvme.h (NvmeCopyCmd: sdlba at cdw10–11, nr + control[3] in cdw12,
// dspec in cdw13 31:16, reftag cdw14, apptag/appmask cdw15; NvmeCopySourceRangeFormat0_2 /
// 1_3) and hw/nvme/ctrl.c nvme_copy (format = control[0] & 0xf, prinfor = control[0] >> 4,
// prinfow = control[2] >> 2 & 0xf) — i.e. CDW12: NR 7:0 (0's based), DF 11:8, PRINFOR 15:12,
// DTYPE 23:20, STCW 24, PRINFOW 29:26, FUA 30, LR 31.
//
// Formats: 0 = 32 bytes (16-bit guard PI), 1 = 40 bytes (32/64-bit guard PI, 80-bit ELBT),
// 2 and 3 = formats 0 and 1 plus SNSID (source namespace, bytes 0–3) and SOPT (bytes 22–23) for
// cross-namespace copy (TP4130). Formats 2/3 must be enabled by the host through Host
// Behavior Support CDFE (features.ts). PI fields are little-endian, as libnvme HEAD and QEMU
// treat them.

import { Sqe } from './command.js';
import { NvmeStatusError, Status, withDnr } from './status.js';
import { bits, defineStruct, field, lbaToNumber } from '../util/struct.js';

export const CopyFormat = {
  FORMAT_0: 0x0,
  FORMAT_1: 0x1,
  FORMAT_2: 0x2,
  FORMAT_3: 0x3,
} as const;
export type CopyFormat = (typeof CopyFormat)[keyof typeof CopyFormat];

/** Most source ranges one Copy can carry: NR is an 8-bit 0's based count. */
export const COPY_MAX_RANGES = 256;

/** SQE byte offset of CDW12 (NR, DF): the error location for Copy format and range-count errors. */
export const COPY_CDW12_OFFSET = Sqe.offsetOf('cdw12');

/** SOPT (formats 2/3) bits. */
export const CopySopt = {
  /** Fast Copy Only: fail with Fast Copy Not Possible instead of copying slowly. */
  FCO: 1 << 15,
} as const;

// ---- CDW12 ----

/** Decoded view of Copy CDW12. */
export interface CopyCdw12 {
  /** Number of Ranges, 0's based (7:0). */
  readonly nr: number;
  /** Descriptor Format (11:8). */
  readonly df: number;
  /** Protection Information Field Read (15:12). */
  readonly prinfor: number;
  /** Directive Type (23:20). */
  readonly dtype: number;
  /** Storage Tag Check Write (24). */
  readonly stcw: boolean;
  /** Protection Information Field Write (29:26). */
  readonly prinfow: number;
  /** Force Unit Access (30). */
  readonly fua: boolean;
  /** Limited Retry (31). */
  readonly lr: boolean;
}

export function decodeCopyCdw12(cdw12: number): CopyCdw12 {
  return {
    nr: bits(cdw12, 7, 0),
    df: bits(cdw12, 11, 8),
    prinfor: bits(cdw12, 15, 12),
    dtype: bits(cdw12, 23, 20),
    stcw: bits(cdw12, 24, 24) === 1,
    prinfow: bits(cdw12, 29, 26),
    fua: bits(cdw12, 30, 30) === 1,
    lr: bits(cdw12, 31, 31) === 1,
  };
}

export function encodeCopyCdw12(v: Partial<CopyCdw12> & { nr: number; df: number }): number {
  return (
    (field(v.nr, 7, 0, 'NR') |
      field(v.df, 11, 8, 'DF') |
      field(v.prinfor ?? 0, 15, 12, 'PRINFOR') |
      field(v.dtype ?? 0, 23, 20, 'DTYPE') |
      field(v.stcw ? 1 : 0, 24, 24) |
      field(v.prinfow ?? 0, 29, 26, 'PRINFOW') |
      field(v.fua ? 1 : 0, 30, 30) |
      field(v.lr ? 1 : 0, 31, 31)) >>>
    0
  );
}

// ---- the whole command ----

export interface CopyCommand extends CopyCdw12 {
  readonly nsid: number;
  /** Starting Destination LBA (CDW10–11); saturates at 2^53-1. */
  readonly sdlba: number;
  /** Number of source ranges, 1's based (nr + 1). */
  readonly ranges: number;
  /** Descriptor format, same as df. */
  readonly format: number;
  /** Bytes of source range list the command's data must hold. */
  readonly dataLength: number | undefined;
  /** CDW13 31:16: Directive Specific. */
  readonly dspec: number;
  /** CDW14: Logical Block Reference Tag (write side). */
  readonly lbtl: number;
  /** CDW15 15:0 / 31:16: Logical Block Application Tag and Mask (write side). */
  readonly lbat: number;
  readonly lbatm: number;
}

/** Decoded view of a Copy SQE (from decodeSqe). `dataLength` is undefined for an unknown format. */
export function decodeCopyCommand(sqe: {
  nsid: number;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
  cdw15: number;
}): CopyCommand {
  const c12 = decodeCopyCdw12(sqe.cdw12);
  const size = copyDescriptorSize(c12.df);
  return {
    ...c12,
    nsid: sqe.nsid,
    sdlba: lbaToNumber((BigInt(sqe.cdw11 >>> 0) << 32n) | BigInt(sqe.cdw10 >>> 0)),
    ranges: c12.nr + 1,
    format: c12.df,
    dataLength: size === undefined ? undefined : size * (c12.nr + 1),
    dspec: bits(sqe.cdw13, 31, 16),
    lbtl: sqe.cdw14 >>> 0,
    lbat: bits(sqe.cdw15, 15, 0),
    lbatm: bits(sqe.cdw15, 31, 16),
  };
}

/** CDW10–15 of a Copy of `ranges` source ranges in `format` to `sdlba`. */
export function encodeCopyCommand(c: {
  sdlba: number | bigint;
  ranges: number;
  format: number;
  prinfor?: number;
  prinfow?: number;
  dtype?: number;
  stcw?: boolean;
  fua?: boolean;
  lr?: boolean;
  dspec?: number;
  lbtl?: number;
  lbat?: number;
  lbatm?: number;
}): { cdw10: number; cdw11: number; cdw12: number; cdw13: number; cdw14: number; cdw15: number } {
  if (!Number.isInteger(c.ranges) || c.ranges < 1 || c.ranges > COPY_MAX_RANGES) {
    throw new RangeError(`a Copy carries 1..${COPY_MAX_RANGES} source ranges, got ${c.ranges}`);
  }
  const d = BigInt(c.sdlba);
  if (d < 0n || d >= 1n << 64n) throw new RangeError(`SDLBA ${c.sdlba} is not a u64`);
  return {
    cdw10: Number(d & 0xffffffffn),
    cdw11: Number(d >> 32n),
    cdw12: encodeCopyCdw12({ ...c, nr: c.ranges - 1, df: c.format }),
    cdw13: field(c.dspec ?? 0, 31, 16, 'DSPEC'),
    cdw14: (c.lbtl ?? 0) >>> 0,
    cdw15: (field(c.lbat ?? 0, 15, 0, 'LBAT') | field(c.lbatm ?? 0, 31, 16, 'LBATM')) >>> 0,
  };
}

// ---- source range descriptors ----

/** struct nvme_copy_range (format 0): 32 bytes. */
export const CopyRangeFormat0 = defineStruct('nvme_copy_range', 32, [
  { name: 'rsvd0', offset: 0, type: 'bytes', length: 8 },
  { name: 'slba', offset: 8, type: 'u64' },
  { name: 'nlb', offset: 16, type: 'u16' }, // 0's based
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 6 },
  { name: 'eilbrt', offset: 24, type: 'u32' },
  { name: 'elbat', offset: 28, type: 'u16' },
  { name: 'elbatm', offset: 30, type: 'u16' },
] as const);

/** struct nvme_copy_range_f1 (format 1): 40 bytes, 80-bit ELBT. */
export const CopyRangeFormat1 = defineStruct('nvme_copy_range_f1', 40, [
  { name: 'rsvd0', offset: 0, type: 'bytes', length: 8 },
  { name: 'slba', offset: 8, type: 'u64' },
  { name: 'nlb', offset: 16, type: 'u16' },
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 8 },
  { name: 'elbt', offset: 26, type: 'bytes', length: 10 },
  { name: 'elbat', offset: 36, type: 'u16' },
  { name: 'elbatm', offset: 38, type: 'u16' },
] as const);

/** struct nvme_copy_range_f2 (format 2): 32 bytes, cross-namespace. */
export const CopyRangeFormat2 = defineStruct('nvme_copy_range_f2', 32, [
  { name: 'snsid', offset: 0, type: 'u32' },
  { name: 'rsvd4', offset: 4, type: 'bytes', length: 4 },
  { name: 'slba', offset: 8, type: 'u64' },
  { name: 'nlb', offset: 16, type: 'u16' },
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 4 },
  { name: 'sopt', offset: 22, type: 'u16' },
  { name: 'eilbrt', offset: 24, type: 'u32' },
  { name: 'elbat', offset: 28, type: 'u16' },
  { name: 'elbatm', offset: 30, type: 'u16' },
] as const);

/** struct nvme_copy_range_f3 (format 3): 40 bytes, cross-namespace with 80-bit ELBT. */
export const CopyRangeFormat3 = defineStruct('nvme_copy_range_f3', 40, [
  { name: 'snsid', offset: 0, type: 'u32' },
  { name: 'rsvd4', offset: 4, type: 'bytes', length: 4 },
  { name: 'slba', offset: 8, type: 'u64' },
  { name: 'nlb', offset: 16, type: 'u16' },
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 4 },
  { name: 'sopt', offset: 22, type: 'u16' },
  { name: 'rsvd24', offset: 24, type: 'bytes', length: 2 },
  { name: 'elbt', offset: 26, type: 'bytes', length: 10 },
  { name: 'elbat', offset: 36, type: 'u16' },
  { name: 'elbatm', offset: 38, type: 'u16' },
] as const);

/** Descriptor size of a format, or undefined for a format that does not exist. */
export function copyDescriptorSize(format: number): 32 | 40 | undefined {
  return format === 0 || format === 2 ? 32 : format === 1 || format === 3 ? 40 : undefined;
}

/** One source range, whatever its format. */
export interface CopySourceRange {
  /** Starting LBA in the source namespace (saturates at 2^53-1). */
  slba: number;
  /** NLB as on the wire, 0's based. */
  nlb: number;
  /** Blocks to copy: nlb + 1. */
  blocks: number;
  /** Source namespace (formats 2/3); undefined for formats 0/1 (the command's NSID). */
  snsid?: number;
  /** Source options (formats 2/3). */
  sopt?: number;
  /** Expected initial logical block reference tag (formats 0/2). */
  eilbrt?: number;
  /** Expected logical block (storage + reference) tag, 10 bytes (formats 1/3). */
  elbt?: Buffer;
  elbat: number;
  elbatm: number;
}

/** What encodeCopySourceRanges takes: `blocks` (1's based) or `nlb` (0's based). */
export type CopySourceRangeInput = {
  slba: number | bigint;
  snsid?: number;
  sopt?: number;
  eilbrt?: number;
  elbt?: Uint8Array;
  elbat?: number;
  elbatm?: number;
} & ({ blocks: number; nlb?: never } | { nlb: number; blocks?: never });

function badFormat(format: number): NvmeStatusError {
  return new NvmeStatusError(
    withDnr(Status.INVALID_FIELD),
    `copy descriptor format ${format} does not exist (0..3)`,
    {
      errorLoc: COPY_CDW12_OFFSET,
    },
  );
}

/** Per format: the descriptor table and the optional fields it carries beyond SLBA/NLB/ELBAT(M). */
const COPY_RANGE_LAYOUTS = {
  0: { struct: CopyRangeFormat0, extra: ['eilbrt'] },
  1: { struct: CopyRangeFormat1, extra: ['elbt'] },
  2: { struct: CopyRangeFormat2, extra: ['snsid', 'sopt', 'eilbrt'] },
  3: { struct: CopyRangeFormat3, extra: ['snsid', 'sopt', 'elbt'] },
} as const;

/**
 * Decodes `count` source range descriptors of `format` from the Copy's data.
 * Throws NvmeStatusError: Invalid Field (DNR) for a format other than 0–3, and Data SGL
 * Length Invalid (DNR) when `buf` is shorter than count × descriptor size — the data the host
 * sent cannot hold the ranges NR announced. Bytes past the last descriptor are ignored.
 */
export function decodeCopySourceRanges(buf: Uint8Array, format: number, count: number): CopySourceRange[] {
  const size = copyDescriptorSize(format);
  if (size === undefined) throw badFormat(format);
  if (!Number.isInteger(count) || count < 1 || count > COPY_MAX_RANGES) {
    throw new RangeError(`a Copy carries 1..${COPY_MAX_RANGES} source ranges, got ${count}`);
  }
  if (buf.byteLength < count * size) {
    throw new NvmeStatusError(
      withDnr(Status.SGL_INVALID_DATA),
      `copy source range list: ${count} format-${format} descriptors need ${count * size} bytes, the command carried ${buf.byteLength}`,
    );
  }
  const layout = COPY_RANGE_LAYOUTS[format as CopyFormat];
  const out: CopySourceRange[] = [];
  for (let i = 0; i < count; i++) {
    const d = layout.struct.decode(buf, i * size) as Record<string, unknown> & {
      slba: bigint;
      nlb: number;
      elbat: number;
      elbatm: number;
    };
    const range: CopySourceRange = {
      slba: lbaToNumber(d.slba),
      nlb: d.nlb,
      blocks: d.nlb + 1,
      elbat: d.elbat,
      elbatm: d.elbatm,
    };
    // Only the fields the format carries, so a format-0 range has no snsid key at all.
    for (const key of layout.extra) (range as unknown as Record<string, unknown>)[key] = d[key];
    out.push(range);
  }
  return out;
}

/** Encodes source ranges in `format`; NLB must fit 16 bits (1..65536 blocks per range). */
export function encodeCopySourceRanges(ranges: readonly CopySourceRangeInput[], format: number): Buffer {
  const size = copyDescriptorSize(format);
  if (size === undefined) throw new RangeError(`copy descriptor format ${format} does not exist (0..3)`);
  if (ranges.length < 1 || ranges.length > COPY_MAX_RANGES) {
    throw new RangeError(`a Copy carries 1..${COPY_MAX_RANGES} source ranges, got ${ranges.length}`);
  }
  const buf = Buffer.alloc(ranges.length * size);
  ranges.forEach((r, i) => {
    const nlb = r.nlb ?? (r.blocks as number) - 1;
    if (!Number.isInteger(nlb) || nlb < 0 || nlb > 0xffff) {
      throw new RangeError(`source range ${i}: ${nlb + 1} blocks is outside 1..65536`);
    }
    const common = { slba: r.slba, nlb, elbat: r.elbat ?? 0, elbatm: r.elbatm ?? 0 };
    const elbt = r.elbt ?? Buffer.alloc(10);
    const at = i * size;
    if ((format === 2 || format === 3) && r.snsid === undefined) {
      throw new RangeError(`source range ${i}: format ${format} needs snsid`);
    }
    if (format === 0) CopyRangeFormat0.encode({ ...common, eilbrt: r.eilbrt ?? 0 }, buf, at);
    else if (format === 1) CopyRangeFormat1.encode({ ...common, elbt }, buf, at);
    else if (format === 2)
      CopyRangeFormat2.encode(
        { ...common, snsid: r.snsid, sopt: r.sopt ?? 0, eilbrt: r.eilbrt ?? 0 },
        buf,
        at,
      );
    else CopyRangeFormat3.encode({ ...common, snsid: r.snsid, sopt: r.sopt ?? 0, elbt }, buf, at);
  });
  return buf;
}
