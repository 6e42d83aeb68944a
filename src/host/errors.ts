// Local failures of the NVMe/TCP host: a command that could not be completed, or an
// association that could not be made. An NVMe status is never a HostError: commands that reach
// the controller resolve with their completion, whatever its status; only Connect's refusal is
// turned into a HostError (CONNECT, with the status in `status` and its name in the message).

import type { NvmeStatus } from '../nvme/status.js';

export type HostErrorCode =
  /** Could not reach the controller (TCP connect failed or timed out), or Connect was refused. */
  | 'CONNECT'
  /** The ICReq/ICResp exchange failed: wrong PFV or digests, no ICResp in time, a TermReq. */
  | 'IC'
  /** The controller broke the NVMe/TCP protocol (malformed PDU, C2HTermReq, bad offsets). */
  | 'PROTOCOL'
  /** A command did not complete within the command timeout. */
  | 'TIMEOUT'
  /** The connection closed (or failed) while the command was outstanding. */
  | 'CLOSED'
  /** The command's AbortSignal fired before the command was sent. */
  | 'ABORTED'
  /** In flight when the connection dropped, and `retryable: false`: it may or may not have run. */
  | 'NOT_RETRYABLE'
  /** The controller-loss timeout expired while reconnecting. */
  | 'CONTROLLER_LOST'
  /** disconnect() was called. */
  | 'DELETED';

export interface HostErrorOptions {
  /** The NVMe status behind a CONNECT error (Connect, Property Set CC, ...). */
  status?: NvmeStatus;
  cause?: unknown;
}

const kHostError = Symbol.for('tsblk.HostError');

export class HostError extends Error {
  readonly code: HostErrorCode;
  readonly status: NvmeStatus | undefined;

  constructor(code: HostErrorCode, message: string, options: HostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HostError';
    this.code = code;
    this.status = options.status;
    Object.defineProperty(this, kHostError, { value: true });
  }

  /** True for any HostError, also one made by another copy of this module. */
  static is(err: unknown): err is HostError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kHostError] === true;
  }
}
