// NVMe over Fabrics commands (SQE opcode 0x7F, fctype in byte 4): Connect with its 1024-byte
// data, the Connect response, Property Get / Property Set, Disconnect, and the controller
// properties they reach (CAP, VS, CC, CSTS) with encode/decode helpers.
// Source: torvalds/linux include/linux/nvme.h (struct nvmf_common_command,
// nvmf_connect_command, nvmf_connect_data, nvmf_property_set_command,
// nvmf_property_get_command, NVME_CONNECT_*, NVME_REG_*, NVME_CAP_*, NVME_CC_*, NVME_CSTS_*,
// NVME_CNTLID_*), linux-nvme/libnvme src/nvme/types.h (struct nvmf_connect_data, enum nvme_cap /
// nvme_cc / nvme_csts shifts and masks; offsets checked with gcc), and nvmet's
// drivers/nvme/target/fabrics-cmd.c (IPO/IATTR of Connect Invalid Parameters, attrib bit 0
// selects an 8-byte property) and drivers/nvme/host/fabrics.c (what the Linux host sends).

import { bits, defineStruct, field, type StructValue } from '../util/struct.js';

// ---- generic fabrics capsule ----

/** struct nvmf_common_command: 64 bytes; `ts` (bytes 40–63) is fctype specific. */
export const FabricsCommand = defineStruct('nvmf_common_command', 64, [
  { name: 'opcode', offset: 0, type: 'u8' },
  { name: 'resv1', offset: 1, type: 'u8' },
  { name: 'cid', offset: 2, type: 'u16' },
  { name: 'fctype', offset: 4, type: 'u8' },
  { name: 'resv2', offset: 5, type: 'bytes', length: 35 },
  { name: 'ts', offset: 40, type: 'bytes', length: 24 },
] as const);

// ---- Connect (fctype 0x01) ----

/** struct nvmf_connect_command: 64 bytes. SQSIZE is 0's based. */
export const ConnectCommand = defineStruct('nvmf_connect_command', 64, [
  { name: 'opcode', offset: 0, type: 'u8' },
  { name: 'resv1', offset: 1, type: 'u8' }, // the Linux TCP host puts PSDT (SGL) flags here
  { name: 'cid', offset: 2, type: 'u16' },
  { name: 'fctype', offset: 4, type: 'u8' },
  { name: 'resv2', offset: 5, type: 'bytes', length: 19 },
  { name: 'dptr', offset: 24, type: 'bytes', length: 16 },
  { name: 'recfmt', offset: 40, type: 'u16' },
  { name: 'qid', offset: 42, type: 'u16' },
  { name: 'sqsize', offset: 44, type: 'u16' },
  { name: 'cattr', offset: 46, type: 'u8' },
  { name: 'resv3', offset: 47, type: 'u8' },
  { name: 'kato', offset: 48, type: 'u32' }, // milliseconds
  { name: 'resv4', offset: 52, type: 'bytes', length: 12 },
] as const);
export type ConnectCommandFields = StructValue<typeof ConnectCommand.fields>;

/** Connect Attributes (CATTR). */
export const ConnectAttr = {
  /** Bit 2 (NVME_CONNECT_DISABLE_SQFLOW): the host asks to turn SQ flow control off (no SQHD updates needed). */
  DISABLE_SQFLOW: 1 << 2,
} as const;

/** struct nvmf_connect_data: 1024 bytes, sent as the Connect command's data. */
export const ConnectData = defineStruct('nvmf_connect_data', 1024, [
  { name: 'hostid', offset: 0, type: 'bytes', length: 16 },
  { name: 'cntlid', offset: 16, type: 'u16' },
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 238 },
  { name: 'subnqn', offset: 256, type: 'ascii', length: 256, pad: 'nul' }, // subsysnqn
  { name: 'hostnqn', offset: 512, type: 'ascii', length: 256, pad: 'nul' },
  { name: 'rsvd768', offset: 768, type: 'bytes', length: 256 },
] as const);
export type ConnectDataFields = StructValue<typeof ConnectData.fields>;

/** CNTLID values in Connect data: 0xFFFF asks for any controller (dynamic model). */
export const CNTLID_MIN = 0x0001;
export const CNTLID_MAX = 0xffef;
export const CNTLID_DYNAMIC = 0xffff;
/** The longest NQN the spec allows (the field is 256 bytes, NUL terminated). */
export const NQN_MAX_LENGTH = 223;

