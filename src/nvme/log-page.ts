// Get Log Page (admin opcode 0x02): the command's dwords and the log pages the target serves —
// error information (01h), SMART / health (02h), changed namespace list (04h) and the
// discovery log (70h) — plus the Asynchronous Event Request completion that points at them.
// Source: linux-nvme/libnvme src/nvme/types.h (enum nvme_cmd_get_log_lid, struct
// nvme_error_log_page, nvme_smart_log, nvmf_discovery_log, nvmf_disc_log_entry, enum nvmf_*,
// nvme_ae_type, nvme_ae_info_notice; offsets checked with gcc) and src/nvme/ioctl.h
// (NVME_LOG_CDW10..14 shifts and masks); torvalds/linux include/linux/nvme.h
// (nvme_get_log_page_command, NVME_MAX_CHANGED_NAMESPACES) and drivers/nvme/target/
// discovery.c + admin-cmd.c (how nvmet fills them).

import { CNTLID_DYNAMIC } from './fabrics.js';
import { encodeStatusField, type NvmeStatus } from './status.js';
import { bits, defineStruct, field, lbaToNumber, type StructValue } from '../util/struct.js';

/** Log page identifiers. */
export const LogPageId = {
  SUPPORTED_LOG_PAGES: 0x00,
  ERROR: 0x01,
  SMART: 0x02,
  FW_SLOT: 0x03,
  CHANGED_NS: 0x04,
  CMD_EFFECTS: 0x05,
  DEVICE_SELF_TEST: 0x06,
  TELEMETRY_HOST: 0x07,
  TELEMETRY_CTRL: 0x08,
  ENDURANCE_GROUP: 0x09,
  ANA: 0x0c,
  PERSISTENT_EVENT: 0x0d,
  FID_SUPPORTED_EFFECTS: 0x12,
  DISCOVER: 0x70,
  HOST_DISCOVER: 0x71,
  RESERVATION: 0x80,
  SANITIZE: 0x81,
  ZNS_CHANGED_ZONES: 0xbf,
} as const;

// ---- the Get Log Page command ----

export interface GetLogPageCommand {
  /** CDW10 7:0: Log Page Identifier. */
  readonly lid: number;
  /** CDW10 14:8: Log Specific Parameter. */
  readonly lsp: number;
  /** CDW10 15: Retain Asynchronous Event. */
  readonly rae: boolean;
  /** NUMDU:NUMDL (CDW11 15:0, CDW10 31:16), 0's based dwords. */
  readonly numd: number;
  /** Bytes to return: (numd + 1) × 4. */
  readonly length: number;
  /** CDW11 31:16: Log Specific Identifier. */
  readonly lsi: number;
  /** CDW13:CDW12: Log Page Offset (bytes, or an index when OT is set); saturates past 2^53. */
  readonly lpo: number;
  /** CDW14 6:0: UUID index. */
  readonly uuidIndex: number;
  /** CDW14 23: Offset Type (LPO is an entry index). */
  readonly ot: boolean;
  /** CDW14 31:24: Command Set Identifier. */
  readonly csi: number;
}

export function decodeGetLogPage(sqe: {
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
}): GetLogPageCommand {
  const numd = bits(sqe.cdw11, 15, 0) * 0x10000 + bits(sqe.cdw10, 31, 16);
  return {
    lid: bits(sqe.cdw10, 7, 0),
    lsp: bits(sqe.cdw10, 14, 8),
    rae: bits(sqe.cdw10, 15, 15) === 1,
    numd,
    length: (numd + 1) * 4,
    lsi: bits(sqe.cdw11, 31, 16),
    lpo: lbaToNumber((BigInt(sqe.cdw13 >>> 0) << 32n) | BigInt(sqe.cdw12 >>> 0)),
    uuidIndex: bits(sqe.cdw14, 6, 0),
    ot: bits(sqe.cdw14, 23, 23) === 1,
    csi: bits(sqe.cdw14, 31, 24),
  };
}

