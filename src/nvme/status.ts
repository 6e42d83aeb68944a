// NVMe status: Status Code Type (SCT) + Status Code (SC) + the DNR / More / CRD flags, the
// 16-bit CQE status word, NvmeStatusError, and the one mapping from tsblk's BlockError to an
// NVMe status.
//
// Sources: linux-nvme/libnvme src/nvme/types.h (enum nvme_status_field: every code below);
// torvalds/linux include/linux/nvme.h (the same codes with SCT folded in: NVME_SC_* =
// SCT << 8 | SC, e.g. NVME_SC_CONNECT_INVALID_HOST = 0x184, NVME_SC_DNR = 0x4000) and
// drivers/nvme/target/core.c (blk_to_nvme_status / errno_to_nvme_status: DNR and error_loc).
//
// Layout of the CQE status word (CQE bytes 14–15, "DW3 bits 31:16"):
//   bit 0 P (phase tag) | bits 8:1 SC | bits 11:9 SCT | bits 13:12 CRD | bit 14 M | bit 15 DNR
// Linux keeps the word shifted right by one (a 15-bit "status value"); `statusValue()` gives
// that form, and error messages print its SCT/SC part in hex ("0x183 CMD_SIZE_LIMIT_EXCEEDED").

import { BlockError, ErrorCode, ZoneError } from '../block/errors.js';

export const StatusCodeType = {
  GENERIC: 0x0,
  COMMAND_SPECIFIC: 0x1,
  MEDIA: 0x2,
  PATH: 0x3,
  VENDOR_SPECIFIC: 0x7,
} as const;
export type StatusCodeType = (typeof StatusCodeType)[keyof typeof StatusCodeType];

/** SCT 0: Generic Command Status. */
export const GenericStatus = {
  SUCCESS: 0x00,
  INVALID_OPCODE: 0x01,
  INVALID_FIELD: 0x02,
  CMDID_CONFLICT: 0x03,
  DATA_XFER_ERROR: 0x04,
  POWER_LOSS: 0x05,
  INTERNAL: 0x06,
  ABORT_REQ: 0x07,
  ABORT_QUEUE: 0x08,
  FUSED_FAIL: 0x09,
  FUSED_MISSING: 0x0a,
  INVALID_NS: 0x0b, // Invalid Namespace or Format
  CMD_SEQ_ERROR: 0x0c,
  SGL_INVALID_LAST: 0x0d, // Invalid SGL Segment Descriptor
  SGL_INVALID_COUNT: 0x0e, // Invalid Number of SGL Descriptors
  SGL_INVALID_DATA: 0x0f, // Data SGL Length Invalid
  SGL_INVALID_METADATA: 0x10, // Metadata SGL Length Invalid
  SGL_INVALID_TYPE: 0x11, // SGL Descriptor Type Invalid
  CMB_INVALID_USE: 0x12,
  PRP_INVALID_OFFSET: 0x13,
  ATOMIC_WU_EXCEEDED: 0x14,
  OP_DENIED: 0x15,
  SGL_INVALID_OFFSET: 0x16,
  HOST_ID_INCONSIST: 0x18,
  KA_TIMEOUT_EXPIRED: 0x19,
  KA_TIMEOUT_INVALID: 0x1a,
  ABORTED_PREEMPT_ABORT: 0x1b,
  SANITIZE_FAILED: 0x1c,
  SANITIZE_IN_PROGRESS: 0x1d,
  SGL_INVALID_GRANULARITY: 0x1e,
  CMD_NOT_SUP_CMB_QUEUE: 0x1f,
  NS_WRITE_PROTECTED: 0x20,
  CMD_INTERRUPTED: 0x21,
  TRANSIENT_TR_ERR: 0x22,
  PROHIBITED_BY_CMD_AND_FEAT: 0x23,
  ADMIN_COMMAND_MEDIA_NOT_READY: 0x24,
  INVALID_KEY_TAG: 0x25,
  HOST_DISPERSED_NS_NOT_ENABLED: 0x26,
  HOST_ID_NOT_INITIALIZED: 0x27,
  INCORRECT_KEY: 0x28,
  FDP_DISABLED: 0x29,
  INVALID_PLACEMENT_HANDLE_LIST: 0x2a,
  // Generic Command Status values of the NVM command set:
  LBA_RANGE: 0x80, // LBA Out of Range
  CAP_EXCEEDED: 0x81, // Capacity Exceeded
  NS_NOT_READY: 0x82, // Namespace Not Ready
  RESERVATION_CONFLICT: 0x83,
  FORMAT_IN_PROGRESS: 0x84,
} as const;

