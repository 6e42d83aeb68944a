import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseResults, parseUblkBenchArgs, ublkTableCells } from './ublk-bench.js';

test('parseUblkBenchArgs: defaults, every option, refusals', () => {
  assert.deepEqual(parseUblkBenchArgs([]), { sizeMiB: 256, runtimeS: 3 });
  assert.deepEqual(
    parseUblkBenchArgs(['--size', '1G', '--runtime', '5', '--ublksrv', '/x/ublk', '--json', 'o.json']),
    {
      sizeMiB: 1024,
      runtimeS: 5,
      ublksrv: '/x/ublk',
      json: 'o.json',
    },
  );
  assert.throws(() => parseUblkBenchArgs(['--size', '12K']), /--size 12K/);
  assert.throws(() => parseUblkBenchArgs(['--size', '8M']), /at least 16M/);
  assert.throws(() => parseUblkBenchArgs(['--runtime', '0']), /--runtime 0/);
  assert.throws(() => parseUblkBenchArgs(['--ublksrv']), /needs a value/);
  assert.throws(() => parseUblkBenchArgs(['--fast']), /unknown argument --fast/);
});

test('parseResults reads the result lines only; KiB/s become MiB/s', () => {
  const r = parseResults(
    [
      'fact: tsblk_ready=yes',
      'result tsblk randread-4k-qd1 1200 4800',
      'result brd randread-4k-qd1 4000 16000',
      'result tsblk read-128k-qd8 2000 256000',
      'result loop read-128k-qd8 1000 128000.5',
      'result broken line',
    ].join('\n'),
  );
  assert.deepEqual([...r.keys()], ['tsblk', 'brd', 'loop']);
  assert.deepEqual(r.get('tsblk')?.get('randread-4k-qd1'), { iops: 1200, mibs: 4800 / 1024 });
  assert.equal(r.get('tsblk')?.get('read-128k-qd8')?.mibs, 250);
});

test('ublkTableCells: a column per target that ran, ratios to each peer, "-" where a job is missing', () => {
  const r = parseResults(
    [
      'result tsblk randread-4k-qd1 1200 4800',
      'result brd randread-4k-qd1 4000 16000',
      'result tsblk read-128k-qd8 2000 256000',
    ].join('\n'),
  );
  const cells = ublkTableCells(r);
  assert.deepEqual(cells[0], ['workload', 'unit', 'tsblk', 'brd', 'tsblk/brd']);
  assert.deepEqual(cells[1], ['4 KiB random read, QD1', 'IOPS', '1.2k', '4.0k', '0.30×']);
  const seq = cells.find((c) => c[0] === '128 KiB sequential read, QD8')!;
  assert.deepEqual(seq, ['128 KiB sequential read, QD8', 'MiB/s', '250', '-', '-']);
  assert.equal(cells.length, 7, 'header + six jobs');
});
