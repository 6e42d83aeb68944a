// Set Features (admin 0x09) / Get Features (admin 0x0A): feature identifiers, the command
// dwords (FID, SV, SEL) and the value layouts of the features the target implements.
// Source: linux-nvme/libnvme src/nvme/types.h (enum nvme_features_id, enum nvme_feat shifts
// and masks, enum nvme_get_features_sel, enum nvme_features_async_event_config_flags, struct
// nvme_feat_host_behavior) and src/nvme/ioctl.h (NVME_{GET,SET}_FEATURES_CDW10_*); QEMU
// include/block/nvme.h (NvmeHostBehaviorSupport: CDFE is the u16 at byte 4, and hw/nvme/ctrl.c
// requires CDFE bits 2/3 before accepting Copy formats 2/3). nvmet's handling is in
// torvalds/linux drivers/nvme/target/admin-cmd.c.

import { bits, defineStruct, field, type StructValue } from '../util/struct.js';

/** Feature identifiers (FID). */
export const FeatureId = {
  ARBITRATION: 0x01,
  POWER_MGMT: 0x02,
  LBA_RANGE: 0x03,
  TEMP_THRESH: 0x04,
  ERR_RECOVERY: 0x05,
  VOLATILE_WC: 0x06,
  NUM_QUEUES: 0x07,
  IRQ_COALESCE: 0x08,
  IRQ_CONFIG: 0x09,
  WRITE_ATOMIC: 0x0a,
  ASYNC_EVENT: 0x0b,
  AUTO_PST: 0x0c,
  HOST_MEM_BUF: 0x0d,
  TIMESTAMP: 0x0e,
  KATO: 0x0f,
  HCTM: 0x10,
  NOPSC: 0x11,
  RRL: 0x12,
  PLM_CONFIG: 0x13,
  PLM_WINDOW: 0x14,
  LBA_STS_INTERVAL: 0x15,
  HOST_BEHAVIOR: 0x16,
  SANITIZE: 0x17,
  ENDURANCE_EVT_CFG: 0x18,
  IOCS_PROFILE: 0x19,
  SPINUP_CONTROL: 0x1a,
  SW_PROGRESS: 0x80,
  HOST_ID: 0x81,
  RESV_MASK: 0x82,
  RESV_PERSIST: 0x83,
  WRITE_PROTECT: 0x84,
} as const;

/** Get Features SEL (CDW10 10:8). */
export const FeatureSelect = {
  CURRENT: 0x0,
  DEFAULT: 0x1,
  SAVED: 0x2,
  SUPPORTED_CAPABILITIES: 0x3,
} as const;

/** DW0 bits of a Get Features with SEL = SUPPORTED_CAPABILITIES. */
export const FeatureCapability = {
  SAVEABLE: 1 << 0,
  NS_SPECIFIC: 1 << 1,
  CHANGEABLE: 1 << 2,
} as const;

// ---- the commands ----

export interface SetFeaturesCommand {
  /** CDW10 7:0 */
  readonly fid: number;
  /** CDW10 31: Save. */
  readonly sv: boolean;
  /** Feature specific value. */
  readonly cdw11: number;
  readonly cdw12: number;
  readonly cdw13: number;
  /** CDW14 6:0 */
  readonly uuidIndex: number;
}

export interface GetFeaturesCommand {
  readonly fid: number;
  /** CDW10 10:8: Select. */
  readonly sel: number;
  readonly cdw11: number;
  readonly uuidIndex: number;
}

type Dwords = { cdw10: number; cdw11: number; cdw12: number; cdw13: number; cdw14: number };

export function decodeSetFeatures(sqe: Dwords): SetFeaturesCommand {
  return {
    fid: bits(sqe.cdw10, 7, 0),
    sv: bits(sqe.cdw10, 31, 31) === 1,
    cdw11: sqe.cdw11 >>> 0,
    cdw12: sqe.cdw12 >>> 0,
    cdw13: sqe.cdw13 >>> 0,
    uuidIndex: bits(sqe.cdw14, 6, 0),
  };
}

export function decodeGetFeatures(sqe: Dwords): GetFeaturesCommand {
  return {
    fid: bits(sqe.cdw10, 7, 0),
    sel: bits(sqe.cdw10, 10, 8),
    cdw11: sqe.cdw11 >>> 0,
    uuidIndex: bits(sqe.cdw14, 6, 0),
  };
}

export function encodeSetFeaturesCdw10(fid: number, sv = false): number {
  return (field(fid, 7, 0, 'FID') | field(sv ? 1 : 0, 31, 31)) >>> 0;
}

