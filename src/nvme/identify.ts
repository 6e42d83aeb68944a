// Identify data structures (Identify command, admin opcode 0x06; every structure is 4096 bytes).
// Source: linux-nvme/libnvme src/nvme/types.h (struct nvme_id_ctrl, nvme_id_psd, nvme_id_ns,
// nvme_lbaf, nvme_ns_id_desc, nvme_id_independent_id_ns, nvme_id_ctrl_nvm, nvme_nvm_id_ns,
// nvme_id_iocs, enum nvme_identify_cns and the enum nvme_id_ctrl_* / nvme_id_ns_* bits; every
// offset below was checked against gcc's offsetof on that header). Defaults of the builders
// follow nvmet (torvalds/linux drivers/nvme/target/admin-cmd.c, nvmet_execute_identify_ctrl/_ns).
//
// Identify Controller is what `nvme id-ctrl` prints and what the Linux host reads for
// SGLS, IOCCSZ (in-capsule data size), ONCS (Copy bit 8) and OCFS (Copy formats).
// Identify Namespace carries the Copy limits MSSRL (blocks per range, not 0's based), MCL
// (blocks per command) and MSRC (ranges, 0's based).

import {
  bits,
  defineStruct,
  field,
  lbaToNumber,
  type StructInput,
  type StructValue,
} from '../util/struct.js';

/** Controller or Namespace Structure values (Identify CDW10 bits 7:0). */
export const Cns = {
  NS: 0x00,
  CTRL: 0x01,
  NS_ACTIVE_LIST: 0x02,
  NS_DESC_LIST: 0x03,
  NVMSET_LIST: 0x04,
  CSI_NS: 0x05,
  CSI_CTRL: 0x06,
  CSI_NS_ACTIVE_LIST: 0x07,
  CSI_INDEPENDENT_ID_NS: 0x08,
  NS_USER_DATA_FORMAT: 0x09,
  CSI_NS_USER_DATA_FORMAT: 0x0a,
  ALLOCATED_NS_LIST: 0x10,
  ALLOCATED_NS: 0x11,
  NS_CTRL_LIST: 0x12,
  CTRL_LIST: 0x13,
  PRIMARY_CTRL_CAP: 0x14,
  SECONDARY_CTRL_LIST: 0x15,
  NS_GRANULARITY: 0x16,
  UUID_LIST: 0x17,
  DOMAIN_LIST: 0x18,
  ENDURANCE_GROUP_ID: 0x19,
  CSI_ALLOCATED_NS_LIST: 0x1a,
  CSI_ID_NS_DATA_STRUCTURE: 0x1b,
  COMMAND_SET_STRUCTURE: 0x1c,
} as const;

/** Command Set Identifiers (CSI). */
export const Csi = {
  NVM: 0x0,
  KV: 0x1,
  ZNS: 0x2,
} as const;

export const IDENTIFY_DATA_SIZE = 4096;
/** NSID meaning "all namespaces" (NVME_NSID_ALL). */
export const NSID_ALL = 0xffffffff;

// ---- the Identify command ----

export interface IdentifyCommand {
  /** CDW10 7:0 */
  readonly cns: number;
  /** CDW10 31:16: Controller Identifier */
  readonly cntid: number;
  /** CDW11 15:0: CNS Specific Identifier */
  readonly cnssid: number;
  /** CDW11 31:24: Command Set Identifier */
  readonly csi: number;
  /** CDW14 6:0: UUID index */
  readonly uuidIndex: number;
}

export function decodeIdentify(sqe: { cdw10: number; cdw11: number; cdw14: number }): IdentifyCommand {
  return {
    cns: bits(sqe.cdw10, 7, 0),
    cntid: bits(sqe.cdw10, 31, 16),
    cnssid: bits(sqe.cdw11, 15, 0),
    csi: bits(sqe.cdw11, 31, 24),
    uuidIndex: bits(sqe.cdw14, 6, 0),
  };
}

export function encodeIdentify(c: Partial<IdentifyCommand> & { cns: number }): {
  cdw10: number;
  cdw11: number;
  cdw14: number;
} {
  return {
    cdw10: (field(c.cns, 7, 0, 'CNS') | field(c.cntid ?? 0, 31, 16, 'CNTID')) >>> 0,
    cdw11: (field(c.cnssid ?? 0, 15, 0, 'CNSSID') | field(c.csi ?? 0, 31, 24, 'CSI')) >>> 0,
    cdw14: field(c.uuidIndex ?? 0, 6, 0, 'UUID index'),
  };
}

// ---- Identify Controller (CNS 01h) ----

