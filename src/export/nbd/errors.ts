// The one place where block-layer errors become NBD error values (the transmission phase's
// "error" field). NBD allows only eight values, each with a documented meaning, so several
// block codes fold into one:
//
// - EINVAL, ERANGE, E2BIG → NBD_EINVAL: a request the device refused for its shape (bounds,
//   alignment, a size limit). Payloads too large for this server are caught before the
//   device is asked and answered with NBD_EOVERFLOW by the transmission, not here.
// - ECANCELED, EBADF → NBD_ESHUTDOWN: the operation was aborted or the device closed, which
//   in a running export only happens while the server shuts down; the spec tells a client
//   that sees ESHUTDOWN to disconnect cleanly.
// - ENODEV → NBD_EIO: the device is down (a remote namespace lost, a flakey interval); it
//   may come back, so the client should see an I/O error, not a shutdown.
// - The block layer's EOVERFLOW (zone active resources) and ETOOMANYREFS (zone open
//   resources) are I/O failures to an NBD client: NBD_EOVERFLOW means "request too large".
// - Plain Node errors keep their errno: EDQUOT/EFBIG → ENOSPC (the spec asks for it), EROFS
//   → EPERM, ENOTSUP → ENOTSUP. Anything else is NBD_EIO.

import { BlockError, ErrorCode } from '../../block/errors.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_ESHUTDOWN,
} from './protocol.js';

const BY_CODE: Readonly<Record<string, number>> = {
  [ErrorCode.EPERM]: NBD_EPERM,
  EROFS: NBD_EPERM,
  EACCES: NBD_EPERM,
  [ErrorCode.EINVAL]: NBD_EINVAL,
  [ErrorCode.ERANGE]: NBD_EINVAL,
  [ErrorCode.E2BIG]: NBD_EINVAL,
  [ErrorCode.ENOSPC]: NBD_ENOSPC,
  EDQUOT: NBD_ENOSPC,
  EFBIG: NBD_ENOSPC,
  [ErrorCode.EOPNOTSUPP]: NBD_ENOTSUP,
  ENOTSUP: NBD_ENOTSUP,
  [ErrorCode.ENOMEM]: NBD_ENOMEM,
  [ErrorCode.ECANCELED]: NBD_ESHUTDOWN,
  [ErrorCode.EBADF]: NBD_ESHUTDOWN,
  [ErrorCode.ENODEV]: NBD_EIO,
  [ErrorCode.EIO]: NBD_EIO,
  [ErrorCode.EOVERFLOW]: NBD_EIO,
  [ErrorCode.ETOOMANYREFS]: NBD_EIO,
};

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The NBD error value (never 0) for anything a device operation threw. */
export function nbdErrorFromBlockError(err: unknown): number {
  let code = codeOf(err);
  // toBlockError turns errnos it does not know (EDQUOT, EROFS, ...) into EIO; the original
  // error is its cause. A BlockError cause was mapped on purpose by the layer below: keep EIO.
  if (BlockError.is(err) && code === ErrorCode.EIO && !BlockError.is(err.cause))
    code = codeOf(err.cause) ?? code;
  return (code !== undefined ? BY_CODE[code] : undefined) ?? NBD_EIO;
}
