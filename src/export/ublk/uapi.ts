// The ublk uAPI (Linux include/uapi/linux/ublk_cmd.h): command numbers, feature flags,
// request ops and the structures, as field tables. Offsets are checked against gcc offsetof()
// on the kernel's header in uapi.test.ts.
//
// ublk structures are native-endian; tsblk runs on little-endian hosts only (x86-64, arm64),
// and the tables are little-endian (src/util/struct.ts, shared with src/nvme for its checked tables: u64
// fields decode to bigint). Signed fields (ublksrv_pid, result) are stored as u32; use
// `toS32` / `fromS32`.

import { defineStruct, type StructValue } from '../../util/struct.js';

// ---- ioctl encoding (asm-generic/ioctl.h) ----

const IOC_WRITE = 1;
const IOC_READ = 2;

function ioc(dir: number, type: string, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
}
/** _IOR(type, nr, size) */
export const ior = (nr: number, size: number): number => ioc(IOC_READ, 'u', nr, size);
/** _IOWR(type, nr, size) */
export const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, 'u', nr, size);
/** The command number inside an encoded cmd_op (_IOC_NR). */
export const iocNr = (cmdOp: number): number => cmdOp & 0xff;

// ---- sizes ----

export const CTRL_CMD_SIZE = 32;
export const IO_CMD_SIZE = 16;
export const IO_DESC_SIZE = 24;

// ---- control commands (/dev/ublk-control), ioctl-encoded as the header defines them ----

/** Legacy numbers (the `nr` of each encoded command). */
export const UBLK_CMD = {
  GET_QUEUE_AFFINITY: 0x01,
  GET_DEV_INFO: 0x02,
  ADD_DEV: 0x04,
  DEL_DEV: 0x05,
  START_DEV: 0x06,
  STOP_DEV: 0x07,
  SET_PARAMS: 0x08,
  GET_PARAMS: 0x09,
  START_USER_RECOVERY: 0x10,
  END_USER_RECOVERY: 0x11,
  GET_DEV_INFO2: 0x12,
  GET_FEATURES: 0x13,
  DEL_DEV_ASYNC: 0x14,
  UPDATE_SIZE: 0x15,
  QUIESCE_DEV: 0x16,
  TRY_STOP_DEV: 0x17,
} as const;

/** UBLK_U_CMD_*: what goes into the SQE's cmd_op. Reads are _IOR, the rest _IOWR (as the header). */
export const UBLK_U_CMD = {
  GET_QUEUE_AFFINITY: ior(UBLK_CMD.GET_QUEUE_AFFINITY, CTRL_CMD_SIZE),
  GET_DEV_INFO: ior(UBLK_CMD.GET_DEV_INFO, CTRL_CMD_SIZE),
  ADD_DEV: iowr(UBLK_CMD.ADD_DEV, CTRL_CMD_SIZE),
  DEL_DEV: iowr(UBLK_CMD.DEL_DEV, CTRL_CMD_SIZE),
  START_DEV: iowr(UBLK_CMD.START_DEV, CTRL_CMD_SIZE),
  STOP_DEV: iowr(UBLK_CMD.STOP_DEV, CTRL_CMD_SIZE),
  SET_PARAMS: iowr(UBLK_CMD.SET_PARAMS, CTRL_CMD_SIZE),
  GET_PARAMS: ior(UBLK_CMD.GET_PARAMS, CTRL_CMD_SIZE),
  START_USER_RECOVERY: iowr(UBLK_CMD.START_USER_RECOVERY, CTRL_CMD_SIZE),
  END_USER_RECOVERY: iowr(UBLK_CMD.END_USER_RECOVERY, CTRL_CMD_SIZE),
  GET_DEV_INFO2: ior(UBLK_CMD.GET_DEV_INFO2, CTRL_CMD_SIZE),
  GET_FEATURES: ior(UBLK_CMD.GET_FEATURES, CTRL_CMD_SIZE),
  DEL_DEV_ASYNC: ior(UBLK_CMD.DEL_DEV_ASYNC, CTRL_CMD_SIZE),
  UPDATE_SIZE: iowr(UBLK_CMD.UPDATE_SIZE, CTRL_CMD_SIZE),
  QUIESCE_DEV: iowr(UBLK_CMD.QUIESCE_DEV, CTRL_CMD_SIZE),
  TRY_STOP_DEV: iowr(UBLK_CMD.TRY_STOP_DEV, CTRL_CMD_SIZE),
} as const;

// ---- I/O commands (/dev/ublkcN) ----

export const UBLK_IO = {
  FETCH_REQ: 0x20,
  COMMIT_AND_FETCH_REQ: 0x21,
  NEED_GET_DATA: 0x22,
  REGISTER_IO_BUF: 0x23,
  UNREGISTER_IO_BUF: 0x24,
} as const;