export interface Connect {
  readonly cid: number;
  readonly recfmt: number;
  /** 0 = admin queue. */
  readonly qid: number;
  /** Queue size, 0's based as on the wire. */
  readonly sqsize: number;
  /** Entries in the queue: sqsize + 1. */
  readonly queueSize: number;
  readonly cattr: number;
  readonly disableSqFlow: boolean;
  /** Keep alive timeout in milliseconds (admin queue only; 0 = disabled). */
  readonly kato: number;
}

export function decodeConnect(sqe: Uint8Array, at = 0): Connect {
  const c = ConnectCommand.decode(sqe, at);
  return {
    cid: c.cid,
    recfmt: c.recfmt,
    qid: c.qid,
    sqsize: c.sqsize,
    queueSize: c.sqsize + 1,
    cattr: c.cattr,
    disableSqFlow: (c.cattr & ConnectAttr.DISABLE_SQFLOW) !== 0,
    kato: c.kato,
  };
}

export interface ConnectDataValue {
  /** 16-byte host identifier (a UUID). */
  readonly hostid: Buffer;
  readonly cntlid: number;
  readonly subnqn: string;
  readonly hostnqn: string;
}

/** Decodes the 1024-byte Connect data; throws RangeError when fewer bytes arrived. */
export function decodeConnectData(buf: Uint8Array, at = 0): ConnectDataValue {
  const d = ConnectData.decode(buf, at);
  return { hostid: d.hostid, cntlid: d.cntlid, subnqn: d.subnqn, hostnqn: d.hostnqn };
}

export function encodeConnectData(d: {
  hostid: Uint8Array;
  cntlid?: number;
  subnqn: string;
  hostnqn: string;
}): Buffer {
  return ConnectData.encode({
    hostid: d.hostid,
    cntlid: d.cntlid ?? CNTLID_DYNAMIC,
    subnqn: d.subnqn,
    hostnqn: d.hostnqn,
  });
}

/**
 * The Connect SQE as the Linux host builds it (nvmf_connect_cmd_prep): admin queue with
 * sqsize 31 (NVME_AQ_DEPTH − 1) and KATO in ms, I/O queues with their own size and no KATO.
 * `flags` defaults to 0x40 (PSDT = SGL), `dptr` to an empty buffer (fill in the SGL).
 */
export function encodeConnect(c: {
  cid: number;
  qid: number;
  sqsize: number;
  kato?: number;
  cattr?: number;
  recfmt?: number;
  flags?: number;
  dptr?: Uint8Array;
}): Buffer {
  return ConnectCommand.encode({
    opcode: 0x7f,
    resv1: c.flags ?? 0x40,
    cid: c.cid,
    fctype: 0x01,
    dptr: c.dptr ?? Buffer.alloc(16),
    recfmt: c.recfmt ?? 0,
    qid: c.qid,
    sqsize: c.sqsize,
    cattr: c.cattr ?? 0,
    kato: c.kato ?? 0,
  });
}

// ---- Connect response (CQE DW0) ----

/** Connect response DW0 on success: CNTLID 15:0, AUTHREQ bits (Linux NVME_CONNECT_AUTHREQ_*). */
export const ConnectAuthReq = {
  ATR: 1 << 17, // authentication transaction required
  ASCR: 1 << 18, // secure channel concatenation required
} as const;

export function encodeConnectResult(cntlid: number, authreq = 0): number {
  return (field(cntlid, 15, 0, 'CNTLID') | authreq) >>> 0;
}

export function decodeConnectResult(dw0: number): { cntlid: number; authreq: number } {
  return { cntlid: bits(dw0, 15, 0), authreq: (dw0 & (ConnectAuthReq.ATR | ConnectAuthReq.ASCR)) >>> 0 };
}

/**
 * DW0 of a Connect that failed with Connect Invalid Parameters: IPO (bits 15:0) is the byte
 * offset of the bad field, IATTR (23:16) bit 0 says where: 0 = in the SQE, 1 = in the data.
 */
export function encodeConnectInvalid(where: 'sqe' | 'data', ipo: number): number {
  return (field(ipo, 15, 0, 'IPO') | field(where === 'data' ? 1 : 0, 23, 16, 'IATTR')) >>> 0;
}

export function decodeConnectInvalid(dw0: number): { where: 'sqe' | 'data'; ipo: number } {
  return { where: bits(dw0, 23, 16) & 1 ? 'data' : 'sqe', ipo: bits(dw0, 15, 0) };
}