/** SCT 1: Command Specific Status of admin commands (any command set). */
export const CommandSpecificStatus = {
  CQ_INVALID: 0x00,
  QID_INVALID: 0x01,
  QUEUE_SIZE: 0x02,
  ABORT_LIMIT: 0x03,
  ABORT_MISSING: 0x04,
  ASYNC_LIMIT: 0x05, // Asynchronous Event Request Limit Exceeded
  FIRMWARE_SLOT: 0x06,
  FIRMWARE_IMAGE: 0x07,
  INVALID_VECTOR: 0x08,
  INVALID_LOG_PAGE: 0x09,
  INVALID_FORMAT: 0x0a,
  FW_NEEDS_CONV_RESET: 0x0b,
  INVALID_QUEUE: 0x0c, // Invalid Queue Deletion
  FEATURE_NOT_SAVEABLE: 0x0d,
  FEATURE_NOT_CHANGEABLE: 0x0e,
  FEATURE_NOT_PER_NS: 0x0f,
  FW_NEEDS_SUBSYS_RESET: 0x10,
  FW_NEEDS_RESET: 0x11,
  FW_NEEDS_MAX_TIME: 0x12,
  FW_ACTIVATE_PROHIBITED: 0x13,
  OVERLAPPING_RANGE: 0x14,
  NS_INSUFFICIENT_CAP: 0x15,
  NS_ID_UNAVAILABLE: 0x16,
  NS_ALREADY_ATTACHED: 0x18,
  NS_IS_PRIVATE: 0x19,
  NS_NOT_ATTACHED: 0x1a,
  THIN_PROV_NOT_SUPP: 0x1b,
  CTRL_LIST_INVALID: 0x1c,
  SELF_TEST_IN_PROGRESS: 0x1d,
  BP_WRITE_PROHIBITED: 0x1e,
  CTRL_ID_INVALID: 0x1f,
  SEC_CTRL_STATE_INVALID: 0x20,
  CTRL_RES_NUM_INVALID: 0x21,
  RES_ID_INVALID: 0x22,
  PMR_SAN_PROHIBITED: 0x23,
  ANA_GROUP_ID_INVALID: 0x24,
  ANA_ATTACH_FAILED: 0x25,
  INSUFFICIENT_CAP: 0x26,
  NS_ATTACHMENT_LIMIT_EXCEEDED: 0x27,
  PROHIBIT_CMD_EXEC_NOT_SUPPORTED: 0x28,
  IOCS_NOT_SUPPORTED: 0x29,
  IOCS_NOT_ENABLED: 0x2a,
  IOCS_COMBINATION_REJECTED: 0x2b,
  INVALID_IOCS: 0x2c,
  ID_UNAVAILABLE: 0x2d,
} as const;

/** SCT 1: Command Specific Status of NVM command set I/O commands (Copy among them). */
export const NvmCommandStatus = {
  BAD_ATTRIBUTES: 0x80, // Conflicting Attributes
  INVALID_PI: 0x81, // Invalid Protection Information
  READ_ONLY: 0x82, // Attempted Write to Read Only Range
  CMD_SIZE_LIMIT_EXCEEDED: 0x83, // Command Size Limit Exceeded (Copy: MSSRL/MCL/MSRC)
  INCOMPATIBLE_NS: 0x85, // Incompatible Namespace or Format (Copy formats 2/3)
  FAST_COPY_NOT_POSSIBLE: 0x86,
  OVERLAPPING_IO_RANGE: 0x87,
  INSUFFICIENT_RESOURCES: 0x89,
} as const;

