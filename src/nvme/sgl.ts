// SGL descriptors: the 16-byte data pointer (DPTR, SQE bytes 24–39) of every fabrics command.
// Source: torvalds/linux include/linux/nvme.h (struct nvme_sgl_desc, nvme_keyed_sgl_desc,
// NVME_SGL_FMT_*), linux-nvme/libnvme src/nvme/types.h (enum nvme_id_ctrl_sgls).
//
// The identifier byte (byte 15) is descriptor type in bits 7:4 and subtype in bits 3:0.
// NVMe/TCP uses two forms (drivers/nvme/host/tcp.c):
//   - in-capsule data: Data Block, subtype Offset (0x01); ADDR = offset from ICDOFF, LENGTH = bytes;
//   - data moved by H2CData/C2HData/R2T: Transport Data Block, subtype Transport A (0x5A),
//     ADDR = 0, LENGTH = bytes (0 for commands without data).

import { defineStruct } from '../util/struct.js';

/** Descriptor type, bits 7:4 of the SGL identifier. */
export const SglDescriptorType = {
  DATA_BLOCK: 0x0,
  BIT_BUCKET: 0x1,
  SEGMENT: 0x2,
  LAST_SEGMENT: 0x3,
  KEYED_DATA_BLOCK: 0x4,
  TRANSPORT_DATA_BLOCK: 0x5,
} as const;

/** Descriptor subtype, bits 3:0 of the SGL identifier. */
export const SglSubtype = {
  ADDRESS: 0x0,
  OFFSET: 0x1,
  TRANSPORT_A: 0xa,
  INVALIDATE: 0xf,
} as const;

/** SGL identifier bytes tsblk's TCP transport sends and accepts. */
export const SglIdentifier = {
  /** In-capsule data: Data Block descriptor, Offset subtype. */
  INCAPSULE: (SglDescriptorType.DATA_BLOCK << 4) | SglSubtype.OFFSET, // 0x01
  /** Data transferred by the transport (R2T/H2CData, C2HData). */
  TRANSPORT: (SglDescriptorType.TRANSPORT_DATA_BLOCK << 4) | SglSubtype.TRANSPORT_A, // 0x5a
} as const;

/** struct nvme_sgl_desc (include/linux/nvme.h): 16 bytes. */
export const SglDescriptor = defineStruct('nvme_sgl_desc', 16, [
  { name: 'addr', offset: 0, type: 'u64' },
  { name: 'length', offset: 8, type: 'u32' },
  { name: 'rsvd12', offset: 12, type: 'bytes', length: 3 },
  { name: 'type', offset: 15, type: 'u8' },
] as const);

/** struct nvme_keyed_sgl_desc (include/linux/nvme.h): 16 bytes, RDMA. Length is 24-bit. */
export const KeyedSglDescriptor = defineStruct('nvme_keyed_sgl_desc', 16, [
  { name: 'addr', offset: 0, type: 'u64' },
  { name: 'length', offset: 8, type: 'bytes', length: 3 },
  { name: 'key', offset: 11, type: 'u32' },
  { name: 'type', offset: 15, type: 'u8' },
] as const);

export interface Sgl {
  /** Raw identifier byte. */
  readonly type: number;
  readonly descriptorType: number;
  readonly subtype: number;
  readonly addr: bigint;
  readonly length: number;
}

/** Decodes the unkeyed SGL descriptor at `at` (a whole DPTR). */
export function decodeSgl(buf: Uint8Array, at = 0): Sgl {
  const d = SglDescriptor.decode(buf, at);
  return { type: d.type, descriptorType: d.type >> 4, subtype: d.type & 0xf, addr: d.addr, length: d.length };
}

export function encodeSgl(sgl: { type: number; addr?: bigint | number; length: number }): Buffer {
  return SglDescriptor.encode({ type: sgl.type, addr: sgl.addr ?? 0n, length: sgl.length });
}

/** The DPTR of an in-capsule data transfer of `length` bytes at `offset` past ICDOFF. */
export function inCapsuleSgl(length: number, offset = 0): Buffer {
  return encodeSgl({ type: SglIdentifier.INCAPSULE, addr: offset, length });
}

/** The DPTR of a transport-moved transfer (R2T/H2CData or C2HData) of `length` bytes. */
export function transportSgl(length: number): Buffer {
  return encodeSgl({ type: SglIdentifier.TRANSPORT, addr: 0, length });
}

/** Identify Controller SGLS bits (enum nvme_id_ctrl_sgls). */
export const SglsSupport = {
  /** Bits 1:0: 01b = SGLs supported (no alignment requirement), 10b = dword aligned. */
  SUPPORTED: 0x1,
  SUPPORTED_DWORD_ALIGNED: 0x2,
  KEYED: 1 << 2,
  BIT_BUCKET: 1 << 16,
  MPTR_BYTE_ALIGNED: 1 << 17,
  OVERSIZE: 1 << 18,
  MPTR_SGL: 1 << 19,
  OFFSET: 1 << 20,
  TRANSPORT: 1 << 21,
} as const;