/** CDW10–CDW14 of a Get Log Page for `length` bytes (a multiple of 4) at byte offset `lpo`. */
export function encodeGetLogPage(c: {
  lid: number;
  length: number;
  lsp?: number;
  rae?: boolean;
  lsi?: number;
  lpo?: number;
  csi?: number;
  ot?: boolean;
  uuidIndex?: number;
}): { cdw10: number; cdw11: number; cdw12: number; cdw13: number; cdw14: number } {
  if (!Number.isInteger(c.length) || c.length < 4 || c.length % 4 !== 0 || c.length > 2 ** 34) {
    throw new RangeError(`log page length ${c.length} must be a positive multiple of 4 up to 16 GiB`);
  }
  const numd = c.length / 4 - 1;
  const lpo = BigInt(c.lpo ?? 0);
  return {
    cdw10:
      (field(c.lid, 7, 0, 'LID') |
        field(c.lsp ?? 0, 14, 8, 'LSP') |
        field(c.rae ? 1 : 0, 15, 15) |
        field(numd % 0x10000, 31, 16)) >>>
      0,
    cdw11: (field(Math.floor(numd / 0x10000), 15, 0, 'NUMDU') | field(c.lsi ?? 0, 31, 16, 'LSI')) >>> 0,
    cdw12: Number(lpo & 0xffffffffn),
    cdw13: Number(lpo >> 32n),
    cdw14:
      (field(c.uuidIndex ?? 0, 6, 0, 'UUID index') |
        field(c.ot ? 1 : 0, 23, 23) |
        field(c.csi ?? 0, 31, 24, 'CSI')) >>>
      0,
  };
}

/**
 * Returns the `length` bytes of `page` starting at `offset`, zero filled past its end — what a
 * controller returns for a Get Log Page with LPO/NUMD over a fixed page.
 */
export function logPageSlice(page: Uint8Array, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  if (offset < page.byteLength) out.set(page.subarray(offset, Math.min(page.byteLength, offset + length)));
  return out;
}

// ---- Error Information (LID 01h): 64-byte entries ----

/** struct nvme_error_log_page (libnvme types.h): 64 bytes. */
export const ErrorLogEntry = defineStruct('nvme_error_log_page', 64, [
  { name: 'error_count', offset: 0, type: 'u64' },
  { name: 'sqid', offset: 8, type: 'u16' },
  { name: 'cmdid', offset: 10, type: 'u16' },
  { name: 'status_field', offset: 12, type: 'u16' }, // bits 15:1 status, bit 0 phase tag
  { name: 'parm_error_location', offset: 14, type: 'u16' }, // 0xffff = not specific to a field
  { name: 'lba', offset: 16, type: 'u64' },
  { name: 'nsid', offset: 24, type: 'u32' },
  { name: 'vs', offset: 28, type: 'u8' },
  { name: 'trtype', offset: 29, type: 'u8' },
  { name: 'csi', offset: 30, type: 'u8' },
  { name: 'opcode', offset: 31, type: 'u8' },
  { name: 'cs', offset: 32, type: 'u64' },
  { name: 'trtype_spec_info', offset: 40, type: 'u16' },
  { name: 'rsvd42', offset: 42, type: 'bytes', length: 21 },
  { name: 'log_page_version', offset: 63, type: 'u8' },
] as const);
export type ErrorLogEntryFields = StructValue<typeof ErrorLogEntry.fields>;

export interface ErrorInfo {
  /** Unique, increasing; 0 marks an empty entry. */
  errorCount: number | bigint;
  sqid: number;
  cid: number;
  status: NvmeStatus;
  phase?: 0 | 1;
  /** Byte offset in the SQE of the bad field (bits 7:0) and bit (10:8); default 0xffff = none. */
  errorLoc?: number;
  lba?: number | bigint;
  nsid?: number;
  trtype?: number;
  opcode?: number;
  csi?: number;
}

export function encodeErrorLogEntry(e: ErrorInfo, into?: Buffer, at = 0): Buffer {
  return ErrorLogEntry.encode(
    {
      error_count: e.errorCount,
      sqid: e.sqid,
      cmdid: e.cid,
      status_field: encodeStatusField(e.status, e.phase ?? 0),
      parm_error_location: e.errorLoc ?? 0xffff,
      lba: e.lba ?? 0,
      nsid: e.nsid ?? 0,
      trtype: e.trtype ?? 0,
      csi: e.csi ?? 0,
      opcode: e.opcode ?? 0,
    },
    into,
    at,
  );
}