/** struct nvme_id_ctrl (libnvme types.h): 4096 bytes. */
export const IdCtrl = defineStruct('nvme_id_ctrl', 4096, [
  { name: 'vid', offset: 0, type: 'u16' },
  { name: 'ssvid', offset: 2, type: 'u16' },
  { name: 'sn', offset: 4, type: 'ascii', length: 20 },
  { name: 'mn', offset: 24, type: 'ascii', length: 40 },
  { name: 'fr', offset: 64, type: 'ascii', length: 8 },
  { name: 'rab', offset: 72, type: 'u8' },
  { name: 'ieee', offset: 73, type: 'bytes', length: 3 },
  { name: 'cmic', offset: 76, type: 'u8' },
  { name: 'mdts', offset: 77, type: 'u8' },
  { name: 'cntlid', offset: 78, type: 'u16' },
  { name: 'ver', offset: 80, type: 'u32' },
  { name: 'rtd3r', offset: 84, type: 'u32' },
  { name: 'rtd3e', offset: 88, type: 'u32' },
  { name: 'oaes', offset: 92, type: 'u32' },
  { name: 'ctratt', offset: 96, type: 'u32' },
  { name: 'rrls', offset: 100, type: 'u16' },
  { name: 'bpcap', offset: 102, type: 'u8' },
  { name: 'rsvd103', offset: 103, type: 'u8' },
  { name: 'nssl', offset: 104, type: 'u32' },
  { name: 'rsvd108', offset: 108, type: 'bytes', length: 2 },
  { name: 'plsi', offset: 110, type: 'u8' },
  { name: 'cntrltype', offset: 111, type: 'u8' },
  { name: 'fguid', offset: 112, type: 'bytes', length: 16 },
  { name: 'crdt1', offset: 128, type: 'u16' },
  { name: 'crdt2', offset: 130, type: 'u16' },
  { name: 'crdt3', offset: 132, type: 'u16' },
  { name: 'crcap', offset: 134, type: 'u8' },
  { name: 'rsvd135', offset: 135, type: 'bytes', length: 118 },
  { name: 'nvmsr', offset: 253, type: 'u8' },
  { name: 'vwci', offset: 254, type: 'u8' },
  { name: 'mec', offset: 255, type: 'u8' },
  { name: 'oacs', offset: 256, type: 'u16' },
  { name: 'acl', offset: 258, type: 'u8' },
  { name: 'aerl', offset: 259, type: 'u8' },
  { name: 'frmw', offset: 260, type: 'u8' },
  { name: 'lpa', offset: 261, type: 'u8' },
  { name: 'elpe', offset: 262, type: 'u8' },
  { name: 'npss', offset: 263, type: 'u8' },
  { name: 'avscc', offset: 264, type: 'u8' },
  { name: 'apsta', offset: 265, type: 'u8' },
  { name: 'wctemp', offset: 266, type: 'u16' },
  { name: 'cctemp', offset: 268, type: 'u16' },
  { name: 'mtfa', offset: 270, type: 'u16' },
  { name: 'hmpre', offset: 272, type: 'u32' },
  { name: 'hmmin', offset: 276, type: 'u32' },
  { name: 'tnvmcap', offset: 280, type: 'bytes', length: 16 },
  { name: 'unvmcap', offset: 296, type: 'bytes', length: 16 },
  { name: 'rpmbs', offset: 312, type: 'u32' },
  { name: 'edstt', offset: 316, type: 'u16' },
  { name: 'dsto', offset: 318, type: 'u8' },
  { name: 'fwug', offset: 319, type: 'u8' },
  { name: 'kas', offset: 320, type: 'u16' },
  { name: 'hctma', offset: 322, type: 'u16' },
  { name: 'mntmt', offset: 324, type: 'u16' },
  { name: 'mxtmt', offset: 326, type: 'u16' },
  { name: 'sanicap', offset: 328, type: 'u32' },
  { name: 'hmminds', offset: 332, type: 'u32' },
  { name: 'hmmaxd', offset: 336, type: 'u16' },
  { name: 'nsetidmax', offset: 338, type: 'u16' },
  { name: 'endgidmax', offset: 340, type: 'u16' },
  { name: 'anatt', offset: 342, type: 'u8' },
  { name: 'anacap', offset: 343, type: 'u8' },
  { name: 'anagrpmax', offset: 344, type: 'u32' },
  { name: 'nanagrpid', offset: 348, type: 'u32' },
  { name: 'pels', offset: 352, type: 'u32' },
  { name: 'domainid', offset: 356, type: 'u16' },
  { name: 'kpioc', offset: 358, type: 'u8' },
  { name: 'rsvd359', offset: 359, type: 'u8' },
  { name: 'mptfawr', offset: 360, type: 'u16' },
  { name: 'rsvd362', offset: 362, type: 'bytes', length: 6 },
  { name: 'megcap', offset: 368, type: 'bytes', length: 16 },
  { name: 'tmpthha', offset: 384, type: 'u8' },
  { name: 'rsvd385', offset: 385, type: 'u8' },
  { name: 'cqt', offset: 386, type: 'u16' },
  { name: 'rsvd388', offset: 388, type: 'bytes', length: 124 },
  { name: 'sqes', offset: 512, type: 'u8' },
  { name: 'cqes', offset: 513, type: 'u8' },
  { name: 'maxcmd', offset: 514, type: 'u16' },
  { name: 'nn', offset: 516, type: 'u32' },
  { name: 'oncs', offset: 520, type: 'u16' },
  { name: 'fuses', offset: 522, type: 'u16' },
  { name: 'fna', offset: 524, type: 'u8' },
  { name: 'vwc', offset: 525, type: 'u8' },
  { name: 'awun', offset: 526, type: 'u16' },
  { name: 'awupf', offset: 528, type: 'u16' },
  { name: 'icsvscc', offset: 530, type: 'u8' },
  { name: 'nwpc', offset: 531, type: 'u8' },
  { name: 'acwu', offset: 532, type: 'u16' },
  { name: 'ocfs', offset: 534, type: 'u16' },
  { name: 'sgls', offset: 536, type: 'u32' },
  { name: 'mnan', offset: 540, type: 'u32' },
  { name: 'maxdna', offset: 544, type: 'bytes', length: 16 },
  { name: 'maxcna', offset: 560, type: 'u32' },
  { name: 'oaqd', offset: 564, type: 'u32' },
  { name: 'rhiri', offset: 568, type: 'u8' },
  { name: 'hirt', offset: 569, type: 'u8' },
  { name: 'cmmrtd', offset: 570, type: 'u16' },
  { name: 'nmmrtd', offset: 572, type: 'u16' },
  { name: 'minmrtg', offset: 574, type: 'u8' },
  { name: 'maxmrtg', offset: 575, type: 'u8' },
  { name: 'trattr', offset: 576, type: 'u8' },
  { name: 'rsvd577', offset: 577, type: 'u8' },
  { name: 'mcudmq', offset: 578, type: 'u16' },
  { name: 'mnsudmq', offset: 580, type: 'u16' },
  { name: 'mcmr', offset: 582, type: 'u16' },
  { name: 'nmcmr', offset: 584, type: 'u16' },
  { name: 'mcdqpc', offset: 586, type: 'u16' },
  { name: 'rsvd588', offset: 588, type: 'bytes', length: 180 },
  { name: 'subnqn', offset: 768, type: 'ascii', length: 256, pad: 'nul' },
  { name: 'rsvd1024', offset: 1024, type: 'bytes', length: 768 },
  { name: 'ioccsz', offset: 1792, type: 'u32' },
  { name: 'iorcsz', offset: 1796, type: 'u32' },
  { name: 'icdoff', offset: 1800, type: 'u16' },
  { name: 'fcatt', offset: 1802, type: 'u8' },
  { name: 'msdbd', offset: 1803, type: 'u8' },
  { name: 'ofcs', offset: 1804, type: 'u16' },
  { name: 'dctype', offset: 1806, type: 'u8' },
  { name: 'rsvd1807', offset: 1807, type: 'bytes', length: 241 },
  { name: 'psd', offset: 2048, type: 'bytes', length: 1024 },
  { name: 'vs', offset: 3072, type: 'bytes', length: 1024 },
] as const);
export type IdCtrlFields = StructValue<typeof IdCtrl.fields>;