/** SCT 1: Command Specific Status of Fabrics commands (Linux: NVME_SC_CONNECT_* = 0x18x). */
export const FabricsStatus = {
  CONNECT_FORMAT: 0x80, // Incompatible Format
  CONNECT_CTRL_BUSY: 0x81, // Controller Busy
  CONNECT_INVALID_PARAM: 0x82, // Connect Invalid Parameters
  CONNECT_RESTART_DISC: 0x83, // Connect Restart Discovery
  CONNECT_INVALID_HOST: 0x84, // Connect Invalid Host
  DISCONNECT_INVALID_QTYPE: 0x85,
  DISCOVERY_RESTART: 0x90,
  AUTH_REQUIRED: 0x91,
} as const;

/** SCT 1: Command Specific Status of the Zoned Namespace command set. */
export const ZnsStatus = {
  ZONE_INVALID_OP_REQUEST: 0xb6,
  ZONE_ZRWA_RESOURCES_UNAVAILABLE: 0xb7,
  ZONE_BOUNDARY_ERROR: 0xb8,
  ZONE_FULL: 0xb9,
  ZONE_READ_ONLY: 0xba,
  ZONE_OFFLINE: 0xbb,
  ZONE_INVALID_WRITE: 0xbc,
  ZONE_TOO_MANY_ACTIVE: 0xbd,
  ZONE_TOO_MANY_OPEN: 0xbe,
  ZONE_INVALID_TRANSITION: 0xbf,
} as const;

/** SCT 2: Media and Data Integrity Errors. */
export const MediaStatus = {
  WRITE_FAULT: 0x80,
  READ_ERROR: 0x81, // Unrecovered Read Error
  GUARD_CHECK: 0x82,
  APPTAG_CHECK: 0x83,
  REFTAG_CHECK: 0x84,
  COMPARE_FAILED: 0x85,
  ACCESS_DENIED: 0x86,
  UNWRITTEN_BLOCK: 0x87, // Deallocated or Unwritten Logical Block
  STORAGE_TAG_CHECK: 0x88,
} as const;

/** SCT 3: Path Related Status. */
export const PathStatus = {
  INTERNAL_PATH_ERROR: 0x00,
  ANA_PERSISTENT_LOSS: 0x01,
  ANA_INACCESSIBLE: 0x02,
  ANA_TRANSITION: 0x03,
  CTRL_PATH_ERROR: 0x60,
  HOST_PATH_ERROR: 0x70,
  HOST_ABORTED_CMD: 0x71,
} as const;

/** A completion status. `crd` is the Command Retry Delay index (0–3). */
export interface NvmeStatus {
  readonly sct: number;
  readonly sc: number;
  readonly dnr: boolean;
  readonly more: boolean;
  readonly crd: number;
}

export function nvmeStatus(
  sct: number,
  sc: number,
  flags: { dnr?: boolean; more?: boolean; crd?: number } = {},
): NvmeStatus {
  if (!Number.isInteger(sct) || sct < 0 || sct > 7) throw new RangeError(`SCT ${sct} is not 0..7`);
  if (!Number.isInteger(sc) || sc < 0 || sc > 0xff) throw new RangeError(`SC ${sc} is not 0..0xff`);
  const crd = flags.crd ?? 0;
  if (!Number.isInteger(crd) || crd < 0 || crd > 3) throw new RangeError(`CRD ${crd} is not 0..3`);
  return Object.freeze({ sct, sc, dnr: flags.dnr ?? false, more: flags.more ?? false, crd });
}

