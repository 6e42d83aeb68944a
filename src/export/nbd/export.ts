// What an NBD export is: a name, a BlockDevice and how it is offered. The transmission flags
// and block size constraints a client sees are derived here, from the device's limits, so
// the server advertises exactly what the device does (nbdkit's can_* callbacks) and never
// a command it would then refuse.

import type { BlockDevice } from '../../block/device.js';
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_ROTATIONAL,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.js';

/** Largest READ/WRITE payload this server accepts (the maximum block size it advertises). */
export const NBD_MAX_PAYLOAD = 32 * 1024 * 1024;

export interface NbdExport {
  /** '' is a legal name: the export a client gets when it names none. */
  readonly name: string;
  readonly description?: string;
  readonly device: BlockDevice;
  /** Refuse writes. Also true in effect when the device itself is read-only. */
  readonly readOnly: boolean;
  /**
   * Advertise CAN_MULTI_CONN. Safe whenever every connection reaches the same device object:
   * a FLUSH on any connection then flushes the device, covering every write that completed
   * on any connection.
   */
  readonly multiConn: boolean;
  readonly rotational?: boolean;
}

/** The exports a handshake can choose from. */
export interface ExportLookup {
  /** The export by name; '' gives the default export when one is configured. */
  get(name: string): NbdExport | undefined;
  /** Every export, for NBD_OPT_LIST. */
  list(): readonly NbdExport[];
}

export function isReadOnly(exp: NbdExport): boolean {
  return exp.readOnly || exp.device.limits.readOnly;
}

/** The 16-bit transmission flags for an export. `structured`: structured replies or extended headers were negotiated. */
export function transmissionFlags(exp: NbdExport, opts: { structured: boolean }): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;
  const limits = exp.device.limits;
  if (isReadOnly(exp)) flags |= NBD_FLAG_READ_ONLY;
  else {
    if (limits.discard) flags |= NBD_FLAG_SEND_TRIM;
    if (limits.writeZeroes) flags |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  }
  if (exp.multiConn) flags |= NBD_FLAG_CAN_MULTI_CONN;
  if (exp.rotational) flags |= NBD_FLAG_ROTATIONAL;
  if (opts.structured) flags |= NBD_FLAG_SEND_DF;
  return flags;
}

export interface BlockSizeConstraints {
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
}

/** NBD_INFO_BLOCK_SIZE: the logical block, the physical block (at least 4 KiB), and the largest payload. */
export function blockSizeConstraints(exp: NbdExport): BlockSizeConstraints {
  const l = exp.device.limits;
  return {
    minimum: l.logicalBlockSize,
    preferred: Math.max(l.physicalBlockSize, 4096),
    maximum: NBD_MAX_PAYLOAD,
  };
}