/** struct nvme_id_psd: one power state descriptor, 32 bytes; IdCtrl.psd holds 32 of them. */
export const PowerStateDescriptor = defineStruct('nvme_id_psd', 32, [
  { name: 'mp', offset: 0, type: 'u16' },
  { name: 'rsvd2', offset: 2, type: 'u8' },
  { name: 'flags', offset: 3, type: 'u8' },
  { name: 'enlat', offset: 4, type: 'u32' },
  { name: 'exlat', offset: 8, type: 'u32' },
  { name: 'rrt', offset: 12, type: 'u8' },
  { name: 'rrl', offset: 13, type: 'u8' },
  { name: 'rwt', offset: 14, type: 'u8' },
  { name: 'rwl', offset: 15, type: 'u8' },
  { name: 'idlp', offset: 16, type: 'u16' },
  { name: 'ips', offset: 18, type: 'u8' },
  { name: 'rsvd19', offset: 19, type: 'u8' },
  { name: 'actp', offset: 20, type: 'u16' },
  { name: 'apws', offset: 22, type: 'u8' },
  { name: 'epfrt', offset: 23, type: 'u8' },
  { name: 'fqvt', offset: 24, type: 'u8' },
  { name: 'epfvt', offset: 25, type: 'u8' },
  { name: 'epfr_fqv_ts', offset: 26, type: 'u8' },
  { name: 'epfvts', offset: 27, type: 'u8' },
  { name: 'rsvd28', offset: 28, type: 'bytes', length: 4 },
] as const);

/** CMIC: Controller Multi-Path I/O and Namespace Sharing Capabilities. */
export const Cmic = {
  MULTI_PORT: 1 << 0,
  MULTI_CTRL: 1 << 1,
  MULTI_SRIOV: 1 << 2,
  ANA_REPORTING: 1 << 3,
} as const;

/** OAES: Optional Asynchronous Events Supported. */
export const Oaes = {
  /** Namespace Attribute Notices (the changed namespace list event). */
  NS_ATTR: 1 << 8,
  FW_ACTIVATION: 1 << 9,
  ANA_CHANGE: 1 << 11,
  DISCOVERY_CHANGE: 0x80000000,
} as const;

/** CTRATT: Controller Attributes. */
export const Ctratt = {
  HOST_ID_128: 1 << 0,
  NON_OP_PSP: 1 << 1,
  NVM_SETS: 1 << 2,
  READ_RECOVERY_LEVELS: 1 << 3,
  ENDURANCE_GROUPS: 1 << 4,
  PREDICTABLE_LATENCY: 1 << 5,
  TBKAS: 1 << 6, // traffic based keep alive
  NS_GRANULARITY: 1 << 7,
  SQ_ASSOCIATIONS: 1 << 8,
  UUID_LIST: 1 << 9,
} as const;

/** CNTRLTYPE: Controller Type. */
export const CntrlType = {
  IO: 0x1,
  DISCOVERY: 0x2,
  ADMIN: 0x3,
} as const;

/** FRMW: Firmware Updates. Bits 3:1 = number of slots. */
export const Frmw = {
  FIRST_SLOT_RO: 1 << 0,
  ACTIVATION_WITHOUT_RESET: 1 << 4,
} as const;

/** LPA: Log Page Attributes. */
export const Lpa = {
  SMART_PER_NS: 1 << 0,
  CMD_EFFECTS: 1 << 1,
  EXTENDED: 1 << 2, // extended data for Get Log Page (NUMDU, LPO)
  TELEMETRY: 1 << 3,
  PERSISTENT_EVENT: 1 << 4,
} as const;

/** ONCS: Optional NVM Command Support. */
export const Oncs = {
  COMPARE: 1 << 0,
  WRITE_UNCORRECTABLE: 1 << 1,
  DSM: 1 << 2,
  WRITE_ZEROES: 1 << 3,
  SAVE_FEATURES: 1 << 4,
  RESERVATIONS: 1 << 5,
  TIMESTAMP: 1 << 6,
  VERIFY: 1 << 7,
  COPY: 1 << 8,
  COPY_SINGLE_ATOMICITY: 1 << 9, // NVMCSA
  ALL_FAST_COPY: 1 << 10, // NVMAFC
  WRITE_ZEROES_DEALLOCATE: 1 << 11,
} as const;

/** OCFS: Optional Copy Formats Supported; bit n = source range descriptor format n. */
export const Ocfs = {
  FORMAT_0: 1 << 0,
  FORMAT_1: 1 << 1,
  FORMAT_2: 1 << 2,
  FORMAT_3: 1 << 3,
} as const;

export const Fuses = { COMPARE_AND_WRITE: 1 << 0 } as const;

/** FNA: Format NVM Attributes. */
export const Fna = {
  FORMAT_ALL_NS: 1 << 0,
  SECURE_ERASE_ALL_NS: 1 << 1,
  CRYPTO_ERASE: 1 << 2,
  NSID_ALL_FORMAT: 1 << 3,
} as const;

