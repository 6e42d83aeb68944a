// NVMe/TCP PDU definitions: types, flags, fatal error status values, size limits and the header
// of every PDU as a field table. Shared by the target and the host; the parser and the builders
// read every offset from these tables.
//
// Sources (values and layouts checked against all three):
// - torvalds/linux include/linux/nvme-tcp.h (enum nvme_tcp_pdu_type, nvme_tcp_pdu_flags,
//   nvme_tcp_fatal_error_status, struct nvme_tcp_*_pdu, NVME_TCP_MIN_MAXH2CDATA,
//   NVME_TCP_MIN/MAX_C2HTERM_PLEN, NVME_TCP_ADMIN_CCSZ);
// - spdk/spdk include/spdk/nvmf_spec.h (packed structs with SPDK_STATIC_ASSERT on sizes and
//   offsets, spec field names cccid/ttag/datao/datal/r2to/r2tl/maxh2cdata, CPDA max 31);
// - freebsd/freebsd-src sys/dev/nvmf/nvmf_tcp.h (nvmf_tcp_validate_pdu_header: which flags
//   each type may carry).
//
// The TermReq header follows SPDK (packed, FEI at byte 10, `uint8_t fei[4]`). Linux's struct
// nvme_tcp_term_pdu declares `__le32 fei` right after `__le16 fes` without packing, which a C
// compiler aligns to byte 12; Linux only reads FES from a TermReq, so nothing depends on it.
//
// SQEs and CQEs stay opaque 64- and 16-byte fields here: src/nvme/command.ts and
// completion.ts decode them.

import { defineStruct, type StructValue } from '../../util/struct.js';

/** PDU types (nvme-tcp.h enum nvme_tcp_pdu_type). Bit 0 is the direction: 0 host→controller. */
export const PduType = {
  ICReq: 0x00,
  ICResp: 0x01,
  H2CTermReq: 0x02,
  C2HTermReq: 0x03,
  CapsuleCmd: 0x04,
  CapsuleResp: 0x05,
  H2CData: 0x06,
  C2HData: 0x07,
  R2T: 0x09,
} as const;
export type PduType = (typeof PduType)[keyof typeof PduType];

const PDU_TYPE_NAMES = new Map<number, string>(Object.entries(PduType).map(([k, v]) => [v, k]));

/** "CapsuleCmd", or "type 0x08" for a value that is not a PDU type. */
export function pduTypeName(type: number): string {
  return PDU_TYPE_NAMES.get(type) ?? `type 0x${type.toString(16).padStart(2, '0')}`;
}

export function isPduType(type: number): type is PduType {
  return PDU_TYPE_NAMES.has(type);
}

/** Which way a PDU travels: 'h2c' host→controller (even types), 'c2h' controller→host (odd). */
export type PduDirection = 'h2c' | 'c2h';

export function pduDirection(type: number): PduDirection {
  return (type & 0x01) === 0 ? 'h2c' : 'c2h';
}

/** Common header flags (nvme-tcp.h enum nvme_tcp_pdu_flags). */
export const PduFlags = {
  /** A header digest follows the PDU header. */
  HDGSTF: 1 << 0,
  /** A data digest follows the PDU data. */
  DDGSTF: 1 << 1,
  /** H2CData/C2HData: the last data PDU of the command's transfer (LAST_PDU). */
  DATA_LAST: 1 << 2,
  /** C2HData: the command succeeded and no CapsuleResp follows (needs DATA_LAST). */
  DATA_SUCCESS: 1 << 3,
} as const;

/**
 * Fatal error status, the FES of a TermReq (nvme-tcp.h enum nvme_tcp_fatal_error_status; SPDK
 * spells them SPDK_NVME_TCP_TERM_REQ_FES_*). 0x05 has two names in both sources.
 */
export const TcpFes = {
  /** Invalid PDU Header Field; FEI is the byte offset of the field. */
  INVALID_PDU_HDR: 0x01,
  /** PDU Sequence Error: a PDU where the protocol does not allow it. */
  PDU_SEQ_ERR: 0x02,
  /** Header Digest Error. */
  HDR_DIGEST_ERR: 0x03,
  /** Data Transfer Out Of Range. */
  DATA_OUT_OF_RANGE: 0x04,
  /** R2T Limit Exceeded (same value as DATA_LIMIT_EXCEEDED). */
  R2T_LIMIT_EXCEEDED: 0x05,
  /** Data Transfer Limit Exceeded: more data in one PDU than was agreed. */
  DATA_LIMIT_EXCEEDED: 0x05,
  /** Invalid Data / Unsupported Parameter; FEI is the byte offset of the field. */
  UNSUPPORTED_PARAM: 0x06,
} as const;
export type TcpFes = (typeof TcpFes)[keyof typeof TcpFes];