export function encodeGetFeaturesCdw10(fid: number, sel: number = FeatureSelect.CURRENT): number {
  return (field(fid, 7, 0, 'FID') | field(sel, 10, 8, 'SEL')) >>> 0;
}

// ---- Number of Queues (07h): CDW11 and completion DW0 share the layout ----

/** NSQR/NCQR (requested) or NSQA/NCQA (allocated), 0's based: 15:0 submission, 31:16 completion. */
export interface NumQueues {
  /** Number of I/O submission queues, 0's based. */
  readonly nsq: number;
  /** Number of I/O completion queues, 0's based. */
  readonly ncq: number;
}

export function decodeNumQueues(dw: number): NumQueues {
  return { nsq: bits(dw, 15, 0), ncq: bits(dw, 31, 16) };
}

export function encodeNumQueues(q: NumQueues): number {
  return (field(q.nsq, 15, 0, 'NSQ') | field(q.ncq, 31, 16, 'NCQ')) >>> 0;
}

// ---- Arbitration (01h) ----

export interface Arbitration {
  /** Arbitration burst, 2:0 (7 = no limit). */
  readonly ab: number;
  readonly lpw: number;
  readonly mpw: number;
  readonly hpw: number;
}

export function decodeArbitration(dw: number): Arbitration {
  return { ab: bits(dw, 2, 0), lpw: bits(dw, 15, 8), mpw: bits(dw, 23, 16), hpw: bits(dw, 31, 24) };
}

export function encodeArbitration(a: Arbitration): number {
  return (
    (field(a.ab, 2, 0, 'AB') |
      field(a.lpw, 15, 8, 'LPW') |
      field(a.mpw, 23, 16, 'MPW') |
      field(a.hpw, 31, 24, 'HPW')) >>>
    0
  );
}

// ---- Power Management (02h) ----

export function decodePowerMgmt(dw: number): { ps: number; wh: number } {
  return { ps: bits(dw, 4, 0), wh: bits(dw, 7, 5) };
}

export function encodePowerMgmt(p: { ps: number; wh?: number }): number {
  return (field(p.ps, 4, 0, 'PS') | field(p.wh ?? 0, 7, 5, 'WH')) >>> 0;
}

// ---- Temperature Threshold (04h) ----

export const ThresholdType = { OVER: 0x0, UNDER: 0x1 } as const;

export interface TempThreshold {
  /** Threshold in kelvin, 15:0. */
  readonly tmpth: number;
  /** Sensor select, 19:16 (0 = composite). */
  readonly tmpsel: number;
  /** Threshold type select, 21:20. */
  readonly thsel: number;
}

export function decodeTempThreshold(dw: number): TempThreshold {
  return { tmpth: bits(dw, 15, 0), tmpsel: bits(dw, 19, 16), thsel: bits(dw, 21, 20) };
}

export function encodeTempThreshold(t: TempThreshold): number {
  return (
    (field(t.tmpth, 15, 0, 'TMPTH') | field(t.tmpsel, 19, 16, 'TMPSEL') | field(t.thsel, 21, 20, 'THSEL')) >>>
    0
  );
}

// ---- Error Recovery (05h) ----

export function decodeErrorRecovery(dw: number): { tler: number; dulbe: boolean } {
  return { tler: bits(dw, 15, 0), dulbe: bits(dw, 16, 16) === 1 };
}

export function encodeErrorRecovery(e: { tler: number; dulbe?: boolean }): number {
  return (field(e.tler, 15, 0, 'TLER') | field(e.dulbe ? 1 : 0, 16, 16)) >>> 0;
}

// ---- Volatile Write Cache (06h) ----

export function decodeVolatileWriteCache(dw: number): { wce: boolean } {
  return { wce: bits(dw, 0, 0) === 1 };
}

export function encodeVolatileWriteCache(wce: boolean): number {
  return wce ? 1 : 0;
}

// ---- Interrupt Coalescing (08h) ----

export function decodeIrqCoalesce(dw: number): { thr: number; time: number } {
  return { thr: bits(dw, 7, 0), time: bits(dw, 15, 8) };
}

export function encodeIrqCoalesce(c: { thr: number; time: number }): number {
  return (field(c.thr, 7, 0, 'THR') | field(c.time, 15, 8, 'TIME')) >>> 0;
}

// ---- Asynchronous Event Configuration (0Bh) ----