/** VWC: Volatile Write Cache. Bits 2:1 = 11b: Flush with NSID FFFFFFFFh is supported. */
export const Vwc = {
  PRESENT: 1 << 0,
  FLUSH_BROADCAST_SUPPORTED: 3 << 1,
  FLUSH_BROADCAST_NOT_SUPPORTED: 2 << 1,
} as const;

/** NWPC: Namespace Write Protection Capabilities. */
export const Nwpc = {
  WRITE_PROTECT: 1 << 0,
  UNTIL_POWER_CYCLE: 1 << 1,
  PERMANENT: 1 << 2,
} as const;

/** FCATT: Fabrics Controller Attributes; bit 0 set = static controller model. */
export const Fcatt = { STATIC_MODEL: 1 << 0 } as const;

/** OFCS: Optional Fabrics Commands Support. */
export const Ofcs = { DISCONNECT: 1 << 0 } as const;

/** VER as the spec encodes it: major 31:16, minor 15:8, tertiary 7:0. */
export function nvmeVersion(major: number, minor: number, tertiary = 0): number {
  return (
    (field(major, 31, 16, 'major') | field(minor, 15, 8, 'minor') | field(tertiary, 7, 0, 'tertiary')) >>> 0
  );
}

/** IOCCSZ for `inlineBytes` of in-capsule data: 16-byte units, the 64-byte SQE included. */
export function ioccszFor(inlineBytes: number): number {
  if (!Number.isInteger(inlineBytes) || inlineBytes < 0 || inlineBytes % 16 !== 0) {
    throw new RangeError(`in-capsule data size ${inlineBytes} must be a non-negative multiple of 16`);
  }
  return (64 + inlineBytes) / 16;
}

/** In-capsule data bytes an IOCCSZ allows (IOCCSZ × 16 − 64). */
export function inlineBytesFromIoccsz(ioccsz: number): number {
  return Math.max(0, ioccsz * 16 - 64);
}

export interface PowerState {
  /** Maximum power, centiwatts (MP). */
  mp: number;
  /** Entry / exit latency, microseconds. */
  enlat?: number;
  exlat?: number;
  flags?: number;
}

export interface IdCtrlOptions {
  vid?: number;
  ssvid?: number;
  /** Serial number: up to 20 printable ASCII characters, space padded. */
  sn: string;
  /** Model number: up to 40 characters. Default "tsblk". */
  mn?: string;
  /** Firmware revision: up to 8 characters. Default "0.1.0". */
  fr?: string;
  /** Recommended arbitration burst. Default 6 (nvmet). */
  rab?: number;
  /** IEEE OUI, 24 bits, stored little-endian as nvmet's put_unaligned_le24. */
  ieee?: number;
  /** Default MULTI_PORT | MULTI_CTRL: any number of hosts, dynamic controllers. */
  cmic?: number;
  /** Max data transfer size as a power of two of the minimum page size (CAP.MPSMIN); 0 = no limit. */
  mdts?: number;
  cntlid?: number;
  /** Default NVMe 2.0.0. */
  ver?: number;
  /** Default Oaes.NS_ATTR. */
  oaes?: number;
  /** Default Ctratt.HOST_ID_128. */
  ctratt?: number;
  /** Default CntrlType.IO. */
  cntrltype?: number;
  oacs?: number;
  /** Abort command limit, 0's based. Default 3. */
  acl?: number;
  /** Async event request limit, 0's based. Default 3. */
  aerl?: number;
  /** Default FIRST_SLOT_RO | one slot (0x03), as nvmet. */
  frmw?: number;
  /** Default Lpa.EXTENDED. */
  lpa?: number;
  /** Error log page entries, 0's based. Default 63. */
  elpe?: number;
  /** Keep alive support granularity in 100 ms units; 0 = keep alive not supported. Default 10 (1 s). */
  kas?: number;
  /** Default 0x66 (64-byte SQEs). */
  sqes?: number;
  /** Default 0x44 (16-byte CQEs). */
  cqes?: number;
  /** Default 128. */
  maxcmd?: number;
  /** Number of namespaces (highest valid NSID). Default 1024. */
  nn?: number;
  /** Default DSM | WRITE_ZEROES | COPY. */
  oncs?: number;
  fuses?: number;
  fna?: number;
  /** Default Vwc.PRESENT | FLUSH_BROADCAST_SUPPORTED. */
  vwc?: number;
  awun?: number;
  awupf?: number;
  /** Default Nwpc.WRITE_PROTECT. */
  nwpc?: number;
  acwu?: number;
  /** Default Ocfs.FORMAT_0. */
  ocfs?: number;
  /** Default SglsSupport.SUPPORTED | OFFSET (0x100001), nvmet's value with in-capsule data. */
  sgls?: number;
  /** Maximum number of allowed namespaces; default = nn. */
  mnan?: number;
  /** NVM Subsystem NQN (up to 223 characters, NUL padded in 256 bytes). */
  subnqn: string;
  /** Default 4 (SQE only, no in-capsule data); use ioccszFor(bytes). */
  ioccsz?: number;
  /** Default 1 (a 16-byte CQE). */
  iorcsz?: number;
  icdoff?: number;
  fcatt?: number;
  /** Maximum SGL data block descriptors. Default 1 (nvmet-tcp). */
  msdbd?: number;
  ofcs?: number;
  /** Power states; default one state of 25 W (nvmet and QEMU's values). npss = length − 1. */
  psd?: PowerState[];
}

function ieeeBytes(oui: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUIntLE(field(oui, 23, 0, 'IEEE OUI'), 0, 3);
  return b;
}