/** DW0 blaming a Connect SQE field, e.g. connectInvalidSqe('qid'). */
export function connectInvalidSqe(name: 'recfmt' | 'qid' | 'sqsize' | 'cattr' | 'kato'): number {
  return encodeConnectInvalid('sqe', ConnectCommand.offsetOf(name));
}

/** DW0 blaming a Connect data field, e.g. connectInvalidData('hostnqn'). */
export function connectInvalidData(name: 'hostid' | 'cntlid' | 'subnqn' | 'hostnqn'): number {
  return encodeConnectInvalid('data', ConnectData.offsetOf(name));
}

// ---- Property Set (fctype 0x00) / Property Get (fctype 0x04) ----

/** struct nvmf_property_set_command: 64 bytes. */
export const PropertySetCommand = defineStruct('nvmf_property_set_command', 64, [
  { name: 'opcode', offset: 0, type: 'u8' },
  { name: 'resv1', offset: 1, type: 'u8' },
  { name: 'cid', offset: 2, type: 'u16' },
  { name: 'fctype', offset: 4, type: 'u8' },
  { name: 'resv2', offset: 5, type: 'bytes', length: 35 },
  { name: 'attrib', offset: 40, type: 'u8' }, // bits 2:0 size: 0 = 4 bytes, 1 = 8 bytes
  { name: 'resv3', offset: 41, type: 'bytes', length: 3 },
  { name: 'ofst', offset: 44, type: 'u32' }, // Linux: offset
  { name: 'value', offset: 48, type: 'u64' },
  { name: 'resv4', offset: 56, type: 'bytes', length: 8 },
] as const);

/** struct nvmf_property_get_command: 64 bytes; the value comes back in CQE DW0(–DW1). */
export const PropertyGetCommand = defineStruct('nvmf_property_get_command', 64, [
  { name: 'opcode', offset: 0, type: 'u8' },
  { name: 'resv1', offset: 1, type: 'u8' },
  { name: 'cid', offset: 2, type: 'u16' },
  { name: 'fctype', offset: 4, type: 'u8' },
  { name: 'resv2', offset: 5, type: 'bytes', length: 35 },
  { name: 'attrib', offset: 40, type: 'u8' },
  { name: 'resv3', offset: 41, type: 'bytes', length: 3 },
  { name: 'ofst', offset: 44, type: 'u32' },
  { name: 'resv4', offset: 48, type: 'bytes', length: 16 },
] as const);

export interface PropertyAccess {
  readonly cid: number;
  /** Property size in bytes, from ATTRIB bits 2:0 (0 → 4, 1 → 8); other values are invalid. */
  readonly size: 4 | 8 | undefined;
  readonly attrib: number;
  /** Property offset (OFST), e.g. Property.CC. */
  readonly ofst: number;
  /** Property Set only. */
  readonly value?: bigint;
}

function sizeOfAttrib(attrib: number): 4 | 8 | undefined {
  const s = attrib & 0x7;
  return s === 0 ? 4 : s === 1 ? 8 : undefined;
}

export function decodePropertyGet(sqe: Uint8Array, at = 0): PropertyAccess {
  const c = PropertyGetCommand.decode(sqe, at);
  return { cid: c.cid, size: sizeOfAttrib(c.attrib), attrib: c.attrib, ofst: c.ofst };
}

export function decodePropertySet(sqe: Uint8Array, at = 0): PropertyAccess {
  const c = PropertySetCommand.decode(sqe, at);
  const size = sizeOfAttrib(c.attrib);
  return {
    cid: c.cid,
    size,
    attrib: c.attrib,
    ofst: c.ofst,
    value: size === 4 ? c.value & 0xffffffffn : c.value,
  };
}

export function encodePropertyGet(c: { cid: number; ofst: number; size: 4 | 8 }): Buffer {
  return PropertyGetCommand.encode({
    opcode: 0x7f,
    cid: c.cid,
    fctype: 0x04,
    attrib: c.size === 8 ? 1 : 0,
    ofst: c.ofst,
  });
}

export function encodePropertySet(c: {
  cid: number;
  ofst: number;
  size: 4 | 8;
  value: number | bigint;
}): Buffer {
  return PropertySetCommand.encode({
    opcode: 0x7f,
    cid: c.cid,
    fctype: 0x00,
    attrib: c.size === 8 ? 1 : 0,
    ofst: c.ofst,
    value: c.value,
  });
}

// ---- Disconnect (fctype 0x08) ----

