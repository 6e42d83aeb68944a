import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode, toBlockError } from '../../block/errors.js';
import { nbdErrorFromBlockError } from './errors.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_ESHUTDOWN,
} from './protocol.js';

const cases: Array<[ErrorCode, number]> = [
  [ErrorCode.EPERM, NBD_EPERM],
  [ErrorCode.EINVAL, NBD_EINVAL],
  [ErrorCode.ERANGE, NBD_EINVAL],
  [ErrorCode.E2BIG, NBD_EINVAL],
  [ErrorCode.ENOSPC, NBD_ENOSPC],
  [ErrorCode.EOPNOTSUPP, NBD_ENOTSUP],
  [ErrorCode.ENOMEM, NBD_ENOMEM],
  [ErrorCode.ECANCELED, NBD_ESHUTDOWN],
  [ErrorCode.EBADF, NBD_ESHUTDOWN],
  [ErrorCode.ENODEV, NBD_EIO],
  [ErrorCode.EIO, NBD_EIO],
  [ErrorCode.EOVERFLOW, NBD_EIO],
  [ErrorCode.ETOOMANYREFS, NBD_EIO],
];

test('every BlockError code maps to its NBD error', () => {
  for (const [code, nbd] of cases)
    assert.equal(nbdErrorFromBlockError(new BlockError(code, 'x')), nbd, `code ${code}`);
  // Every code the block layer has is covered by the table above.
  assert.deepEqual(new Set(cases.map(([c]) => c)), new Set(Object.values(ErrorCode)));
});

test('errnos wrapped by toBlockError keep their meaning (EDQUOT/EFBIG → ENOSPC, EROFS → EPERM)', () => {
  const errno = (code: string) => Object.assign(new Error(code), { code });
  assert.equal(nbdErrorFromBlockError(toBlockError(errno('EDQUOT'), 'w')), NBD_ENOSPC);
  assert.equal(nbdErrorFromBlockError(toBlockError(errno('EFBIG'), 'w')), NBD_ENOSPC);
  assert.equal(nbdErrorFromBlockError(toBlockError(errno('EROFS'), 'w')), NBD_EPERM);
  assert.equal(nbdErrorFromBlockError(toBlockError(errno('ENOSPC'), 'w')), NBD_ENOSPC);
  assert.equal(nbdErrorFromBlockError(errno('EFBIG')), NBD_ENOSPC);
  // A lower layer's BlockError wrapped into EIO on purpose stays EIO.
  const inner = new BlockError(ErrorCode.EINVAL, 'inner');
  assert.equal(nbdErrorFromBlockError(new BlockError(ErrorCode.EIO, 'outer', { cause: inner })), NBD_EIO);
});

test('anything else is EIO, never 0', () => {
  for (const e of [new Error('boom'), 'string', undefined, null, 42, { code: 17 }, { code: 'EWEIRD' }])
    assert.equal(nbdErrorFromBlockError(e), NBD_EIO);
});