/** Asynchronous Event Configuration bits (CDW11). */
export const AsyncEventConfig = {
  SMART_SPARE: 1 << 0,
  SMART_TEMPERATURE: 1 << 1,
  SMART_DEGRADED: 1 << 2,
  SMART_READ_ONLY: 1 << 3,
  SMART_VOLATILE_BACKUP: 1 << 4,
  SMART_PMR_READ_ONLY: 1 << 5,
  /** Namespace Attribute Notices: the changed-namespace event. */
  NS_ATTR: 1 << 8,
  FW_ACTIVATION: 1 << 9,
  TELEMETRY_LOG: 1 << 10,
  ANA_CHANGE: 1 << 11,
  PL_EVENT: 1 << 12,
  LBA_STATUS: 1 << 13,
  EG_EVENT: 1 << 14,
  DISCOVERY_CHANGE: 0x80000000,
} as const;

export interface AsyncEventConfigValue {
  /** SMART / health critical warnings, 7:0. */
  readonly smart: number;
  readonly nsAttr: boolean;
  readonly fwActivation: boolean;
  readonly telemetry: boolean;
  readonly anaChange: boolean;
  readonly discoveryChange: boolean;
}

export function decodeAsyncEventConfig(dw: number): AsyncEventConfigValue {
  return {
    smart: bits(dw, 7, 0),
    nsAttr: bits(dw, 8, 8) === 1,
    fwActivation: bits(dw, 9, 9) === 1,
    telemetry: bits(dw, 10, 10) === 1,
    anaChange: bits(dw, 11, 11) === 1,
    discoveryChange: bits(dw, 31, 31) === 1,
  };
}

// ---- Keep Alive Timer (0Fh): CDW11 is KATO in milliseconds ----

export function decodeKeepAliveTimer(dw: number): { katoMs: number } {
  return { katoMs: dw >>> 0 };
}

// ---- Write Protection (84h) ----

export const WriteProtectState = {
  NO_WRITE_PROTECT: 0x0,
  WRITE_PROTECT: 0x1,
  WRITE_PROTECT_UNTIL_POWER_CYCLE: 0x2,
  WRITE_PROTECT_PERMANENT: 0x3,
} as const;

// ---- Host Behavior Support (16h): a 512-byte data structure ----

/**
 * struct nvme_feat_host_behavior (libnvme types.h; QEMU NvmeHostBehaviorSupport): 512 bytes.
 * CDFE (Copy Descriptor Formats Enable) is the u16 at byte 4: bit n enables source range
 * descriptor format n; formats 2 and 3 (cross-namespace) must be enabled here before use.
 */
export const HostBehavior = defineStruct('nvme_feat_host_behavior', 512, [
  { name: 'acre', offset: 0, type: 'u8' }, // Advanced Command Retry Enable
  { name: 'etdas', offset: 1, type: 'u8' }, // Extended Telemetry Data Area 4 Supported
  { name: 'lbafee', offset: 2, type: 'u8' }, // LBA Format Extension Enable
  { name: 'hdisns', offset: 3, type: 'u8' }, // Host Dispersed Namespace Support
  { name: 'cdfe', offset: 4, type: 'u16' }, // Copy Descriptor Formats Enable
  { name: 'rsvd6', offset: 6, type: 'bytes', length: 506 },
] as const);
export type HostBehaviorFields = StructValue<typeof HostBehavior.fields>;

/** CDFE bits: formats 0 and 1 need no enabling; 2 and 3 do. */
export const Cdfe = {
  FORMAT_2: 1 << 2,
  FORMAT_3: 1 << 3,
} as const;

export interface HostBehaviorValue {
  acre: boolean;
  etdas: boolean;
  lbafee: boolean;
  hdisns: boolean;
  cdfe: number;
}

export function encodeHostBehavior(h: Partial<HostBehaviorValue>): Buffer {
  return HostBehavior.encode({
    acre: h.acre ? 1 : 0,
    etdas: h.etdas ? 1 : 0,
    lbafee: h.lbafee ? 1 : 0,
    hdisns: h.hdisns ? 1 : 0,
    cdfe: h.cdfe ?? 0,
  });
}

/** Decodes the Set Features data; throws RangeError when fewer than 512 bytes arrived. */
export function decodeHostBehavior(buf: Uint8Array): HostBehaviorValue {
  const d = HostBehavior.decode(buf);
  return {
    acre: d.acre !== 0,
    etdas: d.etdas !== 0,
    lbafee: d.lbafee !== 0,
    hdisns: d.hdisns !== 0,
    cdfe: d.cdfe,
  };
}

/** Bytes of data a Set/Get Features for `fid` moves (0 for dword-only features). */
export function featureDataLength(fid: number): number {
  switch (fid) {
    case FeatureId.HOST_BEHAVIOR:
      return HostBehavior.SIZE;
    case FeatureId.HOST_ID:
      return 16; // 128-bit host identifier (CDW11 bit 0 EXHID)
    case FeatureId.AUTO_PST:
      return 256;
    case FeatureId.TIMESTAMP:
      return 8;
    default:
      return 0;
  }
}