/**
 * Disconnect deletes the I/O queue it arrives on. Its only field is RECFMT in CDW10 bits 15:0
 * [UNCONFIRMED: no C header in the sources declares a Disconnect struct; taken from the
 * NVMe-oF layout of the generic capsule]. It uses the generic FabricsCommand table.
 */
export function decodeDisconnect(sqe: Uint8Array, at = 0): { cid: number; recfmt: number } {
  const c = FabricsCommand.decode(sqe, at);
  return { cid: c.cid, recfmt: c.ts.readUInt16LE(0) };
}

// ---- controller properties ----

/** Property offsets (NVME_REG_*). CAP is 8 bytes, the others 4. */
export const Property = {
  CAP: 0x00,
  VS: 0x08,
  INTMS: 0x0c,
  INTMC: 0x10,
  CC: 0x14,
  CSTS: 0x1c,
  NSSR: 0x20,
  AQA: 0x24,
  ASQ: 0x28,
  ACQ: 0x30,
  CRTO: 0x68,
} as const;

/** Controller Capabilities (CAP). */
export interface Cap {
  /** Maximum Queue Entries Supported, 0's based (15:0). */
  mqes: number;
  /** Contiguous Queues Required (16). */
  cqr: boolean;
  /** Arbitration Mechanism Supported (18:17). */
  ams: number;
  /** Timeout in 500 ms units (31:24): worst-case time for CSTS.RDY to follow CC.EN. */
  to: number;
  /** Doorbell stride (35:32). */
  dstrd: number;
  /** NVM Subsystem Reset Supported (36). */
  nssrs: boolean;
  /** Command Sets Supported (44:37): bit 0 NVM, bit 6 I/O command sets (CSI), bit 7 admin only. */
  css: number;
  /** Boot Partition Support (45). */
  bps: boolean;
  /** Controller Power Scope (47:46). */
  cps: number;
  /** Memory page size minimum / maximum: 2^(12 + n) bytes (51:48, 55:52). */
  mpsmin: number;
  mpsmax: number;
  pmrs: boolean;
  cmbs: boolean;
  nsss: boolean;
  /** Controller Ready Modes Supported (60:59): bit 0 CRWMS, bit 1 CRIMS. */
  crms: number;
}

export const CapCss = { NVM: 1 << 0, CSI: 1 << 6, ADMIN_ONLY: 1 << 7 } as const;

function getBits(v: bigint, hi: number, lo: number): number {
  return Number((v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n));
}

function putBits(value: number | boolean, hi: number, lo: number, what: string): bigint {
  const n = typeof value === 'boolean' ? (value ? 1 : 0) : value;
  const max = 2 ** (hi - lo + 1) - 1;
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new RangeError(`${what}: ${n} does not fit bits ${hi}:${lo}`);
  return BigInt(n) << BigInt(lo);
}

export function decodeCap(cap: bigint): Cap {
  return {
    mqes: getBits(cap, 15, 0),
    cqr: getBits(cap, 16, 16) === 1,
    ams: getBits(cap, 18, 17),
    to: getBits(cap, 31, 24),
    dstrd: getBits(cap, 35, 32),
    nssrs: getBits(cap, 36, 36) === 1,
    css: getBits(cap, 44, 37),
    bps: getBits(cap, 45, 45) === 1,
    cps: getBits(cap, 47, 46),
    mpsmin: getBits(cap, 51, 48),
    mpsmax: getBits(cap, 55, 52),
    pmrs: getBits(cap, 56, 56) === 1,
    cmbs: getBits(cap, 57, 57) === 1,
    nsss: getBits(cap, 58, 58) === 1,
    crms: getBits(cap, 60, 59),
  };
}

export function encodeCap(c: Partial<Cap> & { mqes: number }): bigint {
  return (
    putBits(c.mqes, 15, 0, 'MQES') |
    putBits(c.cqr ?? false, 16, 16, 'CQR') |
    putBits(c.ams ?? 0, 18, 17, 'AMS') |
    putBits(c.to ?? 0, 31, 24, 'TO') |
    putBits(c.dstrd ?? 0, 35, 32, 'DSTRD') |
    putBits(c.nssrs ?? false, 36, 36, 'NSSRS') |
    putBits(c.css ?? CapCss.NVM, 44, 37, 'CSS') |
    putBits(c.bps ?? false, 45, 45, 'BPS') |
    putBits(c.cps ?? 0, 47, 46, 'CPS') |
    putBits(c.mpsmin ?? 0, 51, 48, 'MPSMIN') |
    putBits(c.mpsmax ?? 0, 55, 52, 'MPSMAX') |
    putBits(c.pmrs ?? false, 56, 56, 'PMRS') |
    putBits(c.cmbs ?? false, 57, 57, 'CMBS') |
    putBits(c.nsss ?? false, 58, 58, 'NSSS') |
    putBits(c.crms ?? 0, 60, 59, 'CRMS')
  );
}

