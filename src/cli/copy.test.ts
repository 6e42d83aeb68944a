import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './test-io.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-copy-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + seed * 13 + (i >> 9)) & 0xff;
  return b;
}

/** A 16 MiB image with patterns at 0 (64 KiB) and 1 MiB (4 KiB); the rest zeroes. */
async function image(dir: string, name = 'disk.img'): Promise<string> {
  const path = join(dir, name);
  const fh = await open(path, 'w+');
  await fh.truncate(16 * MiB);
  await fh.write(pattern(64 * KiB, 1), 0, 64 * KiB, 0);
  await fh.write(pattern(4 * KiB, 2), 0, 4 * KiB, MiB);
  await fh.close();
  return path;
}

async function bytesAt(path: string, offset: number, len: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, offset);
    return b;
  } finally {
    await fh.close();
  }
}

async function engineOf(path: string): Promise<string> {
  const info = JSON.parse((await runCli(['dev', 'info', `file:${path}`, '--json'])).stdout) as {
    details: { copyEngine: string };
  };
  return info.details.copyEngine;
}

interface CopyJson {
  ok: boolean;
  source: string;
  destination: string;
  mode: string;
  engine: string;
  bytes: number;
  completedBytes: number;
  offloaded: number;
  emulated: number;
  seconds: number;
  bytesPerSecond: number | null;
  peakBufferBytes: number | null;
  memoryBudget: number;
  ranges: Array<{ src: number; dst: number; len: number; completed: number; path?: string }>;
  error?: { code?: string; message: string };
}

test('copy on a file device with ranges from arguments', async (t) => {
  const dir = await tempDir(t);
  const img = await image(dir);
  const r = await runCli(['copy', `file:${img}`, '--range', '0:4M:64k', '-r', `${MiB}:5M:4k`]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await bytesAt(img, 4 * MiB, 64 * KiB), pattern(64 * KiB, 1));
  assert.deepEqual(await bytesAt(img, 5 * MiB, 4 * KiB), pattern(4 * KiB, 2));
  // The bytes after each destination are untouched.
  assert.deepEqual(await bytesAt(img, 4 * MiB + 64 * KiB, 512), Buffer.alloc(512));
  assert.match(
    r.stdout,
    new RegExp(
      `^copied 68 KiB in 2 ranges from ${img.replace(/[.]/g, '\\.')} to ${img.replace(/[.]/g, '\\.')} \\(mode auto, issueCopy\\)\n`,
    ),
  );
  assert.match(r.stdout, /\n {2}bytes\s+69632\n/);
  assert.match(r.stdout, /\n {2}offloaded\s+\d+ /);
  assert.match(r.stdout, /\n {2}throughput\s+\S+/);
  assert.match(r.stdout, /\n {2}peak buffer\s+\S+ \S+ \(budget 64 MiB\)\n/);
  assert.match(r.stdout, /\n {2}1\s+1048576\s+5242880\s+4096\s+4096\s+(offload|emulate)\n/);
  assert.equal(r.stderr, '');
});

test('ranges from a text file and from a JSON file', async (t) => {
  const dir = await tempDir(t);
  const img = await image(dir);
  const txt = join(dir, 'ranges.txt');
  await writeFile(txt, '# the copy-ioctl range list\n0 8M 64k\n1M 9M 4k  # second\n');
  const a = await runCli(['copy', `file:${img}`, '--ranges-file', txt, '--json']);
  assert.equal(a.code, 0, a.stderr);
  assert.equal((JSON.parse(a.stdout) as CopyJson).bytes, 68 * KiB);
  assert.deepEqual(await bytesAt(img, 8 * MiB, 64 * KiB), pattern(64 * KiB, 1));
  assert.deepEqual(await bytesAt(img, 9 * MiB, 4 * KiB), pattern(4 * KiB, 2));

  const json = join(dir, 'ranges.json');
  await writeFile(
    json,
    JSON.stringify([
      { src: 0, dst: '12M', len: '64k' },
      { src: MiB, dst: 13 * MiB, len: 4096 },
    ]),
  );
  const b = await runCli(['copy', `file:${img}`, '-f', json, '--json']);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual(await bytesAt(img, 12 * MiB, 64 * KiB), pattern(64 * KiB, 1));
  assert.deepEqual(await bytesAt(img, 13 * MiB, 4 * KiB), pattern(4 * KiB, 2));
});