/** The error log page: entries newest first, `length` bytes (zero entries after the last). */
export function encodeErrorLog(entries: readonly ErrorInfo[], length: number): Buffer {
  const buf = Buffer.alloc(length);
  const whole = Math.floor(length / ErrorLogEntry.SIZE);
  for (let i = 0; i < entries.length && i < whole; i++)
    encodeErrorLogEntry(entries[i]!, buf, i * ErrorLogEntry.SIZE);
  if (entries.length > whole && length % ErrorLogEntry.SIZE !== 0) {
    // a host asking for a partial entry gets the prefix of the next one
    const tail = encodeErrorLogEntry(entries[whole]!);
    tail.copy(buf, whole * ErrorLogEntry.SIZE, 0, length % ErrorLogEntry.SIZE);
  }
  return buf;
}

// ---- SMART / Health Information (LID 02h): 512 bytes ----

/** struct nvme_smart_log (libnvme types.h): 512 bytes. 128-bit counters are little-endian byte arrays. */
export const SmartLog = defineStruct('nvme_smart_log', 512, [
  { name: 'critical_warning', offset: 0, type: 'u8' },
  { name: 'temperature', offset: 1, type: 'u16' }, // composite temperature, kelvin (libnvme: u8[2])
  { name: 'avail_spare', offset: 3, type: 'u8' },
  { name: 'spare_thresh', offset: 4, type: 'u8' },
  { name: 'percent_used', offset: 5, type: 'u8' },
  { name: 'endu_grp_crit_warn_sumry', offset: 6, type: 'u8' },
  { name: 'rsvd7', offset: 7, type: 'bytes', length: 25 },
  { name: 'data_units_read', offset: 32, type: 'bytes', length: 16 },
  { name: 'data_units_written', offset: 48, type: 'bytes', length: 16 },
  { name: 'host_reads', offset: 64, type: 'bytes', length: 16 },
  { name: 'host_writes', offset: 80, type: 'bytes', length: 16 },
  { name: 'ctrl_busy_time', offset: 96, type: 'bytes', length: 16 },
  { name: 'power_cycles', offset: 112, type: 'bytes', length: 16 },
  { name: 'power_on_hours', offset: 128, type: 'bytes', length: 16 },
  { name: 'unsafe_shutdowns', offset: 144, type: 'bytes', length: 16 },
  { name: 'media_errors', offset: 160, type: 'bytes', length: 16 },
  { name: 'num_err_log_entries', offset: 176, type: 'bytes', length: 16 },
  { name: 'warning_temp_time', offset: 192, type: 'u32' },
  { name: 'critical_comp_time', offset: 196, type: 'u32' },
  { name: 'temp_sensor', offset: 200, type: 'bytes', length: 16 }, // 8 × u16
  { name: 'thm_temp1_trans_count', offset: 216, type: 'u32' },
  { name: 'thm_temp2_trans_count', offset: 220, type: 'u32' },
  { name: 'thm_temp1_total_time', offset: 224, type: 'u32' },
  { name: 'thm_temp2_total_time', offset: 228, type: 'u32' },
  { name: 'rsvd232', offset: 232, type: 'bytes', length: 280 },
] as const);
export type SmartLogFields = StructValue<typeof SmartLog.fields>;

/** Critical Warning bits. */
export const SmartCritical = {
  SPARE: 1 << 0,
  TEMPERATURE: 1 << 1,
  DEGRADED: 1 << 2,
  READ_ONLY: 1 << 3,
  VOLATILE_MEMORY: 1 << 4,
  PMR_READ_ONLY: 1 << 5,
} as const;

/** A 128-bit little-endian counter. */
export function encodeU128(v: number | bigint): Buffer {
  const n = BigInt(v);
  if (n < 0n || n >= 1n << 128n) throw new RangeError(`${v} is not a u128`);
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(n & 0xffffffffffffffffn, 0);
  b.writeBigUInt64LE(n >> 64n, 8);
  return b;
}