/** Version (VS): major 31:16, minor 15:8, tertiary 7:0. */
export function decodeVs(vs: number): { major: number; minor: number; tertiary: number } {
  return { major: bits(vs, 31, 16), minor: bits(vs, 15, 8), tertiary: bits(vs, 7, 0) };
}

export function encodeVs(v: { major: number; minor: number; tertiary?: number }): number {
  return (
    (field(v.major, 31, 16, 'MJR') | field(v.minor, 15, 8, 'MNR') | field(v.tertiary ?? 0, 7, 0, 'TER')) >>> 0
  );
}

/** Controller Configuration (CC). */
export interface Cc {
  /** Enable (0). */
  en: boolean;
  /** I/O Command Set Selected (6:4): 0 NVM, 6 all supported I/O command sets, 7 admin only. */
  css: number;
  /** Memory Page Size: 2^(12 + mps) (10:7). */
  mps: number;
  /** Arbitration Mechanism Selected (13:11). */
  ams: number;
  /** Shutdown Notification (15:14): 0 none, 1 normal, 2 abrupt. */
  shn: number;
  /** I/O SQ / CQ entry size, log2 bytes (19:16, 23:20): 6 and 4 for NVM. */
  iosqes: number;
  iocqes: number;
  /** Controller Ready Independent of Media Enable (24). */
  crime: boolean;
}

export const CcCss = { NVM: 0, CSI: 6, ADMIN_ONLY: 7 } as const;
export const CcShn = { NONE: 0, NORMAL: 1, ABRUPT: 2 } as const;
export const CcAms = { ROUND_ROBIN: 0, WRR_URGENT: 1, VENDOR: 7 } as const;

export function decodeCc(cc: number): Cc {
  return {
    en: bits(cc, 0, 0) === 1,
    css: bits(cc, 6, 4),
    mps: bits(cc, 10, 7),
    ams: bits(cc, 13, 11),
    shn: bits(cc, 15, 14),
    iosqes: bits(cc, 19, 16),
    iocqes: bits(cc, 23, 20),
    crime: bits(cc, 24, 24) === 1,
  };
}

export function encodeCc(c: Partial<Cc>): number {
  return (
    (field(c.en ? 1 : 0, 0, 0) |
      field(c.css ?? 0, 6, 4, 'CSS') |
      field(c.mps ?? 0, 10, 7, 'MPS') |
      field(c.ams ?? 0, 13, 11, 'AMS') |
      field(c.shn ?? 0, 15, 14, 'SHN') |
      field(c.iosqes ?? 0, 19, 16, 'IOSQES') |
      field(c.iocqes ?? 0, 23, 20, 'IOCQES') |
      field(c.crime ? 1 : 0, 24, 24)) >>>
    0
  );
}

/** Controller Status (CSTS). */
export interface Csts {
  /** Ready (0). */
  rdy: boolean;
  /** Controller Fatal Status (1). */
  cfs: boolean;
  /** Shutdown Status (3:2): 0 normal operation, 1 occurring, 2 complete. */
  shst: number;
  /** NVM Subsystem Reset Occurred (4). */
  nssro: boolean;
  /** Processing Paused (5). */
  pp: boolean;
  /** Shutdown Type (6). */
  st: boolean;
}

export const CstsShst = { NORMAL: 0, OCCURRING: 1, COMPLETE: 2 } as const;

export function decodeCsts(csts: number): Csts {
  return {
    rdy: bits(csts, 0, 0) === 1,
    cfs: bits(csts, 1, 1) === 1,
    shst: bits(csts, 3, 2),
    nssro: bits(csts, 4, 4) === 1,
    pp: bits(csts, 5, 5) === 1,
    st: bits(csts, 6, 6) === 1,
  };
}

export function encodeCsts(c: Partial<Csts>): number {
  return (
    (field(c.rdy ? 1 : 0, 0, 0) |
      field(c.cfs ? 1 : 0, 1, 1) |
      field(c.shst ?? 0, 3, 2, 'SHST') |
      field(c.nssro ? 1 : 0, 4, 4) |
      field(c.pp ? 1 : 0, 5, 5) |
      field(c.st ? 1 : 0, 6, 6)) >>>
    0
  );
}