/** Builds the 4096-byte Identify Controller data from a plain object (defaults as documented). */
export function buildIdCtrl(o: IdCtrlOptions): Buffer {
  const psd = o.psd ?? [{ mp: 0x9c4, enlat: 0x10, exlat: 0x4 }];
  if (psd.length < 1 || psd.length > 32) throw new RangeError(`psd: 1..32 power states, got ${psd.length}`);
  const psdBytes = Buffer.alloc(IdCtrl.sizeOf('psd'));
  psd.forEach((p, i) =>
    PowerStateDescriptor.encode(
      { mp: p.mp, enlat: p.enlat ?? 0, exlat: p.exlat ?? 0, flags: p.flags ?? 0 },
      psdBytes,
      i * PowerStateDescriptor.SIZE,
    ),
  );
  const nn = o.nn ?? 1024;
  const input: StructInput<typeof IdCtrl.fields> = {
    vid: o.vid ?? 0,
    ssvid: o.ssvid ?? 0,
    sn: o.sn,
    mn: o.mn ?? 'tsblk',
    fr: o.fr ?? '0.1.0',
    rab: o.rab ?? 6,
    ieee: ieeeBytes(o.ieee ?? 0),
    cmic: o.cmic ?? Cmic.MULTI_PORT | Cmic.MULTI_CTRL,
    mdts: o.mdts ?? 0,
    cntlid: o.cntlid ?? 0,
    ver: o.ver ?? nvmeVersion(2, 0, 0),
    oaes: (o.oaes ?? Oaes.NS_ATTR) >>> 0,
    ctratt: o.ctratt ?? Ctratt.HOST_ID_128,
    cntrltype: o.cntrltype ?? CntrlType.IO,
    oacs: o.oacs ?? 0,
    acl: o.acl ?? 3,
    aerl: o.aerl ?? 3,
    frmw: o.frmw ?? 0x03,
    lpa: o.lpa ?? Lpa.EXTENDED,
    elpe: o.elpe ?? 63,
    npss: psd.length - 1,
    kas: o.kas ?? 10,
    sqes: o.sqes ?? 0x66,
    cqes: o.cqes ?? 0x44,
    maxcmd: o.maxcmd ?? 128,
    nn,
    oncs: o.oncs ?? Oncs.DSM | Oncs.WRITE_ZEROES | Oncs.COPY,
    fuses: o.fuses ?? 0,
    fna: o.fna ?? 0,
    vwc: o.vwc ?? Vwc.PRESENT | Vwc.FLUSH_BROADCAST_SUPPORTED,
    awun: o.awun ?? 0,
    awupf: o.awupf ?? 0,
    nwpc: o.nwpc ?? Nwpc.WRITE_PROTECT,
    acwu: o.acwu ?? 0,
    ocfs: o.ocfs ?? Ocfs.FORMAT_0,
    sgls: (o.sgls ?? 0x100001) >>> 0,
    mnan: o.mnan ?? nn,
    subnqn: o.subnqn,
    ioccsz: o.ioccsz ?? 4,
    iorcsz: o.iorcsz ?? 1,
    icdoff: o.icdoff ?? 0,
    fcatt: o.fcatt ?? 0,
    msdbd: o.msdbd ?? 1,
    ofcs: o.ofcs ?? 0,
    psd: psdBytes,
  };
  return IdCtrl.encode(input);
}

export function decodeIdCtrl(buf: Uint8Array): IdCtrlFields {
  return IdCtrl.decode(buf);
}

/** The IEEE OUI of a decoded Identify Controller as a number. */
export function ieeeOui(id: Pick<IdCtrlFields, 'ieee'>): number {
  return id.ieee.readUIntLE(0, 3);
}

// ---- Identify Namespace (CNS 00h) ----

/** struct nvme_id_ns (libnvme types.h): 4096 bytes. LBAF is 64 × struct nvme_lbaf. */
export const IdNs = defineStruct('nvme_id_ns', 4096, [
  { name: 'nsze', offset: 0, type: 'u64' },
  { name: 'ncap', offset: 8, type: 'u64' },
  { name: 'nuse', offset: 16, type: 'u64' },
  { name: 'nsfeat', offset: 24, type: 'u8' },
  { name: 'nlbaf', offset: 25, type: 'u8' },
  { name: 'flbas', offset: 26, type: 'u8' },
  { name: 'mc', offset: 27, type: 'u8' },
  { name: 'dpc', offset: 28, type: 'u8' },
  { name: 'dps', offset: 29, type: 'u8' },
  { name: 'nmic', offset: 30, type: 'u8' },
  { name: 'rescap', offset: 31, type: 'u8' },
  { name: 'fpi', offset: 32, type: 'u8' },
  { name: 'dlfeat', offset: 33, type: 'u8' },
  { name: 'nawun', offset: 34, type: 'u16' },
  { name: 'nawupf', offset: 36, type: 'u16' },
  { name: 'nacwu', offset: 38, type: 'u16' },
  { name: 'nabsn', offset: 40, type: 'u16' },
  { name: 'nabo', offset: 42, type: 'u16' },
  { name: 'nabspf', offset: 44, type: 'u16' },
  { name: 'noiob', offset: 46, type: 'u16' },
  { name: 'nvmcap', offset: 48, type: 'bytes', length: 16 },
  { name: 'npwg', offset: 64, type: 'u16' },
  { name: 'npwa', offset: 66, type: 'u16' },
  { name: 'npdg', offset: 68, type: 'u16' },
  { name: 'npda', offset: 70, type: 'u16' },
  { name: 'nows', offset: 72, type: 'u16' },
  { name: 'mssrl', offset: 74, type: 'u16' },
  { name: 'mcl', offset: 76, type: 'u32' },
  { name: 'msrc', offset: 80, type: 'u8' },
  { name: 'kpios', offset: 81, type: 'u8' },
  { name: 'nulbaf', offset: 82, type: 'u8' },
  { name: 'rsvd83', offset: 83, type: 'u8' },
  { name: 'kpiodaag', offset: 84, type: 'u32' },
  { name: 'rsvd88', offset: 88, type: 'bytes', length: 4 },
  { name: 'anagrpid', offset: 92, type: 'u32' },
  { name: 'rsvd96', offset: 96, type: 'bytes', length: 3 },
  { name: 'nsattr', offset: 99, type: 'u8' },
  { name: 'nvmsetid', offset: 100, type: 'u16' },
  { name: 'endgid', offset: 102, type: 'u16' },
  { name: 'nguid', offset: 104, type: 'bytes', length: 16 },
  { name: 'eui64', offset: 120, type: 'bytes', length: 8 },
  { name: 'lbaf', offset: 128, type: 'bytes', length: 256 },
  { name: 'vs', offset: 384, type: 'bytes', length: 3712 },
] as const);
export type IdNsFields = StructValue<typeof IdNs.fields>;