/** The same status with Do Not Retry set (or cleared). */
export function withDnr(status: NvmeStatus, dnr = true): NvmeStatus {
  return nvmeStatus(status.sct, status.sc, { dnr, more: status.more, crd: status.crd });
}

function statusTable<T extends Record<string, number>>(
  sct: number,
  codes: T,
): { readonly [K in keyof T]: NvmeStatus } {
  const out: Record<string, NvmeStatus> = {};
  for (const [name, sc] of Object.entries(codes)) out[name] = nvmeStatus(sct, sc);
  return Object.freeze(out) as { readonly [K in keyof T]: NvmeStatus };
}

/**
 * Ready-made statuses (DNR clear) by name: `Status.INVALID_FIELD`, `Status.CMD_SIZE_LIMIT_EXCEEDED`,
 * `Status.CONNECT_INVALID_HOST`, `Status.ZONE_FULL`, `Status.WRITE_FAULT`, ... Use
 * `withDnr(Status.X)` for the usual "do not retry" form.
 */
export const Status = Object.freeze({
  ...statusTable(StatusCodeType.GENERIC, GenericStatus),
  ...statusTable(StatusCodeType.COMMAND_SPECIFIC, CommandSpecificStatus),
  ...statusTable(StatusCodeType.COMMAND_SPECIFIC, NvmCommandStatus),
  ...statusTable(StatusCodeType.COMMAND_SPECIFIC, FabricsStatus),
  ...statusTable(StatusCodeType.COMMAND_SPECIFIC, ZnsStatus),
  ...statusTable(StatusCodeType.MEDIA, MediaStatus),
  ...statusTable(StatusCodeType.PATH, PathStatus),
});
export type StatusName = keyof typeof Status;

export const SUCCESS: NvmeStatus = Status.SUCCESS;

export function isSuccess(s: NvmeStatus): boolean {
  return s.sct === 0 && s.sc === 0;
}

export function sameStatus(a: NvmeStatus, b: NvmeStatus): boolean {
  return a.sct === b.sct && a.sc === b.sc;
}

// ---- the 16-bit CQE status word and Linux's 15-bit status value ----

/** Packs a status and a phase tag into the 16-bit CQE status word (CQE bytes 14–15). */
export function encodeStatusField(status: NvmeStatus, phase: 0 | 1 = 0): number {
  return (
    (phase & 1) |
    ((status.sc & 0xff) << 1) |
    ((status.sct & 0x7) << 9) |
    ((status.crd & 0x3) << 12) |
    (status.more ? 1 << 14 : 0) |
    (status.dnr ? 1 << 15 : 0)
  );
}

export function decodeStatusField(word: number): { status: NvmeStatus; phase: 0 | 1 } {
  return {
    phase: (word & 1) as 0 | 1,
    status: nvmeStatus((word >> 9) & 0x7, (word >> 1) & 0xff, {
      crd: (word >> 12) & 0x3,
      more: (word & (1 << 14)) !== 0,
      dnr: (word & (1 << 15)) !== 0,
    }),
  };
}

/** Linux's form: the status word without the phase bit (NVME_SC_DNR = 0x4000, SCT at bit 8). */
export function statusValue(status: NvmeStatus): number {
  return encodeStatusField(status, 0) >>> 1;
}

export function statusFromValue(value: number): NvmeStatus {
  return decodeStatusField((value << 1) & 0xffff).status;
}

// ---- names ----

type Names = ReadonlyMap<number, string>;
const names = (t: Record<string, number>): Names => new Map(Object.entries(t).map(([k, v]) => [v, k]));
const genericNames = names(GenericStatus);
const cmdNames = names(CommandSpecificStatus);
const nvmNames = names(NvmCommandStatus);
const fabricsNames = names(FabricsStatus);
const znsNames = names(ZnsStatus);
const mediaNames = names(MediaStatus);
const pathNames = names(PathStatus);

/**
 * Name of a status. Command-specific codes 0x80–0x8F mean different things for the NVM
 * command set and for Fabrics commands: pass `commandSet: 'fabrics'` for Connect & co.
 */