const FES_NAMES: Record<number, string> = {
  0x01: 'Invalid PDU Header Field',
  0x02: 'PDU Sequence Error',
  0x03: 'Header Digest Error',
  0x04: 'Data Transfer Out Of Range',
  0x05: 'Data Transfer Limit Exceeded',
  0x06: 'Unsupported Parameter',
}; // the strings Linux's nvme_tcp_handle_c2h_term() prints

export function fesName(fes: number): string {
  return FES_NAMES[fes] ?? `unknown FES 0x${fes.toString(16)}`;
}

/** ICReq/ICResp DGST field bits (nvme-tcp.h enum nvme_tcp_digest_option). */
export const DigestOption = {
  HDR_DIGEST_ENABLE: 1 << 0,
  DATA_DIGEST_ENABLE: 1 << 1,
} as const;

/** PDU format version 1.0, the only one defined (NVME_TCP_PFV_1_0). */
export const NVME_TCP_PFV_1_0 = 0x0;
/** Bytes of a header or data digest (NVME_TCP_DIGEST_LENGTH). */
export const NVME_TCP_DIGEST_LENGTH = 4;
/** In-capsule data the admin queue (and any Fabrics command) may carry (NVME_TCP_ADMIN_CCSZ). */
export const NVME_TCP_ADMIN_CCSZ = 8192;
/** The smallest MAXH2CDATA a controller may announce; it must also be a multiple of 4. */
export const NVME_TCP_MIN_MAXH2CDATA = 4096;
/** Linux nvmet's MAXH2CDATA (0x400000; its comment says "16M" but the value is 4 MiB). */
export const NVMET_TCP_MAXH2CDATA = 0x400000;
/** Largest HPDA/CPDA (0's based dwords): alignment up to 128 bytes (SPDK_NVME_TCP_CPDA_MAX). */
export const NVME_TCP_PDA_MAX = 31;
/** A TermReq is its 24-byte header plus up to 128 bytes of error data (NVME_TCP_MIN/MAX_C2HTERM_PLEN). */
export const NVME_TCP_TERM_REQ_MAX_DATA = 128;
export const NVME_TCP_MIN_TERM_PLEN = 24;
export const NVME_TCP_MAX_TERM_PLEN = 152;

/** Bytes of alignment a 0's based PDA in dwords asks for: (pda + 1) * 4. */
export function pdaBytes(pda: number): number {
  return (pda + 1) * 4;
}

// The 8-byte common header opens every PDU; each table below repeats it so that every offset
// (and so every FEI) is the offset from the start of the PDU.
const COMMON = [
  { name: 'type', offset: 0, type: 'u8' }, // pdu_type
  { name: 'flags', offset: 1, type: 'u8' },
  { name: 'hlen', offset: 2, type: 'u8' }, // header length, without the header digest
  { name: 'pdo', offset: 3, type: 'u8' }, // PDU data offset from the start of the PDU
  { name: 'plen', offset: 4, type: 'u32' }, // the whole PDU on the wire: header, digests, padding, data
] as const;

/** struct nvme_tcp_hdr / spdk_nvme_tcp_common_pdu_hdr: 8 bytes. */
export const CommonHeader = defineStruct('nvme_tcp_hdr', 8, COMMON);
export type CommonHeaderFields = StructValue<typeof CommonHeader.fields>;

/** ICReq (struct nvme_tcp_icreq_pdu / spdk_nvme_tcp_ic_req): 128 bytes. */
export const ICReqHeader = defineStruct('nvme_tcp_icreq_pdu', 128, [
  ...COMMON,
  { name: 'pfv', offset: 8, type: 'u16' }, // PDU format version
  { name: 'hpda', offset: 10, type: 'u8' }, // host PDU data alignment, 0's based dwords
  { name: 'dgst', offset: 11, type: 'u8' }, // digests the host asks for (DigestOption)
  { name: 'maxr2t', offset: 12, type: 'u32' }, // outstanding R2Ts per command, 0's based
  { name: 'rsvd16', offset: 16, type: 'bytes', length: 112 },
] as const);

