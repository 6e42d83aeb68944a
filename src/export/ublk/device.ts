// UblkExport: any BlockDevice as a Linux block device /dev/ublkbN, through ublk_drv.
//
// Start: GET_FEATURES (kernel 6.5+: USER_COPY is required, CMD_IOCTL_ENCODE used when offered)
// → ADD_DEV (creates /dev/ublkcN) → SET_PARAMS from the device's size and limits → open
// /dev/ublkcN, start every queue (a native thread each, every tag fetched) → START_DEV (the
// kernel waits for the fetches, then adds /dev/ublkbN and reads its partition table through
// the queues). Stop: STOP_DEV (removes /dev/ublkbN after the requests in flight) → stop the
// queues → close /dev/ublkcN → DEL_DEV (which waits for that close). A failed start undoes
// what it did, so no /dev/ublkb* or /dev/ublkc* is left behind.
//
// The caller stops the export on SIGINT/SIGTERM; a process that dies without stopping leaves
// a dead device that `DEL_DEV` (or, later, user recovery) cleans up.
//
// Recovery: a device created `recoverable` survives its server's death quiesced; recover()
// in a new process takes it over (docs/ublk.md, "User recovery"). Zoned devices are exported
// with UBLK_F_ZONED (zones.ts).
//
// Not yet: NEED_GET_DATA / per-tag buffers for kernels without USER_COPY, the zero-copy modes
// (6.15+: no kernel here can test them).

import { existsSync, openSync, closeSync } from 'node:fs';

import type { BlockDevice } from '../../block/device.js';
import { loadUblkNative, type UblkNative } from '../../native/addon.js';
import { UBLK_CONTROL_PATH, UblkControl } from './control.js';
import { UblkError } from './errors.js';
import { paramsFor } from './params.js';
import { UblkQueue } from './queue.js';
import { zonedFlags } from './zones.js';
import { featureNames, UBLK_F, UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH } from './uapi.js';

export interface UblkExportOptions {
  /** Queues (each a thread and a ring). Default 1. */
  queues?: number;
  /** Tags per queue (requests in flight). Default 64. */
  depth?: number;
  /** Largest request, bytes. Default min(device maxTransferBytes, 1 MiB). */
  maxIoBufBytes?: number;
  /** Ask for this device id (default: any free one). */
  devId?: number;
  /** Called when a queue can no longer serve requests. */
  onError?: (err: UblkError) => void;
  /**
   * Create the device with UBLK_F_USER_RECOVERY + UBLK_F_USER_RECOVERY_REISSUE: when this
   * server dies, the kernel quiesces the device (requests wait, the ones the server held are
   * reissued later) instead of removing it, and UblkExport.recover() in a new process takes
   * over. Only meaningful when the device's data outlives this process (a file).
   */
  recoverable?: boolean;
}

export interface UblkRecoverOptions {
  onError?: (err: UblkError) => void;
  /** How long to wait for the kernel to finish quiescing the dead server's device. Default 10 s. */
  timeoutMs?: number;
}

const DEFAULT_MAX_IO_BUF = 1024 * 1024;

/** Why ublk cannot run here, or undefined when it can be tried. */
export function ublkUnavailable(): string | undefined {
  const r = loadUblkNative();
  if (!r.native) return r.reason;
  if (!existsSync(UBLK_CONTROL_PATH))
    return `${UBLK_CONTROL_PATH} is missing: load the ublk_drv module (modprobe ublk_drv)`;
  return undefined;
}