export const UBLK_U_IO = {
  FETCH_REQ: iowr(UBLK_IO.FETCH_REQ, IO_CMD_SIZE),
  COMMIT_AND_FETCH_REQ: iowr(UBLK_IO.COMMIT_AND_FETCH_REQ, IO_CMD_SIZE),
  NEED_GET_DATA: iowr(UBLK_IO.NEED_GET_DATA, IO_CMD_SIZE),
  REGISTER_IO_BUF: iowr(UBLK_IO.REGISTER_IO_BUF, IO_CMD_SIZE),
  UNREGISTER_IO_BUF: iowr(UBLK_IO.UNREGISTER_IO_BUF, IO_CMD_SIZE),
} as const;

/** The res of a FETCH / COMMIT_AND_FETCH completion. Only ABORT means "do not fetch again". */
export const UBLK_IO_RES = {
  OK: 0,
  NEED_GET_DATA: 1,
  ABORT: -19, // -ENODEV
} as const;

// ---- limits and the user-copy offset (UBLK_F_USER_COPY: pread/pwrite on /dev/ublkcN) ----

export const UBLK_MAX_QUEUE_DEPTH = 4096;
export const UBLK_MAX_NR_QUEUES = 4096;
export const UBLKSRV_CMD_BUF_OFFSET = 0;
export const UBLKSRV_IO_BUF_OFFSET = 0x80000000;
export const UBLK_IO_BUF_BITS = 25;
export const UBLK_TAG_OFF = UBLK_IO_BUF_BITS;
export const UBLK_TAG_BITS = 16;
export const UBLK_QID_OFF = UBLK_TAG_OFF + UBLK_TAG_BITS;
export const UBLK_QID_BITS = 12;
/** Largest single request buffer: 32 MiB. */
export const UBLK_IO_BUF_MAX_BYTES = 2 ** UBLK_IO_BUF_BITS;
/** Queue q's descriptors are mapped at q × this (round_up(4096 × 24, page), ublk_ch_mmap). */
export const UBLK_MAX_DESC_AREA = Math.ceil((UBLK_MAX_QUEUE_DEPTH * IO_DESC_SIZE) / 4096) * 4096;

/**
 * Where request (qid, tag)'s data is, byte `off` of it, for pread/pwrite on /dev/ublkcN.
 * A JavaScript number: exact while qid < 4095 (the offset stays below 2^53).
 */
export function userCopyOffset(qid: number, tag: number, off = 0): number {
  const pos = UBLKSRV_IO_BUF_OFFSET + qid * 2 ** UBLK_QID_OFF + tag * 2 ** UBLK_TAG_OFF + off;
  if (!Number.isSafeInteger(pos)) throw new RangeError(`ublk user-copy offset of queue ${qid} is not exact`);
  return pos;
}

/** Bytes of queue descriptors mmapped for a queue of `depth` tags (ublk_queue_cmd_buf_size). */
export function descAreaBytes(depth: number, pageSize = 4096): number {
  return Math.ceil((depth * IO_DESC_SIZE) / pageSize) * pageSize;
}

// ---- feature flags (ublksrv_ctrl_dev_info.flags, GET_FEATURES) ----

export const UBLK_F = {
  SUPPORT_ZERO_COPY: 1n << 0n,
  URING_CMD_COMP_IN_TASK: 1n << 1n,
  NEED_GET_DATA: 1n << 2n,
  USER_RECOVERY: 1n << 3n,
  USER_RECOVERY_REISSUE: 1n << 4n,
  UNPRIVILEGED_DEV: 1n << 5n,
  CMD_IOCTL_ENCODE: 1n << 6n,
  USER_COPY: 1n << 7n,
  ZONED: 1n << 8n,
  USER_RECOVERY_FAIL_IO: 1n << 9n,
  UPDATE_SIZE: 1n << 10n,
  AUTO_BUF_REG: 1n << 11n,
  QUIESCE: 1n << 12n,
  PER_IO_DAEMON: 1n << 13n,
  BUF_REG_OFF_DAEMON: 1n << 14n,
  BATCH_IO: 1n << 15n,
  INTEGRITY: 1n << 16n,
  SAFE_STOP_DEV: 1n << 17n,
  NO_AUTO_PART_SCAN: 1n << 18n,
  SHMEM_ZC: 1n << 19n,
} as const;
export type UblkFeature = keyof typeof UBLK_F;

/** The names of the flags set in `flags`, low bit first; unknown bits as `bit N`. */
export function featureNames(flags: bigint): string[] {
  const names: string[] = [];
  for (let bit = 0n; bit < 64n; bit++) {
    const v = 1n << bit;
    if ((flags & v) === 0n) continue;
    const name = (Object.keys(UBLK_F) as UblkFeature[]).find((k) => UBLK_F[k] === v);
    names.push(name ?? `bit ${bit}`);
  }
  return names;
}