test('forced emulation writes the same bytes as offload', async (t) => {
  const dir = await tempDir(t);
  const img = await image(dir);
  // Offload needs the native copy_file_range engine; without it, auto is the best path there is.
  const offloadMode = (await engineOf(img)) === 'copy_file_range' ? 'offload' : 'auto';
  const off = await runCli([
    'copy',
    `file:${img}`,
    '-r',
    '0:4M:64k',
    '-r',
    '1M:5M:4k',
    '--mode',
    offloadMode,
    '--json',
  ]);
  const emu = await runCli([
    'copy',
    `file:${img}`,
    '-r',
    '0:8M:64k',
    '-r',
    '1M:9M:4k',
    '--mode',
    'emulate',
    '--json',
  ]);
  assert.equal(off.code, 0, off.stderr);
  assert.equal(emu.code, 0, emu.stderr);
  const o = JSON.parse(off.stdout) as CopyJson;
  const e = JSON.parse(emu.stdout) as CopyJson;
  if (offloadMode === 'offload') {
    assert.equal(o.offloaded, 68 * KiB);
    assert.equal(o.emulated, 0);
    assert.deepEqual(
      o.ranges.map((r) => r.path),
      ['offload', 'offload'],
    );
  }
  assert.equal(e.offloaded, 0);
  assert.equal(e.emulated, 68 * KiB);
  assert.deepEqual(
    e.ranges.map((r) => r.path),
    ['emulate', 'emulate'],
  );
  assert.ok(e.peakBufferBytes! > 0);
  assert.deepEqual(await bytesAt(img, 4 * MiB, 2 * MiB), await bytesAt(img, 8 * MiB, 2 * MiB));
  assert.deepEqual(await bytesAt(img, 4 * MiB, 64 * KiB), pattern(64 * KiB, 1));
});