/** ICResp (struct nvme_tcp_icresp_pdu / spdk_nvme_tcp_ic_resp): 128 bytes. */
export const ICRespHeader = defineStruct('nvme_tcp_icresp_pdu', 128, [
  ...COMMON,
  { name: 'pfv', offset: 8, type: 'u16' },
  { name: 'cpda', offset: 10, type: 'u8' }, // controller PDU data alignment, 0's based dwords
  { name: 'dgst', offset: 11, type: 'u8' }, // digests enabled (DigestOption)
  { name: 'maxh2cdata', offset: 12, type: 'u32' }, // MAXH2CDATA: data bytes per H2CData PDU
  { name: 'rsvd16', offset: 16, type: 'bytes', length: 112 },
] as const);

/** H2CTermReq / C2HTermReq header (spdk_nvme_tcp_term_req_hdr): 24 bytes, error data follows. */
export const TermReqHeader = defineStruct('nvme_tcp_term_pdu', 24, [
  ...COMMON,
  { name: 'fes', offset: 8, type: 'u16' }, // fatal error status
  { name: 'fei', offset: 10, type: 'u32' }, // fatal error information (byte offset for FES 1 and 6)
  { name: 'rsvd14', offset: 14, type: 'bytes', length: 10 },
] as const);

/** CapsuleCmd (struct nvme_tcp_cmd_pdu / spdk_nvme_tcp_cmd): 72 bytes, in-capsule data follows. */
export const CapsuleCmdHeader = defineStruct('nvme_tcp_cmd_pdu', 72, [
  ...COMMON,
  { name: 'ccsqe', offset: 8, type: 'bytes', length: 64 }, // the command's SQE
] as const);

/** CapsuleResp (struct nvme_tcp_rsp_pdu / spdk_nvme_tcp_rsp): 24 bytes. */
export const CapsuleRespHeader = defineStruct('nvme_tcp_rsp_pdu', 24, [
  ...COMMON,
  { name: 'rccqe', offset: 8, type: 'bytes', length: 16 }, // the response's CQE
] as const);

/** H2CData (struct nvme_tcp_data_pdu / spdk_nvme_tcp_h2c_data_hdr): 24 bytes, data follows. */
export const H2CDataHeader = defineStruct('nvme_tcp_h2c_data_pdu', 24, [
  ...COMMON,
  { name: 'cccid', offset: 8, type: 'u16' }, // command capsule CID
  { name: 'ttag', offset: 10, type: 'u16' }, // transfer tag from the R2T
  { name: 'datao', offset: 12, type: 'u32' }, // offset in the command's data
  { name: 'datal', offset: 16, type: 'u32' }, // data bytes in this PDU
  { name: 'rsvd20', offset: 20, type: 'bytes', length: 4 },
] as const);

/** C2HData (struct nvme_tcp_data_pdu / spdk_nvme_tcp_c2h_data_hdr): 24 bytes, data follows. */
export const C2HDataHeader = defineStruct('nvme_tcp_c2h_data_pdu', 24, [
  ...COMMON,
  { name: 'cccid', offset: 8, type: 'u16' },
  { name: 'rsvd10', offset: 10, type: 'bytes', length: 2 }, // no transfer tag controller→host
  { name: 'datao', offset: 12, type: 'u32' },
  { name: 'datal', offset: 16, type: 'u32' },
  { name: 'rsvd20', offset: 20, type: 'bytes', length: 4 },
] as const);

/** R2T (struct nvme_tcp_r2t_pdu / spdk_nvme_tcp_r2t_hdr): 24 bytes. */
export const R2THeader = defineStruct('nvme_tcp_r2t_pdu', 24, [
  ...COMMON,
  { name: 'cccid', offset: 8, type: 'u16' },
  { name: 'ttag', offset: 10, type: 'u16' }, // controller-chosen tag the H2CData PDUs echo
  { name: 'r2to', offset: 12, type: 'u32' }, // offset in the command's data
  { name: 'r2tl', offset: 16, type: 'u32' }, // bytes the host may send now
  { name: 'rsvd20', offset: 20, type: 'bytes', length: 4 },
] as const);

