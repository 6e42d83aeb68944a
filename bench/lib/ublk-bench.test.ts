import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  JOBS,
  guestJobList,
  incompleteTargets,
  jobDirection,
  latencyCells,
  parseGuestOutput,
  parseUblkBenchArgs,
  ratio,
  ublkTableCells,
} from './ublk-bench.js';

/** fio's --output-format=json for one job, pretty-printed like fio does, with a note before it. */
function fioJson(dir: 'read' | 'write', iops: number, bwBytes: number, latNs: number, error = 0): string {
  const side = (on: boolean) => ({
    io_bytes: on ? bwBytes * 5 : 0,
    bw_bytes: on ? bwBytes : 0,
    iops: on ? iops : 0,
    lat_ns: { min: 0, max: 0, mean: on ? latNs : 0 },
  });
  return JSON.stringify(
    {
      'fio version': 'fio-3.33',
      jobs: [{ jobname: 'j', error, read: side(dir === 'read'), write: side(dir === 'write') }],
    },
    null,
    2,
  );
}

/** The guest script's line for one job: the JSON joined onto one line, as `tr -d '\n'` does. */
function line(target: string, job: string, json: string): string {
  return `fio-json ${target} ${job} ${json.replace(/\n/g, '')}`;
}

test('parseUblkBenchArgs: defaults, every option, refusals', () => {
  assert.deepEqual(parseUblkBenchArgs([]), { sizeMiB: 256, runtimeS: 5, queues: 2, depth: 128 });
  assert.deepEqual(
    parseUblkBenchArgs([
      '--size',
      '1G',
      '--runtime',
      '10',
      '--queues',
      '1',
      '--depth',
      '64',
      '--ublksrv',
      '/x/ublk',
      '--json',
      'o.json',
    ]),
    { sizeMiB: 1024, runtimeS: 10, queues: 1, depth: 64, ublksrv: '/x/ublk', json: 'o.json' },
  );
  assert.equal(parseUblkBenchArgs(['--size', '64MiB']).sizeMiB, 64);
  assert.throws(() => parseUblkBenchArgs(['--size', 'lots']), /--size lots: a size like 256M/);
  assert.throws(() => parseUblkBenchArgs(['--size', '1536K']), /--size 1536K: a whole number of MiB/);
  assert.throws(() => parseUblkBenchArgs(['--size', '8M']), /at least 16M/);
  assert.throws(() => parseUblkBenchArgs(['--runtime', '0']), /--runtime 0: a whole number from 1 to 600/);
  assert.throws(() => parseUblkBenchArgs(['--runtime', '2.5']), /--runtime 2\.5/);
  assert.throws(() => parseUblkBenchArgs(['--depth', '4097']), /--depth 4097/);
  assert.throws(() => parseUblkBenchArgs(['--queues', '0']), /--queues 0/);
  assert.throws(() => parseUblkBenchArgs(['--ublksrv']), /--ublksrv needs a value/);
  assert.throws(() => parseUblkBenchArgs(['--ublksrv', '--json', 'x']), /--ublksrv needs a value/);
  assert.throws(() => parseUblkBenchArgs(['--fast']), /unknown argument --fast/);
  assert.throws(() => parseUblkBenchArgs(['--help']), /^Error: usage: bench\/ublk\.ts/);
});

test('the jobs: 4 KiB random read/write at QD1 and QD64, 128 KiB sequential; the list the guest reads', () => {
  assert.deepEqual(
    JOBS.map((j) => [j.rw, j.bs, j.iodepth]),
    [
      ['randread', '4k', 1],
      ['randwrite', '4k', 1],
      ['randread', '4k', 64],
      ['randwrite', '4k', 64],
      ['read', '128k', 8],
      ['write', '128k', 8],
    ],
  );
  assert.deepEqual(
    JOBS.map((j) => jobDirection(j)),
    ['read', 'write', 'read', 'write', 'read', 'write'],
  );
  const list = guestJobList();
  assert.equal(list.split(';').length, JOBS.length);
  assert.equal(list.split(';')[0], 'randread-4k-qd1 randread 4k 1');
  assert.equal(list.split(';')[5], 'write-128k-qd8 write 128k 8');
  assert.equal(new Set(JOBS.map((j) => j.id)).size, JOBS.length, 'job ids are unique');
});

