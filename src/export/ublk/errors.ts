// Errors of the ublk export: a control command or the kernel refused, with the errno the
// kernel gave (`code` 'EINVAL', `errno` negative) and what was being done.

import { constants } from 'node:os';

import { BlockError, ErrorCode } from '../../block/errors.js';

export class UblkError extends Error {
  /** errno name ('ENODEV'), or 'ENOTSUP' style names from the addon. */
  readonly code: string;
  /** The negated errno, 0 when the failure did not come from the kernel. */
  readonly errno: number;

  constructor(code: string, message: string, options: { errno?: number; cause?: unknown } = {}) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UblkError';
    this.code = code;
    this.errno = options.errno ?? 0;
  }
}

/** Wraps an addon rejection (an fs-style error) with what was being done. */
export function toUblkError(err: unknown, what: string): UblkError {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : 'EIO';
  const errno = typeof e?.errno === 'number' ? e.errno : 0;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return new UblkError(code, `${what}: ${msg}`, { errno, cause: err });
}

// Node's os.constants.errno lacks ETOOMANYREFS (Linux 109 on x86-64 and arm64), the zone
// open-resource errno; without it a zone open over the limit would become a plain EIO.
const errnos: Record<string, number> = { ETOOMANYREFS: 109, ...(constants.errno as Record<string, number>) };

/**
 * The result a request is committed with when the device failed it: -errno. The kernel turns
 * it into a block status (errno_to_blk_status): ENOSPC, EOPNOTSUPP, ETOOMANYREFS (zone open
 * resource), EOVERFLOW (zone active resource) keep their meaning, the rest become I/O errors.
 */
export function resultForError(err: unknown): number {
  const code = BlockError.is(err) ? err.code : ErrorCode.EIO;
  const n = errnos[code] ?? errnos.EIO ?? 5;
  return -n;
}