export function decodeU128(b: Uint8Array): bigint {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return (buf.readBigUInt64LE(8) << 64n) | buf.readBigUInt64LE(0);
}

export interface SmartInfo {
  criticalWarning?: number;
  /** Composite temperature in kelvin (default 0 = not reported). */
  temperature?: number;
  /** Default 100 (%). */
  availSpare?: number;
  /** Default 10 (%). */
  spareThresh?: number;
  percentUsed?: number;
  /** In thousands of 512-byte units, rounded up, as the spec defines. */
  dataUnitsRead?: number | bigint;
  dataUnitsWritten?: number | bigint;
  hostReads?: number | bigint;
  hostWrites?: number | bigint;
  ctrlBusyTime?: number | bigint;
  powerCycles?: number | bigint;
  powerOnHours?: number | bigint;
  unsafeShutdowns?: number | bigint;
  mediaErrors?: number | bigint;
  numErrLogEntries?: number | bigint;
}

/** Data units for `bytes` transferred: thousands of 512-byte units, rounded up. */
export function dataUnits(bytes: number): number {
  return Math.ceil(bytes / 512 / 1000);
}

export function buildSmartLog(s: SmartInfo = {}): Buffer {
  return SmartLog.encode({
    critical_warning: s.criticalWarning ?? 0,
    temperature: s.temperature ?? 0,
    avail_spare: s.availSpare ?? 100,
    spare_thresh: s.spareThresh ?? 10,
    percent_used: s.percentUsed ?? 0,
    data_units_read: encodeU128(s.dataUnitsRead ?? 0),
    data_units_written: encodeU128(s.dataUnitsWritten ?? 0),
    host_reads: encodeU128(s.hostReads ?? 0),
    host_writes: encodeU128(s.hostWrites ?? 0),
    ctrl_busy_time: encodeU128(s.ctrlBusyTime ?? 0),
    power_cycles: encodeU128(s.powerCycles ?? 0),
    power_on_hours: encodeU128(s.powerOnHours ?? 0),
    unsafe_shutdowns: encodeU128(s.unsafeShutdowns ?? 0),
    media_errors: encodeU128(s.mediaErrors ?? 0),
    num_err_log_entries: encodeU128(s.numErrLogEntries ?? 0),
  });
}

// ---- Changed Namespace List (LID 04h): 1024 × u32 ----

export const MAX_CHANGED_NAMESPACES = 1024;
export const CHANGED_NS_LOG_SIZE = MAX_CHANGED_NAMESPACES * 4;

/**
 * The changed namespace list: NSIDs ascending, zero filled; more than 1024 changes are
 * reported as a single FFFFFFFFh entry, as the spec (and nvmet) do.
 */
export function encodeChangedNsList(nsids: Iterable<number>): Buffer {
  const list = [...new Set(nsids)].sort((a, b) => a - b);
  const buf = Buffer.alloc(CHANGED_NS_LOG_SIZE);
  if (list.length > MAX_CHANGED_NAMESPACES) {
    buf.writeUInt32LE(0xffffffff, 0);
    return buf;
  }
  list.forEach((n, i) => buf.writeUInt32LE(n, i * 4));
  return buf;
}

/** NSIDs up to the first zero; `[0xffffffff]` means "more than 1024 changed". */
export function decodeChangedNsList(input: Uint8Array): number[] {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= buf.length && out.length < MAX_CHANGED_NAMESPACES; i += 4) {
    const n = buf.readUInt32LE(i);
    if (n === 0) break;
    out.push(n);
  }
  return out;
}

// ---- Discovery Log (LID 70h): 1024-byte header, then 1024-byte entries ----

/** struct nvmf_discovery_log header (libnvme types.h): 1024 bytes, entries follow. */
export const DiscoveryLogHeader = defineStruct('nvmf_discovery_log', 1024, [
  { name: 'genctr', offset: 0, type: 'u64' },
  { name: 'numrec', offset: 8, type: 'u64' },
  { name: 'recfmt', offset: 16, type: 'u16' },
  { name: 'rsvd18', offset: 18, type: 'bytes', length: 1006 },
] as const);