test('--json prints one object with the documented keys', async () => {
  const r = await runCli([
    'copy',
    'ram:64M,name=m',
    '-r',
    '0:32M:1M',
    '-r',
    '1M:40M:4k',
    '--json',
    '--memory-budget',
    '8M',
    '--concurrency',
    '2',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as CopyJson;
  assert.deepEqual(Object.keys(j), [
    'ok',
    'source',
    'destination',
    'mode',
    'engine',
    'bytes',
    'completedBytes',
    'offloaded',
    'emulated',
    'seconds',
    'bytesPerSecond',
    'peakBufferBytes',
    'memoryBudget',
    'ranges',
  ]);
  assert.equal(j.ok, true);
  assert.equal(j.source, 'm');
  assert.equal(j.destination, 'm');
  assert.equal(j.mode, 'auto');
  assert.equal(j.engine, 'issueCopy');
  assert.equal(j.bytes, MiB + 4096);
  assert.equal(j.completedBytes, MiB + 4096);
  assert.equal(j.offloaded, MiB + 4096);
  assert.equal(j.emulated, 0);
  assert.equal(j.peakBufferBytes, 0);
  assert.equal(j.memoryBudget, 8 * MiB);
  assert.ok(j.seconds >= 0);
  assert.deepEqual(j.ranges, [
    { src: 0, dst: 32 * MiB, len: MiB, completed: MiB, path: 'offload' },
    { src: MiB, dst: 40 * MiB, len: 4096, completed: 4096, path: 'offload' },
  ]);
  assert.equal(r.stderr, '');
});

test('copy between two devices emulates, dst defaults to src', async (t) => {
  const dir = await tempDir(t);
  const img = await image(dir);
  const cfg = join(dir, 'c.json');
  await writeFile(
    cfg,
    JSON.stringify({ devices: { disk: { type: 'file', path: img }, mem: { type: 'ram', size: '16M' } } }),
  );
  const r = await runCli(['copy', 'disk', 'mem', '-c', cfg, '-r', '0:0:64k', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as CopyJson;
  assert.equal(j.source, 'disk');
  assert.equal(j.destination, 'mem');
  assert.equal(j.emulated, 64 * KiB);
  assert.equal(j.ranges[0]!.path, 'emulate');
  // --mode offload cannot copy between a file and a RAM device.
  const forced = await runCli(['copy', 'disk', 'mem', '-c', cfg, '-r', '0:0:64k', '--mode', 'offload']);
  assert.equal(forced.code, 1);
  assert.match(
    forced.stderr,
    /^tsblk: EOPNOTSUPP: copy disk → mem: offload forced but mem cannot copy from disk; use mode auto or emulate\n$/,
  );
});

test('bad inputs give a clear message and a non-zero exit code', async (t) => {
  const dir = await tempDir(t);
  const img = await image(dir);
  const cases: Array<[string[], number, RegExp]> = [
    [
      ['copy', 'tape:1G', '-r', '0:1M:4k'],
      1,
      /^tsblk: device spec "tape:1G": unknown device kind "tape"; expected one of ram, null, file, nvme-tcp\n$/,
    ],
    [
      ['copy', `file:${img}`, '-r', '0:1M:1000'],
      1,
      /^tsblk: EINVAL: copy .* range 0 \{src: 0, dst: 1048576, len: 1000\}: offsets and length must be multiples of 512 bytes/,
    ],
    [
      ['copy', `file:${img}`, '-r', '0:16M:4k'],
      1,
      /^tsblk: ERANGE: copy .* range 0 \{src: 0, dst: 16777216, len: 4096\}: destination ends at 16781312, past the end of .* \(16777216 bytes\)\n$/,
    ],
    [
      ['copy', `file:${img}`, '-r', '0:1M:4k', '--mode', 'fast'],
      2,
      /^tsblk: option '-m, --mode <mode>' argument 'fast' is invalid\. Allowed choices are auto, offload, emulate\.\n/,
    ],
    [
      ['copy', `file:${img}`],
      2,
      /^tsblk: copy: no ranges given; pass --range SRC:DST:LEN \(repeatable\) or --ranges-file FILE\n$/,
    ],
    [
      ['copy', `file:${img}`, '-f', join(dir, 'missing.txt')],
      1,
      new RegExp(
        `^tsblk: ${join(dir, 'missing.txt').replace(/[.]/g, '\\.')}: cannot read ranges file: no such file\n$`,
      ),
    ],
    [
      ['copy', `file:${img}`, '-r', '0:1M'],
      2,
      /^tsblk: --range "0:1M": expected SRC:DST:LEN, e\.g\. --range 0:1M:64k\n$/,
    ],
    [
      ['copy', `file:${img},ro`, '-r', '0:1M:4k'],
      1,
      /^tsblk: EPERM: copy .*: destination .* is read-only\n$/,
    ],
    [
      ['copy', `file:${img}`, '-r', '0:1M:4k', '--memory-budget', '1.5G'],
      2,
      /^tsblk: --memory-budget: invalid size "1\.5G": /,
    ],
    [
      ['copy', `file:${img}`, '-r', '0:1M:4k', '--concurrency', '0'],
      2,
      /^tsblk: --concurrency "0": expected a positive whole number\n$/,
    ],
    [['copy', 'disk', '-r', '0:1M:4k'], 1, /^tsblk: unknown device "disk"; give an inline spec/],
  ];
  for (const [argv, code, message] of cases) {
    const r = await runCli(argv);
    assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, argv.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  // Nothing was written by the refused copies.
  assert.deepEqual(await bytesAt(img, MiB + 4 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
});

test('a bad range with --json also prints a JSON error object', async () => {
  const r = await runCli(['copy', 'ram:1M', '-r', '0:1M:4k', '--json']);
  assert.equal(r.code, 1);
  const j = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; message: string } };
  assert.equal(j.ok, false);
  assert.equal(j.error.code, 'ERANGE');
  assert.match(r.stderr, /^tsblk: ERANGE: /);
});

async function faultConfig(dir: string): Promise<string> {
  const cfg = join(dir, 'fault.json');
  await writeFile(
    cfg,
    JSON.stringify({
      devices: {
        mem: { type: 'ram', size: '16M' },
        bad: {
          type: 'fault',
          inner: 'mem',
          rules: [{ ops: ['write', 'copy'], offset: 2 * MiB + 8 * KiB, length: '4k' }],
        },
      },
    }),
  );
  return cfg;
}

test('a partial failure prints per-range completed prefixes and the ranges left, exit 1', async (t) => {
  const cfg = await faultConfig(await tempDir(t));
  const r = await runCli(['copy', 'bad', '-c', cfg, '-r', '0:1M:64k', '-r', '64k:2M:64k']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  const lines = r.stderr.split('\n');
  assert.match(
    lines[0]!,
    /^tsblk: EIO: copy on bad: injected fault \(rule 1, bytes 2105344\.\.2109440\) at byte 2105344$/,
  );
  assert.equal(
    lines[1],
    'copied 72 KiB of 128 KiB before the failure (offloaded 72 KiB, emulated 0 B); completed prefix of each range:',
  );
  assert.match(lines[2]!, /^ {2}range\s+src\s+dst\s+len\s+completed$/);
  assert.match(lines[3]!, /^ {2}0\s+0\s+1048576\s+65536\s+65536$/);
  assert.match(lines[4]!, /^ {2}1\s+65536\s+2097152\s+65536\s+8192$/);
  assert.equal(lines[5], 'to resume, copy the remaining ranges (ranges-file format, SRC DST LEN):');
  assert.equal(lines[6], '73728 2105344 57344');
});

test('a partial failure with --json reports the prefixes in the object', async (t) => {
  const cfg = await faultConfig(await tempDir(t));
  const r = await runCli([
    'copy',
    'bad',
    '-c',
    cfg,
    '-r',
    '0:1M:64k',
    '-r',
    '64k:2M:64k',
    '--mode',
    'emulate',
    '--json',
  ]);
  assert.equal(r.code, 1);
  const j = JSON.parse(r.stdout) as CopyJson;
  assert.equal(j.ok, false);
  assert.equal(j.error?.code, 'EIO');
  assert.equal(j.completedBytes, 64 * KiB);
  assert.equal(j.emulated, 64 * KiB);
  assert.deepEqual(
    j.ranges.map((x) => x.completed),
    [64 * KiB, 0],
  );
  assert.match(r.stderr, /^tsblk: EIO: /);
});

test('--progress draws the bar on stderr even off a terminal; none by default off a terminal', async () => {
  const on = await runCli(['copy', 'ram:64M', '-r', '0:32M:8M', '--progress']);
  assert.equal(on.code, 0);
  assert.match(on.stderr, /^copy \[[=-]{40}\] \d+% \| .* \| .* \| ETA .*\n/);
  assert.match(on.stderr, /copy \[={40}\] 100% \| 8 MiB\/8 MiB \| \S+ \S+ \| ETA 0 s\n$/);
  const off = await runCli(['copy', 'ram:64M', '-r', '0:32M:8M']);
  assert.equal(off.stderr, '');
  // On a terminal the bar waits for copies that take long; this one is quick.
  const quick = await runCli(['copy', 'ram:64M', '-r', '0:32M:8M'], { stderrTTY: true });
  assert.equal(quick.stderr, '');
  const never = await runCli(['copy', 'ram:64M', '-r', '0:32M:8M', '--no-progress'], { stderrTTY: true });
  assert.equal(never.stderr, '');
});

test('a copy larger than 128 MiB runs as a copy job: sparse file', async (t) => {
  const dir = await tempDir(t);
  const img = join(dir, 'big.img');
  const fh = await open(img, 'w+');
  await fh.truncate(1024 * MiB);
  await fh.write(pattern(4096, 3), 0, 4096, 150 * MiB);
  await fh.close();
  const r = await runCli(['copy', `file:${img}`, '-r', '0:512M:200M', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as CopyJson;
  assert.equal(j.engine, 'copy-job');
  assert.equal(j.bytes, 200 * MiB);
  assert.equal(j.completedBytes, 200 * MiB);
  assert.equal(j.offloaded + j.emulated, 200 * MiB);
  assert.equal(j.peakBufferBytes, null);
  assert.equal(j.ranges[0]!.completed, 200 * MiB);
  assert.deepEqual(await bytesAt(img, 662 * MiB, 4096), pattern(4096, 3));
  // The last block of the destination range.
  assert.deepEqual(await bytesAt(img, 712 * MiB - 512, 512), Buffer.alloc(512));
});

test('a copy larger than 128 MiB runs as a copy job: RAM, offloaded and emulated', async () => {
  const off = await runCli(['copy', 'ram:1G', '-r', '0:512M:100M', '-r', '100M:700M:100M', '--json']);
  assert.equal(off.code, 0, off.stderr);
  const o = JSON.parse(off.stdout) as CopyJson;
  assert.equal(o.engine, 'copy-job');
  assert.equal(o.offloaded, 200 * MiB);
  assert.equal(o.emulated, 0);
  assert.deepEqual(
    o.ranges.map((r) => r.path),
    ['offload', 'offload'],
  );

  const emu = await runCli(['copy', 'null:1T', '-r', '0:512G:160M', '--mode', 'emulate']);
  assert.equal(emu.code, 0, emu.stderr);
  assert.match(emu.stdout, /\(mode emulate, copy-job\)\n/);
  assert.match(emu.stdout, /\n {2}offloaded\s+0 \(0 B\)\n {2}emulated\s+167772160 \(160 MiB\)\n/);
  assert.match(emu.stdout, /\n {2}peak buffer\s+not measured \(budget 64 MiB\)\n/);
});

test('a large copy whose destination overlaps its source on one device is refused', async () => {
  const r = await runCli(['copy', 'ram:1G', '-r', '0:100M:200M']);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^tsblk: EINVAL: copy job ram\d+ → ram\d+: a destination range overlaps a source range on the same device/,
  );
});
