import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from './config-error.js';
import { formatSize, parseSize } from './size.js';

test('parseSize accepts bytes and binary units', () => {
  assert.equal(parseSize('0'), 0);
  assert.equal(parseSize('512'), 512);
  assert.equal(parseSize('4k'), 4096);
  assert.equal(parseSize('4K'), 4096);
  assert.equal(parseSize('1M'), 1 << 20);
  assert.equal(parseSize('1m'), 1 << 20);
  assert.equal(parseSize('1G'), 2 ** 30);
  assert.equal(parseSize('1T'), 2 ** 40);
  assert.equal(parseSize('2P'), 2 ** 51);
  assert.equal(parseSize('1MiB'), 1 << 20);
  assert.equal(parseSize('3KiB'), 3072);
  assert.equal(parseSize('1GiB'), 2 ** 30);
  assert.equal(parseSize(' 64k '), 65536);
});

test('parseSize accepts non-negative safe integers as numbers', () => {
  assert.equal(parseSize(4096), 4096);
  assert.equal(parseSize(0), 0);
  assert.throws(() => parseSize(-1, 'x'), {
    message: 'x: invalid size -1: must be a non-negative whole number of bytes',
  });
  assert.throws(() => parseSize(1.5, 'x'), {
    message: 'x: invalid size 1.5: must be a non-negative whole number of bytes',
  });
});

const HINT =
  'expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB';

for (const bad of ['1.5G', '-1', '10X', '', 'G', '1 G', '0x10', '1e6', '1Gi', '1iB', '1GiBs', 'one']) {
  test(`parseSize rejects ${JSON.stringify(bad)} naming the text`, () => {
    assert.throws(
      () => parseSize(bad, '--size'),
      (err: unknown) => {
        assert.ok(ConfigError.is(err));
        assert.equal(err.message, `--size: invalid size "${bad}": ${HINT}`);
        assert.equal(err.path, '--size');
        return true;
      },
    );
  });
}

test('parseSize rejects decimal units with a hint', () => {
  assert.throws(() => parseSize('1MB'), {
    message: `invalid size "1MB": ${HINT}; "1M" or "1MiB" mean the binary unit, decimal units are not accepted`,
  });
});

test('parseSize rejects sizes past 2^53', () => {
  assert.throws(() => parseSize('9P'), { message: /invalid size "9P": larger than 9007199254740991 bytes/ });
  assert.equal(parseSize('7P'), 7 * 2 ** 50);
});

test('formatSize', () => {
  assert.equal(formatSize(0), '0 B');
  assert.equal(formatSize(1023), '1023 B');
  assert.equal(formatSize(1024), '1 KiB');
  assert.equal(formatSize(1536), '1.50 KiB');
  assert.equal(formatSize(2 ** 30), '1 GiB');
  assert.equal(formatSize(2 ** 50 * 3), '3 PiB');
});