/**
 * struct nvmf_disc_log_entry (libnvme types.h): 1024 bytes. TRSVCID and TRADDR are space
 * padded (SPDK's spdk_strcpy_pad); nvmet pads them with NULs, and decode accepts both.
 * TSAS for TCP: byte 0 is SECTYPE.
 */
export const DiscoveryLogEntry = defineStruct('nvmf_disc_log_entry', 1024, [
  { name: 'trtype', offset: 0, type: 'u8' },
  { name: 'adrfam', offset: 1, type: 'u8' },
  { name: 'subtype', offset: 2, type: 'u8' },
  { name: 'treq', offset: 3, type: 'u8' },
  { name: 'portid', offset: 4, type: 'u16' },
  { name: 'cntlid', offset: 6, type: 'u16' },
  { name: 'asqsz', offset: 8, type: 'u16' },
  { name: 'eflags', offset: 10, type: 'u16' },
  { name: 'rsvd12', offset: 12, type: 'bytes', length: 20 },
  { name: 'trsvcid', offset: 32, type: 'ascii', length: 32 },
  { name: 'rsvd64', offset: 64, type: 'bytes', length: 192 },
  { name: 'subnqn', offset: 256, type: 'ascii', length: 256, pad: 'nul' },
  { name: 'traddr', offset: 512, type: 'ascii', length: 256 },
  { name: 'tsas', offset: 768, type: 'bytes', length: 256 },
] as const);
export type DiscoveryLogEntryFields = StructValue<typeof DiscoveryLogEntry.fields>;

/** Transport types (TRTYPE). */
export const TrType = { RDMA: 0x1, FC: 0x2, TCP: 0x3, LOOP: 0xfe } as const;
/** Address families (ADRFAM). */
export const AdrFam = { PCI: 0x0, IP4: 0x1, IP6: 0x2, IB: 0x3, FC: 0x4, LOOP: 0xfe } as const;
/** Subsystem types (SUBTYPE). */
export const SubType = {
  /** Referral to another discovery subsystem. */
  DISCOVERY_REFERRAL: 0x1,
  NVME: 0x2,
  /** The current discovery subsystem. */
  CURRENT_DISCOVERY: 0x3,
} as const;
/** Transport requirements (TREQ): bits 1:0 secure channel, bit 2 SQ flow control disable supported. */
export const Treq = { NOT_SPECIFIED: 0x0, REQUIRED: 0x1, NOT_REQUIRED: 0x2, DISABLE_SQFLOW: 1 << 2 } as const;
/** Entry flags (EFLAGS). */
export const Eflags = { DUPRETINFO: 1 << 0, EPCSD: 1 << 1, NCC: 1 << 2 } as const;
/** TCP TSAS SECTYPE (byte 0 of TSAS). */
export const TcpSecType = { NONE: 0x0, TLS: 0x1, TLS13: 0x2 } as const;
/** Discovery log LSP bits. */
export const DiscoveryLsp = { EXTDLPE: 1 << 0, PLEO: 1 << 1, ALLSUBE: 1 << 2 } as const;

/** NQN of the well-known discovery subsystem. */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';

export interface DiscoveryEntry {
  /** Default TCP. */
  trtype?: number;
  /** Default IP4. */
  adrfam?: number;
  /** Default NVME. */
  subtype?: number;
  /** Default NOT_SPECIFIED. */
  treq?: number;
  portid: number;
  /** Default CNTLID_DYNAMIC. */
  cntlid?: number;
  /** Admin max SQ size; default 32 (nvmet's NVME_AQ_DEPTH). */
  asqsz?: number;
  eflags?: number;
  trsvcid: string;
  subnqn: string;
  traddr: string;
  /** TCP SECTYPE; default NONE. */
  sectype?: number;
}

