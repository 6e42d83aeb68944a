// Command opcodes: admin, I/O (NVM command set + ZNS) and the fabrics command types.
// Source: linux-nvme/libnvme src/nvme/types.h (enum nvme_admin_opcode, nvme_io_opcode,
// nvme_fctype, nvme_data_tfr); torvalds/linux include/linux/nvme.h (same values).

/** Admin command set opcodes (SQE byte 0 on queue 0). */
export const AdminOpcode = {
  DELETE_SQ: 0x00,
  CREATE_SQ: 0x01,
  GET_LOG_PAGE: 0x02,
  DELETE_CQ: 0x04,
  CREATE_CQ: 0x05,
  IDENTIFY: 0x06,
  ABORT: 0x08,
  SET_FEATURES: 0x09,
  GET_FEATURES: 0x0a,
  ASYNC_EVENT_REQUEST: 0x0c,
  NS_MGMT: 0x0d,
  FW_COMMIT: 0x10,
  FW_DOWNLOAD: 0x11,
  DEVICE_SELF_TEST: 0x14,
  NS_ATTACH: 0x15,
  KEEP_ALIVE: 0x18,
  DIRECTIVE_SEND: 0x19,
  DIRECTIVE_RECV: 0x1a,
  VIRTUAL_MGMT: 0x1c,
  NVME_MI_SEND: 0x1d,
  NVME_MI_RECV: 0x1e,
  DBBUF: 0x7c,
  FABRICS: 0x7f,
  FORMAT_NVM: 0x80,
  SECURITY_SEND: 0x81,
  SECURITY_RECV: 0x82,
  SANITIZE_NVM: 0x84,
  GET_LBA_STATUS: 0x86,
} as const;
export type AdminOpcode = (typeof AdminOpcode)[keyof typeof AdminOpcode];

/** I/O command opcodes: NVM command set, plus Zoned Namespace commands. */
export const IoOpcode = {
  FLUSH: 0x00,
  WRITE: 0x01,
  READ: 0x02,
  WRITE_UNCOR: 0x04,
  COMPARE: 0x05,
  WRITE_ZEROES: 0x08,
  DSM: 0x09,
  VERIFY: 0x0c,
  RESV_REGISTER: 0x0d,
  RESV_REPORT: 0x0e,
  RESV_ACQUIRE: 0x11,
  IO_MGMT_RECV: 0x12,
  RESV_RELEASE: 0x15,
  CANCEL: 0x18,
  COPY: 0x19,
  IO_MGMT_SEND: 0x1d,
  ZONE_MGMT_SEND: 0x79,
  ZONE_MGMT_RECV: 0x7a,
  ZONE_APPEND: 0x7d,
  FABRICS: 0x7f,
} as const;
export type IoOpcode = (typeof IoOpcode)[keyof typeof IoOpcode];

/** Opcode 0x7F on any queue is a Fabrics command; SQE byte 4 (fctype) says which. */
export const FABRICS_OPCODE = 0x7f;

/** Fabrics command types (fctype, SQE byte 4). */
export const FabricsType = {
  PROPERTY_SET: 0x00,
  CONNECT: 0x01,
  PROPERTY_GET: 0x04,
  AUTH_SEND: 0x05,
  AUTH_RECEIVE: 0x06,
  DISCONNECT: 0x08,
} as const;
export type FabricsType = (typeof FabricsType)[keyof typeof FabricsType];

/** Data transfer direction, bits 1:0 of an opcode (and of a fabrics fctype). */
export const DataTransfer = {
  NONE: 0x0,
  HOST_TO_CTRL: 0x1,
  CTRL_TO_HOST: 0x2,
  BIDIRECTIONAL: 0x3,
} as const;
export type DataTransfer = (typeof DataTransfer)[keyof typeof DataTransfer];

/**
 * Direction of a command's data (nvme_is_write in Linux): bits 1:0 of the opcode, or of the
 * fctype for a Fabrics command.
 */
export function dataTransfer(opcode: number, fctype = 0): DataTransfer {
  return ((opcode === FABRICS_OPCODE ? fctype : opcode) & 0x3) as DataTransfer;
}

function reverse(table: Record<string, number>): Map<number, string> {
  return new Map(Object.entries(table).map(([k, v]) => [v, k]));
}
const adminNames = reverse(AdminOpcode);
const ioNames = reverse(IoOpcode);
const fabricsNames = reverse(FabricsType);

const hex2 = (v: number): string => `0x${v.toString(16).padStart(2, '0')}`;

/** Name of a command for logs and errors: "IDENTIFY", "COPY", "fabrics CONNECT", or the hex opcode. */
export function opcodeName(queueId: number, opcode: number, fctype?: number): string {
  if (opcode === FABRICS_OPCODE) {
    const t = fctype ?? 0;
    return `fabrics ${fabricsNames.get(t) ?? `fctype ${hex2(t)}`}`;
  }
  const name = queueId === 0 ? adminNames.get(opcode) : ioNames.get(opcode);
  return name ?? `${queueId === 0 ? 'admin' : 'I/O'} opcode ${hex2(opcode)}`;
}