export class UblkExport {
  readonly devId: number;
  readonly device: BlockDevice;
  /** The UBLK_F_* flags the device was created with (as the kernel reports them). */
  readonly flags: bigint;
  readonly queues: readonly UblkQueue[];
  private readonly ctrl: UblkControl;
  private charFd: number | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    ctrl: UblkControl,
    devId: number,
    device: BlockDevice,
    flags: bigint,
    queues: UblkQueue[],
    charFd: number,
  ) {
    this.ctrl = ctrl;
    this.devId = devId;
    this.device = device;
    this.flags = flags;
    this.queues = queues;
    this.charFd = charFd;
  }

  get blockPath(): string {
    return `/dev/ublkb${this.devId}`;
  }

  get charPath(): string {
    return `/dev/ublkc${this.devId}`;
  }

  /** Creates and starts /dev/ublkbN for `device`. */
  static async start(device: BlockDevice, options: UblkExportOptions = {}): Promise<UblkExport> {
    const why = ublkUnavailable();
    if (why) throw new UblkError('ENOTSUP', `cannot export ${device.name} through ublk: ${why}`);
    const native = loadUblkNative().native as UblkNative;
    const ctrl = new UblkControl(native);
    const nrQueues = options.queues ?? 1;
    const depth = options.depth ?? 64;
    if (!Number.isInteger(nrQueues) || nrQueues < 1 || nrQueues > UBLK_MAX_NR_QUEUES)
      throw new UblkError('EINVAL', `ublk: queues must be 1..${UBLK_MAX_NR_QUEUES}, got ${nrQueues}`);
    if (!Number.isInteger(depth) || depth < 1 || depth > UBLK_MAX_QUEUE_DEPTH)
      throw new UblkError('EINVAL', `ublk: depth must be 1..${UBLK_MAX_QUEUE_DEPTH}, got ${depth}`);
    const maxIoBufBytes =
      options.maxIoBufBytes ?? Math.min(device.limits.maxTransferBytes, DEFAULT_MAX_IO_BUF);
    // Checked before ADD_DEV, so a device ublk cannot express creates nothing.
    const params = paramsFor({ device, maxIoBufBytes });

    let features: bigint;
    try {
      features = await ctrl.getFeatures();
    } catch (err) {
      throw new UblkError(
        'ENOTSUP',
        'ublk: GET_FEATURES failed: the kernel is older than 6.5 (no USER_COPY)',
        {
          cause: err,
        },
      );
    }
    if ((features & UBLK_F.USER_COPY) === 0n)
      throw new UblkError(
        'ENOTSUP',
        `ublk: this kernel lacks UBLK_F_USER_COPY (features: ${featureNames(features).join(', ')})`,
      );
    let flags = UBLK_F.USER_COPY;
    if (features & UBLK_F.CMD_IOCTL_ENCODE) flags |= UBLK_F.CMD_IOCTL_ENCODE;
    flags |= zonedFlags(device, features);
    if (options.recoverable) {
      const want = UBLK_F.USER_RECOVERY | UBLK_F.USER_RECOVERY_REISSUE;
      if ((features & want) !== want)
        throw new UblkError('ENOTSUP', 'ublk: this kernel lacks UBLK_F_USER_RECOVERY(_REISSUE)');
      flags |= want;
    }

    const info = await ctrl.addDev({
      devId: options.devId,
      nrHwQueues: nrQueues,
      queueDepth: depth,
      maxIoBufBytes,
      flags,
    });
    const devId = info.dev_id;
    const queues: UblkQueue[] = [];
    let charFd: number | undefined;
    try {
      await ctrl.setParams(devId, params);
      charFd = openSync(`/dev/ublkc${devId}`, 'r+');
      for (let qid = 0; qid < nrQueues; qid++) {
        const q = new UblkQueue({
          native,
          charFd,
          qid,
          depth,
          device,
          maxIoBytes: maxIoBufBytes,
          onError: options.onError,
        });
        queues.push(q);
        q.start();
      }
      await ctrl.startDev(devId);
    } catch (err) {
      for (const q of queues) q.stop();
      if (charFd !== undefined) closeSync(charFd);
      await ctrl.delDev(devId).catch(() => undefined);
      throw err;
    }
    return new UblkExport(ctrl, devId, device, info.flags, queues, charFd);
  }

  /**
   * Takes over ublk device `devId` whose server died (created with `recoverable`): waits until
   * the kernel has quiesced it, START_USER_RECOVERY, opens /dev/ublkcN, fetches every tag of
   * every queue from `device` (which must hold the same data: the dead server's file), then
   * END_USER_RECOVERY — the requests that waited, and those the dead server held, run again.
   */
  static async recover(
    devId: number,
    device: BlockDevice,
    options: UblkRecoverOptions = {},
  ): Promise<UblkExport> {
    const why = ublkUnavailable();
    if (why) throw new UblkError('ENOTSUP', `cannot recover ublk device ${devId}: ${why}`);
    const native = loadUblkNative().native as UblkNative;
    const ctrl = new UblkControl(native);
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    let info = await ctrl.getDevInfo(devId);
    if ((info.flags & UBLK_F.USER_RECOVERY) === 0n)
      throw new UblkError(
        'EINVAL',
        `ublk device ${devId} was not created recoverable (no UBLK_F_USER_RECOVERY)`,
      );
    // The dead server's files must be closed and the queue quiesced: START answers EBUSY until then.
    for (;;) {
      try {
        await ctrl.startUserRecovery(devId);
        break;
      } catch (err) {
        info = await ctrl.getDevInfo(devId);
        if (Date.now() > deadline)
          throw new UblkError(
            'EBUSY',
            `ublk device ${devId} cannot be recovered (state ${info.state}): is its server still running (pid ${info.ublksrv_pid})?`,
            { cause: err },
          );
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const nrQueues = info.nr_hw_queues;
    const depth = info.queue_depth;
    const charFd = openSync(`/dev/ublkc${devId}`, 'r+');
    const queues: UblkQueue[] = [];
    try {
      for (let qid = 0; qid < nrQueues; qid++) {
        const q = new UblkQueue({
          native,
          charFd,
          qid,
          depth,
          device,
          maxIoBytes: info.max_io_buf_bytes,
          onError: options.onError,
        });
        queues.push(q);
        q.start();
      }
      await ctrl.endUserRecovery(devId);
    } catch (err) {
      for (const q of queues) q.stop();
      closeSync(charFd);
      throw err;
    }
    return new UblkExport(ctrl, devId, device, info.flags, queues, charFd);
  }

  /** Removes /dev/ublkbN and /dev/ublkcN. Safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    let first: unknown;
    await this.ctrl.stopDev(this.devId).catch((err: unknown) => (first ??= err));
    for (const q of this.queues) q.stop();
    if (this.charFd !== undefined) closeSync(this.charFd);
    this.charFd = undefined;
    await this.ctrl.delDev(this.devId).catch((err: unknown) => (first ??= err));
    if (first !== undefined) throw first;
  }
}