export function encodeDiscoveryEntry(e: DiscoveryEntry, into?: Buffer, at = 0): Buffer {
  const tsas = Buffer.alloc(256);
  tsas[0] = field(e.sectype ?? TcpSecType.NONE, 7, 0, 'SECTYPE');
  return DiscoveryLogEntry.encode(
    {
      trtype: e.trtype ?? TrType.TCP,
      adrfam: e.adrfam ?? AdrFam.IP4,
      subtype: e.subtype ?? SubType.NVME,
      treq: e.treq ?? Treq.NOT_SPECIFIED,
      portid: e.portid,
      cntlid: e.cntlid ?? CNTLID_DYNAMIC,
      asqsz: e.asqsz ?? 32,
      eflags: e.eflags ?? 0,
      trsvcid: e.trsvcid,
      subnqn: e.subnqn,
      traddr: e.traddr,
      tsas,
    },
    into,
    at,
  );
}

/**
 * The whole discovery log page: header (genctr, numrec = entries.length, recfmt 0) and one
 * 1024-byte record per entry. Use logPageSlice() for a host's offset/length.
 */
export function encodeDiscoveryLog(genctr: number | bigint, entries: readonly DiscoveryEntry[]): Buffer {
  const buf = Buffer.alloc(DiscoveryLogHeader.SIZE + entries.length * DiscoveryLogEntry.SIZE);
  DiscoveryLogHeader.encode({ genctr, numrec: entries.length, recfmt: 0 }, buf, 0);
  entries.forEach((e, i) =>
    encodeDiscoveryEntry(e, buf, DiscoveryLogHeader.SIZE + i * DiscoveryLogEntry.SIZE),
  );
  return buf;
}

export interface DecodedDiscoveryLog {
  genctr: bigint;
  numrec: number;
  recfmt: number;
  /** The entries present in the buffer (at most numrec). */
  entries: DiscoveryLogEntryFields[];
}

export function decodeDiscoveryLog(buf: Uint8Array): DecodedDiscoveryLog {
  const h = DiscoveryLogHeader.decode(buf);
  const numrec = lbaToNumber(h.numrec);
  const entries: DiscoveryLogEntryFields[] = [];
  for (let i = 0; i < numrec; i++) {
    const at = DiscoveryLogHeader.SIZE + i * DiscoveryLogEntry.SIZE;
    if (at + DiscoveryLogEntry.SIZE > buf.byteLength) break;
    entries.push(DiscoveryLogEntry.decode(buf, at));
  }
  return { genctr: h.genctr, numrec, recfmt: h.recfmt, entries };
}

// ---- Asynchronous Event Request completion (DW0) ----

/** Asynchronous event types (DW0 bits 2:0). */
export const AsyncEventType = {
  ERROR: 0x0,
  SMART: 0x1,
  NOTICE: 0x2,
  IMMEDIATE: 0x3,
  ONESHOT: 0x4,
  CSS: 0x6,
  VENDOR: 0x7,
} as const;

/** Notice event information (DW0 bits 15:8 when the type is NOTICE). */
export const AsyncEventNotice = {
  NS_CHANGED: 0x00,
  FW_ACT_STARTING: 0x01,
  TELEMETRY: 0x02,
  ANA: 0x03,
  DISC_CHANGED: 0xf0,
} as const;

/** DW0 of an AER completion: type 2:0, info 15:8, log page 23:16 (nvmet_add_async_event). */
export function encodeAsyncEvent(e: { type: number; info: number; lid: number }): number {
  return (
    (field(e.type, 2, 0, 'event type') | field(e.info, 15, 8, 'event info') | field(e.lid, 23, 16, 'LID')) >>>
    0
  );
}

export function decodeAsyncEvent(dw0: number): { type: number; info: number; lid: number } {
  return { type: bits(dw0, 2, 0), info: bits(dw0, 15, 8), lid: bits(dw0, 23, 16) };
}

/** The AER completion DW0 for "namespace attribute changed, read the changed namespace list". */
export const NS_CHANGED_EVENT = encodeAsyncEvent({
  type: AsyncEventType.NOTICE,
  info: AsyncEventNotice.NS_CHANGED,
  lid: LogPageId.CHANGED_NS,
});
