import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../server/config-error.js';
import { UsageError } from './errors.js';
import { parseRangeArg, parseRangesText, readRangesFile } from './ranges.js';

test('--range SRC:DST:LEN with sizes', () => {
  assert.deepEqual(parseRangeArg('0:1M:64k'), { src: 0, dst: 1 << 20, len: 65536 });
  assert.deepEqual(parseRangeArg('4096:8192:512'), { src: 4096, dst: 8192, len: 512 });
});

for (const [text, message] of [
  ['0:1M', '--range "0:1M": expected SRC:DST:LEN, e.g. --range 0:1M:64k'],
  ['0:1M:64k:1', '--range "0:1M:64k:1": expected SRC:DST:LEN, e.g. --range 0:1M:64k'],
  ['0::64k', '--range "0::64k": expected SRC:DST:LEN, e.g. --range 0:1M:64k'],
  [
    '0:1M:1.5k',
    '--range "0:1M:1.5k": LEN: invalid size "1.5k": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB',
  ],
  [
    '-1:0:512',
    '--range "-1:0:512": SRC: invalid size "-1": expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB',
  ],
] as const) {
  test(`--range ${text} is a usage error`, () => {
    assert.throws(
      () => parseRangeArg(text),
      (err: unknown) => UsageError.is(err) && err.message === message,
    );
  });
}

test('text format: SRC DST LEN lines, comments, blank lines, sizes', () => {
  const text = '# copy list\n0 1M 4k\n\n  8k\t2M   4k   # trailing comment\r\n1G 0 512\n';
  assert.deepEqual(parseRangesText(text, 'r.txt'), [
    { src: 0, dst: 1 << 20, len: 4096 },
    { src: 8192, dst: 2 << 20, len: 4096 },
    { src: 2 ** 30, dst: 0, len: 512 },
  ]);
});

test('text format errors name the file and line', () => {
  assert.throws(() => parseRangesText('0 1M 4k\n0 1M\n', 'r.txt'), {
    message: 'r.txt:2: expected "SRC DST LEN", got 2 fields: "0 1M"',
  });
  assert.throws(() => parseRangesText('0 1M 4x\n', 'r.txt'), {
    message: /^r\.txt:1: LEN: invalid size "4x": /,
  });
  assert.throws(() => parseRangesText('# nothing\n\n', 'r.txt'), {
    message: 'r.txt: no ranges in the file (expected lines "SRC DST LEN" or a JSON array)',
  });
});

test('JSON format: numbers or size strings', () => {
  assert.deepEqual(
    parseRangesText(
      ' [{"src": 0, "dst": "1M", "len": "64k"}, {"src": 512, "dst": 4096, "len": 512}]',
      'r.json',
    ),
    [
      { src: 0, dst: 1 << 20, len: 65536 },
      { src: 512, dst: 4096, len: 512 },
    ],
  );
});

test('JSON format errors name the entry', () => {
  assert.throws(() => parseRangesText('[{"src": 0, "dst": 0}]', 'r.json'), {
    message: 'r.json: [0].len: is required',
  });
  assert.throws(() => parseRangesText('[{"src": 0, "dst": 0, "len": 512, "flags": 1}]', 'r.json'), {
    message: 'r.json: [0].flags: unknown key; expected one of src, dst, len',
  });
  assert.throws(() => parseRangesText('[1]', 'r.json'), {
    message: 'r.json: [0]: expected an object, got number 1',
  });
  assert.throws(() => parseRangesText('[]', 'r.json'), {
    message: 'r.json: no ranges in the file (the JSON array is empty)',
  });
  assert.throws(
    () => parseRangesText('[{"src": 0,', 'r.json'),
    (err: unknown) => ConfigError.is(err) && /^r\.json: not valid JSON: /.test(err.message),
  );
});

test('readRangesFile reads either format and reports unreadable files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-ranges-'));
  try {
    await writeFile(join(dir, 'a.txt'), '0 4k 4k\n');
    assert.deepEqual(await readRangesFile(join(dir, 'a.txt')), [{ src: 0, dst: 4096, len: 4096 }]);
    await writeFile(join(dir, 'a.json'), '[{"src":0,"dst":"4k","len":"4k"}]');
    assert.deepEqual(await readRangesFile(join(dir, 'a.json')), [{ src: 0, dst: 4096, len: 4096 }]);
    await assert.rejects(readRangesFile(join(dir, 'none.txt')), {
      message: `${join(dir, 'none.txt')}: cannot read ranges file: no such file`,
    });
    await assert.rejects(readRangesFile(dir), { message: `${dir}: cannot read ranges file: is a directory` });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