export function statusName(
  status: Pick<NvmeStatus, 'sct' | 'sc'>,
  commandSet: 'nvm' | 'fabrics' = 'nvm',
): string {
  const { sct, sc } = status;
  let n: string | undefined;
  if (sct === StatusCodeType.GENERIC) n = genericNames.get(sc);
  else if (sct === StatusCodeType.COMMAND_SPECIFIC) {
    n =
      sc < 0x80
        ? cmdNames.get(sc)
        : commandSet === 'fabrics'
          ? (fabricsNames.get(sc) ?? nvmNames.get(sc) ?? znsNames.get(sc))
          : (nvmNames.get(sc) ?? znsNames.get(sc) ?? fabricsNames.get(sc));
  } else if (sct === StatusCodeType.MEDIA) n = mediaNames.get(sc);
  else if (sct === StatusCodeType.PATH) n = pathNames.get(sc);
  else if (sct === StatusCodeType.VENDOR_SPECIFIC) n = 'VENDOR_SPECIFIC';
  return n ?? 'UNKNOWN';
}

/** "0x183 CMD_SIZE_LIMIT_EXCEEDED": SCT/SC in hex as Linux prints them, plus the name. */
export function formatStatus(status: NvmeStatus, commandSet: 'nvm' | 'fabrics' = 'nvm'): string {
  const code = (status.sct << 8) | status.sc;
  const flags = `${status.dnr ? ' DNR' : ''}${status.more ? ' MORE' : ''}${status.crd ? ` CRD${status.crd}` : ''}`;
  return `0x${code.toString(16)} ${statusName(status, commandSet)}${flags}`;
}

// ---- errors ----

const kNvmeStatusError = Symbol.for('tsblk.NvmeStatusError');

export interface NvmeStatusErrorOptions {
  /** Byte offset in the 64-byte SQE of the field that caused the error (error log "Parameter Error Location"). */
  errorLoc?: number;
  /** The first LBA that failed, when known (error log "LBA"). */
  errorLba?: number;
  /** Selects fabrics names for SCT 1 codes 0x80–0x8F in the message. */
  commandSet?: 'nvm' | 'fabrics';
  cause?: unknown;
}

/** An NVMe command failed with `status`. Message: "0x2 INVALID_FIELD: <detail>". */
export class NvmeStatusError extends Error {
  readonly code = 'ERR_NVME_STATUS';
  readonly status: NvmeStatus;
  readonly errorLoc: number | undefined;
  readonly errorLba: number | undefined;