/** struct nvme_lbaf: one LBA format, 4 bytes. DS is LBADS (log2 of the block size). */
export const LbaFormat = defineStruct('nvme_lbaf', 4, [
  { name: 'ms', offset: 0, type: 'u16' },
  { name: 'ds', offset: 2, type: 'u8' },
  { name: 'rp', offset: 3, type: 'u8' },
] as const);

export const MAX_LBA_FORMATS = 64;

/** NSFEAT bits. */
export const NsFeat = {
  THIN: 1 << 0,
  NATOMIC: 1 << 1,
  DULBE: 1 << 2,
  ID_REUSE: 1 << 3,
  /** OPTPERF: NPWG, NPWA, NPDG, NPDA and NOWS are valid. */
  OPTPERF: 1 << 4,
} as const;

/** FLBAS: format index bits 3:0 (and 6:5 above 16 formats), bit 4 = metadata at end of LBA. */
export const Flbas = {
  LOWER_MASK: 0xf,
  META_EXT: 1 << 4,
  HIGHER_MASK: 3 << 5,
} as const;

export const Nmic = { SHARED: 1 << 0 } as const;
export const NsAttr = { WRITE_PROTECTED: 1 << 0 } as const;
export const Mc = { EXTENDED: 1 << 0, SEPARATE: 1 << 1 } as const;

/** DLFEAT: bits 2:0 what a deallocated block reads as, bit 3 Write Zeroes can deallocate. */
export const DlFeat = {
  READ_NOT_REPORTED: 0,
  READ_ZEROES: 1,
  READ_ONES: 2,
  WRITE_ZEROES_DEALLOCATE: 1 << 3,
  GUARD_CRC: 1 << 4,
} as const;

/** Relative performance of an LBA format (RP, bits 1:0 of byte 3). */
export const LbafRp = { BEST: 0, BETTER: 1, GOOD: 2, DEGRADED: 3 } as const;

export interface LbaFormatValue {
  /** Metadata bytes per block. */
  ms: number;
  /** log2 of the block size (9 = 512, 12 = 4096). */
  lbads: number;
  rp: number;
}

/** LBA format index selected by FLBAS (bits 3:0, plus 6:5 as bits 5:4 of the index). */
export function flbasIndex(flbas: number): number {
  return (flbas & Flbas.LOWER_MASK) | ((flbas & Flbas.HIGHER_MASK) >> 1);
}

export function encodeFlbas(index: number, metaExt = false): number {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_LBA_FORMATS) {
    throw new RangeError(`LBA format index ${index} is not 0..63`);
  }
  return (index & 0xf) | ((index >> 4) << 5) | (metaExt ? Flbas.META_EXT : 0);
}

/** The `count` LBA formats of a decoded Identify Namespace (count = NLBAF + 1). */
export function decodeLbaFormats(id: Pick<IdNsFields, 'lbaf' | 'nlbaf'>): LbaFormatValue[] {
  const out: LbaFormatValue[] = [];
  for (let i = 0; i <= id.nlbaf && i < MAX_LBA_FORMATS; i++) {
    const f = LbaFormat.decode(id.lbaf, i * LbaFormat.SIZE);
    out.push({ ms: f.ms, lbads: f.ds, rp: f.rp & 0x3 });
  }
  return out;
}

/** Block size of the format FLBAS selects. */
export function idNsBlockSize(id: Pick<IdNsFields, 'lbaf' | 'flbas'>): number {
  return 2 ** LbaFormat.decode(id.lbaf, flbasIndex(id.flbas) * LbaFormat.SIZE).ds;
}

export interface IdNsOptions {
  /** Namespace size in logical blocks. */
  nsze: number | bigint;
  /** Default nsze. */
  ncap?: number | bigint;
  /** Default nsze (nvmet's choice: it cannot know better). */
  nuse?: number | bigint;
  /** Default 0, plus NsFeat.OPTPERF when any of npwg/npwa/npdg/npda/nows is given. */
  nsfeat?: number;
  /** LBA formats; default one format of `blockSize` (or 512-byte) blocks. NLBAF = length − 1. */
  lbaf?: LbaFormatValue[];
  /** Shorthand for lbaf: [{ ms: 0, lbads: log2(blockSize), rp: 0 }]. */
  blockSize?: number;
  /** Default 0 (format 0, no extended metadata). */
  flbas?: number;
  mc?: number;
  dpc?: number;
  dps?: number;
  /** Default Nmic.SHARED (nvmet: a namespace may be used by many controllers). */
  nmic?: number;
  rescap?: number;
  fpi?: number;
  dlfeat?: number;
  nawun?: number;
  nawupf?: number;
  nacwu?: number;
  nabsn?: number;
  nabo?: number;
  nabspf?: number;
  noiob?: number;
  /** Preferred write granularity / alignment, deallocate granularity / alignment, optimal write size: 0's based, in blocks. */
  npwg?: number;
  npwa?: number;
  npdg?: number;
  npda?: number;
  nows?: number;
  /** Maximum single source range length, blocks (not 0's based). */
  mssrl?: number;
  /** Maximum copy length, blocks. */
  mcl?: number;
  /** Maximum source range count, 0's based (255 = 256 ranges). */
  msrc?: number;
  anagrpid?: number;
  /** Sets NSATTR bit 0. */
  writeProtected?: boolean;
  nvmsetid?: number;
  endgid?: number;
  /** 16 bytes. */
  nguid?: Uint8Array;
  /** 8 bytes. */
  eui64?: Uint8Array;
}

