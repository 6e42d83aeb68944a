import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode } from '../block/errors.js';
import { ConfigError } from '../server/config-error.js';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, isUserError, reportError } from './errors.js';
import { Capture } from './test-io.js';

test('BlockError: message with its code, exit 1, no stack', () => {
  const err = new Capture();
  const code = reportError(new BlockError(ErrorCode.ERANGE, 'copy a → a: past the end'), err);
  assert.equal(code, EXIT_FAILURE);
  assert.equal(err.text, 'tsblk: ERANGE: copy a → a: past the end\n');
});

test('ConfigError: path-qualified message, exit 1', () => {
  const err = new Capture();
  assert.equal(
    reportError(new ConfigError('devices.x.size', 'is required').within('c.json'), err),
    EXIT_FAILURE,
  );
  assert.equal(err.text, 'tsblk: c.json: devices.x.size: is required\n');
});

test('UsageError: exit 2', () => {
  const err = new Capture();
  assert.equal(reportError(new UsageError('copy: no ranges given'), err), EXIT_USAGE);
  assert.equal(err.text, 'tsblk: copy: no ranges given\n');
});

test('Node errors with an errno code are user errors', () => {
  const e = Object.assign(new Error('EACCES: permission denied, open /x'), { code: 'EACCES' });
  assert.equal(isUserError(e), true);
  const err = new Capture();
  assert.equal(reportError(e, err), EXIT_FAILURE);
  assert.equal(err.text, 'tsblk: EACCES: permission denied, open /x\n');
});

test('anything else is an internal error and shows its stack', () => {
  const err = new Capture();
  assert.equal(reportError(new TypeError('x is not a function'), err), EXIT_FAILURE);
  assert.match(
    err.text,
    /^tsblk: internal error: x is not a function\nTypeError: x is not a function\n\s+at /,
  );
  assert.match(err.text, /This is a bug in tsblk; please report it\.\n$/);
  assert.equal(isUserError(new TypeError('x')), false);
});
