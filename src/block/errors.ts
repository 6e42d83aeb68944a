// Errors of the block layer. Every failing operation throws a BlockError with an errno-style
// code (what a caller branches on) and a message a person can act on. Protocol front ends
// (NVMe, NBD, ublk) translate the code (and `zone`, when set) into their own status values
// in one place each.

/** errno-style codes used across tsblk. The kernel's meanings apply. */
export const ErrorCode = {
  EINVAL: 'EINVAL', // bad argument: misaligned, zero length, malformed range list
  EPERM: 'EPERM', // write to a read-only device
  EIO: 'EIO', // the device failed the I/O (media error, injected fault, zone violation)
  ENOSPC: 'ENOSPC', // past the end of the device, or a zone is full
  EOPNOTSUPP: 'EOPNOTSUPP', // the device lacks the capability (no copy, no discard, not zoned)
  ERANGE: 'ERANGE', // offset or length outside the device
  E2BIG: 'E2BIG', // request exceeds a size or count limit
  ENOMEM: 'ENOMEM', // a memory budget would be exceeded
  ECANCELED: 'ECANCELED', // aborted through an AbortSignal
  ENODEV: 'ENODEV', // the device is gone or down (flakey interval, closed)
  ETOOMANYREFS: 'ETOOMANYREFS', // zone open resource exceeded (kernel: BLK_STS_ZONE_OPEN_RESOURCE)
  EOVERFLOW: 'EOVERFLOW', // zone active resource exceeded (kernel: BLK_STS_ZONE_ACTIVE_RESOURCE)
  EBADF: 'EBADF', // the device was closed
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Zone violations named as the ZNS command set names them (NVMe ZNS 1.1, "Zoned Namespace
 * Command Set Specific Status Values"). The NVMe target maps each one to its status code
 * (0xB8..0xBF); other front ends use the errno code.
 */
export const ZoneError = {
  ZONE_BOUNDARY_ERROR: 'ZONE_BOUNDARY_ERROR', // 0xB8: I/O crosses a zone boundary
  ZONE_FULL: 'ZONE_FULL', // 0xB9: write to a full zone
  ZONE_READ_ONLY: 'ZONE_READ_ONLY', // 0xBA
  ZONE_OFFLINE: 'ZONE_OFFLINE', // 0xBB
  ZONE_INVALID_WRITE: 'ZONE_INVALID_WRITE', // 0xBC: write not at the write pointer
  TOO_MANY_ACTIVE_ZONES: 'TOO_MANY_ACTIVE_ZONES', // 0xBD
  TOO_MANY_OPEN_ZONES: 'TOO_MANY_OPEN_ZONES', // 0xBE
  INVALID_ZONE_STATE_TRANSITION: 'INVALID_ZONE_STATE_TRANSITION', // 0xBF
} as const;
export type ZoneError = (typeof ZoneError)[keyof typeof ZoneError];

const kBlockError = Symbol.for('tsblk.BlockError');

export interface BlockErrorOptions {
  /** The ZNS violation behind this error, when there is one. */
  zone?: ZoneError;
  /** Byte offset the failure was detected at, when known (the NVMe error log reports it). */
  offset?: number;
  cause?: unknown;
}

export class BlockError extends Error {
  readonly code: ErrorCode;
  readonly zone: ZoneError | undefined;
  readonly offset: number | undefined;

  constructor(code: ErrorCode, message: string, options: BlockErrorOptions = {}) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BlockError';
    this.code = code;
    this.zone = options.zone;
    this.offset = options.offset;
    Object.defineProperty(this, kBlockError, { value: true });
  }

  /** True for any BlockError, also one made by another copy of this module. */
  static is(err: unknown): err is BlockError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kBlockError] === true;
  }
}

/** Wraps anything thrown by lower code (fs errors, bugs) into a BlockError, keeping errno codes. */
export function toBlockError(err: unknown, what: string): BlockError {
  if (BlockError.is(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const known = typeof code === 'string' && code in ErrorCode ? (code as ErrorCode) : ErrorCode.EIO;
  const msg = err instanceof Error ? err.message : String(err);
  return new BlockError(known, `${what}: ${msg}`, { cause: err });
}

/** The error an aborted operation fails with. */
export function abortError(signal: AbortSignal | undefined, what: string): BlockError {
  const reason = signal?.reason instanceof Error ? `: ${signal.reason.message}` : '';
  return new BlockError(ErrorCode.ECANCELED, `${what} was aborted${reason}`, { cause: signal?.reason });
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/**
 * A copy that failed part way. `completed[i]` is the number of bytes of range i known to be
 * copied, always a prefix of the range, so a caller can resume from there. The paths say
 * how the completed bytes were moved.
 */
export class CopyError extends BlockError {
  readonly completed: readonly number[];
  readonly offloaded: number;
  readonly emulated: number;

  constructor(
    cause: BlockError,
    completed: readonly number[],
    paths: { offloaded: number; emulated: number } = { offloaded: 0, emulated: 0 },
  ) {
    super(cause.code, cause.message.replace(/^[A-Z0-9]+: /, ''), {
      cause,
      ...(cause.zone ? { zone: cause.zone } : {}),
      ...(cause.offset !== undefined ? { offset: cause.offset } : {}),
    });
    this.name = 'CopyError';
    this.completed = completed;
    this.offloaded = paths.offloaded;
    this.emulated = paths.emulated;
  }

  static isCopyError(err: unknown): err is CopyError {
    return BlockError.is(err) && Array.isArray((err as CopyError).completed);
  }
}