/** Device states (ublksrv_ctrl_dev_info.state). */
export const UBLK_S_DEV = { DEAD: 0, LIVE: 1, QUIESCED: 2, FAIL_IO: 3 } as const;

// ---- requests (ublksrv_io_desc.op_flags) ----

export const UBLK_IO_OP = {
  READ: 0,
  WRITE: 1,
  FLUSH: 2,
  DISCARD: 3,
  WRITE_SAME: 4,
  WRITE_ZEROES: 5,
  ZONE_OPEN: 10,
  ZONE_CLOSE: 11,
  ZONE_FINISH: 12,
  ZONE_APPEND: 13,
  ZONE_RESET_ALL: 14,
  ZONE_RESET: 15,
  REPORT_ZONES: 18,
} as const;

/** Flags in op_flags (bits 8..31; the op is bits 0..7). */
export const UBLK_IO_F = {
  FAILFAST_DEV: 1 << 8,
  FAILFAST_TRANSPORT: 1 << 9,
  FAILFAST_DRIVER: 1 << 10,
  META: 1 << 11,
  FUA: 1 << 13,
  NOUNMAP: 1 << 15,
  SWAP: 1 << 16,
  NEED_REG_BUF: 1 << 17,
  INTEGRITY: 1 << 18,
  SHMEM_ZC: 1 << 19,
} as const;

export const ioOp = (opFlags: number): number => opFlags & 0xff;

// ---- parameters (SET_PARAMS / GET_PARAMS) ----

export const UBLK_ATTR = {
  READ_ONLY: 1 << 0,
  ROTATIONAL: 1 << 1,
  VOLATILE_CACHE: 1 << 2,
  FUA: 1 << 3,
} as const;

export const UBLK_PARAM_TYPE = {
  BASIC: 1 << 0,
  DISCARD: 1 << 1,
  DEVT: 1 << 2,
  ZONED: 1 << 3,
  DMA_ALIGN: 1 << 4,
  SEGMENT: 1 << 5,
  INTEGRITY: 1 << 6,
} as const;

// ---- structures ----

export const CtrlCmd = defineStruct('ublksrv_ctrl_cmd', CTRL_CMD_SIZE, [
  { name: 'dev_id', offset: 0, type: 'u32' }, // 0xffffffff in ADD_DEV: any free id
  { name: 'queue_id', offset: 4, type: 'u16' }, // 0xffff unless the command is for a queue
  { name: 'len', offset: 6, type: 'u16' }, // bytes at addr (the addon fills addr and len)
  { name: 'addr', offset: 8, type: 'u64' },
  { name: 'data', offset: 16, type: 'u64' }, // data[0]: START_DEV's server pid, ...
  { name: 'dev_path_len', offset: 24, type: 'u16' }, // UNPRIVILEGED_DEV and GET_DEV_INFO2
  { name: 'pad', offset: 26, type: 'u16' },
  { name: 'reserved', offset: 28, type: 'u32' },
] as const);

export const DevInfo = defineStruct('ublksrv_ctrl_dev_info', 64, [
  { name: 'nr_hw_queues', offset: 0, type: 'u16' },
  { name: 'queue_depth', offset: 2, type: 'u16' },
  { name: 'state', offset: 4, type: 'u16' },
  { name: 'pad0', offset: 6, type: 'u16' },
  { name: 'max_io_buf_bytes', offset: 8, type: 'u32' },
  { name: 'dev_id', offset: 12, type: 'u32' },
  { name: 'ublksrv_pid', offset: 16, type: 'u32' }, // s32
  { name: 'pad1', offset: 20, type: 'u32' },
  { name: 'flags', offset: 24, type: 'u64' },
  { name: 'ublksrv_flags', offset: 32, type: 'u64' }, // the server's own, the kernel keeps it
  { name: 'owner_uid', offset: 40, type: 'u32' },
  { name: 'owner_gid', offset: 44, type: 'u32' },
  { name: 'reserved1', offset: 48, type: 'u64' },
  { name: 'reserved2', offset: 56, type: 'u64' },
] as const);
export type DevInfoValue = StructValue<typeof DevInfo.fields>;

export const IoDesc = defineStruct('ublksrv_io_desc', IO_DESC_SIZE, [
  { name: 'op_flags', offset: 0, type: 'u32' },
  { name: 'nr_sectors', offset: 4, type: 'u32' }, // nr_zones for REPORT_ZONES
  { name: 'start_sector', offset: 8, type: 'u64' },
  { name: 'addr', offset: 16, type: 'u64' },
] as const);

