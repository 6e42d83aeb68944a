// The ublk control plane: commands on /dev/ublk-control (ADD_DEV, SET_PARAMS, START_DEV, ...),
// each one an io_uring URING_CMD run by the addon on libuv's thread pool. This file knows
// which fields each command uses; the addon only carries the 32 command bytes and the buffer.

import { loadUblkNative, type UblkNative } from '../../native/addon.js';
import { toUblkError, UblkError } from './errors.js';
import { CtrlCmd, DevInfo, type DevInfoValue, fromS32, UBLK_U_CMD } from './uapi.js';

/** dev_id in ADD_DEV: let the kernel pick a free id. */
export const UBLK_ANY_DEV_ID = 0xffffffff;
const NO_QUEUE = 0xffff;

export interface AddDevOptions {
  /** A device id, or UBLK_ANY_DEV_ID (default). */
  devId?: number;
  nrHwQueues: number;
  queueDepth: number;
  /** Largest request buffer; the kernel rounds it down to a page multiple. */
  maxIoBufBytes: number;
  /** UBLK_F_* flags to ask for. */
  flags: bigint;
}

/** The ublk character devices' control node; present once ublk_drv is loaded. */
export const UBLK_CONTROL_PATH = '/dev/ublk-control';

export class UblkControl {
  constructor(private readonly native: UblkNative) {}

  /** The control plane, or a UblkError saying why this machine cannot run ublk. */
  static open(): UblkControl {
    const r = loadUblkNative();
    if (!r.native)
      throw new UblkError('ENOTSUP', `ublk needs the native addon's io_uring support: ${r.reason}`);
    return new UblkControl(r.native);
  }

  private async run(name: string, cmdOp: number, devId: number, data: Uint8Array | null, inline = 0n) {
    const cmd = CtrlCmd.encode({ dev_id: devId, queue_id: NO_QUEUE, data: inline });
    try {
      return await this.native.ublkControl(cmdOp, cmd, data);
    } catch (err) {
      const dev = devId === UBLK_ANY_DEV_ID ? '' : ` for ublk device ${devId}`;
      throw toUblkError(err, `${name}${dev}`);
    }
  }

  /** GET_FEATURES (kernel 6.5+): the UBLK_F_* flags this kernel supports. */
  async getFeatures(): Promise<bigint> {
    const buf = Buffer.alloc(8);
    await this.run('GET_FEATURES', UBLK_U_CMD.GET_FEATURES, 0, buf);
    return buf.readBigUInt64LE(0);
  }

  /** ADD_DEV: creates /dev/ublkcN; returns the info as the kernel filled it (dev_id, flags). */
  async addDev(o: AddDevOptions): Promise<DevInfoValue> {
    const devId = o.devId ?? UBLK_ANY_DEV_ID;
    const info = DevInfo.encode({
      nr_hw_queues: o.nrHwQueues,
      queue_depth: o.queueDepth,
      max_io_buf_bytes: o.maxIoBufBytes,
      dev_id: devId,
      ublksrv_pid: fromS32(process.pid),
      flags: o.flags,
    });
    await this.run('ADD_DEV', UBLK_U_CMD.ADD_DEV, devId, info);
    return DevInfo.decode(info);
  }

  /** SET_PARAMS: an encoded struct ublk_params (its `len` field says how much is read). */
  async setParams(devId: number, params: Uint8Array): Promise<void> {
    await this.run('SET_PARAMS', UBLK_U_CMD.SET_PARAMS, devId, params);
  }

  /** GET_PARAMS into a buffer whose `len` field is set by the caller. */
  async getParams(devId: number, params: Uint8Array): Promise<void> {
    await this.run('GET_PARAMS', UBLK_U_CMD.GET_PARAMS, devId, params);
  }

  /**
   * START_DEV: waits until every queue has fetched every tag, then adds /dev/ublkbN (the
   * kernel reads the partition table through the queues before this returns).
   */
  async startDev(devId: number, pid = process.pid): Promise<void> {
    await this.run('START_DEV', UBLK_U_CMD.START_DEV, devId, null, BigInt(pid));
  }

  /** STOP_DEV: removes /dev/ublkbN (waits for the requests in flight). */
  async stopDev(devId: number): Promise<void> {
    await this.run('STOP_DEV', UBLK_U_CMD.STOP_DEV, devId, null);
  }

  /** DEL_DEV: removes /dev/ublkcN; waits until every opener of /dev/ublkcN has closed it. */
  async delDev(devId: number): Promise<void> {
    await this.run('DEL_DEV', UBLK_U_CMD.DEL_DEV, devId, null);
  }

  async getDevInfo(devId: number): Promise<DevInfoValue> {
    const info = Buffer.alloc(DevInfo.SIZE);
    await this.run('GET_DEV_INFO', UBLK_U_CMD.GET_DEV_INFO, devId, info);
    return DevInfo.decode(info);
  }

  /** START_USER_RECOVERY (UBLK_F_USER_RECOVERY): a new server takes over a dead one's device. */
  async startUserRecovery(devId: number): Promise<void> {
    await this.run('START_USER_RECOVERY', UBLK_U_CMD.START_USER_RECOVERY, devId, null);
  }

  /** END_USER_RECOVERY: the new server's queues have fetched every tag; `pid` serves now. */
  async endUserRecovery(devId: number, pid = process.pid): Promise<void> {
    await this.run('END_USER_RECOVERY', UBLK_U_CMD.END_USER_RECOVERY, devId, null, BigInt(pid));
  }
}