  constructor(status: NvmeStatus, detail: string, options: NvmeStatusErrorOptions = {}) {
    const code = (status.sct << 8) | status.sc;
    super(
      `0x${code.toString(16)} ${statusName(status, options.commandSet)}: ${detail}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'NvmeStatusError';
    this.status = status;
    this.errorLoc = options.errorLoc;
    this.errorLba = options.errorLba;
    Object.defineProperty(this, kNvmeStatusError, { value: true });
  }

  get sct(): number {
    return this.status.sct;
  }
  get sc(): number {
    return this.status.sc;
  }
  get dnr(): boolean {
    return this.status.dnr;
  }

  static is(err: unknown): err is NvmeStatusError {
    return (
      typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kNvmeStatusError] === true
    );
  }
}

// ---- BlockError → NVMe status ----

/** What the failed block operation was doing; decides between codes that depend on it. */
export type NvmeIoOp =
  | 'read'
  | 'write'
  | 'flush'
  | 'write-zeroes'
  | 'dsm'
  | 'copy'
  | 'copy-read'
  | 'zone-append'
  | 'zone-mgmt'
  | 'admin';

const zoneStatus: Record<ZoneError, NvmeStatus> = {
  [ZoneError.ZONE_BOUNDARY_ERROR]: Status.ZONE_BOUNDARY_ERROR,
  [ZoneError.ZONE_FULL]: Status.ZONE_FULL,
  [ZoneError.ZONE_READ_ONLY]: Status.ZONE_READ_ONLY,
  [ZoneError.ZONE_OFFLINE]: Status.ZONE_OFFLINE,
  [ZoneError.ZONE_INVALID_WRITE]: Status.ZONE_INVALID_WRITE,
  [ZoneError.TOO_MANY_ACTIVE_ZONES]: Status.ZONE_TOO_MANY_ACTIVE,
  [ZoneError.TOO_MANY_OPEN_ZONES]: Status.ZONE_TOO_MANY_OPEN,
  [ZoneError.INVALID_ZONE_STATE_TRANSITION]: Status.ZONE_INVALID_TRANSITION,
};

/**
 * THE mapping from a block-layer failure to an NVMe status (nvmet's blk_to_nvme_status).
 *
 * | BlockError                  | status                                                     |
 * |-----------------------------|------------------------------------------------------------|
 * | any code with `zone` set    | ZNS 0xB8–0xBF (SCT 1), DNR                                  |
 * | ERANGE                      | LBA Out of Range 0x80, DNR                                  |
 * | ENOSPC                      | Capacity Exceeded 0x81, DNR                                 |
 * | EPERM                       | Namespace Is Write Protected 0x20, DNR                      |
 * | EIO                         | read/copy-read: Unrecovered Read Error (SCT 2, 0x81);        |
 * |                             | flush/admin: Internal Error 0x06; else Write Fault (SCT 2, 0x80) |
 * | EOPNOTSUPP                  | read/write/flush: Invalid Field; else Invalid Opcode, DNR   |
 * | E2BIG                       | copy: Command Size Limit Exceeded (SCT 1, 0x83); else Invalid Field, DNR |
 * | EINVAL                      | Invalid Field 0x02, DNR                                     |
 * | ETOOMANYREFS / EOVERFLOW    | Too Many Open / Active Zones (SCT 1, 0xBE / 0xBD), DNR      |
 * | ENODEV                      | Namespace Not Ready 0x82, DNR clear (the host retries)      |
 * | EBADF (device closed)       | Invalid Namespace or Format 0x0B, DNR                       |
 * | ENOMEM (budget exceeded)    | Command Interrupted 0x21, DNR clear (transient)             |
 * | ECANCELED                   | Command Abort Requested 0x07                                |
 * | anything else               | Internal Error 0x06, DNR                                    |
 */
export function statusFromBlockError(err: unknown, op: NvmeIoOp): NvmeStatus {
  if (!BlockError.is(err)) return withDnr(Status.INTERNAL);
  if (err.zone) return withDnr(zoneStatus[err.zone]);
  switch (err.code) {
    case ErrorCode.ERANGE:
      return withDnr(Status.LBA_RANGE);
    case ErrorCode.ENOSPC:
      return withDnr(Status.CAP_EXCEEDED);
    case ErrorCode.EPERM:
      return withDnr(Status.NS_WRITE_PROTECTED);
    case ErrorCode.EIO:
      if (op === 'read' || op === 'copy-read') return withDnr(Status.READ_ERROR);
      if (op === 'flush' || op === 'admin') return withDnr(Status.INTERNAL);
      return withDnr(Status.WRITE_FAULT);
    case ErrorCode.EOPNOTSUPP:
      return withDnr(
        op === 'read' || op === 'write' || op === 'flush' ? Status.INVALID_FIELD : Status.INVALID_OPCODE,
      );
    case ErrorCode.E2BIG:
      return withDnr(
        op === 'copy' || op === 'copy-read' ? Status.CMD_SIZE_LIMIT_EXCEEDED : Status.INVALID_FIELD,
      );
    case ErrorCode.EINVAL:
      return withDnr(Status.INVALID_FIELD);
    case ErrorCode.ETOOMANYREFS:
      return withDnr(Status.ZONE_TOO_MANY_OPEN);
    case ErrorCode.EOVERFLOW:
      return withDnr(Status.ZONE_TOO_MANY_ACTIVE);
    case ErrorCode.ENODEV:
      return Status.NS_NOT_READY;
    case ErrorCode.EBADF:
      return withDnr(Status.INVALID_NS);
    case ErrorCode.ENOMEM:
      return Status.CMD_INTERRUPTED;
    case ErrorCode.ECANCELED:
      return Status.ABORT_REQ;
    default:
      return withDnr(Status.INTERNAL);
  }
}

/** SQE byte offsets used as error locations (struct nvme_rw_command in include/linux/nvme.h). */
const SQE_OPCODE = 0;
const SQE_NSID = 4;
const SQE_SLBA = 40; // cdw10 (Copy: SDLBA)
const SQE_LENGTH = 48; // cdw12 (Copy: NR)

/**
 * statusFromBlockError plus what the error log wants: the SQE field to blame (as nvmet does:
 * SLBA for LBA Out of Range, length for Capacity Exceeded / size limits, opcode for Invalid
 * Opcode, NSID for write protection) and the failing LBA from BlockError.offset.
 */
export function nvmeErrorFromBlockError(
  err: unknown,
  op: NvmeIoOp,
  opts: { blockSize?: number; detail?: string } = {},
): NvmeStatusError {
  const status = statusFromBlockError(err, op);
  const msg = opts.detail ?? (err instanceof Error ? err.message : String(err));
  let errorLoc: number | undefined;
  if (sameStatus(status, Status.LBA_RANGE)) errorLoc = SQE_SLBA;
  else if (sameStatus(status, Status.CAP_EXCEEDED) || sameStatus(status, Status.CMD_SIZE_LIMIT_EXCEEDED)) {
    errorLoc = SQE_LENGTH;
  } else if (sameStatus(status, Status.INVALID_OPCODE)) errorLoc = SQE_OPCODE;
  else if (sameStatus(status, Status.NS_WRITE_PROTECTED) || sameStatus(status, Status.INVALID_NS))
    errorLoc = SQE_NSID;
  const offset = BlockError.is(err) ? err.offset : undefined;
  const errorLba =
    offset !== undefined && opts.blockSize !== undefined && opts.blockSize > 0
      ? Math.floor(offset / opts.blockSize)
      : undefined;
  return new NvmeStatusError(status, msg, { errorLoc, errorLba, cause: err });
}

// ---- NVMe status → BlockError (the host side) ----

const zoneErrorOf: ReadonlyMap<number, ZoneError> = new Map([
  [ZnsStatus.ZONE_BOUNDARY_ERROR, ZoneError.ZONE_BOUNDARY_ERROR],
  [ZnsStatus.ZONE_FULL, ZoneError.ZONE_FULL],
  [ZnsStatus.ZONE_READ_ONLY, ZoneError.ZONE_READ_ONLY],
  [ZnsStatus.ZONE_OFFLINE, ZoneError.ZONE_OFFLINE],
  [ZnsStatus.ZONE_INVALID_WRITE, ZoneError.ZONE_INVALID_WRITE],
  [ZnsStatus.ZONE_TOO_MANY_ACTIVE, ZoneError.TOO_MANY_ACTIVE_ZONES],
  [ZnsStatus.ZONE_TOO_MANY_OPEN, ZoneError.TOO_MANY_OPEN_ZONES],
  [ZnsStatus.ZONE_INVALID_TRANSITION, ZoneError.INVALID_ZONE_STATE_TRANSITION],
]);

/** errno-style code of a failed I/O command's status (see blockErrorFromStatus). */
function blockCodeOf(status: NvmeStatus): ErrorCode {
  const { sct, sc } = status;
  if (sct === StatusCodeType.GENERIC) {
    switch (sc) {
      case GenericStatus.LBA_RANGE:
        return ErrorCode.ERANGE;
      case GenericStatus.CAP_EXCEEDED:
        return ErrorCode.ENOSPC;
      case GenericStatus.INVALID_FIELD:
        return ErrorCode.EINVAL;
      case GenericStatus.INVALID_OPCODE:
        return ErrorCode.EOPNOTSUPP;
      case GenericStatus.NS_WRITE_PROTECTED:
        return ErrorCode.EPERM;
      case GenericStatus.ABORT_REQ:
      case GenericStatus.ABORT_QUEUE:
      case GenericStatus.ABORTED_PREEMPT_ABORT:
        return ErrorCode.ECANCELED;
      case GenericStatus.NS_NOT_READY:
      case GenericStatus.INVALID_NS:
        return ErrorCode.ENODEV;
    }
  } else if (sct === StatusCodeType.COMMAND_SPECIFIC) {
    switch (sc) {
      case CommandSpecificStatus.INVALID_FORMAT:
      case NvmCommandStatus.INCOMPATIBLE_NS:
        return ErrorCode.EINVAL;
      case NvmCommandStatus.READ_ONLY:
        return ErrorCode.EPERM;
      case NvmCommandStatus.CMD_SIZE_LIMIT_EXCEEDED:
        return ErrorCode.E2BIG;
      case ZnsStatus.ZONE_TOO_MANY_OPEN:
        return ErrorCode.ETOOMANYREFS;
      case ZnsStatus.ZONE_TOO_MANY_ACTIVE:
        return ErrorCode.EOVERFLOW;
    }
  } else if (sct === StatusCodeType.PATH && sc === PathStatus.HOST_ABORTED_CMD) return ErrorCode.ECANCELED;
  return ErrorCode.EIO;
}

/**
 * What a host makes of an I/O command that completed with `status` (the inverse of
 * statusFromBlockError; Linux's nvme_error_status). SCT 1 codes are read as NVM command set
 * codes. `context` names the operation and the namespace ("read on <ns>"); the message adds
 * the status as formatStatus prints it.
 *
 * | status                                                       | BlockError             |
 * |--------------------------------------------------------------|------------------------|
 * | LBA Out of Range 0x80                                        | ERANGE                 |
 * | Invalid Field 0x02, Invalid Format (SCT 1 0x0A), Incompatible Namespace or Format (SCT 1 0x85) | EINVAL |
 * | Invalid Opcode 0x01                                          | EOPNOTSUPP             |
 * | Namespace Is Write Protected 0x20, Write to Read Only Range (SCT 1 0x82) | EPERM      |
 * | Capacity Exceeded 0x81                                       | ENOSPC                 |
 * | Command Size Limit Exceeded (SCT 1 0x83, Copy)               | E2BIG                  |
 * | Command Abort Requested 0x07, Aborted SQ Deletion 0x08, Aborted Preempt 0x1B, Host Aborted (SCT 3 0x71) | ECANCELED |
 * | Namespace Not Ready 0x82, Invalid Namespace or Format 0x0B   | ENODEV                 |
 * | ZNS Too Many Open / Active Zones (SCT 1 0xBE / 0xBD)         | ETOOMANYREFS / EOVERFLOW, `zone` set (as zoned devices throw them) |
 * | other ZNS zone statuses 0xB8–0xBF                            | EIO, `zone` set        |
 * | anything else (media errors, internal error, ...)            | EIO                    |
 */
export function blockErrorFromStatus(
  status: NvmeStatus,
  context: string,
  options: { cause?: unknown; offset?: number } = {},
): BlockError {
  const zone = status.sct === StatusCodeType.COMMAND_SPECIFIC ? zoneErrorOf.get(status.sc) : undefined;
  return new BlockError(blockCodeOf(status), `${context}: NVMe status ${formatStatus(status)}`, {
    ...(zone ? { zone } : {}),
    ...(options.offset !== undefined ? { offset: options.offset } : {}),
    ...(options.cause !== undefined ? { cause: options.cause } : {}),
  });
}