/** The header (hlen) each PDU type must carry. */
export const PDU_HEADER_LENGTH: Readonly<Record<PduType, number>> = {
  [PduType.ICReq]: ICReqHeader.SIZE,
  [PduType.ICResp]: ICRespHeader.SIZE,
  [PduType.H2CTermReq]: TermReqHeader.SIZE,
  [PduType.C2HTermReq]: TermReqHeader.SIZE,
  [PduType.CapsuleCmd]: CapsuleCmdHeader.SIZE,
  [PduType.CapsuleResp]: CapsuleRespHeader.SIZE,
  [PduType.H2CData]: H2CDataHeader.SIZE,
  [PduType.C2HData]: C2HDataHeader.SIZE,
  [PduType.R2T]: R2THeader.SIZE,
};

/** Flags each type may carry (FreeBSD nvmf_tcp_validate_pdu_header's valid_flags). */
export const PDU_VALID_FLAGS: Readonly<Record<PduType, number>> = {
  [PduType.ICReq]: 0,
  [PduType.ICResp]: 0,
  [PduType.H2CTermReq]: 0,
  [PduType.C2HTermReq]: 0,
  [PduType.CapsuleCmd]: PduFlags.HDGSTF | PduFlags.DDGSTF,
  [PduType.CapsuleResp]: PduFlags.HDGSTF,
  [PduType.H2CData]: PduFlags.HDGSTF | PduFlags.DDGSTF | PduFlags.DATA_LAST,
  [PduType.C2HData]: PduFlags.HDGSTF | PduFlags.DDGSTF | PduFlags.DATA_LAST | PduFlags.DATA_SUCCESS,
  [PduType.R2T]: PduFlags.HDGSTF,
};

/** Types that may carry data after the header (and so padding and a data digest). */
export function pduCarriesData(type: PduType): boolean {
  return type === PduType.CapsuleCmd || type === PduType.H2CData || type === PduType.C2HData;
}

// ---- Decoded PDUs, as the parser delivers them and the builders take them ----

/** ICReq: the host opens the connection. */
export interface ICReqPdu {
  type: typeof PduType.ICReq;
  flags: number;
  pfv: number;
  hpda: number;
  dgst: number;
  maxr2t: number;
}

/** ICResp: the controller's answer; digests are on from the next PDU. */
export interface ICRespPdu {
  type: typeof PduType.ICResp;
  flags: number;
  pfv: number;
  cpda: number;
  dgst: number;
  maxh2cdata: number;
}

/** H2CTermReq / C2HTermReq: the peer ends the connection. `data` is its error data (≤ 128 B). */
export interface TermReqPdu {
  type: typeof PduType.H2CTermReq | typeof PduType.C2HTermReq;
  flags: number;
  fes: number;
  fei: number;
  data: Buffer;
}

/** CapsuleCmd: the 64-byte SQE, raw, and the in-capsule data if any. */
export interface CapsuleCmdPdu {
  type: typeof PduType.CapsuleCmd;
  flags: number;
  sqe: Buffer;
  data: Buffer | undefined;
  /** True when a data digest came with the data and did not match (see parser.ts). */
  dataDigestError: boolean;
}

/** CapsuleResp: the 16-byte CQE, raw. */
export interface CapsuleRespPdu {
  type: typeof PduType.CapsuleResp;
  flags: number;
  cqe: Buffer;
}

/** H2CData: write data the host sends after an R2T. */
export interface H2CDataPdu {
  type: typeof PduType.H2CData;
  flags: number;
  cccid: number;
  ttag: number;
  datao: number;
  datal: number;
  /** DATA_LAST: the last H2CData PDU for this R2T. */
  last: boolean;
  data: Buffer;
  dataDigestError: boolean;
}

/** C2HData: read data the controller sends. */
export interface C2HDataPdu {
  type: typeof PduType.C2HData;
  flags: number;
  cccid: number;
  datao: number;
  datal: number;
  last: boolean;
  /** DATA_SUCCESS: the command completed successfully; no CapsuleResp follows. */
  success: boolean;
  data: Buffer;
  dataDigestError: boolean;
}

/** R2T: the controller asks for `r2tl` bytes of write data at `r2to`. */
export interface R2TPdu {
  type: typeof PduType.R2T;
  flags: number;
  cccid: number;
  ttag: number;
  r2to: number;
  r2tl: number;
}

export type TcpPdu =
  ICReqPdu | ICRespPdu | TermReqPdu | CapsuleCmdPdu | CapsuleRespPdu | H2CDataPdu | C2HDataPdu | R2TPdu;