export const IoCmd = defineStruct('ublksrv_io_cmd', IO_CMD_SIZE, [
  { name: 'q_id', offset: 0, type: 'u16' },
  { name: 'tag', offset: 2, type: 'u16' },
  { name: 'result', offset: 4, type: 'u32' }, // s32: bytes done or -errno
  { name: 'addr', offset: 8, type: 'u64' }, // zone_append_lba for ZONE_APPEND
] as const);

export const ParamBasic = defineStruct('ublk_param_basic', 32, [
  { name: 'attrs', offset: 0, type: 'u32' },
  { name: 'logical_bs_shift', offset: 4, type: 'u8' },
  { name: 'physical_bs_shift', offset: 5, type: 'u8' },
  { name: 'io_opt_shift', offset: 6, type: 'u8' },
  { name: 'io_min_shift', offset: 7, type: 'u8' },
  { name: 'max_sectors', offset: 8, type: 'u32' },
  { name: 'chunk_sectors', offset: 12, type: 'u32' },
  { name: 'dev_sectors', offset: 16, type: 'u64' },
  { name: 'virt_boundary_mask', offset: 24, type: 'u64' },
] as const);

export const ParamDiscard = defineStruct('ublk_param_discard', 20, [
  { name: 'discard_alignment', offset: 0, type: 'u32' },
  { name: 'discard_granularity', offset: 4, type: 'u32' },
  { name: 'max_discard_sectors', offset: 8, type: 'u32' },
  { name: 'max_write_zeroes_sectors', offset: 12, type: 'u32' },
  { name: 'max_discard_segments', offset: 16, type: 'u16' },
  { name: 'reserved0', offset: 18, type: 'u16' },
] as const);

export const ParamDevt = defineStruct('ublk_param_devt', 16, [
  { name: 'char_major', offset: 0, type: 'u32' },
  { name: 'char_minor', offset: 4, type: 'u32' },
  { name: 'disk_major', offset: 8, type: 'u32' },
  { name: 'disk_minor', offset: 12, type: 'u32' },
] as const);

export const ParamZoned = defineStruct('ublk_param_zoned', 32, [
  { name: 'max_open_zones', offset: 0, type: 'u32' },
  { name: 'max_active_zones', offset: 4, type: 'u32' },
  { name: 'max_zone_append_sectors', offset: 8, type: 'u32' },
  { name: 'reserved', offset: 12, type: 'bytes', length: 20 },
] as const);

/** struct ublk_params up to and including the zoned part (what kernels 6.6..6.13 know). */
export const PARAMS_ZONED_END = 108;

/**
 * struct ublk_params: header and the parts tsblk sets, at their offsets; dma_align (6.14+),
 * segment and integrity are kept as reserved bytes until tsblk sets them. `len` says how many
 * bytes the kernel reads; an older kernel takes the prefix it knows.
 */
export const Params = defineStruct('ublk_params', 152, [
  { name: 'len', offset: 0, type: 'u32' },
  { name: 'types', offset: 4, type: 'u32' },
  { name: 'basic', offset: 8, type: 'bytes', length: ParamBasic.SIZE },
  { name: 'discard', offset: 40, type: 'bytes', length: ParamDiscard.SIZE },
  { name: 'devt', offset: 60, type: 'bytes', length: ParamDevt.SIZE },
  { name: 'zoned', offset: 76, type: 'bytes', length: ParamZoned.SIZE },
  { name: 'dma', offset: 108, type: 'bytes', length: 8 },
  { name: 'pad116', offset: 116, type: 'bytes', length: 4 }, // seg is 8-byte aligned
  { name: 'seg', offset: 120, type: 'bytes', length: 16 },
  { name: 'integrity', offset: 136, type: 'bytes', length: 16 },
] as const);

export const toS32 = (u: number): number => u | 0;
export const fromS32 = (s: number): number => s >>> 0;

/**
 * struct blk_zone (include/uapi/linux/blkzoned.h): one entry of a REPORT_ZONES answer, in
 * 512-byte sectors. type and cond use the numbers of src/block/zone.ts (the kernel's).
 */
export const BlkZone = defineStruct('blk_zone', 64, [
  { name: 'start', offset: 0, type: 'u64' },
  { name: 'len', offset: 8, type: 'u64' },
  { name: 'wp', offset: 16, type: 'u64' },
  { name: 'type', offset: 24, type: 'u8' },
  { name: 'cond', offset: 25, type: 'u8' },
  { name: 'non_seq', offset: 26, type: 'u8' },
  { name: 'reset', offset: 27, type: 'u8' },
  { name: 'resv', offset: 28, type: 'bytes', length: 4 },
  { name: 'capacity', offset: 32, type: 'u64' },
  { name: 'reserved', offset: 40, type: 'bytes', length: 24 },
] as const);