test("parseGuestOutput: fio's JSON per job (the job's direction), facts, failures, other lines ignored", () => {
  const out = [
    'fact: tsblk_ready=yes',
    'fact: tsblk_info=ublk device 0 (/dev/ublkc0, server pid 9): flags 0x80 (USER_COPY)',
    '==== brd ====',
    line('tsblk', 'randread-4k-qd1', fioJson('read', 1200.5, 4_917_248, 812_000)),
    line('tsblk', 'randwrite-4k-qd1', fioJson('write', 900, 3_686_400, 1_100_000)),
    line(
      'brd',
      'read-128k-qd8',
      `fio: note before the document\n${fioJson('read', 12_000, 1_572_864_000, 600)}`,
    ),
    'fio-failed loop randread-4k-qd1 fio: io_u error on file /dev/loop0',
    line('loop', 'randwrite-4k-qd64', fioJson('write', 1, 1, 1, 5)),
    line('loop', 'no-such-job', fioJson('read', 1, 1, 1)),
    'result tsblk randread-4k-qd1 1 1',
  ].join('\n');
  const g = parseGuestOutput(out);
  assert.deepEqual([...g.results.keys()], ['tsblk', 'brd']);
  assert.deepEqual(g.results.get('tsblk')?.get('randread-4k-qd1'), {
    iops: 1200.5,
    mibs: 4_917_248 / 1024 / 1024,
    latUs: 812,
    bytes: 4_917_248 * 5,
  });
  assert.equal(
    g.results.get('tsblk')?.get('randwrite-4k-qd1')?.iops,
    900,
    'a write job reads the write side',
  );
  assert.equal(g.results.get('brd')?.get('read-128k-qd8')?.mibs, 1500);
  assert.equal(g.facts.get('tsblk_ready'), 'yes');
  assert.match(g.facts.get('tsblk_info') ?? '', /USER_COPY/);
  assert.deepEqual(g.errors, [
    'loop randread-4k-qd1: fio: io_u error on file /dev/loop0',
    'loop randwrite-4k-qd64: fio job failed with error 5',
    'loop no-such-job: not a job of this bench',
  ]);
});

test('parseGuestOutput: a job that moved no data is an error, not a zero', () => {
  const g = parseGuestOutput(line('brd', 'randread-4k-qd1', fioJson('write', 10, 40960, 1000)));
  assert.equal(g.results.size, 0);
  assert.deepEqual(g.errors, ['brd randread-4k-qd1: fio job did no reads']);
});

test('incompleteTargets: a target missing any job, or missing altogether', () => {
  const lines = JOBS.map((j) => line('brd', j.id, fioJson(jobDirection(j), 10, 40960, 1000)));
  lines.push(line('tsblk', 'randread-4k-qd1', fioJson('read', 10, 40960, 1000)));
  const g = parseGuestOutput(lines.join('\n'));
  assert.deepEqual(incompleteTargets(g.results, ['tsblk', 'brd', 'loop']), ['tsblk', 'loop']);
  assert.deepEqual(incompleteTargets(g.results, ['brd']), []);
});

test('ratio: tsblk over the peer, undefined when either side is missing or zero', () => {
  assert.equal(ratio(50, 200), 0.25);
  assert.equal(ratio(undefined, 200), undefined);
  assert.equal(ratio(50, undefined), undefined);
  assert.equal(ratio(50, 0), undefined);
  assert.equal(ratio(0, 50), undefined);
});

test('ublkTableCells: a column per target that ran (table order), tsblk/peer ratios, "-" where missing', () => {
  const g = parseGuestOutput(
    [
      line('ublksrv-null', 'randread-4k-qd1', fioJson('read', 2400, 9_830_400, 400_000)),
      line('brd', 'randread-4k-qd1', fioJson('read', 4000, 16_384_000, 250_000)),
      line('tsblk', 'randread-4k-qd1', fioJson('read', 1200, 4_915_200, 800_000)),
      line('tsblk', 'read-128k-qd8', fioJson('read', 2000, 262_144_000, 500_000)),
    ].join('\n'),
  );
  const cells = ublkTableCells(g.results);
  assert.deepEqual(cells[0], [
    'workload',
    'unit',
    'tsblk',
    'brd',
    'ublksrv-null',
    'tsblk/brd',
    'tsblk/ublksrv-null',
  ]);
  assert.deepEqual(cells[1], ['4 KiB random read, QD1', 'IOPS', '1.2k', '4.0k', '2.4k', '0.30×', '0.50×']);
  const seq = cells.find((c) => c[0] === '128 KiB sequential read, QD8');
  assert.deepEqual(seq, ['128 KiB sequential read, QD8', 'MiB/s', '250', '-', '-', '-', '-']);
  assert.equal(cells.length, 1 + JOBS.length, 'header + a row per job');
});

test('ublkTableCells: no ratio columns without tsblk', () => {
  const g = parseGuestOutput(line('brd', 'randread-4k-qd1', fioJson('read', 4000, 16_384_000, 250_000)));
  assert.deepEqual(ublkTableCells(g.results)[0], ['workload', 'unit', 'brd']);
});

test('latencyCells: mean latency of the QD1 jobs in µs per target', () => {
  const g = parseGuestOutput(
    [
      line('tsblk', 'randread-4k-qd1', fioJson('read', 1200, 4_915_200, 812_345)),
      line('brd', 'randread-4k-qd1', fioJson('read', 4000, 16_384_000, 12_340)),
      line('brd', 'randwrite-4k-qd1', fioJson('write', 4000, 16_384_000, 99_940)),
    ].join('\n'),
  );
  assert.deepEqual(latencyCells(g.results), [
    ['workload', 'unit', 'tsblk', 'brd'],
    ['4 KiB random read, QD1', 'µs', '812', '12.3'],
    ['4 KiB random write, QD1', 'µs', '-', '99.9'],
  ]);
});