/** Builds the 4096-byte Identify Namespace data (NVM command set) from a plain object. */
export function buildIdNs(o: IdNsOptions): Buffer {
  let lbaf = o.lbaf;
  if (!lbaf) {
    const bs = o.blockSize ?? 512;
    const lbads = Math.log2(bs);
    if (!Number.isInteger(lbads) || lbads < 9)
      throw new RangeError(`block size ${bs} is not a power of two ≥ 512`);
    lbaf = [{ ms: 0, lbads, rp: 0 }];
  }
  if (lbaf.length < 1 || lbaf.length > MAX_LBA_FORMATS) {
    throw new RangeError(`lbaf: 1..${MAX_LBA_FORMATS} formats, got ${lbaf.length}`);
  }
  const flbas = o.flbas ?? 0;
  if (flbasIndex(flbas) >= lbaf.length) {
    throw new RangeError(`flbas selects format ${flbasIndex(flbas)} but only ${lbaf.length} are given`);
  }
  const lbafBytes = Buffer.alloc(IdNs.sizeOf('lbaf'));
  lbaf.forEach((f, i) =>
    LbaFormat.encode({ ms: f.ms, ds: f.lbads, rp: field(f.rp, 1, 0, 'RP') }, lbafBytes, i * LbaFormat.SIZE),
  );
  const optperf = [o.npwg, o.npwa, o.npdg, o.npda, o.nows].some((v) => v !== undefined) ? NsFeat.OPTPERF : 0;
  return IdNs.encode({
    nsze: o.nsze,
    ncap: o.ncap ?? o.nsze,
    nuse: o.nuse ?? o.nsze,
    nsfeat: o.nsfeat ?? optperf,
    nlbaf: lbaf.length - 1,
    flbas,
    mc: o.mc ?? 0,
    dpc: o.dpc ?? 0,
    dps: o.dps ?? 0,
    nmic: o.nmic ?? Nmic.SHARED,
    rescap: o.rescap ?? 0,
    fpi: o.fpi ?? 0,
    dlfeat: o.dlfeat ?? 0,
    nawun: o.nawun ?? 0,
    nawupf: o.nawupf ?? 0,
    nacwu: o.nacwu ?? 0,
    nabsn: o.nabsn ?? 0,
    nabo: o.nabo ?? 0,
    nabspf: o.nabspf ?? 0,
    noiob: o.noiob ?? 0,
    npwg: o.npwg ?? 0,
    npwa: o.npwa ?? 0,
    npdg: o.npdg ?? 0,
    npda: o.npda ?? 0,
    nows: o.nows ?? 0,
    mssrl: o.mssrl ?? 0,
    mcl: o.mcl ?? 0,
    msrc: o.msrc ?? 0,
    anagrpid: o.anagrpid ?? 0,
    nsattr: o.writeProtected ? NsAttr.WRITE_PROTECTED : 0,
    nvmsetid: o.nvmsetid ?? 0,
    endgid: o.endgid ?? 0,
    nguid: o.nguid ?? Buffer.alloc(16),
    eui64: o.eui64 ?? Buffer.alloc(8),
    lbaf: lbafBytes,
  });
}

export function decodeIdNs(buf: Uint8Array): IdNsFields {
  return IdNs.decode(buf);
}

/** The Copy limits of a decoded Identify Namespace, 1's based counts. */
export function idNsCopyLimits(id: Pick<IdNsFields, 'mssrl' | 'mcl' | 'msrc'>): {
  maxRangeBlocks: number;
  maxCopyBlocks: number;
  maxRanges: number;
} {
  return { maxRangeBlocks: id.mssrl, maxCopyBlocks: id.mcl, maxRanges: id.msrc + 1 };
}

/** NSZE as a number (blocks). */
export function idNsSize(id: Pick<IdNsFields, 'nsze'>): number {
  return lbaToNumber(id.nsze);
}

// ---- I/O Command Set Independent Identify Namespace (CNS 08h) ----

/** struct nvme_id_independent_id_ns (libnvme types.h): 4096 bytes. */
export const IdNsCsIndep = defineStruct('nvme_id_independent_id_ns', 4096, [
  { name: 'nsfeat', offset: 0, type: 'u8' },
  { name: 'nmic', offset: 1, type: 'u8' },
  { name: 'rescap', offset: 2, type: 'u8' },
  { name: 'fpi', offset: 3, type: 'u8' },
  { name: 'anagrpid', offset: 4, type: 'u32' },
  { name: 'nsattr', offset: 8, type: 'u8' },
  { name: 'rsvd9', offset: 9, type: 'u8' },
  { name: 'nvmsetid', offset: 10, type: 'u16' },
  { name: 'endgid', offset: 12, type: 'u16' },
  { name: 'nstat', offset: 14, type: 'u8' },
  { name: 'kpios', offset: 15, type: 'u8' },
  { name: 'maxkt', offset: 16, type: 'u16' },
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 2 },
  { name: 'rgrpid', offset: 20, type: 'u32' },
  { name: 'rsvd24', offset: 24, type: 'bytes', length: 4072 },
] as const);

/** NSTAT bit 0: namespace is ready. */
export const Nstat = { NRDY: 1 << 0 } as const;

// ---- I/O Command Set specific structures (CNS 05h/06h with CSI 00h: NVM) ----

/** struct nvme_id_ctrl_nvm (libnvme types.h): NVM command set Identify Controller, 4096 bytes. */
export const IdCtrlNvm = defineStruct('nvme_id_ctrl_nvm', 4096, [
  { name: 'vsl', offset: 0, type: 'u8' },
  { name: 'wzsl', offset: 1, type: 'u8' },
  { name: 'wusl', offset: 2, type: 'u8' },
  { name: 'dmrl', offset: 3, type: 'u8' },
  { name: 'dmrsl', offset: 4, type: 'u32' },
  { name: 'dmsl', offset: 8, type: 'u64' },
  { name: 'kpiocap', offset: 16, type: 'u8' },
  { name: 'wzdsl', offset: 17, type: 'u8' },
  { name: 'aocs', offset: 18, type: 'u16' },
  { name: 'ver', offset: 20, type: 'u32' },
  { name: 'lbamqf', offset: 24, type: 'u8' },
  { name: 'rsvd25', offset: 25, type: 'bytes', length: 4071 },
] as const);

