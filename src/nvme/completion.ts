// The 16-byte completion queue entry (CQE).
// Source: torvalds/linux include/linux/nvme.h (struct nvme_completion: result union of
// u16/u32/u64, sq_head, sq_id, command_id, status). Status word layout: status.ts.
//
// DW0–DW1 carry the command's result: Connect puts CNTLID in DW0 bits 15:0, Property Get
// puts a 4- or 8-byte value in DW0(–DW1), Copy reports completed source ranges in DW0 on a
// partial failure, Get/Set Features return the feature value in DW0.

import { decodeStatusField, encodeStatusField, SUCCESS, type NvmeStatus } from './status.js';
import { defineStruct, type StructValue } from '../util/struct.js';

/** struct nvme_completion: 16 bytes. `status` is the raw 16-bit word (phase tag in bit 0). */
export const Cqe = defineStruct('nvme_completion', 16, [
  { name: 'dw0', offset: 0, type: 'u32' }, // result (low)
  { name: 'dw1', offset: 4, type: 'u32' }, // result (high)
  { name: 'sqhd', offset: 8, type: 'u16' }, // sq_head
  { name: 'sqid', offset: 10, type: 'u16' }, // sq_id
  { name: 'cid', offset: 12, type: 'u16' }, // command_id
  { name: 'status', offset: 14, type: 'u16' }, // P 0, SC 8:1, SCT 11:9, CRD 13:12, M 14, DNR 15
] as const);

export type CqeFields = StructValue<typeof Cqe.fields>;
export const CQE_SIZE = Cqe.SIZE;

/** Decoded view of a CQE. */
export interface Completion {
  readonly cid: number;
  readonly status: NvmeStatus;
  /** DW0 (the 32-bit result). */
  readonly dw0: number;
  readonly dw1: number;
  readonly sqhd: number;
  readonly sqid: number;
  readonly phase: 0 | 1;
}

export interface CompletionInput {
  cid: number;
  status?: NvmeStatus;
  /** 32-bit result in DW0; or give `result64` for an 8-byte result in DW0–DW1. */
  dw0?: number;
  dw1?: number;
  result64?: bigint;
  sqhd?: number;
  sqid?: number;
  phase?: 0 | 1;
}

export function encodeCqe(c: CompletionInput, into?: Buffer, at = 0): Buffer {
  let dw0 = c.dw0 ?? 0;
  let dw1 = c.dw1 ?? 0;
  if (c.result64 !== undefined) {
    if (c.dw0 !== undefined || c.dw1 !== undefined)
      throw new RangeError('CQE: give result64 or dw0/dw1, not both');
    if (c.result64 < 0n || c.result64 >= 1n << 64n)
      throw new RangeError(`CQE result ${c.result64} is not a u64`);
    dw0 = Number(c.result64 & 0xffffffffn);
    dw1 = Number(c.result64 >> 32n);
  }
  return Cqe.encode(
    {
      dw0,
      dw1,
      sqhd: c.sqhd ?? 0,
      sqid: c.sqid ?? 0,
      cid: c.cid,
      status: encodeStatusField(c.status ?? SUCCESS, c.phase ?? 0),
    },
    into,
    at,
  );
}

export function decodeCqe(buf: Uint8Array, at = 0): Completion {
  const raw = Cqe.decode(buf, at);
  const { status, phase } = decodeStatusField(raw.status);
  return { cid: raw.cid, status, dw0: raw.dw0, dw1: raw.dw1, sqhd: raw.sqhd, sqid: raw.sqid, phase };
}

/** DW0–DW1 as one 64-bit result (Property Get of an 8-byte property). */
export function result64(c: Pick<Completion, 'dw0' | 'dw1'>): bigint {
  return (BigInt(c.dw1 >>> 0) << 32n) | BigInt(c.dw0 >>> 0);
}
