// bench/lib/nbd-bench: the options of bench/nbd.ts, its fio command lines, fio JSON and
// nbdinfo parsing, the ratios (always "> 1 = tsblk faster") and the tables.
//
//   node --import tsx --test bench/lib/nbd-bench.test.ts

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  GiB,
  KiB,
  cpuTicksFromStat,
  MiB,
  WORKLOADS,
  fioArgs,
  findUri,
  formatMarkdown,
  formatTable,
  median,
  medianRun,
  nbdUri,
  parseBenchArgs,
  parseFioJson,
  parseMapTotals,
  parseSize,
  speedRatio,
  tableCells,
  type Row,
} from './nbd-bench.js';

test('parseSize: bytes and binary units, case and iB suffix ignored; junk refused', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('1G'), GiB);
  assert.equal(parseSize('256m'), 256 * MiB);
  assert.equal(parseSize('512KiB'), 512 * KiB);
  assert.equal(parseSize('2T'), 2048 * GiB);
  for (const bad of ['', 'G', '1.5G', '-1G', '1X', '0'])
    assert.throws(() => parseSize(bad), /size/, `"${bad}" must be refused`);
});

test('parseBenchArgs: defaults, every option, and the server order stays tsblk, nbdkit, qemu-nbd', () => {
  assert.deepEqual(parseBenchArgs([]), {
    sizeBytes: GiB,
    runtimeS: 5,
    servers: ['tsblk', 'nbdkit', 'qemu-nbd'],
    copyRuns: 3,
    rounds: 1,
    fio: true,
    nbdcopy: true,
  });
  const o = parseBenchArgs([
    '--size',
    '256M',
    '--runtime',
    '3',
    '--only',
    'nbdkit,tsblk',
    '--copy-runs',
    '5',
    '--rounds',
    '3',
    '--no-nbdcopy',
    '--json',
    'out.json',
    '--congestion',
    'cubic',
  ]);
  assert.equal(o.sizeBytes, 256 * MiB);
  assert.equal(o.runtimeS, 3);
  assert.deepEqual(o.servers, ['tsblk', 'nbdkit']);
  assert.equal(o.copyRuns, 5);
  assert.equal(o.rounds, 3);
  assert.equal(o.nbdcopy, false);
  assert.equal(o.fio, true);
  assert.equal(o.json, 'out.json');
  assert.equal(o.congestion, 'cubic');
  assert.equal(parseBenchArgs(['--no-fio']).fio, false);
});

test('parseBenchArgs: unknown servers, bad numbers, missing values and unknown flags are refused', () => {
  assert.throws(() => parseBenchArgs(['--only', 'tsblk,nbd-server']), /unknown server nbd-server/);
  assert.throws(() => parseBenchArgs(['--only', ',']), /at least one/);
  assert.throws(
    () => parseBenchArgs(['--congestion', '../../x']),
    /--congestion \.\.\/\.\.\/x: a congestion control name/,
  );
  assert.throws(() => parseBenchArgs(['--congestion']), /--congestion needs a value/);
  assert.throws(() => parseBenchArgs(['--runtime', '0']), /--runtime 0/);
  assert.throws(() => parseBenchArgs(['--runtime', '2.5']), /--runtime 2.5/);
  assert.throws(() => parseBenchArgs(['--copy-runs', '0']), /--copy-runs/);
  assert.throws(() => parseBenchArgs(['--rounds', '0']), /--rounds 0/);
  assert.throws(() => parseBenchArgs(['--size', '1536K']), /whole number of MiB/);
  assert.throws(() => parseBenchArgs(['--size']), /--size needs a value/);
  assert.throws(() => parseBenchArgs(['--size', '--runtime']), /--size needs a value/);
  assert.throws(() => parseBenchArgs(['--quick']), /unknown argument --quick/);
});

test('WORKLOADS: 4 KiB random at QD32 in IOPS, 1 MiB sequential at QD8 in MiB/s', () => {
  assert.deepEqual(
    WORKLOADS.map((w) => [w.rw, w.bs, w.iodepth, w.unit]),
    [
      ['randread', 4096, 32, 'IOPS'],
      ['randwrite', 4096, 32, 'IOPS'],
      ['read', MiB, 8, 'MiB/s'],
      ['write', MiB, 8, 'MiB/s'],
    ],
  );
});