/** struct nvme_nvm_id_ns (libnvme types.h): NVM command set Identify Namespace, 4096 bytes. */
export const NvmIdNs = defineStruct('nvme_nvm_id_ns', 4096, [
  { name: 'lbstm', offset: 0, type: 'u64' },
  { name: 'pic', offset: 8, type: 'u8' },
  { name: 'pifa', offset: 9, type: 'u8' },
  { name: 'rsvd10', offset: 10, type: 'bytes', length: 2 },
  { name: 'elbaf', offset: 12, type: 'bytes', length: 256 },
  { name: 'npdgl', offset: 268, type: 'u32' },
  { name: 'nprg', offset: 272, type: 'u32' },
  { name: 'npra', offset: 276, type: 'u32' },
  { name: 'nors', offset: 280, type: 'u32' },
  { name: 'npdal', offset: 284, type: 'u32' },
  { name: 'lbapss', offset: 288, type: 'u32' },
  { name: 'tlbaag', offset: 292, type: 'u32' },
  { name: 'rsvd296', offset: 296, type: 'bytes', length: 3800 },
] as const);

/** struct nvme_id_iocs: I/O Command Set data structure (CNS 1Ch), 512 64-bit vectors. */
export const IOCS_VECTORS = 512;

/** Encodes the I/O Command Set data structure: vector i is a bit mask of CSIs (bit n = CSI n). */
export function encodeIoCommandSets(vectors: ReadonlyArray<number | bigint>): Buffer {
  if (vectors.length > IOCS_VECTORS)
    throw new RangeError(`at most ${IOCS_VECTORS} vectors, got ${vectors.length}`);
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  vectors.forEach((v, i) => buf.writeBigUInt64LE(BigInt(v), i * 8));
  return buf;
}

// ---- Active Namespace ID list (CNS 02h) ----

export const NS_LIST_MAX = 1024;

/**
 * The active namespace list for an Identify with NSID `after`: NSIDs greater than `after`,
 * ascending, at most 1024, zero filled. Throws on invalid NSIDs (0 or ≥ FFFFFFFEh).
 */
export function encodeNsList(nsids: Iterable<number>, after = 0): Buffer {
  const list = [...nsids]
    .map((n) => {
      if (!Number.isInteger(n) || n < 1 || n >= 0xfffffffe) throw new RangeError(`NSID ${n} is not valid`);
      return n;
    })
    .filter((n) => n > after)
    .sort((a, b) => a - b)
    .slice(0, NS_LIST_MAX);
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  list.forEach((n, i) => buf.writeUInt32LE(n, i * 4));
  return buf;
}

/** NSIDs of a namespace list, up to the first zero entry. */
export function decodeNsList(buf: Uint8Array): number[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= b.length && i < NS_LIST_MAX * 4; i += 4) {
    const n = b.readUInt32LE(i);
    if (n === 0) break;
    out.push(n);
  }
  return out;
}

// ---- Namespace Identification Descriptor list (CNS 03h) ----

/** struct nvme_ns_id_desc header: 4 bytes, then NIDL bytes of NID. */
export const NsIdDescHeader = defineStruct('nvme_ns_id_desc', 4, [
  { name: 'nidt', offset: 0, type: 'u8' },
  { name: 'nidl', offset: 1, type: 'u8' },
  { name: 'rsvd', offset: 2, type: 'u16' },
] as const);

/** Namespace Identifier Type (NIDT). */
export const Nidt = { EUI64: 0x1, NGUID: 0x2, UUID: 0x3, CSI: 0x4 } as const;
/** NIDL each NIDT requires. */
export const NidtLength: Readonly<Record<number, number>> = { 0x1: 8, 0x2: 16, 0x3: 16, 0x4: 1 };

export interface NsIdDescriptor {
  nidt: number;
  nid: Uint8Array;
}

/** Encodes descriptors into the 4096-byte list (zero terminated), checking each NIDL. */
export function encodeNsIdDescs(descs: readonly NsIdDescriptor[]): Buffer {
  const buf = Buffer.alloc(IDENTIFY_DATA_SIZE);
  let off = 0;
  for (const d of descs) {
    const len = NidtLength[d.nidt];
    if (len === undefined) throw new RangeError(`NIDT ${d.nidt} is not known`);
    if (d.nid.byteLength !== len)
      throw new RangeError(`NIDT ${d.nidt} needs ${len} bytes, got ${d.nid.byteLength}`);
    if (off + 4 + len > IDENTIFY_DATA_SIZE - 4)
      throw new RangeError('namespace identification descriptors overflow 4096 bytes');
    NsIdDescHeader.encode({ nidt: d.nidt, nidl: len }, buf, off);
    buf.set(d.nid, off + 4);
    off += 4 + len;
  }
  return buf;
}

/** Decodes descriptors until a zero NIDT; throws RangeError on a descriptor past the buffer. */
export function decodeNsIdDescs(input: Uint8Array): NsIdDescriptor[] {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const out: NsIdDescriptor[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const h = NsIdDescHeader.decode(buf, off);
    if (h.nidt === 0) break;
    if (off + 4 + h.nidl > buf.length) {
      throw new RangeError(
        `namespace identification descriptor at ${off} (NIDL ${h.nidl}) runs past ${buf.length} bytes`,
      );
    }
    out.push({ nidt: h.nidt, nid: Buffer.from(buf.subarray(off + 4, off + 4 + h.nidl)) });
    off += 4 + h.nidl;
  }
  return out;
}