test('fioArgs: the nbd engine on the URI; time-based only with a runtime; JSON to the output file', () => {
  const timed = fioArgs({
    name: 'rr',
    uri: 'nbd://127.0.0.1:10809/disk',
    rw: 'randread',
    bs: 4096,
    iodepth: 32,
    sizeBytes: GiB,
    output: '/tmp/rr.json',
    timeS: 5,
  });
  for (const a of [
    '--ioengine=nbd',
    '--uri=nbd://127.0.0.1:10809/disk',
    '--rw=randread',
    '--bs=4096',
    '--iodepth=32',
    `--size=${GiB}`,
    '--time_based',
    '--runtime=5',
    '--output-format=json',
    '--output=/tmp/rr.json',
  ])
    assert.ok(timed.includes(a), `${a} in ${timed.join(' ')}`);
  const once = fioArgs({
    name: 'fill',
    uri: 'nbd://h:1/x',
    rw: 'write:101m',
    bs: MiB,
    iodepth: 1,
    sizeBytes: GiB,
    output: 'o.json',
    extra: ['--number_ios=10'],
  });
  assert.ok(!once.some((a) => a.startsWith('--time_based') || a.startsWith('--runtime')));
  assert.ok(once.includes('--rw=write:101m'));
  assert.ok(once.includes('--number_ios=10'));
});

const fioDoc = (job: object) => JSON.stringify({ 'fio version': 'fio-3.33', jobs: [job] });
const dirStats = (iops: number, bw: number, io: number, latNs: number) => ({
  iops,
  bw_bytes: bw,
  io_bytes: io,
  lat_ns: { mean: latNs },
});

test('parseFioJson: IOPS, MiB/s, mean latency in µs; notes before the JSON are skipped', () => {
  const text =
    'fio: some note\n' +
    fioDoc({ error: 0, read: dirStats(50_000, 200 * MiB, 1000 * MiB, 640_000), write: dirStats(0, 0, 0, 0) });
  assert.deepEqual(parseFioJson(text, 'read'), { iops: 50_000, mibs: 200, latUs: 640, bytes: 1000 * MiB });
});

test('parseFioJson: a failed job, the wrong direction, no JSON at all are errors', () => {
  const ok = fioDoc({ error: 0, read: dirStats(1, 1, 1, 1), write: dirStats(0, 0, 0, 0) });
  assert.throws(() => parseFioJson(ok, 'write'), /did no writes/);
  assert.throws(
    () => parseFioJson(fioDoc({ error: 5, read: dirStats(1, 1, 1, 1) }), 'read'),
    /failed with error 5/,
  );
  assert.throws(() => parseFioJson('fio: engine nbd not loadable', 'read'), /no JSON/);
  assert.throws(() => parseFioJson('{"jobs": []}', 'read'), /without jobs/);
});

test('median: odd and even counts, input untouched', () => {
  const xs = [3, 1, 2];
  assert.equal(median(xs), 2);
  assert.deepEqual(xs, [3, 1, 2]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]));
});

test('speedRatio: > 1 means tsblk faster, for rates and for times alike; undefined without both', () => {
  const rate: Row = { label: 'r', unit: 'IOPS', values: { tsblk: 30_000, nbdkit: 60_000 } };
  assert.equal(speedRatio(rate, 'nbdkit'), 0.5);
  assert.equal(speedRatio(rate, 'qemu-nbd'), undefined);
  const time: Row = { label: 't', unit: 's', values: { tsblk: 0.5, nbdkit: 0.1, 'qemu-nbd': 2 } };
  assert.equal(speedRatio(time, 'nbdkit'), 0.2);
  assert.equal(speedRatio(time, 'qemu-nbd'), 4);
  assert.equal(speedRatio({ label: 'z', unit: 's', values: { tsblk: 0, nbdkit: 1 } }, 'nbdkit'), undefined);
});

test('tableCells + formatTable + formatMarkdown: values, missing cells, ratio columns only with tsblk', () => {
  const rows: Row[] = [
    {
      label: '4 KiB random read, QD32',
      unit: 'IOPS',
      values: { tsblk: 34_800, nbdkit: 54_900, 'qemu-nbd': 640 },
    },
    { label: '1 MiB sequential read, QD8', unit: 'MiB/s', values: { tsblk: 444.4, nbdkit: 2618 } },
    { label: 'nbdcopy', unit: 's', values: { tsblk: 1.456, nbdkit: 0.031, 'qemu-nbd': 12.34 } },
  ];
  const cells = tableCells(rows, ['tsblk', 'nbdkit', 'qemu-nbd']);
  assert.deepEqual(cells[0], [
    'workload',
    'unit',
    'tsblk',
    'nbdkit',
    'qemu-nbd',
    'tsblk/nbdkit',
    'tsblk/qemu-nbd',
  ]);
  assert.deepEqual(cells[1], ['4 KiB random read, QD32', 'IOPS', '34.8k', '54.9k', '640', '0.63×', '54.38×']);
  assert.deepEqual(cells[2], ['1 MiB sequential read, QD8', 'MiB/s', '444', '2618', '-', '0.17×', '-']);
  assert.deepEqual(cells[3], ['nbdcopy', 's', '1.46', '0.031', '12.3', '0.02×', '8.48×']);

  // Without tsblk there is nothing to compare: no ratio columns.
  assert.deepEqual(tableCells(rows, ['nbdkit', 'qemu-nbd'])[0], ['workload', 'unit', 'nbdkit', 'qemu-nbd']);

  const text = formatTable(cells).split('\n');
  assert.equal(text.length, 5);
  assert.ok(
    text.every((l) => l.length === text[0]!.length),
    'every line as wide as the header',
  );
  assert.match(text[1]!, /^-+-\|-/);
  assert.match(text[2]!, /^4 KiB random read, QD32\s+\| IOPS\s+\|\s+34\.8k \|/);

  const md = formatMarkdown(cells).split('\n');
  assert.equal(md[0], '| workload | unit | tsblk | nbdkit | qemu-nbd | tsblk/nbdkit | tsblk/qemu-nbd |');
  assert.equal(md[1], '| --- | --- | ---: | ---: | ---: | ---: | ---: |');
  assert.equal(md[4], '| nbdcopy | s | 1.46 | 0.031 | 12.3 | 0.02× | 8.48× |');
});

test('parseMapTotals: data and hole bytes from nbdinfo --map --totals', () => {
  const text = '  10485760   1.0%   0 data\n1063256064  99.0%   3 hole,zero\n';
  assert.deepEqual(parseMapTotals(text), { dataBytes: 10 * MiB, holeBytes: GiB - 10 * MiB });
  assert.deepEqual(parseMapTotals('1073741824 100.0%   0 data\n'), { dataBytes: GiB, holeBytes: 0 });
  // type 2 = zero but allocated: data, not a hole
  assert.deepEqual(parseMapTotals('4096  50.0%   2 zero\n4096  50.0%   1 hole\n'), {
    dataBytes: 4096,
    holeBytes: 4096,
  });
  assert.throws(() => parseMapTotals('nbdinfo: error'), /nothing parsed/);
});

test('nbdUri and findUri: the URI tsblk nbd prints first, nbds:// too', () => {
  assert.equal(nbdUri('127.0.0.1', 10809, 'disk'), 'nbd://127.0.0.1:10809/disk');
  assert.equal(nbdUri('127.0.0.1', 1, 'a b'), 'nbd://127.0.0.1:1/a%20b');
  const out =
    'nbd://127.0.0.1:45611/disk\n  export "disk": ram0 (ram)\n  also the default export: nbd://127.0.0.1:45611\n';
  assert.equal(findUri(out), 'nbd://127.0.0.1:45611/disk');
  assert.equal(findUri('nbds://h:1/x\n'), 'nbds://h:1/x');
  assert.equal(findUri('starting...\n'), undefined);
});

test('cpuTicksFromStat: utime + stime, also when the command name holds spaces and parentheses', () => {
  const tail = 'S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 16 0 1234 0 0';
  assert.equal(cpuTicksFromStat(`4242 (nbdkit) ${tail}`), 325);
  assert.equal(cpuTicksFromStat(`4242 (qemu (nbd) x) ${tail}`), 325);
  assert.throws(() => cpuTicksFromStat('4242 (x) S 1'), /not a \/proc\/PID\/stat/);
});

test('a CPU table: values with two decimals, never ratios (a cost, not a speed)', () => {
  const rows: Row[] = [{ label: 'rr', unit: 'cores', values: { tsblk: 0.987, nbdkit: 1.5 } }];
  assert.equal(speedRatio(rows[0]!, 'nbdkit'), undefined);
  assert.deepEqual(tableCells(rows, ['tsblk', 'nbdkit'], false), [
    ['workload', 'unit', 'tsblk', 'nbdkit'],
    ['rr', 'cores', '0.99', '1.50'],
  ]);
});

test('medianRun: the whole middle run by its key (the lower middle for an even count)', () => {
  const runs = [
    { mibs: 300, cores: 0.3 },
    { mibs: 100, cores: 0.1 },
    { mibs: 200, cores: 0.2 },
  ];
  assert.deepEqual(
    medianRun(runs, (r) => r.mibs),
    { mibs: 200, cores: 0.2 },
  );
  assert.deepEqual(
    medianRun(runs.slice(0, 2), (r) => r.mibs),
    { mibs: 100, cores: 0.1 },
  );
  assert.deepEqual(
    medianRun([runs[0]!], (r) => r.mibs),
    runs[0],
  );
  assert.throws(() => medianRun([], (r: number) => r), /median of nothing/);
});
